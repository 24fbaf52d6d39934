//! The agent's state as Prometheus text (and JSON), served on `metrics_listen`.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::decide::{Reason, Route};

/// Per-VIP counters and state.
#[derive(Debug, Default, Clone, Serialize)]
pub struct VipStatus {
    /// The prefix.
    pub prefix: String,
    /// Whether the speaker carries the route.
    pub announced: bool,
    /// MED announced with.
    pub med: Option<u32>,
    /// Checks run.
    pub checks: u64,
    /// Checks failed (including checks that could not run).
    pub failures: u64,
    /// Sum of check latencies (successful checks), seconds.
    pub latency_sum: f64,
    /// Last check error.
    pub last_error: Option<String>,
    /// Announce/withdraw transitions by (route, reason).
    #[serde(skip)]
    pub transitions: BTreeMap<(&'static str, &'static str), u64>,
    /// Speaker commands that failed.
    pub speaker_errors: u64,
}

/// Everything `/metrics` shows.
#[derive(Debug, Default, Clone, Serialize)]
pub struct AgentStatus {
    /// Speaker kind.
    pub speaker: &'static str,
    /// A drain (file or admin) is in force.
    pub drained: bool,
    /// The admin switch is off.
    pub admin_drain: bool,
    /// One entry per VIP, in config order.
    pub vips: Vec<VipStatus>,
}

impl VipStatus {
    /// Counts one applied change.
    pub fn transition(&mut self, route: Route, reason: Reason) {
        let r = match route {
            Route::Announced { .. } => "announce",
            Route::Withdrawn => "withdraw",
        };
        *self.transitions.entry((r, reason.as_str())).or_default() += 1;
        self.carry(route);
    }

    /// What the speaker carries now (without counting a transition).
    pub fn carry(&mut self, route: Route) {
        self.announced = matches!(route, Route::Announced { .. });
        self.med = match route {
            Route::Announced { med } => med,
            Route::Withdrawn => None,
        };
    }
}

impl AgentStatus {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let fam = |s: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        fam(
            &mut s,
            "geosteer_anycast_announced",
            "gauge",
            "1 while the VIP's route is announced.",
        );
        for v in &self.vips {
            let _ = writeln!(
                s,
                "geosteer_anycast_announced{{vip=\"{}\",speaker=\"{}\"}} {}",
                v.prefix, self.speaker, v.announced as u8
            );
        }
        fam(
            &mut s,
            "geosteer_anycast_transitions_total",
            "counter",
            "Route changes applied, by direction and reason.",
        );
        for v in &self.vips {
            for ((route, reason), n) in &v.transitions {
                let _ = writeln!(
                    s,
                    "geosteer_anycast_transitions_total{{vip=\"{}\",route=\"{route}\",reason=\"{reason}\"}} {n}",
                    v.prefix
                );
            }
        }
        fam(
            &mut s,
            "geosteer_anycast_checks_total",
            "counter",
            "Local health checks run.",
        );
        for v in &self.vips {
            let _ = writeln!(
                s,
                "geosteer_anycast_checks_total{{vip=\"{}\"}} {}",
                v.prefix, v.checks
            );
        }
        fam(
            &mut s,
            "geosteer_anycast_check_failures_total",
            "counter",
            "Checks that failed or could not run.",
        );
        for v in &self.vips {
            let _ = writeln!(
                s,
                "geosteer_anycast_check_failures_total{{vip=\"{}\"}} {}",
                v.prefix, v.failures
            );
        }
        fam(
            &mut s,
            "geosteer_anycast_check_latency_seconds_sum",
            "counter",
            "Sum of successful check latencies.",
        );
        for v in &self.vips {
            let _ = writeln!(
                s,
                "geosteer_anycast_check_latency_seconds_sum{{vip=\"{}\"}} {:.6}",
                v.prefix, v.latency_sum
            );
        }
        fam(
            &mut s,
            "geosteer_anycast_speaker_errors_total",
            "counter",
            "Speaker commands that failed (retried).",
        );
        for v in &self.vips {
            let _ = writeln!(
                s,
                "geosteer_anycast_speaker_errors_total{{vip=\"{}\"}} {}",
                v.prefix, v.speaker_errors
            );
        }
        fam(
            &mut s,
            "geosteer_anycast_drained",
            "gauge",
            "1 while the drain file or the admin switch withdraws every VIP.",
        );
        let _ = writeln!(s, "geosteer_anycast_drained {}", self.drained as u8);
        s
    }
}
