//! Counters shared between the relay core (single writer) and the HTTP
//! endpoints (readers). The core keeps plain counters on its hot path and
//! publishes them here once per tick, so relaying touches no atomics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Reasons an Allocate request was refused (label of
/// `turn_allocation_errors_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum AllocError {
    /// Bad or missing attributes (400).
    BadRequest = 0,
    /// Allocation already exists for the 5-tuple (437).
    Mismatch,
    /// Requested transport not UDP (442).
    Transport,
    /// Address family not available (440).
    Family,
    /// Per-user quota (486).
    QuotaUser,
    /// Per-IP quota (486).
    QuotaIp,
    /// Capacity reached (508 / 300).
    Capacity,
    /// Draining (508 / 300).
    Draining,
    /// No relay port available or bad reservation token (508).
    Ports,
}

impl AllocError {
    /// All reasons, in index order.
    pub const ALL: [AllocError; 9] = [
        AllocError::BadRequest,
        AllocError::Mismatch,
        AllocError::Transport,
        AllocError::Family,
        AllocError::QuotaUser,
        AllocError::QuotaIp,
        AllocError::Capacity,
        AllocError::Draining,
        AllocError::Ports,
    ];

    /// Metric label value.
    pub fn label(self) -> &'static str {
        match self {
            AllocError::BadRequest => "bad_request",
            AllocError::Mismatch => "allocation_mismatch",
            AllocError::Transport => "unsupported_transport",
            AllocError::Family => "address_family",
            AllocError::QuotaUser => "quota_user",
            AllocError::QuotaIp => "quota_ip",
            AllocError::Capacity => "capacity",
            AllocError::Draining => "draining",
            AllocError::Ports => "no_relay_port",
        }
    }
}

/// Plain counters owned by the core.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Allocations created since start.
    pub sessions_total: u64,
    /// Payload bytes relayed client → peer.
    pub bytes_in: u64,
    /// Payload bytes relayed peer → client.
    pub bytes_out: u64,
    /// Packets relayed client → peer.
    pub packets_in: u64,
    /// Packets relayed peer → client.
    pub packets_out: u64,
    /// Allocation errors by [`AllocError`] index.
    pub alloc_errors: [u64; 9],
    /// Binding requests answered.
    pub binding_requests: u64,
    /// Requests with bad credentials (wrong password, unknown or expired user).
    pub auth_failures: u64,
    /// 401 replies suppressed by the per-IP rate limit.
    pub unauthorized_limited: u64,
    /// Binding requests dropped by the per-source rate limit.
    pub binding_limited: u64,
    /// Peers refused by the peer policy.
    pub peer_denied: u64,
    /// Packets dropped by bandwidth limits.
    pub bandwidth_drops: u64,
    /// Malformed packets dropped or answered with 400.
    pub malformed: u64,
}

/// Snapshot published for HTTP readers.
#[derive(Debug, Default)]
pub struct Stats {
    /// Active allocations.
    pub allocations: AtomicU64,
    /// Allocation capacity.
    pub capacity: AtomicU64,
    /// Relayed bits/s client → peer over the last tick.
    pub bps_in: AtomicU64,
    /// Relayed bits/s peer → client over the last tick.
    pub bps_out: AtomicU64,
    /// Whether the relay is draining.
    pub draining: AtomicBool,
    /// Unix time of the last core tick (liveness).
    pub last_tick_unix: AtomicU64,
    /// Set when the core loop has exited.
    pub stopped: AtomicBool,
    /// Frames to TCP/TLS clients dropped because the client did not read
    /// (backlog above the per-connection limit). Written by the IO layer.
    pub tcp_backlog_drops: AtomicU64,
    sessions_total: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    packets_in: AtomicU64,
    packets_out: AtomicU64,
    alloc_errors: [AtomicU64; 9],
    binding_requests: AtomicU64,
    auth_failures: AtomicU64,
    unauthorized_limited: AtomicU64,
    peer_denied: AtomicU64,
    bandwidth_drops: AtomicU64,
    malformed: AtomicU64,
}

impl Stats {
    /// The relay as a whole from its event loops' shards: counters and
    /// gauges add up; draining if any loop drains; stopped when every loop
    /// stopped; the last tick is the oldest loop's (one stuck loop makes the
    /// relay not live).
    pub fn sum(shards: &[std::sync::Arc<Stats>]) -> Stats {
        let out = Stats::default();
        let add = |a: &AtomicU64, b: &AtomicU64| {
            a.fetch_add(b.load(Relaxed), Relaxed);
        };
        for s in shards {
            add(&out.allocations, &s.allocations);
            add(&out.bps_in, &s.bps_in);
            add(&out.bps_out, &s.bps_out);
            add(&out.tcp_backlog_drops, &s.tcp_backlog_drops);
            add(&out.sessions_total, &s.sessions_total);
            add(&out.bytes_in, &s.bytes_in);
            add(&out.bytes_out, &s.bytes_out);
            add(&out.packets_in, &s.packets_in);
            add(&out.packets_out, &s.packets_out);
            for (a, b) in out.alloc_errors.iter().zip(&s.alloc_errors) {
                add(a, b);
            }
            add(&out.binding_requests, &s.binding_requests);
            add(&out.auth_failures, &s.auth_failures);
            add(&out.unauthorized_limited, &s.unauthorized_limited);
            add(&out.peer_denied, &s.peer_denied);
            add(&out.bandwidth_drops, &s.bandwidth_drops);
            add(&out.malformed, &s.malformed);
            if s.draining.load(Relaxed) {
                out.draining.store(true, Relaxed);
            }
        }
        // Capacity is the process's (every loop publishes the same value).
        let capacity = shards.first().map_or(0, |s| s.capacity.load(Relaxed));
        out.capacity.store(capacity, Relaxed);
        out.stopped.store(
            !shards.is_empty() && shards.iter().all(|s| s.stopped.load(Relaxed)),
            Relaxed,
        );
        let oldest = shards
            .iter()
            .map(|s| s.last_tick_unix.load(Relaxed))
            .min()
            .unwrap_or(0);
        out.last_tick_unix.store(oldest, Relaxed);
        out
    }

    /// Publishes the core's counters.
    pub fn publish(&self, c: &Counters) {
        self.sessions_total.store(c.sessions_total, Relaxed);
        self.bytes_in.store(c.bytes_in, Relaxed);
        self.bytes_out.store(c.bytes_out, Relaxed);
        self.packets_in.store(c.packets_in, Relaxed);
        self.packets_out.store(c.packets_out, Relaxed);
        for (a, v) in self.alloc_errors.iter().zip(c.alloc_errors) {
            a.store(v, Relaxed);
        }
        self.binding_requests.store(c.binding_requests, Relaxed);
        self.auth_failures.store(c.auth_failures, Relaxed);
        self.unauthorized_limited
            .store(c.unauthorized_limited, Relaxed);
        self.peer_denied.store(c.peer_denied, Relaxed);
        self.bandwidth_drops.store(c.bandwidth_drops, Relaxed);
        self.malformed.store(c.malformed, Relaxed);
    }

    /// Reads back the published counters.
    pub fn counters(&self) -> Counters {
        let mut alloc_errors = [0; 9];
        for (v, a) in alloc_errors.iter_mut().zip(&self.alloc_errors) {
            *v = a.load(Relaxed);
        }
        Counters {
            sessions_total: self.sessions_total.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            packets_in: self.packets_in.load(Relaxed),
            packets_out: self.packets_out.load(Relaxed),
            alloc_errors,
            binding_requests: self.binding_requests.load(Relaxed),
            auth_failures: self.auth_failures.load(Relaxed),
            unauthorized_limited: self.unauthorized_limited.load(Relaxed),
            // Local to the state machine (not yet exported as a metric).
            binding_limited: 0,
            peer_denied: self.peer_denied.load(Relaxed),
            bandwidth_drops: self.bandwidth_drops.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
        }
    }
}
