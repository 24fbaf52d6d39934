//! Query counters, exported as Prometheus text.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::handler::Transport;
use crate::steer::Outcome;

/// Relaxed atomic counters: cheap enough for every query.
#[derive(Default)]
pub struct Metrics {
    udp: AtomicU64,
    tcp: AtomicU64,
    dropped: AtomicU64,
    ecs: AtomicU64,
    truncated: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    rcodes: [AtomicU64; 24],
    outcomes: [AtomicU64; 6],
    qtypes: [AtomicU64; QTYPES.len() + 1],
    regions: [AtomicU64; MAX_REGIONS],
    gen_latency: [AtomicU64; GEN_BUCKETS_US.len() + 1],
    gen_latency_ns: AtomicU64,
    rrl_slipped: AtomicU64,
    rrl_dropped: AtomicU64,
    rrl_would_limit: AtomicU64,
    /// DNS over TCP connections.
    pub tcp_conns: TcpMetrics,
}

/// Why a TCP connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpClose {
    /// The client closed it.
    Peer,
    /// No query within the idle timeout.
    Idle,
    /// A query or its answer took longer than the I/O timeout.
    IoTimeout,
    /// Closed to make room for a new connection.
    Evicted,
    /// Not a DNS query (a response, a message shorter than a header).
    Malformed,
    /// A socket error.
    Error,
    /// The server is stopping.
    Shutdown,
}

/// Label of each [`TcpClose`], in declaration order (the counters' index).
const TCP_CLOSES: [(TcpClose, &str); 7] = [
    (TcpClose::Peer, "peer"),
    (TcpClose::Idle, "idle_timeout"),
    (TcpClose::IoTimeout, "io_timeout"),
    (TcpClose::Evicted, "evicted"),
    (TcpClose::Malformed, "malformed"),
    (TcpClose::Error, "error"),
    (TcpClose::Shutdown, "shutdown"),
];

/// Counters of DNS over TCP connections (per connection, not per query).
#[derive(Default)]
pub struct TcpMetrics {
    accepted: AtomicU64,
    refused: AtomicU64,
    open: AtomicU64,
    closed: [AtomicU64; TCP_CLOSES.len()],
}

impl TcpMetrics {
    /// A connection was admitted, closing `evicted` idle ones to make room.
    pub fn opened(&self, evicted: usize) {
        self.accepted.fetch_add(1, Relaxed);
        self.open.fetch_add(1, Relaxed);
        if evicted > 0 {
            self.open.fetch_sub(evicted as u64, Relaxed);
            self.closed[TcpClose::Evicted as usize].fetch_add(evicted as u64, Relaxed);
        }
    }

    /// A connection was refused: every slot it could take was mid-query.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Relaxed);
    }

    /// An admitted connection ended.
    pub fn closed(&self, why: TcpClose) {
        self.open.fetch_sub(1, Relaxed);
        self.closed[why as usize].fetch_add(1, Relaxed);
    }

    /// Open connections now.
    #[cfg(test)]
    fn open(&self) -> u64 {
        self.open.load(Relaxed)
    }

    /// Connections closed so far for `why`.
    #[cfg(test)]
    fn closed_for(&self, why: TcpClose) -> u64 {
        self.closed[why as usize].load(Relaxed)
    }

    /// Prometheus text, with the limits in force.
    pub fn render(&self, limits: &crate::config::TcpConfig, out: &mut String) {
        for (name, help, v) in [
            (
                "geosteer_dns_tcp_connections",
                "Open DNS-over-TCP connections.",
                self.open.load(Relaxed) as f64,
            ),
            (
                "geosteer_dns_tcp_connections_max",
                "Limit of open DNS-over-TCP connections (server.tcp.max_connections).",
                limits.max_connections as f64,
            ),
            (
                "geosteer_dns_tcp_connections_per_client_max",
                "Limit per client address or IPv6 /64 (server.tcp.max_connections_per_client).",
                limits.max_connections_per_client as f64,
            ),
            (
                "geosteer_dns_tcp_idle_timeout_seconds",
                "A connection waiting for its next query is closed after this long.",
                limits.idle_timeout_ms as f64 / 1e3,
            ),
            (
                "geosteer_dns_tcp_io_timeout_seconds",
                "Time allowed for a begun query to arrive and for its answer to be written.",
                limits.io_timeout_ms as f64 / 1e3,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        for (name, help, v) in [
            (
                "geosteer_dns_tcp_accepted_total",
                "DNS-over-TCP connections admitted.",
                &self.accepted,
            ),
            (
                "geosteer_dns_tcp_refused_total",
                "DNS-over-TCP connections refused because every slot they could take was mid-query.",
                &self.refused,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        let n = "geosteer_dns_tcp_closed_total";
        let _ = writeln!(
            out,
            "# HELP {n} DNS-over-TCP connections closed, by reason.\n# TYPE {n} counter"
        );
        for (i, (_, why)) in TCP_CLOSES.iter().enumerate() {
            let _ = writeln!(
                out,
                "{n}{{reason=\"{why}\"}} {}",
                self.closed[i].load(Relaxed)
            );
        }
    }
}

/// Query types counted by name; the rest are "other".
const QTYPES: [(u16, &str); 10] = [
    (1, "A"),
    (28, "AAAA"),
    (33, "SRV"),
    (6, "SOA"),
    (2, "NS"),
    (15, "MX"),
    (16, "TXT"),
    (5, "CNAME"),
    (255, "ANY"),
    (252, "AXFR"),
];

/// Regions tracked for "answered by region" (more are counted in the last slot).
pub const MAX_REGIONS: usize = 32;

/// Buckets of the answer-generation latency histogram, microseconds.
const GEN_BUCKETS_US: [u64; 9] = [1, 2, 5, 10, 20, 50, 100, 500, 1000];

const RCODE_NAMES: [(usize, &str); 7] = [
    (0, "NOERROR"),
    (1, "FORMERR"),
    (2, "SERVFAIL"),
    (3, "NXDOMAIN"),
    (4, "NOTIMP"),
    (5, "REFUSED"),
    (16, "BADVERS"),
];

const OUTCOMES: [(Outcome, &str); 6] = [
    (Outcome::Nearest, "nearest"),
    (Outcome::Failover, "failover"),
    (Outcome::Backup, "backup"),
    (Outcome::AllDownFailOpen, "all-down-fail-open"),
    (Outcome::AllDownBackup, "all-down-backup"),
    (Outcome::AllDownServfail, "all-down-servfail"),
];

impl Metrics {
    /// One query received.
    #[inline]
    pub fn count_query(&self, t: Transport) {
        match t {
            Transport::Udp => self.udp.fetch_add(1, Relaxed),
            Transport::Tcp => self.tcp.fetch_add(1, Relaxed),
        };
    }
    /// A packet dropped without answer.
    #[inline]
    pub fn count_dropped(&self) {
        self.dropped.fetch_add(1, Relaxed);
    }
    /// A query with ECS.
    #[inline]
    pub fn count_ecs(&self) {
        self.ecs.fetch_add(1, Relaxed);
    }
    /// A truncated response.
    #[inline]
    pub fn count_truncated(&self) {
        self.truncated.fetch_add(1, Relaxed);
    }
    /// A cache lookup.
    #[inline]
    pub fn count_cache(&self, hit: bool) {
        if hit {
            self.cache_hits.fetch_add(1, Relaxed);
        } else {
            self.cache_misses.fetch_add(1, Relaxed);
        }
    }
    /// A response code sent.
    #[inline]
    pub fn count_rcode(&self, rcode: u16) {
        if let Some(c) = self.rcodes.get(rcode as usize) {
            c.fetch_add(1, Relaxed);
        }
    }
    /// A steering outcome (cache misses only: one per decision made).
    #[inline]
    pub fn count_outcome(&self, o: Outcome) {
        if let Some(i) = OUTCOMES.iter().position(|(x, _)| *x == o) {
            self.outcomes[i].fetch_add(1, Relaxed);
        }
    }

    /// A UDP answer over the rate limit (touched only when limiting happens).
    #[inline]
    pub fn count_rrl(&self, o: super::rrl::Outcome) {
        use super::rrl::Outcome;
        match o {
            Outcome::Pass => {}
            Outcome::Slipped => {
                self.rrl_slipped.fetch_add(1, Relaxed);
            }
            Outcome::Dropped => {
                self.rrl_dropped.fetch_add(1, Relaxed);
            }
            Outcome::WouldLimit => {
                self.rrl_would_limit.fetch_add(1, Relaxed);
            }
        }
    }

    /// A query of type `t`.
    #[inline]
    pub fn count_qtype(&self, t: u16) {
        let i = QTYPES
            .iter()
            .position(|(q, _)| *q == t)
            .unwrap_or(QTYPES.len());
        self.qtypes[i].fetch_add(1, Relaxed);
    }

    /// A steered answer from region `r`.
    #[inline]
    pub fn count_region(&self, r: u16) {
        self.regions[(r as usize).min(MAX_REGIONS - 1)].fetch_add(1, Relaxed);
    }

    /// Time the engine and encoder took for a cache miss.
    pub fn observe_generation(&self, d: std::time::Duration) {
        let us = d.as_micros() as u64;
        let b = GEN_BUCKETS_US
            .iter()
            .position(|&x| us <= x)
            .unwrap_or(GEN_BUCKETS_US.len());
        self.gen_latency[b].fetch_add(1, Relaxed);
        self.gen_latency_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    /// Prometheus lines for answers by region (names supplied by the caller).
    pub fn render_regions(&self, names: &[String], out: &mut String) {
        let _ = writeln!(out, "# HELP geosteer_dns_answers_by_region_total Steered answers by the region answering.\n# TYPE geosteer_dns_answers_by_region_total counter");
        for (i, n) in names.iter().enumerate().take(MAX_REGIONS) {
            let _ = writeln!(
                out,
                "geosteer_dns_answers_by_region_total{{region=\"{n}\"}} {}",
                self.regions[i].load(Relaxed)
            );
        }
    }

    /// Total queries so far (UDP + TCP).
    pub fn queries(&self) -> u64 {
        self.udp.load(Relaxed) + self.tcp.load(Relaxed)
    }

    /// Prometheus text exposition.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP geosteer_dns_queries_total DNS queries received.\n# TYPE geosteer_dns_queries_total counter");
        let _ = writeln!(
            out,
            "geosteer_dns_queries_total{{transport=\"udp\"}} {}",
            self.udp.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "geosteer_dns_queries_total{{transport=\"tcp\"}} {}",
            self.tcp.load(Relaxed)
        );
        let _ = writeln!(out, "# HELP geosteer_dns_responses_total DNS responses by response code.\n# TYPE geosteer_dns_responses_total counter");
        for (i, name) in RCODE_NAMES {
            let _ = writeln!(
                out,
                "geosteer_dns_responses_total{{rcode=\"{name}\"}} {}",
                self.rcodes[i].load(Relaxed)
            );
        }
        for (name, v, help) in [
            (
                "geosteer_dns_dropped_total",
                &self.dropped,
                "Packets dropped unanswered (not a query).",
            ),
            (
                "geosteer_dns_ecs_queries_total",
                &self.ecs,
                "Queries carrying EDNS Client Subnet.",
            ),
            (
                "geosteer_dns_truncated_total",
                &self.truncated,
                "UDP responses sent truncated.",
            ),
            (
                "geosteer_dns_cache_hits_total",
                &self.cache_hits,
                "Answers served from the answer cache.",
            ),
            (
                "geosteer_dns_cache_misses_total",
                &self.cache_misses,
                "Answers computed by the engine.",
            ),
            (
                "geosteer_dns_rrl_slipped_total",
                &self.rrl_slipped,
                "UDP answers over the rate limit sent truncated (TC=1).",
            ),
            (
                "geosteer_dns_rrl_dropped_total",
                &self.rrl_dropped,
                "UDP answers over the rate limit dropped.",
            ),
            (
                "geosteer_dns_rrl_would_limit_total",
                &self.rrl_would_limit,
                "UDP answers over the rate limit sent anyway (dry-run).",
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP geosteer_dns_queries_by_type_total DNS queries by query type.\n# TYPE geosteer_dns_queries_by_type_total counter");
        for (i, (_, name)) in QTYPES.iter().enumerate() {
            let _ = writeln!(
                out,
                "geosteer_dns_queries_by_type_total{{qtype=\"{name}\"}} {}",
                self.qtypes[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "geosteer_dns_queries_by_type_total{{qtype=\"other\"}} {}",
            self.qtypes[QTYPES.len()].load(Relaxed)
        );
        let _ = writeln!(out, "# HELP geosteer_dns_answer_generation_seconds Time to compute and encode an answer on a cache miss.\n# TYPE geosteer_dns_answer_generation_seconds histogram");
        let mut cum = 0;
        for (i, us) in GEN_BUCKETS_US.iter().enumerate() {
            cum += self.gen_latency[i].load(Relaxed);
            let _ = writeln!(
                out,
                "geosteer_dns_answer_generation_seconds_bucket{{le=\"{}\"}} {cum}",
                *us as f64 / 1e6
            );
        }
        cum += self.gen_latency[GEN_BUCKETS_US.len()].load(Relaxed);
        let _ = writeln!(
            out,
            "geosteer_dns_answer_generation_seconds_bucket{{le=\"+Inf\"}} {cum}"
        );
        let _ = writeln!(
            out,
            "geosteer_dns_answer_generation_seconds_sum {}",
            self.gen_latency_ns.load(Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "geosteer_dns_answer_generation_seconds_count {cum}");
        let _ = writeln!(out, "# HELP geosteer_steering_decisions_total Steering decisions made (cache misses) by outcome.\n# TYPE geosteer_steering_decisions_total counter");
        for (i, (_, name)) in OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "geosteer_steering_decisions_total{{outcome=\"{name}\"}} {}",
                self.outcomes[i].load(Relaxed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_close_labels_follow_the_enum() {
        for (i, (why, _)) in TCP_CLOSES.iter().enumerate() {
            assert_eq!(*why as usize, i);
        }
        let m = TcpMetrics::default();
        m.opened(0);
        m.opened(0);
        m.opened(1); // displaced one of the two
        m.closed(TcpClose::Idle);
        assert_eq!(m.open(), 1);
        assert_eq!(m.closed_for(TcpClose::Evicted), 1);
        assert_eq!(m.closed_for(TcpClose::Idle), 1);
    }
}
