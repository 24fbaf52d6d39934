//! The agent's bookkeeping between decisions and the speaker, pure and with
//! time injected: which command to send for which VIP and when, what the
//! speaker carries as far as the agent knows, retry backoff, stale checks,
//! and whether the speaker has stopped answering. The I/O shell
//! ([`super::agent`]) feeds it check results, command outcomes and the
//! speaker's actual state, and sends the commands it returns.

use std::time::{Duration, Instant};

use super::config::AnycastConfig;
use super::decide::{Change, Reason, Route, VipMachine};

/// First retry of a failed speaker command; doubles per failure.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A speaker that has left commands unanswered this long is stalled: the
/// agent stops its systemd keep-alives.
pub const STALL: Duration = Duration::from_secs(1);

/// One speaker command to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    /// Index of the VIP in the config.
    pub vip: usize,
    /// What the speaker should carry.
    pub route: Route,
}

struct Vip {
    machine: VipMachine,
    /// No check result for this long counts as a failed check.
    stale_after: Duration,
    last_check: Instant,
    /// Why the wanted route is what it is.
    reason: Reason,
    /// What the speaker carries as far as the agent knows (`None`: unknown).
    applied: Option<Route>,
    /// A command sent and not answered yet.
    inflight: Option<Route>,
    failures: u32,
    retry_at: Option<Instant>,
}

/// The per-VIP state of the agent.
pub struct Plan {
    vips: Vec<Vip>,
    /// Since when the speaker has left a command unanswered (no reply of any
    /// kind: a refusal or an error is an answer).
    silent_since: Option<Instant>,
    /// Whether the last read-back of the speaker's state succeeded.
    readable: bool,
}

/// What a read-back found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReadBack {
    /// The speaker answers again after failed read-backs (BIRD restarted).
    pub back: bool,
    /// VIPs whose route the speaker does not carry as applied; they are
    /// applied again at once.
    pub lost: Vec<usize>,
}

impl Plan {
    /// Every VIP starts wanted withdrawn with the speaker's state unknown, so
    /// whatever an earlier instance (crashed, restarted) left announced is
    /// withdrawn until this one's checks pass.
    pub fn new(cfg: &AnycastConfig, now: Instant) -> Plan {
        Plan {
            vips: cfg
                .vips
                .iter()
                .map(|v| Vip {
                    machine: VipMachine::new(v, &cfg.flap, now),
                    stale_after: Duration::from_millis(3 * v.interval_ms + v.timeout_ms),
                    last_check: now,
                    reason: Reason::Startup,
                    applied: None,
                    inflight: None,
                    failures: 0,
                    retry_at: None,
                })
                .collect(),
            silent_since: None,
            readable: true,
        }
    }

    /// The machine of VIP `i` (state pages, last error).
    pub fn machine(&self, i: usize) -> &VipMachine {
        &self.vips[i].machine
    }

    /// A check result of VIP `i`.
    pub fn check(&mut self, i: usize, r: Result<Duration, String>, now: Instant) {
        let v = &mut self.vips[i];
        v.last_check = now;
        if let Some(c) = v.machine.observe(r, now) {
            v.reason = c.reason;
        }
    }

    /// VIPs whose checks have stopped reporting (a hung runtime, a starved
    /// process) for 3 intervals + timeout: each gets a failed check here,
    /// returned for the shell to record. A route is never kept on stale news.
    pub fn expire_stale(&mut self, now: Instant) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for (i, v) in self.vips.iter_mut().enumerate() {
            if now.duration_since(v.last_check) > v.stale_after {
                let e = format!("no check result for {} ms", v.stale_after.as_millis());
                v.last_check = now;
                if let Some(c) = v.machine.observe(Err(e.clone()), now) {
                    v.reason = c.reason;
                }
                out.push((i, e));
            }
        }
        out
    }

    /// The drain file or admin switch, and time passing (MED shifts end).
    pub fn set_drained(&mut self, drained: bool, now: Instant) {
        for v in &mut self.vips {
            if let Some(Change { reason, .. }) = v.machine.set_drained(drained, now) {
                v.reason = reason;
            }
        }
    }

    /// Stopping: every VIP wanted withdrawn, retried at once.
    pub fn stop(&mut self) {
        for v in &mut self.vips {
            v.machine.shutdown();
            v.reason = Reason::Shutdown;
            v.retry_at = None;
        }
    }

    /// The commands due at `now`: one per VIP whose wanted route the speaker
    /// does not carry, none in flight and its backoff over. Marks them sent.
    pub fn commands(&mut self, now: Instant) -> Vec<Command> {
        let mut out = Vec::new();
        for (i, v) in self.vips.iter_mut().enumerate() {
            let want = v.machine.route();
            if v.applied == Some(want) || v.inflight.is_some() {
                continue;
            }
            if v.retry_at.is_some_and(|t| now < t) {
                continue;
            }
            v.inflight = Some(want);
            out.push(Command {
                vip: i,
                route: want,
            });
        }
        if !out.is_empty() {
            self.asked(now);
        }
        out
    }

    /// A command for VIP `i` succeeded: the speaker carries `route`. Returns
    /// why it was wanted, or `None` when it is no longer wanted (a newer
    /// command follows).
    pub fn applied(&mut self, i: usize, route: Route) -> Option<Reason> {
        self.silent_since = None;
        let v = &mut self.vips[i];
        v.inflight = None;
        v.applied = Some(route);
        v.failures = 0;
        v.retry_at = None;
        (route == v.machine.route()).then_some(v.reason)
    }

    /// A command for VIP `i` failed; returns how long until it is retried.
    /// `answered` is false when the speaker did not reply at all (a
    /// timeout), true for a refusal or a speaker that is not there.
    pub fn failed(&mut self, i: usize, answered: bool, now: Instant) -> Duration {
        if answered {
            self.silent_since = None;
        }
        let v = &mut self.vips[i];
        v.inflight = None;
        // What the speaker carries is unknown after a failure.
        v.applied = None;
        let wait = BACKOFF_MIN
            .saturating_mul(1u32 << v.failures.min(16))
            .min(BACKOFF_MAX);
        v.failures += 1;
        v.retry_at = Some(now + wait);
        wait
    }

    /// Something was asked of the speaker (a command, a read-back).
    pub fn asked(&mut self, now: Instant) {
        self.silent_since.get_or_insert(now);
    }

    /// What the speaker actually carries (BIRD: each VIP's static protocol
    /// enabled or not), read back periodically. A VIP whose route differs
    /// from what the agent applied (BIRD restarted and read `disabled` from
    /// its config, or an operator ran `birdc`) is applied again at once.
    /// After failed read-backs, a speaker that answers again also ends every
    /// retry backoff: whatever failed while it was away is retried now.
    pub fn actual(&mut self, carried: &[bool]) -> ReadBack {
        self.silent_since = None;
        let back = !std::mem::replace(&mut self.readable, true);
        let mut lost = Vec::new();
        for (i, (v, &on)) in self.vips.iter_mut().zip(carried).enumerate() {
            if back {
                v.retry_at = None;
            }
            if v.inflight.is_some() {
                continue;
            }
            let differs = match v.applied {
                Some(Route::Announced { .. }) => !on,
                Some(Route::Withdrawn) => on,
                None => false,
            };
            if differs {
                v.applied = None;
                v.retry_at = None;
                lost.push(i);
            }
        }
        ReadBack { back, lost }
    }

    /// A read-back failed; `answered` as for [`Plan::done`]. True for the
    /// first failure after a success (worth one log line).
    pub fn read_back_failed(&mut self, answered: bool) -> bool {
        if answered {
            self.silent_since = None;
        }
        std::mem::replace(&mut self.readable, false)
    }

    /// Whether the speaker has left commands unanswered for longer than [`STALL`].
    pub fn stalled(&self, now: Instant) -> bool {
        self.silent_since
            .is_some_and(|t| now.duration_since(t) > STALL)
    }

    /// Whether the speaker carries every wanted route and nothing is in flight.
    pub fn settled(&self) -> bool {
        self.vips
            .iter()
            .all(|v| v.inflight.is_none() && v.applied == Some(v.machine.route()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg() -> AnycastConfig {
        AnycastConfig::from_str(
            "speaker = { kind = \"exabgp\" }\n[[vip]]\nprefix = \"198.51.100.53/32\"\n\
             check = { kind = \"dns\", name = \"example.com\" }\n\
             interval_ms = 100\ntimeout_ms = 50\nrise = 1\nfall = 1\n",
            Path::new("t.toml"),
        )
        .unwrap()
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn startup_withdraws_whatever_an_earlier_instance_left() {
        let t0 = Instant::now();
        let mut p = Plan::new(&cfg(), t0);
        let c = p.commands(t0);
        assert_eq!(
            c,
            [Command {
                vip: 0,
                route: Route::Withdrawn
            }]
        );
        assert!(p.commands(t0).is_empty(), "one command in flight per VIP");
        assert_eq!(p.applied(0, Route::Withdrawn), Some(Reason::Startup));
        assert!(p.settled());
    }

    #[test]
    fn no_check_result_for_three_intervals_plus_timeout_withdraws() {
        let t0 = Instant::now();
        let mut p = Plan::new(&cfg(), t0);
        p.check(0, Ok(MS), t0);
        let c = p.commands(t0);
        assert_eq!(c[0].route, Route::Announced { med: None });
        p.applied(0, c[0].route);
        // 3 × 100 + 50 = 350 ms without a result: not yet at 350, at 351.
        assert!(p.expire_stale(t0 + 350 * MS).is_empty());
        let stale = p.expire_stale(t0 + 351 * MS);
        assert_eq!(stale, [(0, "no check result for 350 ms".to_string())]);
        let c = p.commands(t0 + 351 * MS);
        assert_eq!(
            c,
            [Command {
                vip: 0,
                route: Route::Withdrawn
            }]
        );
        assert_eq!(p.applied(0, Route::Withdrawn), Some(Reason::CheckFailed));
        // A fresh result counts again; the clock restarts from it.
        assert!(p.expire_stale(t0 + 400 * MS).is_empty());
    }

    #[test]
    fn failed_commands_back_off_doubling_up_to_the_cap() {
        let t0 = Instant::now();
        let mut p = Plan::new(&cfg(), t0);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let c = p.commands(now);
            assert_eq!(c.len(), 1);
            let w = p.failed(0, true, now);
            assert!(
                p.commands(now + w - MS).is_empty(),
                "not before the backoff"
            );
            waits.push(w.as_millis());
            now += w;
        }
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        // Success resets the backoff.
        let c = p.commands(now);
        p.applied(0, c[0].route);
        p.check(0, Ok(MS), now);
        assert_eq!(p.commands(now).len(), 1);
        assert_eq!(p.failed(0, true, now), BACKOFF_MIN);
    }

    #[test]
    fn a_route_the_speaker_lost_is_applied_again_and_backoff_ends() {
        let t0 = Instant::now();
        let mut p = Plan::new(&cfg(), t0);
        p.check(0, Ok(MS), t0);
        let c = p.commands(t0);
        p.applied(0, c[0].route);
        assert_eq!(p.actual(&[true]), ReadBack::default(), "carried as applied");
        // BIRD restarted: its config says `disabled`.
        assert_eq!(
            p.actual(&[false]),
            ReadBack {
                back: false,
                lost: vec![0]
            }
        );
        assert_eq!(
            p.commands(t0 + MS),
            [Command {
                vip: 0,
                route: Route::Announced { med: None }
            }]
        );
        // BIRD goes away: the command fails and backs off; read-backs fail.
        p.failed(0, true, t0 + MS);
        assert!(p.commands(t0 + 2 * MS).is_empty());
        assert!(p.read_back_failed(true), "the first failure is news");
        assert!(!p.read_back_failed(true), "the second is not");
        // BIRD answers again: the wait ends.
        let r = p.actual(&[false]);
        assert!(r.back);
        assert_eq!(p.commands(t0 + 2 * MS).len(), 1);
        // A command failing while BIRD answers read-backs keeps backing off.
        p.failed(0, true, t0 + 2 * MS);
        assert!(!p.actual(&[false]).back);
        assert!(p.commands(t0 + 3 * MS).is_empty());
    }

    #[test]
    fn a_speaker_that_does_not_answer_is_stalled_after_a_second() {
        let t0 = Instant::now();
        let mut p = Plan::new(&cfg(), t0);
        assert_eq!(p.commands(t0).len(), 1);
        assert!(!p.stalled(t0 + STALL));
        assert!(p.stalled(t0 + STALL + MS));
        // A timeout is no answer: still stalled through the retries.
        p.failed(0, false, t0 + 5 * STALL);
        assert!(p.stalled(t0 + 5 * STALL));
        // A refusal is an answer.
        assert_eq!(p.commands(t0 + 6 * STALL).len(), 1);
        p.failed(0, true, t0 + 6 * STALL);
        assert!(!p.stalled(t0 + 6 * STALL));
    }

    #[test]
    fn stop_withdraws_at_once_despite_backoff() {
        let t0 = Instant::now();
        let mut p = Plan::new(&cfg(), t0);
        p.check(0, Ok(MS), t0);
        let c = p.commands(t0);
        p.applied(0, c[0].route);
        p.check(0, Err("x".into()), t0);
        assert_eq!(p.commands(t0).len(), 1);
        p.failed(0, true, t0);
        p.stop();
        let c = p.commands(t0);
        assert_eq!(
            c,
            [Command {
                vip: 0,
                route: Route::Withdrawn
            }]
        );
        assert_eq!(p.applied(0, Route::Withdrawn), Some(Reason::Shutdown));
        assert!(p.settled());
    }
}
