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
}

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
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
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
