//! State machine tests with a mock [`Io`].

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stun_types::attribute::{
    AlternateServer, ErrorCode, Nonce, RawAttribute, Realm, Username, XorMappedAddress,
};
use stun_types::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageWrite,
    MessageWriteExt, MessageWriteVec, Method, TransactionId, BINDING,
};
use stun_types::prelude::*;
use stun_types::AddressFamily;
use turn_types::attribute::{
    AdditionalAddressFamily, ChannelNumber, Data, EvenPort, Lifetime, RequestedAddressFamily,
    RequestedTransport, ReservationToken, XorPeerAddress, XorRelayedAddress,
};
use turn_types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, REFRESH, SEND};

use super::*;
use crate::auth::{mint, Authenticator};
use crate::config::PeerPolicyConfig;
use crate::limits::{Quotas, UnauthorizedLimiter};
use crate::policy::PeerPolicy;
use crate::stats::{AllocError, Stats};

const REALM: &str = "test.realm";
const SECRET: &str = "rest-secret-0123";
const T0: u64 = 1_700_000_000;

#[derive(Default)]
struct MockIo {
    to_client: Vec<(ClientId, Vec<u8>)>,
    to_peer: Vec<(AllocId, SocketAddr, Vec<u8>)>,
    opened: Vec<(AllocId, RelayRequest)>,
    closed: Vec<AllocId>,
    next_port: u16,
    fail_ports: bool,
}

impl Io for MockIo {
    fn send_to_client(&mut self, client: &ClientId, data: &[u8]) {
        self.to_client.push((*client, data.to_vec()));
    }
    fn send_to_peer(&mut self, alloc: AllocId, peer: SocketAddr, data: &[u8]) {
        self.to_peer.push((alloc, peer, data.to_vec()));
    }
    fn open_relay(
        &mut self,
        alloc: AllocId,
        req: &RelayRequest,
    ) -> Result<RelayGranted, RelayError> {
        if self.fail_ports {
            return Err(RelayError::NoPorts);
        }
        if req.reservation == Some(99) {
            return Err(RelayError::BadToken);
        }
        self.opened.push((alloc, req.clone()));
        self.next_port += 2;
        let ip: IpAddr = match req.family {
            Family::V4 => "10.0.0.5".parse().unwrap(),
            Family::V6 => "2001:db8::5".parse().unwrap(),
        };
        Ok(RelayGranted {
            local: SocketAddr::new(ip, 50_000 + self.next_port),
            reservation_token: req.reserve_next.then_some(0xfeed),
        })
    }
    fn close_relay(&mut self, alloc: AllocId) {
        self.closed.push(alloc);
    }
}

struct Setup {
    cfg: ProtoConfig,
    per_user: u32,
    per_ip: u32,
    capacity: u32,
    unauth: u32,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            cfg: ProtoConfig {
                software: "test".into(),
                default_lifetime: 600,
                max_lifetime: 3600,
                permission_lifetime: 300,
                channel_lifetime: 600,
                has_v4: true,
                has_v6: false,
                external_v4: Some("198.51.100.1".parse().unwrap()),
                external_v6: None,
                max_bps: 10_000_000,
                total_bps: 1_000_000_000,
                max_permissions: 4,
                max_channels: 2,
                alternate_server: None,
                bindings_per_sec: 0,
                own: crate::policy::OwnAddrs::new(
                    vec![3478, 9641],
                    vec!["198.51.100.1".parse().unwrap()],
                ),
            },
            per_user: 0,
            per_ip: 0,
            capacity: 100,
            unauth: 0,
        }
    }
}

struct H {
    s: Server,
    io: MockIo,
    t0: Instant,
    now: Clock,
    stats: Arc<Stats>,
}

fn peer_ok() -> SocketAddr {
    // Documentation range, opened by the test policy's allow list; never contacted.
    "198.51.100.20:4000".parse().unwrap()
}

fn client(port: u16) -> ClientId {
    ClientId {
        transport: Transport::Udp,
        conn: 0,
        remote: SocketAddr::new("203.0.113.10".parse().unwrap(), port),
    }
}

impl H {
    fn new(setup: Setup) -> Self {
        let mut users = BTreeMap::new();
        users.insert("alice".to_string(), "wonderland".to_string());
        let auth = Authenticator::new(
            REALM,
            users,
            &[SECRET.to_string()],
            Some(b"nonce-key-0123456789"),
            600,
        );
        let policy = PeerPolicy::new(&PeerPolicyConfig {
            allow_loopback_peers: false,
            allow: vec!["198.51.100.0/24".parse().unwrap()],
            deny: vec![],
        });
        let t0 = Instant::now();
        let stats = Arc::new(Stats::default());
        let s = Server::new(
            setup.cfg,
            auth,
            policy,
            Quotas::new(setup.per_user, setup.per_ip, setup.capacity),
            UnauthorizedLimiter::new(setup.unauth),
            stats.clone(),
            t0,
        );
        H {
            s,
            io: MockIo::default(),
            t0,
            now: Clock { mono: t0, unix: T0 },
            stats,
        }
    }

    fn advance(&mut self, secs: u64) {
        self.now.mono += Duration::from_secs(secs);
        self.now.unix += secs;
    }

    fn send(&mut self, c: ClientId, data: &[u8]) -> Option<Vec<u8>> {
        self.io.to_client.clear();
        self.s.handle(
            Input::FromClient { client: c, data },
            self.now,
            &mut self.io,
        );
        self.io.to_client.pop().map(|(_, d)| d)
    }

    /// Sends `req` and returns the reply's code.
    fn code(&mut self, c: ClientId, req: &[u8]) -> u16 {
        code_of(&self.send(c, req).expect("a reply"))
    }

    /// A datagram from `peer` arriving on allocation `alloc`'s relay socket.
    fn peer_sends(&mut self, alloc: AllocId, peer: SocketAddr, data: &[u8]) {
        let input = Input::FromPeer { alloc, peer, data };
        self.s.handle(input, self.now, &mut self.io);
    }

    fn tick(&mut self) {
        self.s.handle(Input::Tick, self.now, &mut self.io);
    }

    fn nonce(&mut self, c: ClientId) -> String {
        let req = Message::builder_request(ALLOCATE, MessageWriteVec::new()).finish();
        let resp = self.send(c, &req).expect("401 reply");
        let m = Message::from_bytes(&resp).unwrap();
        assert_eq!(code(&m), 401);
        assert_eq!(m.attribute::<Realm>().unwrap().realm(), REALM);
        m.attribute::<Nonce>().unwrap().nonce().to_string()
    }

    fn auth_nonce(&self, c: ClientId) -> String {
        self.s.auth.make_nonce(c.remote.ip(), self.now.unix)
    }
}

fn code(m: &Message<'_>) -> u16 {
    match m.class() {
        MessageClass::Success => 200,
        MessageClass::Error => m.attribute::<ErrorCode>().unwrap().code(),
        _ => 0,
    }
}

fn code_of(resp: &[u8]) -> u16 {
    code(&Message::from_bytes(resp).unwrap())
}

type AddAttrs = Box<dyn FnOnce(&mut MessageWriteVec, TransactionId)>;

/// Builds a signed request.
fn signed(
    method: Method,
    user: &str,
    pass: &str,
    nonce: &str,
    add: impl FnOnce(&mut MessageWriteVec, TransactionId),
) -> Vec<u8> {
    let mut w = Message::builder_request(method, MessageWriteVec::new());
    let tid = w.transaction_id();
    add(&mut w, tid);
    w.add_attribute(&Username::new(user).unwrap()).unwrap();
    w.add_attribute(&Realm::new(REALM).unwrap()).unwrap();
    w.add_attribute(&Nonce::new(nonce).unwrap()).unwrap();
    let creds = LongTermKeyCredentials::new(user.into(), pass.into(), REALM.into()).into();
    w.add_message_integrity(&creds, IntegrityAlgorithm::Sha1)
        .unwrap();
    w.add_fingerprint().unwrap();
    w.finish()
}

/// A request signed by alice.
fn alice(
    method: Method,
    nonce: &str,
    add: impl FnOnce(&mut MessageWriteVec, TransactionId),
) -> Vec<u8> {
    signed(method, "alice", "wonderland", nonce, add)
}

fn udp_transport(w: &mut MessageWriteVec, _: TransactionId) {
    w.add_attribute(&RequestedTransport::new(RequestedTransport::UDP))
        .unwrap();
}

/// REQUESTED-TRANSPORT UDP and LIFETIME.
fn udp_lifetime(secs: u32) -> impl FnOnce(&mut MessageWriteVec, TransactionId) {
    move |w, t| {
        udp_transport(w, t);
        w.add_attribute(&Lifetime::new(secs)).unwrap();
    }
}

/// REQUESTED-TRANSPORT UDP plus the address family attributes given.
fn udp_with_families(
    requested: Option<AddressFamily>,
    additional: Option<AddressFamily>,
) -> AddAttrs {
    Box::new(move |w, t| {
        udp_transport(w, t);
        if let Some(f) = requested {
            w.add_attribute(&RequestedAddressFamily::new(f)).unwrap();
        }
        if let Some(f) = additional {
            w.add_attribute(&AdditionalAddressFamily::new(f)).unwrap();
        }
    })
}

fn check_integrity(resp: &[u8], user: &str, pass: &str) {
    let m = Message::from_bytes(resp).unwrap();
    let creds = LongTermKeyCredentials::new(user.into(), pass.into(), REALM.into()).into();
    m.validate_integrity(&creds).expect("response is signed");
}

/// Allocates for `c` as alice; returns (nonce, relayed address).
fn allocate(h: &mut H, c: ClientId) -> (String, SocketAddr) {
    let nonce = h.nonce(c);
    let resp = h.send(c, &alice(ALLOCATE, &nonce, udp_transport)).unwrap();
    check_integrity(&resp, "alice", "wonderland");
    let m = Message::from_bytes(&resp).unwrap();
    assert_eq!(code(&m), 200);
    (nonce, relayed(&m))
}

fn relayed(m: &Message<'_>) -> SocketAddr {
    let a = m.attribute::<XorRelayedAddress>().unwrap();
    a.addr(m.transaction_id())
}

fn mapped(m: &Message<'_>) -> SocketAddr {
    let a = m.attribute::<XorMappedAddress>().unwrap();
    a.addr(m.transaction_id())
}

fn peer_attr(peer: SocketAddr) -> impl FnOnce(&mut MessageWriteVec, TransactionId) {
    move |w, tid| w.add_attribute(&XorPeerAddress::new(peer, tid)).unwrap()
}

#[test]
fn binding_returns_reflexive_address_with_fingerprint() {
    let mut h = H::new(Setup::default());
    let c = client(5000);
    let mut w = Message::builder_request(BINDING, MessageWriteVec::new());
    w.add_fingerprint().unwrap();
    let resp = h.send(c, &w.finish()).unwrap();
    let m = Message::from_bytes(&resp).unwrap();
    assert_eq!(m.class(), MessageClass::Success);
    assert_eq!(mapped(&m), c.remote);
    assert!(m.has_attribute(stun_types::attribute::Fingerprint::TYPE));
    assert_eq!(h.s.counters().binding_requests, 1);
}

#[test]
fn allocate_lifecycle_with_external_address_and_retransmission() {
    let mut h = H::new(Setup::default());
    let c = client(5000);
    let nonce = h.nonce(c);
    let req = alice(ALLOCATE, &nonce, udp_lifetime(100_000));
    let resp = h.send(c, &req).unwrap();
    let m = Message::from_bytes(&resp).unwrap();
    assert_eq!(code(&m), 200);
    // Advertised address is the external IP with the bound port.
    assert_eq!(relayed(&m).ip(), "198.51.100.1".parse::<IpAddr>().unwrap());
    assert_eq!(
        m.attribute::<Lifetime>().unwrap().seconds(),
        3600,
        "capped at max"
    );
    assert_eq!(mapped(&m), c.remote);
    // Retransmission with the same transaction id: same answer, no new allocation.
    assert_eq!(h.code(c, &req), 200);
    assert_eq!(h.io.opened.len(), 1);
    // A new Allocate on the same 5-tuple: 437.
    assert_eq!(h.code(c, &alice(ALLOCATE, &nonce, udp_transport)), 437);
    // Short lifetimes are raised to the default.
    let c2 = client(5001);
    let n2 = h.nonce(c2);
    let req = alice(ALLOCATE, &n2, udp_lifetime(10));
    let m = h.send(c2, &req).unwrap();
    let lifetime = Message::from_bytes(&m).unwrap().attribute::<Lifetime>();
    assert_eq!(lifetime.unwrap().seconds(), 600);
    // Refresh to 0 deletes.
    let req = alice(REFRESH, &n2, |w, _| {
        w.add_attribute(&Lifetime::new(0)).unwrap();
    });
    let m = h.send(c2, &req).unwrap();
    check_integrity(&m, "alice", "wonderland");
    assert_eq!(code_of(&m), 200);
    assert_eq!(h.s.allocations(), 1);
    assert_eq!(h.io.closed.len(), 1);
    // Expiry by time: the remaining allocation goes away after its lifetime.
    h.advance(3599);
    h.tick();
    assert_eq!(h.s.allocations(), 1);
    h.advance(2);
    h.tick();
    assert_eq!(h.s.allocations(), 0);
    assert_eq!(
        h.stats
            .allocations
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let _ = h.t0;
}

#[test]
fn wrong_password_unknown_user_and_stale_nonce() {
    let mut h = H::new(Setup::default());
    let c = client(5000);
    let nonce = h.nonce(c);
    for (u, p) in [("alice", "wrong"), ("mallory", "x")] {
        assert_eq!(
            h.code(c, &signed(ALLOCATE, u, p, &nonce, udp_transport)),
            401
        );
    }
    assert_eq!(h.s.counters().auth_failures, 2);
    // A forged nonce and an old nonce both get 438 with a fresh nonce.
    let m = h
        .send(c, &alice(ALLOCATE, "gsn1forged", udp_transport))
        .unwrap();
    let m = Message::from_bytes(&m).unwrap();
    assert_eq!(code(&m), 438);
    assert!(m.has_attribute(Nonce::TYPE));
    h.advance(601);
    assert_eq!(h.code(c, &alice(ALLOCATE, &nonce, udp_transport)), 438);
    // Missing USERNAME with integrity present: 400.
    let mut w = Message::builder_request(ALLOCATE, MessageWriteVec::new());
    let tid = w.transaction_id();
    udp_transport(&mut w, tid);
    let creds =
        LongTermKeyCredentials::new("alice".into(), "wonderland".into(), REALM.into()).into();
    w.add_message_integrity(&creds, IntegrityAlgorithm::Sha1)
        .unwrap();
    assert_eq!(h.code(c, &w.finish()), 400);
}

#[test]
fn rest_credentials_expire_at_allocate_and_refresh() {
    let mut h = H::new(Setup::default());
    let c = client(5000);
    let nonce = h.nonce(c);
    let (old_u, old_p) = mint(SECRET.as_bytes(), 0, Some("bob"), T0 - 10);
    let req = signed(ALLOCATE, &old_u, &old_p, &nonce, udp_transport);
    assert_eq!(h.code(c, &req), 401, "expired at Allocate");
    let (u, p) = mint(SECRET.as_bytes(), 60, Some("bob"), T0);
    assert_eq!(
        h.code(c, &signed(ALLOCATE, &u, &p, &nonce, udp_transport)),
        200
    );
    h.advance(61);
    let nonce = h.auth_nonce(c);
    let req = signed(REFRESH, &u, &p, &nonce, |_, _| {});
    assert_eq!(h.code(c, &req), 401, "expired at Refresh");
    // Deleting is still allowed.
    let req = signed(REFRESH, &u, &p, &nonce, |w, _| {
        w.add_attribute(&Lifetime::new(0)).unwrap()
    });
    assert_eq!(h.code(c, &req), 200);
    assert_eq!(h.s.allocations(), 0);
}

#[test]
fn quotas_capacity_draining_and_alternate_server() {
    let mut setup = Setup {
        per_user: 2,
        capacity: 3,
        ..Default::default()
    };
    setup.cfg.alternate_server = None;
    let mut h = H::new(setup);
    allocate(&mut h, client(1));
    allocate(&mut h, client(2));
    let c = client(3);
    let n = h.nonce(c);
    let m = h.send(c, &alice(ALLOCATE, &n, udp_transport)).unwrap();
    check_integrity(&m, "alice", "wonderland");
    assert_eq!(code_of(&m), 486);
    let (u, p) = mint(SECRET.as_bytes(), 600, Some("bob"), T0);
    assert_eq!(h.code(c, &signed(ALLOCATE, &u, &p, &n, udp_transport)), 200);
    let (u2, p2) = mint(SECRET.as_bytes(), 600, Some("carol"), T0);
    let req = signed(ALLOCATE, &u2, &p2, &n, udp_transport);
    assert_eq!(h.code(client(4), &req), 508, "capacity");
    let errors = h.s.counters().alloc_errors;
    assert_eq!(errors[AllocError::Capacity as usize], 1);
    assert_eq!(errors[AllocError::QuotaUser as usize], 1);

    // With an alternate server: 300 + ALTERNATE-SERVER, also while draining.
    let mut setup = Setup::default();
    let alt: SocketAddr = "198.51.100.99:3478".parse().unwrap();
    setup.cfg.alternate_server = Some(alt);
    let mut h = H::new(setup);
    h.s.set_draining(true);
    let c = client(1);
    let n = h.nonce(c);
    let m = h.send(c, &alice(ALLOCATE, &n, udp_transport)).unwrap();
    let m = Message::from_bytes(&m).unwrap();
    assert_eq!(code(&m), 300);
    assert_eq!(m.attribute::<AlternateServer>().unwrap().server(), alt);
    h.s.set_draining(false);
    assert_eq!(h.code(c, &alice(ALLOCATE, &n, udp_transport)), 200);

    // Per-IP quota.
    let mut h = H::new(Setup {
        per_ip: 1,
        ..Default::default()
    });
    allocate(&mut h, client(1));
    let c = client(2); // same IP, other port
    let n = h.nonce(c);
    assert_eq!(h.code(c, &alice(ALLOCATE, &n, udp_transport)), 486);
}

#[test]
fn allocate_attribute_errors() {
    let mut h = H::new(Setup::default());
    let c = client(1);
    let n = h.nonce(c);
    let cases: Vec<(AddAttrs, u16)> = vec![
        (Box::new(|_, _| {}), 400),
        (
            Box::new(|w, _| {
                w.add_attribute(&RequestedTransport::new(RequestedTransport::TCP))
                    .unwrap()
            }),
            442,
        ),
        (udp_with_families(Some(AddressFamily::IPV6), None), 440),
        (
            Box::new(|w, t| {
                udp_transport(w, t);
                w.add_attribute(&EvenPort::new(false)).unwrap();
                w.add_attribute(&ReservationToken::new(5)).unwrap();
            }),
            400,
        ),
        (
            Box::new(|w, t| {
                udp_transport(w, t);
                w.add_attribute(&ReservationToken::new(99)).unwrap();
            }),
            508,
        ),
    ];
    for (add, want) in cases {
        assert_eq!(h.code(c, &alice(ALLOCATE, &n, add)), want);
    }
    h.io.fail_ports = true;
    assert_eq!(h.code(c, &alice(ALLOCATE, &n, udp_transport)), 508);
    h.io.fail_ports = false;
    // EVEN-PORT with R: the reservation token is returned.
    let req = alice(ALLOCATE, &n, |w, t| {
        udp_transport(w, t);
        w.add_attribute(&EvenPort::new(true)).unwrap();
    });
    let m = h.send(c, &req).unwrap();
    let m = Message::from_bytes(&m).unwrap();
    assert_eq!(code(&m), 200);
    assert_eq!(m.attribute::<ReservationToken>().unwrap().token(), 0xfeed);
    assert!(h.io.opened[0].1.even_port && h.io.opened[0].1.reserve_next);
    // Unknown comprehension-required attribute: 420 with UNKNOWN-ATTRIBUTES.
    let mut w = Message::builder_request(BINDING, MessageWriteVec::new());
    w.add_attribute(&RawAttribute::new(0x7777.into(), &[1, 2, 3, 4]))
        .unwrap();
    let m = h.send(c, &w.finish()).unwrap();
    let m = Message::from_bytes(&m).unwrap();
    assert_eq!(code(&m), 420);
    assert!(m.has_attribute(stun_types::attribute::UnknownAttributes::TYPE));
}

#[test]
fn permissions_channels_and_relaying() {
    let mut h = H::new(Setup::default());
    let c = client(1);
    let (n, _) = allocate(&mut h, c);
    let id = h.io.opened[0].0;
    let peer = peer_ok();
    // Peer data before any permission is dropped.
    h.peer_sends(id, peer, b"early");
    assert!(h.io.to_client.is_empty());
    // Denied peers: loopback, private, unspecified and mapped forms.
    for bad in [
        "127.0.0.1:80",
        "10.0.0.1:80",
        "0.0.0.0:80",
        "169.254.169.254:80",
    ] {
        let req = alice(CREATE_PERMISSION, &n, peer_attr(bad.parse().unwrap()));
        assert_eq!(h.code(c, &req), 403, "{bad}");
    }
    let mapped = peer_attr("[::ffff:127.0.0.1]:80".parse().unwrap());
    let req = alice(CREATE_PERMISSION, &n, mapped);
    assert_eq!(h.code(c, &req), 443, "IPv6 peer on IPv4 relay");
    assert_eq!(h.s.counters().peer_denied, 4);
    // CreatePermission, then Send indication → peer; peer → Data indication.
    let m = h
        .send(c, &alice(CREATE_PERMISSION, &n, peer_attr(peer)))
        .unwrap();
    check_integrity(&m, "alice", "wonderland");
    assert_eq!(code_of(&m), 200);
    let mut w = Message::builder_indication(SEND, MessageWriteVec::new());
    let tid = w.transaction_id();
    w.add_attribute(&XorPeerAddress::new(peer, tid)).unwrap();
    w.add_attribute(&Data::new(b"via-send")).unwrap();
    h.send(c, &w.finish());
    assert_eq!(
        h.io.to_peer.last().unwrap(),
        &(id, peer, b"via-send".to_vec())
    );
    h.io.to_client.clear();
    h.peer_sends(id, peer, b"reply");
    let (to, d) = h.io.to_client.pop().unwrap();
    assert_eq!(to, c);
    let m = Message::from_bytes(&d).unwrap();
    assert_eq!(m.class(), MessageClass::Indication);
    assert_eq!(m.attribute::<Data>().unwrap().data(), b"reply");
    assert_eq!(
        m.attribute::<XorPeerAddress>()
            .unwrap()
            .addr(m.transaction_id()),
        peer
    );
    // Permission is per IP: another port of the same peer IP is fine.
    let other_port = SocketAddr::new(peer.ip(), 4001);
    h.peer_sends(id, other_port, b"x");
    assert_eq!(h.io.to_client.len(), 1);

    // ChannelBind; invalid numbers and conflicting rebinds get 400.
    let bind = |ch: u16, p: SocketAddr| {
        alice(CHANNEL_BIND, &n, move |w, t| {
            w.add_attribute(&ChannelNumber::new(ch)).unwrap();
            w.add_attribute(&XorPeerAddress::new(p, t)).unwrap();
        })
    };
    for (ch, p, want) in [
        (0x3fff, peer, 400),
        (0x8000, peer, 400),
        (0x4001, peer, 200),
        (0x4001, peer, 200), // refresh
        (0x4002, peer, 400), // peer already bound to 0x4001
        (0x4001, other_port, 400),
        (0x4003, "127.0.0.1:9".parse().unwrap(), 403),
    ] {
        assert_eq!(h.code(c, &bind(ch, p)), want, "channel {ch:#x} {p}");
    }
    // ChannelData both ways.
    h.io.to_peer.clear();
    h.send(c, &[0x40, 0x01, 0x00, 0x03, b'a', b'b', b'c']);
    assert_eq!(h.io.to_peer, vec![(id, peer, b"abc".to_vec())]);
    // Unknown channel and truncated frames are dropped.
    h.send(c, &[0x40, 0x09, 0x00, 0x03, b'a', b'b', b'c']);
    h.send(c, &[0x40, 0x01, 0x00, 0x09, b'a']);
    assert_eq!(h.io.to_peer.len(), 1);
    h.io.to_client.clear();
    h.peer_sends(id, peer, b"pong");
    assert_eq!(
        h.io.to_client.pop().unwrap().1,
        vec![0x40, 0x01, 0x00, 0x04, b'p', b'o', b'n', b'g']
    );
    let cn = h.s.counters();
    assert_eq!((cn.packets_in, cn.packets_out), (2, 3));

    // Channel count limit (2 per allocation here): 508.
    let p2: SocketAddr = "198.51.100.21:1".parse().unwrap();
    let p3: SocketAddr = "198.51.100.22:1".parse().unwrap();
    assert_eq!(h.code(c, &bind(0x4010, p2)), 200);
    assert_eq!(h.code(c, &bind(0x4011, p3)), 508);

    // Permissions expire after 300 s unless refreshed; channels after 600 s.
    h.advance(301);
    h.tick();
    h.io.to_client.clear();
    h.io.to_peer.clear();
    h.peer_sends(id, peer, b"late");
    h.send(c, &[0x40, 0x01, 0x00, 0x01, b'z']);
    assert!(h.io.to_client.is_empty() && h.io.to_peer.is_empty());
}

#[test]
fn wrong_credentials_on_existing_allocation_give_441() {
    let mut h = H::new(Setup::default());
    let c = client(1);
    let (n, _) = allocate(&mut h, c);
    let (u, p) = mint(SECRET.as_bytes(), 600, Some("bob"), T0);
    let resp = h.send(c, &signed(REFRESH, &u, &p, &n, |_, _| {})).unwrap();
    assert_eq!(code_of(&resp), 441);
    // Signed with the credentials the request proved, not the allocation's.
    check_integrity(&resp, &u, &p);
    // A request with another username and a bad MESSAGE-INTEGRITY gets no
    // authenticated error, only an unsigned 401.
    let forged = signed(REFRESH, &u, "not-the-password", &n, |_, _| {});
    let resp = h.send(c, &forged).unwrap();
    assert_eq!(code_of(&resp), 401);
    let m = Message::from_bytes(&resp).unwrap();
    assert!(!m.has_attribute(stun_types::attribute::MessageIntegrity::TYPE));
    // Requests without an allocation: 437.
    let c2 = client(2);
    assert_eq!(h.code(c2, &alice(REFRESH, &n, |_, _| {})), 437);
    let req = alice(CREATE_PERMISSION, &n, peer_attr(peer_ok()));
    assert_eq!(h.code(c2, &req), 437);
}

#[test]
fn bandwidth_limit_drops_excess() {
    let mut setup = Setup::default();
    setup.cfg.max_bps = 8_000; // 1 kB/s, burst 64 KiB
    let mut h = H::new(setup);
    let c = client(1);
    let (n, _) = allocate(&mut h, c);
    let id = h.io.opened[0].0;
    h.send(c, &alice(CREATE_PERMISSION, &n, peer_attr(peer_ok())));
    let payload = vec![7u8; 1000];
    for _ in 0..100 {
        h.peer_sends(id, peer_ok(), &payload);
    }
    let drops = h.s.counters().bandwidth_drops;
    assert!((30..=40).contains(&drops), "{drops}");
}

#[test]
fn unauthorized_replies_are_rate_limited_per_ip() {
    let mut h = H::new(Setup {
        unauth: 5,
        ..Default::default()
    });
    let req = Message::builder_request(ALLOCATE, MessageWriteVec::new()).finish();
    let mut replies = 0;
    for port in 0..50 {
        if h.send(client(port), &req).is_some() {
            replies += 1;
        }
    }
    // A burst of twice the rate, then nothing until tokens come back.
    assert_eq!(replies, 10);
    assert_eq!(h.s.counters().unauthorized_limited, 40);
    h.advance(1);
    assert!(h.send(client(1), &req).is_some());
}

#[test]
fn tcp_client_close_removes_allocation() {
    let mut h = H::new(Setup::default());
    let c = ClientId {
        transport: Transport::Tcp,
        conn: 7,
        remote: "203.0.113.10:5000".parse().unwrap(),
    };
    allocate(&mut h, c);
    assert_eq!(h.s.allocations(), 1);
    h.s.handle(Input::ClientClosed(c), h.now, &mut h.io);
    assert_eq!(h.s.allocations(), 0);
    assert_eq!(h.io.closed.len(), 1);
}

#[test]
fn malformed_input_never_panics() {
    let mut h = H::new(Setup::default());
    let c = client(1);
    let (n, _) = allocate(&mut h, c);
    let good = alice(CHANNEL_BIND, &n, |w, t| {
        w.add_attribute(&ChannelNumber::new(0x4001)).unwrap();
        w.add_attribute(&XorPeerAddress::new(peer_ok(), t)).unwrap();
    });
    // Every truncation and many single-byte corruptions of a valid request.
    for len in 0..good.len() {
        h.send(c, &good[..len]);
    }
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for _ in 0..20_000 {
        let mut m = good.clone();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() as usize) % m.len();
            m[i] = next() as u8;
        }
        h.send(c, &m);
        let len = (next() % 200) as usize;
        let junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        h.send(c, &junk);
        let mut cd = vec![0x40, 0x01];
        cd.extend_from_slice(&junk);
        h.send(c, &cd);
    }
    // A request with a valid header but broken attributes gets 400.
    let mut bad = Message::builder_request(BINDING, MessageWriteVec::new()).finish();
    bad[3] = 8;
    bad.extend_from_slice(&[0x00, 0x06, 0x00, 0x20, 1, 2, 3, 4]);
    assert_eq!(h.code(c, &bad), 400);
    // The allocation still works.
    assert_eq!(h.s.allocations(), 1);
    assert!(h.s.counters().malformed > 0);
}

#[test]
fn address_families() {
    let mut setup = Setup::default();
    setup.cfg.has_v6 = true;
    let mut h = H::new(setup);
    // IPv6 relay on request (RFC 6156 / 8656).
    let c = client(1);
    let n = h.nonce(c);
    let v6 = udp_with_families(Some(AddressFamily::IPV6), None);
    assert_eq!(h.code(c, &alice(ALLOCATE, &n, v6)), 200);
    assert_eq!(h.io.opened[0].1.family, Family::V6);
    // Refresh naming the other family: 443.
    let req = alice(REFRESH, &n, |w, _| {
        w.add_attribute(&RequestedAddressFamily::new(AddressFamily::IPV4))
            .unwrap();
    });
    assert_eq!(h.code(c, &req), 443);
    // Dual allocation request: IPv4 granted, IPv6 part refused with ADDRESS-ERROR-CODE 440.
    let dual = udp_with_families(None, Some(AddressFamily::IPV6));
    let m = h.send(client(2), &alice(ALLOCATE, &n, dual)).unwrap();
    let m = Message::from_bytes(&m).unwrap();
    assert_eq!(code(&m), 200);
    let aec = m
        .attribute::<turn_types::attribute::AddressErrorCode>()
        .unwrap();
    assert_eq!(aec.family(), AddressFamily::IPV6);
    assert_eq!(aec.error().code(), 440);
    assert_eq!(h.io.opened[1].1.family, Family::V4);
    // ADDITIONAL-ADDRESS-FAMILY with REQUESTED-ADDRESS-FAMILY: 400.
    let both = udp_with_families(Some(AddressFamily::IPV4), Some(AddressFamily::IPV6));
    assert_eq!(h.code(client(3), &alice(ALLOCATE, &n, both)), 400);
}

#[test]
fn binding_answer_is_minimal_and_rate_limited_per_udp_source() {
    let mut setup = Setup::default();
    setup.cfg.bindings_per_sec = 5;
    let mut h = H::new(setup);
    let c = client(5000);
    let req = Message::builder_request(BINDING, MessageWriteVec::new()).finish();
    let resp = h.send(c, &req).unwrap();
    let m = Message::from_bytes(&resp).unwrap();
    assert!(!m.has_attribute(stun_types::attribute::Software::TYPE));
    assert!(!m.has_attribute(0x0001.into()), "no legacy MAPPED-ADDRESS");
    // Header, XOR-MAPPED-ADDRESS (IPv4) and FINGERPRINT only.
    assert_eq!(resp.len(), 20 + 12 + 8);
    // Burst of 2 * 5 per source (the first above included), then dropped.
    let answered = (0..20).filter(|_| h.send(c, &req).is_some()).count();
    assert_eq!(answered, 9);
    assert_eq!(h.s.counters().binding_limited, 11);
    // Another source is unaffected; TCP is not limited (no spoofing).
    let other = ClientId {
        remote: "203.0.113.11:1".parse().unwrap(),
        ..c
    };
    assert!(h.send(other, &req).is_some());
    let tcp = ClientId {
        transport: Transport::Tcp,
        ..c
    };
    assert!((0..20).all(|_| h.send(tcp, &req).is_some()));
    h.advance(1);
    assert!(h.send(c, &req).is_some());
}

#[test]
fn per_user_quota_keys_on_the_rest_user_part() {
    let mut h = H::new(Setup {
        per_user: 2,
        ..Default::default()
    });
    // Three credentials of bob with different expiries, from three addresses.
    for (i, ttl) in [600u64, 700, 800].into_iter().enumerate() {
        let c = ClientId {
            remote: SocketAddr::new(IpAddr::from([203, 0, 113, 20 + i as u8]), 1000),
            ..client(1)
        };
        let n = h.nonce(c);
        let (u, p) = mint(SECRET.as_bytes(), ttl, Some("bob"), T0);
        let want = if i < 2 { 200 } else { 486 };
        assert_eq!(
            h.code(c, &signed(ALLOCATE, &u, &p, &n, udp_transport)),
            want
        );
    }
    // Another user is not affected.
    let c = client(9);
    let n = h.nonce(c);
    let (u, p) = mint(SECRET.as_bytes(), 600, Some("carol"), T0);
    assert_eq!(h.code(c, &signed(ALLOCATE, &u, &p, &n, udp_transport)), 200);
}

#[test]
fn even_port_reservations_count_against_quotas() {
    let mut h = H::new(Setup {
        per_ip: 2,
        ..Default::default()
    });
    let c = client(1);
    let n = h.nonce(c);
    let even_r = |w: &mut MessageWriteVec, t| {
        udp_transport(w, t);
        w.add_attribute(&EvenPort::new(true)).unwrap();
    };
    assert_eq!(h.code(c, &alice(ALLOCATE, &n, even_r)), 200);
    // Allocation + reserved port fill the per-IP quota of 2.
    let c2 = client(2);
    assert_eq!(h.code(c2, &alice(ALLOCATE, &n, udp_transport)), 486);
    // Claiming the reservation passes its slot on.
    let claim = |w: &mut MessageWriteVec, t| {
        udp_transport(w, t);
        w.add_attribute(&ReservationToken::new(0xfeed)).unwrap();
    };
    assert_eq!(h.code(c2, &alice(ALLOCATE, &n, claim)), 200);
    // An unclaimed reservation expires and frees its slot.
    let mut h = H::new(Setup {
        per_ip: 2,
        ..Default::default()
    });
    assert_eq!(h.code(c, &alice(ALLOCATE, &n, even_r)), 200);
    assert_eq!(h.code(c2, &alice(ALLOCATE, &n, udp_transport)), 486);
    h.advance(31);
    h.tick();
    let n = h.nonce(c2);
    assert_eq!(h.code(c2, &alice(ALLOCATE, &n, udp_transport)), 200);
}

/// `req` (signed, without FINGERPRINT) with `extra` raw attribute bytes
/// appended after MESSAGE-INTEGRITY and the header length adjusted.
fn append_after_integrity(mut req: Vec<u8>, extra: &[u8]) -> Vec<u8> {
    req.extend_from_slice(extra);
    let len = (req.len() - 20) as u16;
    req[2..4].copy_from_slice(&len.to_be_bytes());
    req
}

#[test]
fn attributes_after_message_integrity_are_ignored() {
    let mut h = H::new(Setup::default());
    let c = client(1);
    let (n, _) = allocate(&mut h, c);
    let signed_no_fp = |nonce: &str, add: AddAttrs| {
        let mut w = Message::builder_request(CREATE_PERMISSION, MessageWriteVec::new());
        let tid = w.transaction_id();
        add(&mut w, tid);
        w.add_attribute(&Username::new("alice").unwrap()).unwrap();
        w.add_attribute(&Realm::new(REALM).unwrap()).unwrap();
        w.add_attribute(&Nonce::new(nonce).unwrap()).unwrap();
        let creds =
            LongTermKeyCredentials::new("alice".into(), "wonderland".into(), REALM.into()).into();
        w.add_message_integrity(&creds, IntegrityAlgorithm::Sha1)
            .unwrap();
        (w.finish(), tid)
    };
    // An unknown comprehension-required attribute smuggled after MI: no 420.
    let (req, _) = signed_no_fp(&n, Box::new(peer_attr(peer_ok())));
    let req = append_after_integrity(req, &[0x00, 0x2f, 0x00, 0x04, 1, 2, 3, 4]);
    assert_eq!(h.code(c, &req), 200);
    // A second XOR-PEER-ADDRESS (a denied peer) after MI is not acted upon.
    let (req, tid) = signed_no_fp(&n, Box::new(peer_attr(peer_ok())));
    let denied: SocketAddr = "10.1.2.3:9".parse().unwrap();
    let attr = XorPeerAddress::new(denied, tid);
    let raw = attr.to_raw();
    let mut bytes = vec![0x00, 0x12, 0x00, raw.length() as u8];
    bytes.extend_from_slice(&raw.value);
    let req = append_after_integrity(req, &bytes);
    assert_eq!(h.code(c, &req), 200);
    assert_eq!(h.s.counters().peer_denied, 0);
}

#[test]
fn own_listener_and_http_ports_are_denied_as_peers() {
    let mut h = H::new(Setup::default());
    let c = client(1);
    let (n, _) = allocate(&mut h, c);
    // The relay's external address is in the allowed test range, but its
    // listener and HTTP ports are not reachable through an allocation.
    for own in ["198.51.100.1:3478", "198.51.100.1:9641"] {
        let own: SocketAddr = own.parse().unwrap();
        let bind = alice(CHANNEL_BIND, &n, move |w, t| {
            w.add_attribute(&ChannelNumber::new(0x4001)).unwrap();
            w.add_attribute(&XorPeerAddress::new(own, t)).unwrap();
        });
        assert_eq!(h.code(c, &bind), 403, "{own}");
    }
    // Another port of the same address is a peer like any other.
    let other: SocketAddr = "198.51.100.1:50000".parse().unwrap();
    assert_eq!(
        h.code(c, &alice(CREATE_PERMISSION, &n, peer_attr(other))),
        200
    );
    // A Send indication to the listener port is dropped, to another port relayed.
    for (peer, relayed) in [("198.51.100.1:3478", false), ("198.51.100.1:50000", true)] {
        let peer: SocketAddr = peer.parse().unwrap();
        let mut w = Message::builder_indication(SEND, MessageWriteVec::new());
        let tid = w.transaction_id();
        w.add_attribute(&XorPeerAddress::new(peer, tid)).unwrap();
        w.add_attribute(&Data::new(b"loop")).unwrap();
        h.io.to_peer.clear();
        h.send(c, &w.finish());
        assert_eq!(!h.io.to_peer.is_empty(), relayed, "{peer}");
    }
}
