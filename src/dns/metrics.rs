//! Query counters, exported as Prometheus text.
//!
//! Every worker that answers queries (a UDP thread, a TCP connection) owns
//! a [`Counters`] block and is its only writer: an increment is a relaxed
//! load and store on a cache line no other thread writes — no
//! read-modify-write, no lock prefix, no line bouncing between cores. A
//! scrape sums the live blocks and what retired workers left behind.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::steer::Outcome;

// Slots of a counter block.
const UDP: usize = 0;
const TCP: usize = 1;
const DROPPED: usize = 2;
const ECS: usize = 3;
const TRUNCATED: usize = 4;
const CACHE_HITS: usize = 5;
const CACHE_MISSES: usize = 6;
const RRL_SLIPPED: usize = 7;
const RRL_DROPPED: usize = 8;
const RRL_WOULD_LIMIT: usize = 9;
const GEN_NS: usize = 10;
const RCODES: usize = 11;
const N_RCODES: usize = 24;
const OUTCOME_AT: usize = RCODES + N_RCODES;
const QTYPE_AT: usize = OUTCOME_AT + OUTCOMES.len();
const REGION_AT: usize = QTYPE_AT + QTYPES.len() + 1;
const GEN_AT: usize = REGION_AT + MAX_REGIONS;
const SLOTS: usize = GEN_AT + GEN_BUCKETS_US.len() + 1;

/// One worker's counters. Only its owner writes them (see the module docs);
/// aligned so that no two blocks share a cache line.
#[repr(align(128))]
pub struct Counters {
    v: [AtomicU64; SLOTS],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            v: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Sums of every block, read at scrape time.
type Totals = [u64; SLOTS];

impl Counters {
    /// Adds `n` to slot `i`. Single writer: a plain load and store.
    #[inline]
    fn add(&self, i: usize, n: u64) {
        let c = &self.v[i];
        c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// One query received over UDP.
    #[inline]
    pub fn count_udp_query(&self) {
        self.add(UDP, 1);
    }
    /// One query received over TCP.
    #[inline]
    pub fn count_tcp_query(&self) {
        self.add(TCP, 1);
    }
    /// A packet dropped without answer.
    #[inline]
    pub fn count_dropped(&self) {
        self.add(DROPPED, 1);
    }
    /// A query with ECS.
    #[inline]
    pub fn count_ecs(&self) {
        self.add(ECS, 1);
    }
    /// A truncated response.
    #[inline]
    pub fn count_truncated(&self) {
        self.add(TRUNCATED, 1);
    }
    /// A cache lookup.
    #[inline]
    pub fn count_cache(&self, hit: bool) {
        self.add(if hit { CACHE_HITS } else { CACHE_MISSES }, 1);
    }
    /// A response code sent.
    #[inline]
    pub fn count_rcode(&self, rcode: u16) {
        if (rcode as usize) < N_RCODES {
            self.add(RCODES + rcode as usize, 1);
        }
    }
    /// A steering outcome (cache misses only: one per decision made).
    #[inline]
    pub fn count_outcome(&self, o: Outcome) {
        if let Some(i) = OUTCOMES.iter().position(|(x, _)| *x == o) {
            self.add(OUTCOME_AT + i, 1);
        }
    }

    /// A UDP answer over the rate limit (touched only when limiting happens).
    #[inline]
    pub fn count_rrl(&self, o: super::rrl::Outcome) {
        use super::rrl::Outcome;
        match o {
            Outcome::Pass => {}
            Outcome::Slipped => self.add(RRL_SLIPPED, 1),
            Outcome::Dropped => self.add(RRL_DROPPED, 1),
            Outcome::WouldLimit => self.add(RRL_WOULD_LIMIT, 1),
        }
    }

    /// A query of type `t`.
    #[inline]
    pub fn count_qtype(&self, t: u16) {
        let i = QTYPES
            .iter()
            .position(|(q, _)| *q == t)
            .unwrap_or(QTYPES.len());
        self.add(QTYPE_AT + i, 1);
    }

    /// A steered answer from region `r`.
    #[inline]
    pub fn count_region(&self, r: u16) {
        self.add(REGION_AT + (r as usize).min(MAX_REGIONS - 1), 1);
    }

    /// Time the engine and encoder took for a cache miss.
    pub fn observe_generation(&self, d: std::time::Duration) {
        let us = d.as_micros() as u64;
        let b = GEN_BUCKETS_US
            .iter()
            .position(|&x| us <= x)
            .unwrap_or(GEN_BUCKETS_US.len());
        self.add(GEN_AT + b, 1);
        self.add(GEN_NS, d.as_nanos() as u64);
    }

    fn add_to(&self, t: &mut Totals) {
        for (t, v) in t.iter_mut().zip(&self.v) {
            *t = t.wrapping_add(v.load(Relaxed));
        }
    }
}

/// The blocks of live workers and the sums of those that ended.
#[derive(Default)]
struct Registry {
    live: Vec<Arc<Counters>>,
    retired: Counters,
}

/// A worker's handle on its counter block; dropping it folds the counts
/// into the totals, so nothing counted is lost when a connection closes.
/// It can move to another thread but not be shared: one writer per block.
pub struct Writer {
    block: Arc<Counters>,
    registry: Arc<Mutex<Registry>>,
    _one_writer: std::marker::PhantomData<std::cell::Cell<()>>,
}

impl std::ops::Deref for Writer {
    type Target = Counters;
    #[inline]
    fn deref(&self) -> &Counters {
        &self.block
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let mut r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        r.live.retain(|b| !Arc::ptr_eq(b, &self.block));
        // The lock orders this with scrapes: a block is summed either live
        // or retired, never both.
        for (acc, v) in r.retired.v.iter().zip(&self.block.v) {
            acc.store(acc.load(Relaxed).wrapping_add(v.load(Relaxed)), Relaxed);
        }
    }
}

/// The server's query counters: one block per worker, summed when scraped.
#[derive(Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
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
    /// A counter block for a new worker (a UDP thread, a TCP connection).
    pub fn writer(&self) -> Writer {
        let block = Arc::new(Counters::default());
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .push(block.clone());
        Writer {
            block,
            registry: self.registry.clone(),
            _one_writer: std::marker::PhantomData,
        }
    }

    fn totals(&self) -> Totals {
        let mut t = [0u64; SLOTS];
        let r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        r.retired.add_to(&mut t);
        for b in &r.live {
            b.add_to(&mut t);
        }
        t
    }

    /// Prometheus lines for answers by region (names supplied by the caller).
    pub fn render_regions(&self, names: &[String], out: &mut String) {
        let t = self.totals();
        let _ = writeln!(out, "# HELP geosteer_dns_answers_by_region_total Steered answers by the region answering.\n# TYPE geosteer_dns_answers_by_region_total counter");
        for (i, n) in names.iter().enumerate().take(MAX_REGIONS) {
            let _ = writeln!(
                out,
                "geosteer_dns_answers_by_region_total{{region=\"{n}\"}} {}",
                t[REGION_AT + i]
            );
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self, out: &mut String) {
        let t = self.totals();
        let _ = writeln!(out, "# HELP geosteer_dns_queries_total DNS queries received.\n# TYPE geosteer_dns_queries_total counter");
        let _ = writeln!(
            out,
            "geosteer_dns_queries_total{{transport=\"udp\"}} {}",
            t[UDP]
        );
        let _ = writeln!(
            out,
            "geosteer_dns_queries_total{{transport=\"tcp\"}} {}",
            t[TCP]
        );
        let _ = writeln!(out, "# HELP geosteer_dns_responses_total DNS responses by response code.\n# TYPE geosteer_dns_responses_total counter");
        for (i, name) in RCODE_NAMES {
            let _ = writeln!(
                out,
                "geosteer_dns_responses_total{{rcode=\"{name}\"}} {}",
                t[RCODES + i]
            );
        }
        for (name, v, help) in [
            (
                "geosteer_dns_dropped_total",
                DROPPED,
                "Packets dropped unanswered (not a query).",
            ),
            (
                "geosteer_dns_ecs_queries_total",
                ECS,
                "Queries carrying EDNS Client Subnet.",
            ),
            (
                "geosteer_dns_truncated_total",
                TRUNCATED,
                "UDP responses sent truncated.",
            ),
            (
                "geosteer_dns_cache_hits_total",
                CACHE_HITS,
                "Answers served from the answer cache.",
            ),
            (
                "geosteer_dns_cache_misses_total",
                CACHE_MISSES,
                "Answers computed by the engine.",
            ),
            (
                "geosteer_dns_rrl_slipped_total",
                RRL_SLIPPED,
                "UDP answers over the rate limit sent truncated (TC=1).",
            ),
            (
                "geosteer_dns_rrl_dropped_total",
                RRL_DROPPED,
                "UDP answers over the rate limit dropped.",
            ),
            (
                "geosteer_dns_rrl_would_limit_total",
                RRL_WOULD_LIMIT,
                "UDP answers over the rate limit sent anyway (dry-run).",
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                t[v]
            );
        }
        let _ = writeln!(out, "# HELP geosteer_dns_queries_by_type_total DNS queries by query type.\n# TYPE geosteer_dns_queries_by_type_total counter");
        for (i, (_, name)) in QTYPES.iter().enumerate() {
            let _ = writeln!(
                out,
                "geosteer_dns_queries_by_type_total{{qtype=\"{name}\"}} {}",
                t[QTYPE_AT + i]
            );
        }
        let _ = writeln!(
            out,
            "geosteer_dns_queries_by_type_total{{qtype=\"other\"}} {}",
            t[QTYPE_AT + QTYPES.len()]
        );
        let _ = writeln!(out, "# HELP geosteer_dns_answer_generation_seconds Time to compute and encode an answer on a cache miss.\n# TYPE geosteer_dns_answer_generation_seconds histogram");
        let mut cum = 0;
        for (i, us) in GEN_BUCKETS_US.iter().enumerate() {
            cum += t[GEN_AT + i];
            let _ = writeln!(
                out,
                "geosteer_dns_answer_generation_seconds_bucket{{le=\"{}\"}} {cum}",
                *us as f64 / 1e6
            );
        }
        cum += t[GEN_AT + GEN_BUCKETS_US.len()];
        let _ = writeln!(
            out,
            "geosteer_dns_answer_generation_seconds_bucket{{le=\"+Inf\"}} {cum}"
        );
        let _ = writeln!(
            out,
            "geosteer_dns_answer_generation_seconds_sum {}",
            t[GEN_NS] as f64 / 1e9
        );
        let _ = writeln!(out, "geosteer_dns_answer_generation_seconds_count {cum}");
        let _ = writeln!(out, "# HELP geosteer_steering_decisions_total Steering decisions made (cache misses) by outcome.\n# TYPE geosteer_steering_decisions_total counter");
        for (i, (_, name)) in OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "geosteer_steering_decisions_total{{outcome=\"{name}\"}} {}",
                t[OUTCOME_AT + i]
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(m: &Metrics, name: &str) -> String {
        let mut out = String::new();
        m.render(&mut out);
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{out}"))
            .to_string()
    }

    #[test]
    fn worker_blocks_are_summed_and_kept_when_a_worker_ends() {
        let m = Metrics::default();
        let a = m.writer();
        let b = m.writer();
        let udp = "geosteer_dns_queries_total{transport=\"udp\"}";
        for _ in 0..3 {
            a.count_udp_query();
        }
        b.count_udp_query();
        b.count_rcode(3);
        assert_eq!(line(&m, udp), format!("{udp} 4"));
        // A thread per writer, as the server runs them.
        let run = |w: Writer| {
            std::thread::spawn(move || {
                (0..1000).for_each(|_| w.count_udp_query());
                w
            })
        };
        let (a, b) = (run(a), run(b));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert_eq!(line(&m, udp), format!("{udp} 2004"));
        drop(b);
        assert_eq!(
            line(&m, udp),
            format!("{udp} 2004"),
            "kept after the writer ends"
        );
        let nx = "geosteer_dns_responses_total{rcode=\"NXDOMAIN\"}";
        assert_eq!(line(&m, nx), format!("{nx} 1"));
        drop(a);
        let c = m.writer();
        c.count_tcp_query();
        assert_eq!(line(&m, udp), format!("{udp} 2004"));
        let tcp = "geosteer_dns_queries_total{transport=\"tcp\"}";
        assert_eq!(line(&m, tcp), format!("{tcp} 1"));
    }

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
