//! Fuzzing harness of the state machine, shared by the cargo-fuzz targets
//! (`relay/fuzz`) and the corpus replay test (`relay/tests/fuzz_corpus.rs`).
//!
//! The input is a sequence of operations, so that a fuzzer reaches
//! authenticated states without forging HMACs: an operation may ask the
//! harness to sign its attribute bytes as a valid user with a valid nonce.
//! The oracle: no panic, every message sent to a client parses (as STUN, or
//! as ChannelData), and the state stays within its configured bounds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stun_types::attribute::{Nonce, Realm, Username};
use stun_types::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageType, MessageWrite,
    MessageWriteExt, MessageWriteVec, Method,
};

use super::wire::{classify, FrameKind};
use super::*;
use crate::auth::Authenticator;
use crate::config::PeerPolicyConfig;
use crate::limits::{Quotas, UnauthorizedLimiter};
use crate::policy::{OwnAddrs, PeerPolicy};
use crate::stats::Stats;

const REALM: &str = "fuzz";
const CAPACITY: u32 = 8;
const MAX_PERMS: usize = 4;
const MAX_CHANNELS: usize = 4;

#[derive(Default)]
struct RecIo {
    to_client: Vec<Vec<u8>>,
    open: usize,
    port: u16,
}

impl Io for RecIo {
    fn send_to_client(&mut self, _: &ClientId, data: &[u8]) {
        self.to_client.push(data.to_vec());
    }
    fn send_to_peer(&mut self, _: AllocId, _: SocketAddr, _: &[u8]) {}
    fn open_relay(&mut self, _: AllocId, req: &RelayRequest) -> Result<RelayGranted, RelayError> {
        if req.reservation == Some(1) {
            return Err(RelayError::BadToken);
        }
        self.open += 1;
        self.port = self.port.wrapping_add(1);
        Ok(RelayGranted {
            local: SocketAddr::new([192, 0, 2, 9].into(), 49152 + self.port % 1000),
            reservation_token: req.reserve_next.then_some(self.port as u64 + 2),
        })
    }
    fn close_relay(&mut self, _: AllocId) {
        self.open = self.open.saturating_sub(1);
    }
}

/// Runs one fuzz input; `Err` describes a violated oracle, `Ok` gives the
/// peak number of allocations the input reached.
pub fn run(data: &[u8]) -> Result<usize, String> {
    let t0 = Instant::now();
    let mut users = BTreeMap::new();
    users.insert("alice".to_string(), "wonderland".to_string());
    let auth = Authenticator::new(REALM, users, &["s".into()], Some(b"fuzz-nonce-key"), 600);
    let policy = PeerPolicy::new(&PeerPolicyConfig {
        allow_loopback_peers: false,
        allow: vec!["198.51.100.0/24".parse().expect("net")],
        deny: vec![],
    });
    let cfg = ProtoConfig {
        software: "fuzz".into(),
        default_lifetime: 600,
        max_lifetime: 3600,
        permission_lifetime: 300,
        channel_lifetime: 600,
        has_v4: true,
        has_v6: true,
        external_v4: None,
        external_v6: None,
        max_bps: 1_000_000,
        total_bps: 10_000_000,
        max_permissions: MAX_PERMS,
        max_channels: MAX_CHANNELS,
        alternate_server: None,
        bindings_per_sec: 5,
        own: OwnAddrs::new(vec![3478], vec![]),
    };
    let mut s = Server::new(
        cfg,
        auth,
        policy,
        Quotas::new(4, 6, CAPACITY),
        UnauthorizedLimiter::with_slots(5, 16),
        Arc::new(Stats::default()),
        t0,
    );
    let mut io = RecIo::default();
    let mut now = Clock {
        mono: t0,
        unix: 1_700_000_000,
    };
    let mut peak = 0;
    let mut rest = data;
    let mut take = |n: usize| {
        let n = n.min(rest.len());
        let (a, b) = rest.split_at(n);
        rest = b;
        a
    };
    loop {
        let head = take(3);
        if head.len() < 3 {
            break;
        }
        let (op, who, len) = (head[0], head[1], head[2] as usize);
        let body = take(len);
        let client = ClientId {
            transport: if who & 0x80 != 0 {
                Transport::Tcp
            } else {
                Transport::Udp
            },
            conn: (who & 3) as u32,
            remote: SocketAddr::new([203, 0, 113, who & 3].into(), 1000 + (who as u16 & 7)),
        };
        match op % 5 {
            0 => s.handle(Input::FromClient { client, data: body }, now, &mut io),
            1 => {
                let msg = signed(&s, client, now, op, body);
                s.handle(Input::FromClient { client, data: &msg }, now, &mut io);
            }
            2 => {
                let alloc = (who as u64 & 7) + 1;
                let peer = SocketAddr::new([198, 51, 100, who & 3].into(), 4000);
                s.handle(
                    Input::FromPeer {
                        alloc,
                        peer,
                        data: body,
                    },
                    now,
                    &mut io,
                );
            }
            3 => {
                now.mono += Duration::from_secs(who as u64);
                now.unix += who as u64;
                s.handle(Input::Tick, now, &mut io);
            }
            _ => s.handle(Input::ClientClosed(client), now, &mut io),
        }
        check(&s, &mut io)?;
        peak = peak.max(s.allocs.len());
    }
    Ok(peak)
}

/// A request of the method in `op`'s high bits with `attrs` as raw attribute
/// bytes, signed by alice with a valid nonce (and FINGERPRINT).
fn signed(s: &Server, client: ClientId, now: Clock, op: u8, attrs: &[u8]) -> Vec<u8> {
    let methods = [0x001u16, 0x003, 0x004, 0x008, 0x009];
    let method = Method::new(methods[(op as usize / 5) % methods.len()]);
    let mut w = Message::builder(
        MessageType::from_class_method(MessageClass::Request, method),
        TransactionId::generate(),
        MessageWriteVec::new(),
    );
    // Whole, aligned attributes only: the builder appends them verbatim.
    let mut i = 0;
    while i + 4 <= attrs.len() {
        let t = u16::from_be_bytes([attrs[i], attrs[i + 1]]);
        let l = (attrs[i + 3] as usize) & 0x1f;
        let end = i + 4 + l;
        if end > attrs.len() || [0x0006, 0x0008, 0x0014, 0x0015, 0x001c, 0x8028].contains(&t) {
            break;
        }
        let raw = stun_types::attribute::RawAttribute::new(t.into(), &attrs[i + 4..end]);
        let _ = w.add_attribute(&raw);
        i = (end + 3) & !3;
    }
    let nonce = s.auth.make_nonce(client.remote.ip(), now.unix);
    let _ = w.add_attribute(&Username::new("alice").expect("username"));
    let _ = w.add_attribute(&Realm::new(REALM).expect("realm"));
    let _ = w.add_attribute(&Nonce::new(&nonce).expect("nonce"));
    let creds =
        LongTermKeyCredentials::new("alice".into(), "wonderland".into(), REALM.into()).into();
    let _ = w.add_message_integrity(&creds, IntegrityAlgorithm::Sha1);
    let _ = w.add_fingerprint();
    w.finish()
}

fn check(s: &Server, io: &mut RecIo) -> Result<(), String> {
    for m in io.to_client.drain(..) {
        match classify(&m) {
            FrameKind::Stun(_) => {
                Message::from_bytes(&m).map_err(|e| format!("reply does not parse: {e:?}"))?;
            }
            FrameKind::Channel(_, n) if n <= m.len() => {}
            _ => return Err(format!("reply is neither STUN nor ChannelData: {m:02x?}")),
        }
    }
    if s.allocs.len() > CAPACITY as usize || s.by_client.len() != s.allocs.len() {
        return Err(format!(
            "allocations {} / clients {}",
            s.allocs.len(),
            s.by_client.len()
        ));
    }
    if s.quotas.total() > CAPACITY {
        return Err(format!("quota total {}", s.quotas.total()));
    }
    let reserved = crate::limits::locked(&s.reservations).len();
    if reserved > CAPACITY as usize {
        return Err(format!("reservations {reserved}"));
    }
    for a in s.allocs.values() {
        if a.permissions.len() > MAX_PERMS || a.channels.len() > MAX_CHANNELS {
            return Err(format!(
                "permissions {} channels {}",
                a.permissions.len(),
                a.channels.len()
            ));
        }
    }
    if s.unauth.tracked() > s.unauth.slots() || s.bindings.tracked() > s.bindings.slots() {
        return Err("limiter table overflow".into());
    }
    Ok(())
}
