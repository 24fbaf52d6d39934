//! The per-member health state machine. Pure: feed it probe results and the
//! current time, read its verdict.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::InitialState;

/// What a relay says about itself in its `/health` JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayStatus {
    /// Accepting allocations.
    Ok,
    /// Finishing existing allocations, accepting none: never steer to it.
    Draining,
    /// At capacity: shed.
    Overloaded,
}

/// One probe's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// The probe succeeded (HTTP 200 with parseable JSON, and STUN if enabled).
    pub ok: bool,
    /// Reported status (when the probe succeeded).
    pub status: RelayStatus,
    /// Reported utilization 0..1 (when reported).
    pub utilization: Option<f64>,
    /// Round-trip time of the probe.
    pub latency: Duration,
    /// Why it failed.
    pub error: Option<String>,
}

/// Hysteresis and shedding parameters.
#[derive(Debug, Clone, Copy)]
pub struct TrackerParams {
    /// Consecutive successes to come up.
    pub rise: u32,
    /// Consecutive failures to go down.
    pub fall: u32,
    /// Start state.
    pub initial: InitialState,
    /// Shedding starts here.
    pub low_watermark: f64,
    /// Fully shed from here.
    pub high_watermark: f64,
    /// Down-transitions in `flap_window` that count as flapping.
    pub flap_threshold: u32,
    /// Flap counting window.
    pub flap_window: Duration,
    /// Base extra hold-down for a flapping member.
    pub holddown: Duration,
    /// Hold-down cap.
    pub max_holddown: Duration,
}

/// Health verdict of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Passing probes.
    Up,
    /// Failing probes (or held down after flapping).
    Down,
}

/// Tracks one member.
#[derive(Debug, Clone)]
pub struct Tracker {
    p: TrackerParams,
    state: State,
    ever_up: bool,
    probed: bool,
    successes: u32,
    failures: u32,
    since: Instant,
    hold_until: Option<Instant>,
    downs: VecDeque<Instant>,
    status: RelayStatus,
    utilization: Option<f64>,
    last: Option<(Instant, ProbeResult)>,
}

impl Tracker {
    /// A member not yet probed, in the configured initial state.
    pub fn new(p: TrackerParams, now: Instant) -> Tracker {
        Tracker {
            p,
            state: match p.initial {
                InitialState::Up => State::Up,
                InitialState::Down => State::Down,
            },
            ever_up: p.initial == InitialState::Up,
            probed: false,
            successes: 0,
            failures: 0,
            since: now,
            hold_until: None,
            downs: VecDeque::new(),
            status: RelayStatus::Ok,
            utilization: None,
            last: None,
        }
    }

    /// Feeds one probe result. Returns true when the up/down state changed.
    pub fn observe(&mut self, r: ProbeResult, now: Instant) -> bool {
        let before = self.state;
        if r.ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            self.status = r.status;
            self.utilization = r.utilization;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
        }
        self.probed = true;
        match self.state {
            State::Up if self.failures >= self.p.fall => self.go_down(now),
            State::Down
                if self.successes >= self.p.rise && self.hold_until.is_none_or(|t| now >= t) =>
            {
                self.state = State::Up;
                self.ever_up = true;
                self.since = now;
                self.hold_until = None;
            }
            _ => {}
        }
        self.last = Some((now, r));
        self.state != before
    }

    fn go_down(&mut self, now: Instant) {
        self.state = State::Down;
        self.since = now;
        while self
            .downs
            .front()
            .is_some_and(|&t| now.duration_since(t) > self.p.flap_window)
        {
            self.downs.pop_front();
        }
        self.downs.push_back(now);
        let n = self.downs.len() as u32;
        self.hold_until = (n >= self.p.flap_threshold).then(|| {
            let doublings = (n - self.p.flap_threshold).min(16);
            now + (self.p.holddown * 2u32.pow(doublings)).min(self.p.max_holddown)
        });
    }

    /// Up or down.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether it has been up at some point (from the start, or by `rise`
    /// successful probes).
    pub fn ever_up(&self) -> bool {
        self.ever_up
    }

    /// Whether any probe result has arrived.
    pub fn probed(&self) -> bool {
        self.probed
    }

    /// When the state last changed.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// The hold-down end, if the member is held down for flapping.
    pub fn hold_until(&self) -> Option<Instant> {
        self.hold_until
    }

    /// Last reported relay status.
    pub fn status(&self) -> RelayStatus {
        self.status
    }

    /// Last reported utilization.
    pub fn utilization(&self) -> Option<f64> {
        self.utilization
    }

    /// The last probe and when it ran.
    pub fn last(&self) -> Option<&(Instant, ProbeResult)> {
        self.last.as_ref()
    }

    /// Whether new clients may be steered to it (up and not draining).
    pub fn usable(&self) -> bool {
        self.state == State::Up && self.status != RelayStatus::Draining
    }

    /// Probability of shedding a client: 1 when overloaded or at/above the
    /// high watermark, rising linearly from 0 at the low watermark, in steps
    /// of 1/20 so small load changes do not churn snapshots.
    pub fn shed(&self) -> f32 {
        if self.status == RelayStatus::Overloaded {
            return 1.0;
        }
        let Some(u) = self.utilization else {
            return 0.0;
        };
        let (lo, hi) = (self.p.low_watermark, self.p.high_watermark);
        let p = if u >= hi {
            1.0
        } else if u <= lo || hi <= lo {
            0.0
        } else {
            (u - lo) / (hi - lo)
        };
        ((p * 20.0).round() / 20.0) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> TrackerParams {
        TrackerParams {
            rise: 2,
            fall: 2,
            initial: InitialState::Up,
            low_watermark: 0.6,
            high_watermark: 0.8,
            flap_threshold: 3,
            flap_window: Duration::from_secs(60),
            holddown: Duration::from_secs(5),
            max_holddown: Duration::from_secs(40),
        }
    }

    fn ok(u: f64) -> ProbeResult {
        ProbeResult {
            ok: true,
            status: RelayStatus::Ok,
            utilization: Some(u),
            latency: Duration::from_millis(1),
            error: None,
        }
    }

    fn fail() -> ProbeResult {
        ProbeResult {
            ok: false,
            status: RelayStatus::Ok,
            utilization: None,
            latency: Duration::from_millis(1),
            error: Some("refused".into()),
        }
    }

    #[test]
    fn rise_and_fall_need_consecutive_results() {
        let t0 = Instant::now();
        let s = |i: u64| t0 + Duration::from_millis(500 * i);
        let mut t = Tracker::new(params(), t0);
        assert_eq!(t.state(), State::Up);
        assert!(!t.observe(fail(), s(1)));
        assert!(
            !t.observe(ok(0.1), s(2)),
            "a success resets the failure count"
        );
        assert!(!t.observe(fail(), s(3)));
        assert!(t.observe(fail(), s(4)), "second consecutive failure: down");
        assert_eq!(t.state(), State::Down);
        assert!(!t.observe(ok(0.1), s(5)));
        assert!(
            !t.observe(fail(), s(6)),
            "a failure resets the success count"
        );
        assert!(!t.observe(ok(0.1), s(7)));
        assert!(t.observe(ok(0.1), s(8)), "rise 2");
        assert_eq!((t.state(), t.since()), (State::Up, s(8)));
    }

    #[test]
    fn initial_down_needs_rise_successes() {
        let t0 = Instant::now();
        let mut t = Tracker::new(
            TrackerParams {
                initial: InitialState::Down,
                ..params()
            },
            t0,
        );
        assert!(!t.usable());
        t.observe(ok(0.0), t0);
        assert!(!t.usable());
        t.observe(ok(0.0), t0 + Duration::from_secs(1));
        assert!(t.usable());
    }

    #[test]
    fn flapping_members_are_held_down_longer_each_time() {
        let t0 = Instant::now();
        let mut t = Tracker::new(params(), t0);
        let mut now = t0;
        let mut step = |t: &mut Tracker, r: ProbeResult| {
            now += Duration::from_millis(500);
            t.observe(r, now);
            now
        };
        // Two flaps: no hold-down, comes back after `rise`.
        for _ in 0..2 {
            step(&mut t, fail());
            step(&mut t, fail());
            assert_eq!(t.state(), State::Down);
            step(&mut t, ok(0.0));
            step(&mut t, ok(0.0));
            assert_eq!(t.state(), State::Up);
        }
        // Third down within the window: held down 5 s despite passing probes.
        step(&mut t, fail());
        let down_at = step(&mut t, fail());
        assert_eq!(t.hold_until(), Some(down_at + Duration::from_secs(5)));
        for _ in 0..9 {
            step(&mut t, ok(0.0));
            assert_eq!(t.state(), State::Down, "held down");
        }
        let up_at = step(&mut t, ok(0.0));
        assert_eq!(t.state(), State::Up);
        assert!(up_at >= down_at + Duration::from_secs(5));
        // Fourth: the hold-down doubles.
        step(&mut t, fail());
        let down_at = step(&mut t, fail());
        assert_eq!(t.hold_until(), Some(down_at + Duration::from_secs(10)));
    }

    #[test]
    fn draining_is_unusable_and_utilization_sheds_between_watermarks() {
        let t0 = Instant::now();
        let mut t = Tracker::new(params(), t0);
        for (u, want) in [
            (0.1, 0.0),
            (0.6, 0.0),
            (0.65, 0.25),
            (0.7, 0.5),
            (0.79, 0.95),
            (0.8, 1.0),
            (0.95, 1.0),
        ] {
            t.observe(ok(u), t0);
            assert_eq!(t.shed(), want, "utilization {u}");
            assert!(t.usable());
        }
        t.observe(
            ProbeResult {
                status: RelayStatus::Overloaded,
                ..ok(0.1)
            },
            t0,
        );
        assert_eq!(t.shed(), 1.0);
        t.observe(
            ProbeResult {
                status: RelayStatus::Draining,
                ..ok(0.1)
            },
            t0,
        );
        assert!(!t.usable());
        assert_eq!(t.state(), State::Up, "draining is not a failure");
    }
}
