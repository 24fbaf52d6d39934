//! The agent's decision, pure: check results, drain and admin state in,
//! announce/withdraw out, time injected. Reuses the DNS health tracker's
//! rise/fall and flap hold-down so both tiers damp flaps alike.

use std::time::{Duration, Instant};

use crate::config::InitialState;
use crate::health::tracker::{ProbeResult, RelayStatus, State, Tracker, TrackerParams};

use super::config::{FlapConfig, VipConfig};

/// What the speaker should carry for one VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Not announced.
    Withdrawn,
    /// Announced with this MED (None: no MED attribute).
    Announced {
        /// MULTI_EXIT_DISC.
        med: Option<u32>,
    },
}

/// Why the route changed (logged and counted per reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `rise` consecutive passing checks.
    CheckPassed,
    /// `fall` consecutive failing checks.
    CheckFailed,
    /// The drain file appeared or the admin switch was turned off.
    Drain,
    /// Drain: the worse MED has been announced, now the route goes.
    DrainShiftDone,
    /// The drain ended and the checks pass.
    Undrain,
    /// The agent is stopping (SIGTERM).
    Shutdown,
    /// The agent has just started: withdraw whatever an earlier instance left.
    Startup,
}

impl Reason {
    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::CheckPassed => "check_passed",
            Reason::CheckFailed => "check_failed",
            Reason::Drain => "drain",
            Reason::DrainShiftDone => "drain_shift_done",
            Reason::Undrain => "undrain",
            Reason::Shutdown => "shutdown",
            Reason::Startup => "startup",
        }
    }
}

/// A change for the speaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The new route.
    pub route: Route,
    /// Why.
    pub reason: Reason,
}

/// The state of one VIP.
#[derive(Debug, Clone)]
pub struct VipMachine {
    tracker: Tracker,
    med: Option<u32>,
    drain_med: Option<u32>,
    drain_shift: Duration,
    drained: bool,
    shift_until: Option<Instant>,
    route: Route,
}

impl VipMachine {
    /// A VIP that starts withdrawn and needs `rise` passing checks.
    pub fn new(v: &VipConfig, flap: &FlapConfig, now: Instant) -> VipMachine {
        let p = TrackerParams {
            rise: v.rise,
            fall: v.fall,
            initial: InitialState::Down,
            low_watermark: 1.0,
            high_watermark: 1.0,
            flap_threshold: flap.threshold,
            flap_window: Duration::from_millis(flap.window_ms),
            holddown: Duration::from_millis(flap.holddown_ms),
            max_holddown: Duration::from_millis(flap.max_holddown_ms),
        };
        VipMachine {
            tracker: Tracker::new(p, now),
            med: v.med,
            drain_med: v.drain_med,
            drain_shift: Duration::from_millis(v.drain_shift_ms),
            drained: false,
            shift_until: None,
            route: Route::Withdrawn,
        }
    }

    /// The route the speaker carries now.
    pub fn route(&self) -> Route {
        self.route
    }

    /// The health tracker (for state pages).
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Whether a drain holds the route down.
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// A check result; `Err` when the check itself could not run (counts as
    /// a failure: a node that cannot tell whether it is healthy withdraws).
    pub fn observe(&mut self, ok: Result<Duration, String>, now: Instant) -> Option<Change> {
        let r = match ok {
            Ok(latency) => ProbeResult {
                ok: true,
                status: RelayStatus::Ok,
                utilization: None,
                latency,
                error: None,
            },
            Err(e) => ProbeResult {
                ok: false,
                status: RelayStatus::Ok,
                utilization: None,
                latency: Duration::ZERO,
                error: Some(e),
            },
        };
        let was_up = self.tracker.state() == State::Up;
        self.tracker.observe(r, now);
        let is_up = self.tracker.state() == State::Up;
        let reason = match (was_up, is_up) {
            (false, true) => Reason::CheckPassed,
            (true, false) => Reason::CheckFailed,
            _ => return self.tick(now),
        };
        self.shift_until = None;
        self.settle(reason)
    }

    /// The drain file or admin switch, evaluated every tick.
    pub fn set_drained(&mut self, drained: bool, now: Instant) -> Option<Change> {
        if drained == self.drained {
            return self.tick(now);
        }
        self.drained = drained;
        if drained {
            if let (Some(med), Route::Announced { .. }) = (self.drain_med, self.route) {
                self.shift_until = Some(now + self.drain_shift);
                return self.set(Route::Announced { med: Some(med) }, Reason::Drain);
            }
            return self.settle(Reason::Drain);
        }
        self.shift_until = None;
        self.settle(Reason::Undrain)
    }

    /// Time passing: ends a graceful MED shift.
    pub fn tick(&mut self, now: Instant) -> Option<Change> {
        match self.shift_until {
            Some(t) if now >= t => {
                self.shift_until = None;
                self.set(Route::Withdrawn, Reason::DrainShiftDone)
            }
            _ => None,
        }
    }

    /// Stopping: withdraw now.
    pub fn shutdown(&mut self) -> Option<Change> {
        self.shift_until = None;
        self.set(Route::Withdrawn, Reason::Shutdown)
    }

    fn settle(&mut self, reason: Reason) -> Option<Change> {
        let want = if self.tracker.state() == State::Up && !self.drained {
            Route::Announced { med: self.med }
        } else {
            Route::Withdrawn
        };
        self.set(want, reason)
    }

    fn set(&mut self, route: Route, reason: Reason) -> Option<Change> {
        if route == self.route {
            return None;
        }
        self.route = route;
        Some(Change { route, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anycast::config::CheckConfig;

    fn vip() -> VipConfig {
        VipConfig {
            prefix: "198.51.100.53/32".parse().unwrap(),
            check: CheckConfig::Dns {
                name: "turn.example.com".into(),
                qtype: "A".into(),
                port: 53,
            },
            interval_ms: 250,
            timeout_ms: 200,
            rise: 2,
            fall: 2,
            med: Some(100),
            communities: vec![],
            drain_med: None,
            drain_shift_ms: 0,
            bird_protocol: None,
        }
    }

    const OK: Result<Duration, String> = Ok(Duration::from_millis(1));
    fn fail() -> Result<Duration, String> {
        Err("timed out".into())
    }

    fn run(m: &mut VipMachine, t0: Instant, steps: &[bool]) -> Vec<(usize, Change)> {
        let mut out = vec![];
        for (i, &ok) in steps.iter().enumerate() {
            let now = t0 + Duration::from_millis(250 * i as u64);
            if let Some(c) = m.observe(if ok { OK } else { fail() }, now) {
                out.push((i, c));
            }
        }
        out
    }

    #[test]
    fn announces_after_rise_and_withdraws_after_fall_only_on_change() {
        let t0 = Instant::now();
        let mut m = VipMachine::new(&vip(), &FlapConfig::default(), t0);
        assert_eq!(m.route(), Route::Withdrawn, "starts withdrawn");
        let ch = run(
            &mut m,
            t0,
            &[true, true, true, true, false, true, false, false, false],
        );
        assert_eq!(
            ch,
            vec![
                (
                    1,
                    Change {
                        route: Route::Announced { med: Some(100) },
                        reason: Reason::CheckPassed
                    }
                ),
                (
                    7,
                    Change {
                        route: Route::Withdrawn,
                        reason: Reason::CheckFailed
                    }
                ),
            ],
            "one change per transition, none per check"
        );
    }

    #[test]
    fn a_check_that_cannot_run_counts_as_failure() {
        let t0 = Instant::now();
        let mut m = VipMachine::new(&vip(), &FlapConfig::default(), t0);
        run(&mut m, t0, &[true, true]);
        m.observe(Err("cannot open socket: EMFILE".into()), t0);
        let c = m.observe(Err("cannot open socket: EMFILE".into()), t0);
        assert_eq!(c.unwrap().route, Route::Withdrawn);
    }

    #[test]
    fn drain_withdraws_and_undrain_returns_only_when_healthy() {
        let t0 = Instant::now();
        let mut m = VipMachine::new(&vip(), &FlapConfig::default(), t0);
        assert_eq!(m.set_drained(true, t0), None, "nothing announced yet");
        run(&mut m, t0, &[true, true, true]);
        assert_eq!(
            m.route(),
            Route::Withdrawn,
            "drained: passing checks do not announce"
        );
        let c = m.set_drained(false, t0).unwrap();
        assert_eq!(
            (c.route, c.reason),
            (Route::Announced { med: Some(100) }, Reason::Undrain)
        );
        let c = m.set_drained(true, t0).unwrap();
        assert_eq!((c.route, c.reason), (Route::Withdrawn, Reason::Drain));
    }

    #[test]
    fn drain_with_a_worse_med_shifts_traffic_before_withdrawing() {
        let t0 = Instant::now();
        let v = VipConfig {
            drain_med: Some(1000),
            drain_shift_ms: 5000,
            ..vip()
        };
        let mut m = VipMachine::new(&v, &FlapConfig::default(), t0);
        run(&mut m, t0, &[true, true]);
        let c = m.set_drained(true, t0).unwrap();
        assert_eq!(c.route, Route::Announced { med: Some(1000) });
        assert_eq!(m.tick(t0 + Duration::from_millis(4999)), None);
        let c = m.tick(t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(
            (c.route, c.reason),
            (Route::Withdrawn, Reason::DrainShiftDone)
        );
    }

    #[test]
    fn flapping_vips_are_held_down() {
        let t0 = Instant::now();
        let flap = FlapConfig {
            threshold: 2,
            window_ms: 60_000,
            holddown_ms: 10_000,
            max_holddown_ms: 60_000,
        };
        let mut m = VipMachine::new(&vip(), &flap, t0);
        // up, down, up, down (second withdrawal in the window: hold-down).
        let ch = run(
            &mut m,
            t0,
            &[
                true, true, false, false, true, true, false, false, true, true, true, true,
            ],
        );
        assert_eq!(ch.len(), 4, "{ch:?}");
        assert_eq!(
            m.route(),
            Route::Withdrawn,
            "held down despite passing checks"
        );
        // Passing checks kept counting during the hold-down: the first one
        // after it announces.
        let later = t0 + Duration::from_secs(20);
        let c = m.observe(OK, later).unwrap();
        assert_eq!(c.reason, Reason::CheckPassed);
    }

    #[test]
    fn shutdown_withdraws_once() {
        let t0 = Instant::now();
        let mut m = VipMachine::new(&vip(), &FlapConfig::default(), t0);
        run(&mut m, t0, &[true, true]);
        assert_eq!(m.shutdown().unwrap().reason, Reason::Shutdown);
        assert_eq!(m.shutdown(), None);
    }
}
