//! What the hub shows: member states for `/v1/state`, recent events, and
//! Prometheus metrics.

use std::fmt::Write as _;
use std::time::Instant;

use serde::Serialize;

use super::votes::{self, QuorumView};
use super::{effective, lock, override_of, Event, HealthHub, OperatorAction, LATENCY_BUCKETS};
use crate::health::tracker::{RelayStatus, State};

impl HealthHub {
    /// Every member's state, for `/v1/state`.
    pub fn state(&self) -> Vec<MemberState> {
        let i = lock(&self.inner);
        let now = Instant::now();
        let now_ms = votes::now_unix_ms();
        (0..i.keys.len())
            .map(|idx| {
                let key = &i.keys[idx];
                let t = &i.trackers[key];
                let up = votes::up(&i, idx);
                let eff = effective(&i, idx, up);
                let ov = override_of(&i, idx);
                MemberState {
                    member: key.clone(),
                    region: i.regions[idx].clone(),
                    state: match (ov, up) {
                        (Some(OperatorAction::Drain), _) => "drained",
                        (Some(OperatorAction::Down), _) => "forced-down",
                        (Some(OperatorAction::Up), _) => "forced-up",
                        (_, false) => "down",
                        (_, true) if t.status() == RelayStatus::Draining => "draining",
                        (_, true) if eff.shed >= 1.0 => "shed",
                        (_, true) if eff.shed > 0.0 => "shedding",
                        (_, true) => "up",
                    },
                    verdict: match (t.probed(), t.state()) {
                        (false, _) => "unprobed",
                        (true, State::Up) => "up",
                        (true, State::Down) => "down",
                    },
                    quorum: votes::view(&i, idx, now_ms),
                    usable: eff.usable,
                    shed: eff.shed,
                    utilization: t.utilization(),
                    relay_status: t.status(),
                    operator: ov,
                    since_ms: now.duration_since(t.since()).as_millis() as u64,
                    held_down_ms: t
                        .hold_until()
                        .map(|h| h.saturating_duration_since(now).as_millis() as u64),
                    last_probe: t.last().map(|(at, r)| LastProbe {
                        ago_ms: now.duration_since(*at).as_millis() as u64,
                        ok: r.ok,
                        latency_ms: r.latency.as_secs_f64() * 1000.0,
                        error: r.error.clone(),
                    }),
                }
            })
            .collect()
    }

    /// Recent state changes, newest last.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.inner).events.iter().cloned().collect()
    }

    /// Prometheus text for members and probes.
    pub fn render_metrics(&self, out: &mut String) {
        let states = self.state();
        let i = lock(&self.inner);
        let _ = writeln!(out, "# HELP geosteer_member_usable Whether new clients are steered to the member.\n# TYPE geosteer_member_usable gauge");
        for s in &states {
            let (pool, member) = s.member.split_once('/').unwrap_or(("", &s.member));
            let _ = writeln!(
                out,
                "geosteer_member_usable{{pool=\"{pool}\",member=\"{member}\",region=\"{}\"}} {}",
                s.region, s.usable as u8
            );
        }
        let _ = writeln!(out, "# HELP geosteer_member_shed Probability that a client is shed from the member.\n# TYPE geosteer_member_shed gauge");
        for s in &states {
            let (pool, member) = s.member.split_once('/').unwrap_or(("", &s.member));
            let _ = writeln!(
                out,
                "geosteer_member_shed{{pool=\"{pool}\",member=\"{member}\",region=\"{}\"}} {}",
                s.region, s.shed
            );
        }
        let _ = writeln!(out, "# HELP geosteer_probes_total Health probes by result.\n# TYPE geosteer_probes_total counter");
        for key in &i.keys {
            let c = i.counters.get(key).copied().unwrap_or_default();
            let (pool, member) = key.split_once('/').unwrap_or(("", key));
            let _ = writeln!(
                out,
                "geosteer_probes_total{{pool=\"{pool}\",member=\"{member}\",result=\"ok\"}} {}",
                c.ok
            );
            let _ = writeln!(
                out,
                "geosteer_probes_total{{pool=\"{pool}\",member=\"{member}\",result=\"failed\"}} {}",
                c.failed
            );
        }
        let _ = writeln!(out, "# HELP geosteer_probe_duration_seconds Health probe round-trip time.\n# TYPE geosteer_probe_duration_seconds histogram");
        let mut cum = 0;
        for (b, le) in LATENCY_BUCKETS.iter().enumerate() {
            cum += i.latency[b];
            let _ = writeln!(
                out,
                "geosteer_probe_duration_seconds_bucket{{le=\"{le}\"}} {cum}"
            );
        }
        cum += i.latency[LATENCY_BUCKETS.len()];
        let _ = writeln!(
            out,
            "geosteer_probe_duration_seconds_bucket{{le=\"+Inf\"}} {cum}"
        );
        let _ = writeln!(out, "geosteer_probe_duration_seconds_sum {}", i.latency_sum);
        let _ = writeln!(out, "geosteer_probe_duration_seconds_count {cum}");
        if let Some(q) = &i.quorum {
            let _ = writeln!(out, "# HELP geosteer_quorum_linked Whether this node reaches etcd and decides health with the other DNS nodes' votes (0: on its own probes).\n# TYPE geosteer_quorum_linked gauge\ngeosteer_quorum_linked {}", q.linked() as u8);
            let _ = writeln!(out, "# HELP geosteer_quorum_unlinked_total Times this node lost etcd and fell back to its own probes.\n# TYPE geosteer_quorum_unlinked_total counter\ngeosteer_quorum_unlinked_total {}", q.unlinked_total);
            let _ = writeln!(out, "# HELP geosteer_quorum_overruled Members whose quorum decision differs from this node's own probes.\n# TYPE geosteer_quorum_overruled gauge\ngeosteer_quorum_overruled {}", q.overruled.len());
            let _ = writeln!(out, "# HELP geosteer_quorum_disagreements_total Times a member's quorum decision started to differ from this node's own probes.\n# TYPE geosteer_quorum_disagreements_total counter\ngeosteer_quorum_disagreements_total {}", q.disagreements_total);
            q.book.render_metrics(out);
        }
    }
}

/// One member's state for the API.
#[derive(Debug, Clone, Serialize)]
pub struct MemberState {
    /// `pool/member`.
    pub member: String,
    /// Region name.
    pub region: String,
    /// up, down, draining, shedding, shed, drained, forced-up, forced-down:
    /// the effective state (with `[membership]`, after the quorum).
    pub state: &'static str,
    /// This node's own probe verdict: up, down or unprobed.
    pub verdict: &'static str,
    /// With `[membership]`: the other DNS nodes' votes and the decision.
    pub quorum: Option<QuorumView>,
    /// Steered to.
    pub usable: bool,
    /// Shed probability.
    pub shed: f32,
    /// Last reported utilization.
    pub utilization: Option<f64>,
    /// Last reported relay status.
    pub relay_status: RelayStatus,
    /// Operator override in force.
    pub operator: Option<OperatorAction>,
    /// Time in the current up/down state.
    pub since_ms: u64,
    /// Remaining flap hold-down.
    pub held_down_ms: Option<u64>,
    /// The last probe.
    pub last_probe: Option<LastProbe>,
}

/// The last probe of a member.
#[derive(Debug, Clone, Serialize)]
pub struct LastProbe {
    /// How long ago.
    pub ago_ms: u64,
    /// Succeeded.
    pub ok: bool,
    /// Round trip.
    pub latency_ms: f64,
    /// Failure reason.
    pub error: Option<String>,
}
