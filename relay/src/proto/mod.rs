//! Sans-IO TURN/STUN state machine.
//!
//! [`Server::handle`] takes one [`Input`] and the current [`Clock`] and emits
//! its outputs through the [`Io`] trait: datagrams/frames for clients and
//! peers, and requests to open or close relay sockets. It never touches a
//! socket or reads a clock itself, so every behaviour is unit-testable with a
//! mock `Io`.
//!
//! Control messages are parsed and written with `stun-types`/`turn-types`;
//! ChannelData and Data indications (the hot path) use [`wire`].

#[doc(hidden)]
pub mod harness;
mod requests;
#[cfg(test)]
mod tests;
pub mod wire;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stun_types::message::{Message, TransactionId};
use turn_types::attribute::{Data, XorPeerAddress};

use crate::auth::Authenticator;
use crate::config::RelayConfig;
use crate::limits::{
    locked, loop_share, loop_share_u64, Quotas, SharedQuotas, SourceLimiter, TokenBucket,
    UnauthorizedLimiter,
};
use crate::policy::PeerPolicy;
use crate::stats::{Counters, Stats};
use wire::FrameKind;

/// Transport between client and relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

/// Identifies a client 5-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId {
    /// Transport.
    pub transport: Transport,
    /// Listener index (UDP) or connection id (TCP/TLS).
    pub conn: u32,
    /// Client's address as seen by the relay.
    pub remote: SocketAddr,
}

/// Allocation identifier, used by the IO layer to tag peer packets.
pub type AllocId = u64;

/// Address family of a relayed transport address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// Family of an address.
    pub fn of(addr: &SocketAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// How long a reserved port (EVEN-PORT with R) is held (RFC 8656: about 30 s);
/// it counts against the quotas of whoever reserved it for that long.
pub const RESERVATION_TTL: Duration = Duration::from_secs(30);

/// A port reserved by an EVEN-PORT R request, counted against quotas.
#[derive(Debug)]
pub(crate) struct Reservation {
    quota_user: Arc<str>,
    ip: IpAddr,
    expires: Instant,
}

/// Request to the IO layer for a relay socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRequest {
    /// Address family.
    pub family: Family,
    /// EVEN-PORT present.
    pub even_port: bool,
    /// EVEN-PORT with the R bit: also reserve the next port.
    pub reserve_next: bool,
    /// RESERVATION-TOKEN to claim a previously reserved port.
    pub reservation: Option<u64>,
    /// DONT-FRAGMENT present.
    pub dont_fragment: bool,
}

/// A relay socket opened by the IO layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayGranted {
    /// Local address the socket is bound to.
    pub local: SocketAddr,
    /// Token for the reserved next port, if one was requested.
    pub reservation_token: Option<u64>,
}

/// Why the IO layer could not open a relay socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayError {
    /// No free port in the range.
    NoPorts,
    /// Unknown or expired reservation token.
    BadToken,
}

/// Outputs of the state machine.
pub trait Io {
    /// Sends one datagram (UDP) or frame (TCP/TLS) to a client.
    fn send_to_client(&mut self, client: &ClientId, data: &[u8]);
    /// Sends one datagram from an allocation's relay socket to a peer.
    fn send_to_peer(&mut self, alloc: AllocId, peer: SocketAddr, data: &[u8]);
    /// Opens the relay socket of a new allocation.
    fn open_relay(
        &mut self,
        alloc: AllocId,
        req: &RelayRequest,
    ) -> Result<RelayGranted, RelayError>;
    /// Closes an allocation's relay socket.
    fn close_relay(&mut self, alloc: AllocId);
}

/// Inputs of the state machine.
#[derive(Debug)]
pub enum Input<'a> {
    /// A datagram (UDP) or one complete frame (TCP/TLS) from a client.
    FromClient {
        /// Sender.
        client: ClientId,
        /// Bytes.
        data: &'a [u8],
    },
    /// A datagram received on an allocation's relay socket.
    FromPeer {
        /// Allocation owning the socket.
        alloc: AllocId,
        /// Sender.
        peer: SocketAddr,
        /// Bytes.
        data: &'a [u8],
    },
    /// A TCP/TLS client connection closed: its allocation goes away.
    ClientClosed(ClientId),
    /// Periodic housekeeping (expiry, statistics); call about once a second.
    Tick,
}

/// Time as seen by the caller.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Monotonic time for lifetimes and rates.
    pub mono: Instant,
    /// Unix seconds for REST credential expiry and nonces.
    pub unix: u64,
}

/// Settings of the state machine, derived from [`RelayConfig`].
#[derive(Debug, Clone)]
pub struct ProtoConfig {
    /// SOFTWARE attribute (empty: none).
    pub software: String,
    /// Default allocation lifetime.
    pub default_lifetime: u32,
    /// Maximum allocation lifetime.
    pub max_lifetime: u32,
    /// Permission lifetime.
    pub permission_lifetime: u32,
    /// Channel lifetime.
    pub channel_lifetime: u32,
    /// Whether IPv4 relaying is available.
    pub has_v4: bool,
    /// Whether IPv6 relaying is available.
    pub has_v6: bool,
    /// Advertised IPv4 (1:1 NAT), replaces the local relay IP in responses.
    pub external_v4: Option<IpAddr>,
    /// Advertised IPv6.
    pub external_v6: Option<IpAddr>,
    /// Per-allocation bandwidth (bits/s).
    pub max_bps: u64,
    /// Total bandwidth (bits/s).
    pub total_bps: u64,
    /// Permissions per allocation.
    pub max_permissions: usize,
    /// Channels per allocation.
    pub max_channels: usize,
    /// ALTERNATE-SERVER for 300 replies.
    pub alternate_server: Option<SocketAddr>,
    /// Binding requests answered per second per UDP source (IPv4 address or
    /// IPv6 /64; burst twice that); 0 = unlimited.
    pub bindings_per_sec: u32,
    /// The relay's own listener and HTTP endpoints, refused as peers.
    pub own: crate::policy::OwnAddrs,
}

impl ProtoConfig {
    /// Derives the settings from a validated configuration.
    pub fn from_config(c: &RelayConfig) -> Self {
        Self {
            software: c.software.clone(),
            default_lifetime: c.lifetimes.default,
            max_lifetime: c.lifetimes.max,
            permission_lifetime: c.lifetimes.permission,
            channel_lifetime: c.lifetimes.channel,
            has_v4: c.relay_ipv4().is_some(),
            has_v6: c.relay_ipv6().is_some(),
            external_v4: c.relay.external_ip,
            external_v6: c.relay.external_ipv6,
            max_bps: c.limits.max_bps,
            total_bps: c.limits.total_bps,
            max_permissions: c.limits.permissions_per_allocation as usize,
            max_channels: c.limits.channels_per_allocation as usize,
            alternate_server: c.operations.alternate_server,
            bindings_per_sec: c.limits.bindings_per_ip,
            own: crate::policy::OwnAddrs::from_config(c),
        }
    }
}

/// FxHash-style hasher: the keys (ids, socket addresses) are not attacker
/// chosen in a way that matters for a per-process table, and SipHash would
/// dominate the per-packet lookup cost.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64)
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[derive(Debug, Clone)]
struct Channel {
    number: u16,
    peer: SocketAddr,
    expires: Instant,
}

#[derive(Debug)]
struct Allocation {
    client: ClientId,
    username: Arc<str>,
    /// What the per-user quota counts this allocation under.
    quota_user: Arc<str>,
    password: String,
    relay_local: SocketAddr,
    relay_public: SocketAddr,
    expires: Instant,
    permissions: Vec<(IpAddr, Instant)>,
    channels: Vec<Channel>,
    bucket: TokenBucket,
    allocate_txid: TransactionId,
    reservation_token: Option<u64>,
    ipv6_refused: bool,
}

impl Allocation {
    #[inline]
    fn permitted(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions
            .iter()
            .any(|(p, exp)| *p == ip && *exp > now)
    }
}

/// What the event loops of one relay share: the allocation counters and the
/// port reservations. Both are locked only when an allocation or a
/// reservation is made, claimed, ended or expires.
#[derive(Clone)]
pub struct LoopShared {
    quotas: SharedQuotas,
    reservations: Arc<std::sync::Mutex<FastMap<u64, Reservation>>>,
}

impl LoopShared {
    /// Shared state starting from `quotas`.
    pub fn new(quotas: Quotas) -> Self {
        Self {
            quotas: quotas.into(),
            reservations: Arc::default(),
        }
    }
}

/// The TURN/STUN server state machine.
pub struct Server {
    cfg: ProtoConfig,
    auth: Authenticator,
    policy: PeerPolicy,
    quotas: SharedQuotas,
    unauth: UnauthorizedLimiter,
    bindings: SourceLimiter,
    /// Event loops of the relay: process-wide rates (total bandwidth, the
    /// per-source 401 and Binding limits) are enforced as 1/loops shares.
    loops: u32,
    total_bucket: TokenBucket,
    allocs: FastMap<AllocId, Allocation>,
    by_client: FastMap<ClientId, AllocId>,
    /// Shared by every loop: the second Allocate of an EVEN-PORT pair comes
    /// from another client socket, which the kernel may hash to another loop.
    reservations: Arc<std::sync::Mutex<FastMap<u64, Reservation>>>,
    next_id: AllocId,
    draining: bool,
    rng: u64,
    scratch: Box<[u8]>,
    counters: Counters,
    published: Counters,
    last_publish: Option<Instant>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("allocations", &self.allocs.len())
            .field("draining", &self.draining)
            .finish()
    }
}

impl Server {
    /// Creates a server.
    pub fn new(
        cfg: ProtoConfig,
        auth: Authenticator,
        policy: PeerPolicy,
        quotas: impl Into<SharedQuotas>,
        unauth: UnauthorizedLimiter,
        stats: Arc<Stats>,
        now: Instant,
    ) -> Self {
        let quotas = quotas.into();
        let mut seed = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .expect("system RNG unavailable");
        stats.capacity.store(
            quotas.capacity() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        Self {
            total_bucket: TokenBucket::new(cfg.total_bps, now),
            bindings: SourceLimiter::new(cfg.bindings_per_sec),
            cfg,
            auth,
            policy,
            quotas,
            unauth,
            loops: 1,
            allocs: FastMap::default(),
            by_client: FastMap::default(),
            reservations: Arc::default(),
            next_id: 1,
            draining: false,
            rng: u64::from_le_bytes(seed) | 1,
            scratch: vec![0u8; 65_536 + wire::DATA_INDICATION_OVERHEAD].into_boxed_slice(),
            counters: Counters::default(),
            published: Counters::default(),
            last_publish: None,
            stats,
        }
    }

    /// Number of active allocations.
    pub fn allocations(&self) -> usize {
        self.allocs.len()
    }

    /// Whether `client` currently owns an allocation.
    pub fn has_allocation(&self, client: &ClientId) -> bool {
        self.by_client.contains_key(client)
    }

    /// Local counters (for tests and diagnostics).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Starts or stops draining: new allocations are refused while draining.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// Processes one input.
    pub fn handle(&mut self, input: Input<'_>, now: Clock, io: &mut impl Io) {
        match input {
            Input::FromClient { client, data } => self.on_client(client, data, now, io),
            Input::FromPeer { alloc, peer, data } => self.on_peer(alloc, peer, data, now, io),
            Input::ClientClosed(client) => {
                if let Some(id) = self.by_client.get(&client).copied() {
                    self.remove(id, io);
                }
            }
            Input::Tick => self.tick(now, io),
        }
    }

    fn next_txid(&mut self) -> [u8; 12] {
        let mut out = [0u8; 12];
        for chunk in out.chunks_mut(6) {
            // xorshift64*
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            let v = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..6]);
        }
        out
    }

    fn on_client(&mut self, client: ClientId, data: &[u8], now: Clock, io: &mut impl Io) {
        match wire::classify(data) {
            FrameKind::Channel(ch, len) if len <= data.len() => {
                self.channel_data(client, ch, &data[4..len], now, io)
            }
            FrameKind::Stun(len) if len <= data.len() => {
                let msg = &data[..len];
                if !wire::stun_header_ok(msg) {
                    self.counters.malformed += 1;
                    return;
                }
                match Message::from_bytes(msg) {
                    Ok(m) => self.stun(client, &m, now, io),
                    Err(_) => {
                        self.counters.malformed += 1;
                        requests::bad_request_raw(msg, client, io);
                    }
                }
            }
            _ => self.counters.malformed += 1,
        }
    }

    #[inline]
    fn channel_data(
        &mut self,
        client: ClientId,
        ch: u16,
        payload: &[u8],
        now: Clock,
        io: &mut impl Io,
    ) {
        self.relay_in(client, payload, now, io, |a| {
            let c = a.channels.iter().find(|c| c.number == ch)?;
            let live = c.expires > now.mono && a.permitted(c.peer.ip(), now.mono);
            live.then_some(c.peer)
        });
    }

    fn send_indication(
        &mut self,
        client: ClientId,
        msg: &Message<'_>,
        now: Clock,
        io: &mut impl Io,
    ) {
        let (Ok(peer), Ok(data)) = (msg.attribute::<XorPeerAddress>(), msg.attribute::<Data>())
        else {
            if self.has_allocation(&client) {
                self.counters.malformed += 1;
            }
            return;
        };
        let peer = peer.addr(msg.transaction_id());
        if self.cfg.own.contains(peer) {
            self.counters.peer_denied += 1;
            return;
        }
        self.relay_in(client, data.data(), now, io, |a| {
            let ok =
                Family::of(&peer) == Family::of(&a.relay_local) && a.permitted(peer.ip(), now.mono);
            ok.then_some(peer)
        });
    }

    /// Client → peer: sends `payload` to the peer `peer_of` picks from the
    /// client's allocation (`None`: drop) if both bandwidth buckets allow it.
    #[inline]
    fn relay_in(
        &mut self,
        client: ClientId,
        payload: &[u8],
        now: Clock,
        io: &mut impl Io,
        peer_of: impl FnOnce(&Allocation) -> Option<SocketAddr>,
    ) {
        let Some(&id) = self.by_client.get(&client) else {
            return;
        };
        let Some(a) = self.allocs.get_mut(&id) else {
            return;
        };
        let Some(peer) = peer_of(a) else {
            return;
        };
        if !a.bucket.take(payload.len(), now.mono)
            || !self.total_bucket.take(payload.len(), now.mono)
        {
            self.counters.bandwidth_drops += 1;
            return;
        }
        io.send_to_peer(id, peer, payload);
        self.counters.packets_in += 1;
        self.counters.bytes_in += payload.len() as u64;
    }

    fn on_peer(
        &mut self,
        id: AllocId,
        peer: SocketAddr,
        data: &[u8],
        now: Clock,
        io: &mut impl Io,
    ) {
        let peer = normalize(peer);
        let Some(a) = self.allocs.get_mut(&id) else {
            return;
        };
        if !a.permitted(peer.ip(), now.mono) {
            return;
        }
        if !a.bucket.take(data.len(), now.mono) || !self.total_bucket.take(data.len(), now.mono) {
            self.counters.bandwidth_drops += 1;
            return;
        }
        let client = a.client;
        let channel = a
            .channels
            .iter()
            .find(|c| c.peer == peer && c.expires > now.mono)
            .map(|c| c.number);
        let n = match channel {
            Some(ch) => {
                let pad = client.transport != Transport::Udp;
                wire::write_channel_data(&mut self.scratch, ch, data, pad)
            }
            None => {
                let txid = self.next_txid();
                wire::write_data_indication(&mut self.scratch, &txid, peer, data)
            }
        };
        let Some(n) = n else {
            return;
        };
        io.send_to_client(&client, &self.scratch[..n]);
        self.counters.packets_out += 1;
        self.counters.bytes_out += data.len() as u64;
    }

    fn remove(&mut self, id: AllocId, io: &mut impl Io) {
        if let Some(a) = self.allocs.remove(&id) {
            self.by_client.remove(&a.client);
            self.quotas.release(&a.quota_user, a.client.remote.ip());
            io.close_relay(id);
        }
    }

    fn tick(&mut self, now: Clock, io: &mut impl Io) {
        let t = now.mono;
        let mut expired = Vec::new();
        for (id, a) in self.allocs.iter_mut() {
            if a.expires <= t {
                expired.push(*id);
                continue;
            }
            a.permissions.retain(|(_, e)| *e > t);
            a.channels.retain(|c| c.expires > t);
        }
        for id in expired {
            self.remove(id, io);
        }
        let quotas = &self.quotas;
        locked(&self.reservations).retain(|_, r| {
            let live = r.expires > t;
            if !live {
                quotas.release(&r.quota_user, r.ip);
            }
            live
        });
        self.publish(t);
    }

    fn publish(&mut self, t: Instant) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.stats;
        if let Some(last) = self.last_publish {
            let dt = t.saturating_duration_since(last).as_secs_f64();
            if dt > 0.0 {
                let rate = |new: u64, old: u64| ((new - old) as f64 * 8.0 / dt) as u64;
                s.bps_in.store(
                    rate(self.counters.bytes_in, self.published.bytes_in),
                    Relaxed,
                );
                s.bps_out.store(
                    rate(self.counters.bytes_out, self.published.bytes_out),
                    Relaxed,
                );
            }
        }
        s.allocations.store(self.allocs.len() as u64, Relaxed);
        s.publish(&self.counters);
        self.published = self.counters.clone();
        self.last_publish = Some(t);
    }

    fn lifetime(&self, requested: Option<u32>) -> u32 {
        let req = requested.unwrap_or(self.cfg.default_lifetime);
        req.max(self.cfg.default_lifetime)
            .min(self.cfg.max_lifetime)
    }

    fn public_addr(&self, local: SocketAddr) -> SocketAddr {
        let ext = match local {
            SocketAddr::V4(_) => self.cfg.external_v4,
            SocketAddr::V6(_) => self.cfg.external_v6,
        };
        match ext {
            Some(ip) => SocketAddr::new(ip, local.port()),
            None => local,
        }
    }
}

/// Maps IPv4-mapped IPv6 source addresses back to IPv4.
#[inline]
pub fn normalize(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => addr,
        },
        v4 => v4,
    }
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(s as u64)
}

// --- Reload (issue 12, transports half): kept apart so that it merges
// cleanly with changes to the request handling above.
impl Server {
    /// Makes this server one of `loops` event loops sharing `shared` (one
    /// set of allocation counters and reservations for the process):
    /// process-wide rates from `c` are enforced as per-loop shares.
    pub fn into_loop(
        mut self,
        loops: u32,
        shared: &LoopShared,
        c: &RelayConfig,
        now: Instant,
    ) -> Self {
        self.loops = loops.max(1);
        self.quotas = shared.quotas.clone();
        self.reservations = shared.reservations.clone();
        self.apply_shares(c, now);
        self
    }

    /// The per-loop shares of the process-wide rates (see [`loop_share`]).
    fn apply_shares(&mut self, c: &RelayConfig, now: Instant) {
        let lim = &c.limits;
        self.cfg.total_bps = loop_share_u64(lim.total_bps, self.loops);
        self.cfg.bindings_per_sec = loop_share(lim.bindings_per_ip, self.loops);
        self.unauth = UnauthorizedLimiter::new(loop_share(lim.unauthorized_per_ip, self.loops));
        self.bindings = SourceLimiter::new(self.cfg.bindings_per_sec);
        self.total_bucket = TokenBucket::new(self.cfg.total_bps, now);
    }

    /// Applies a reloaded configuration without touching any allocation:
    /// credentials, peer rules, quotas, rate limits, lifetimes and bandwidth
    /// caps are replaced; permissions and channels the new peer rules deny
    /// are dropped at once. `nonce_key` is the key in use (kept across
    /// reloads so outstanding nonces stay valid). Settings that need new
    /// sockets (listeners, relay addresses, realm) must not differ: the
    /// caller rejects such a reload before it gets here.
    pub fn reconfigure(&mut self, c: &RelayConfig, nonce_key: &[u8], now: Instant) {
        let lim = &c.limits;
        self.cfg = ProtoConfig::from_config(c);
        self.auth = Authenticator::new(
            &c.realm,
            c.auth.users.clone(),
            &c.auth.secrets,
            Some(nonce_key),
            c.auth.nonce_ttl,
        );
        self.policy = PeerPolicy::new(&c.peer_policy);
        self.quotas.set_limits(
            lim.allocations_per_user,
            lim.allocations_per_ip,
            lim.capacity,
        );
        self.apply_shares(c, now);
        let policy = &self.policy;
        for a in self.allocs.values_mut() {
            a.bucket = TokenBucket::new(self.cfg.max_bps, now);
            a.permissions.retain(|(ip, _)| policy.check(*ip).is_ok());
            a.channels.retain(|ch| policy.check(ch.peer.ip()).is_ok());
        }
        self.stats.capacity.store(
            self.quotas.capacity() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}
