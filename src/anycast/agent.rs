//! The agent's loop: checks run on a small tokio runtime, the speaker on its
//! own thread; both report to one decision thread, which owns the plan
//! ([`super::plan`]) and never waits on the speaker.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::check::Check;
use super::config::{AnycastConfig, SpeakerConfig};
use super::decide::Route;
use super::metrics::{AgentStatus, VipStatus};
use super::notify::Notifier;
use super::plan::{Command, Plan};
use super::speaker::{self, Bird, Exabgp, Failure, Gone, Job, Report, Speaker, ACK_TIMEOUT};

/// What the decision thread hears.
enum Event {
    /// A check of VIP `i` finished.
    Check(usize, Result<Duration, String>),
    /// Admin switch: true = drain.
    Admin(bool),
    /// SIGTERM / SIGINT.
    Stop,
    /// The speaker thread, or ExaBGP's pipe.
    Speaker(Report),
}

impl From<Report> for Event {
    fn from(r: Report) -> Event {
        Event::Speaker(r)
    }
}

type Shared = Arc<Mutex<AgentStatus>>;

/// How often the loop turns without events (drain file, MED shifts, stale checks).
const TICK: Duration = Duration::from_millis(50);

/// Runs the agent until SIGTERM/SIGINT (withdrawing first) or until ExaBGP
/// goes away (EOF on stdin, or its `shutdown`).
pub fn run(cfg: AnycastConfig) -> Result<(), String> {
    let checks = cfg
        .vips
        .iter()
        .map(Check::new)
        .collect::<Result<Vec<_>, _>>()?;
    let token = cfg
        .admin_token_file
        .as_deref()
        .map(super::http::read_token)
        .transpose()?;
    let status: Shared = Arc::new(Mutex::new(AgentStatus {
        speaker: match cfg.speaker {
            SpeakerConfig::Exabgp => "exabgp",
            SpeakerConfig::Bird { .. } => "bird",
        },
        vips: cfg
            .vips
            .iter()
            .map(|v| VipStatus {
                prefix: v.prefix.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }));
    let (tx, rx) = mpsc::channel();
    let speaker = match &cfg.speaker {
        SpeakerConfig::Exabgp => {
            let tx = tx.clone();
            Speaker::Exabgp(Exabgp::stdio(move |g| {
                let _ = tx.send(Event::Speaker(Report::Gone(g)));
            }))
        }
        SpeakerConfig::Bird { socket } => Speaker::Bird(Bird::new(socket.clone())),
    };
    let jobs = speaker::spawn(speaker, cfg.vips.clone(), tx.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("anycast-checks")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    for (i, (check, v)) in checks.into_iter().zip(&cfg.vips).enumerate() {
        let (tx, every, timeout) = (
            tx.clone(),
            Duration::from_millis(v.interval_ms),
            Duration::from_millis(v.timeout_ms),
        );
        rt.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let r = check.run(timeout).await;
                if tx.send(Event::Check(i, r)).is_err() {
                    return;
                }
            }
        });
    }
    {
        let tx = tx.clone();
        rt.spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            let _ = tx.send(Event::Stop);
        });
    }
    if let Some(addr) = cfg.metrics_listen {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| format!("metrics_listen {addr}: {e}"))?;
        let tx = tx.clone();
        let switch: super::http::Switch = Arc::new(move |drain| {
            let _ = tx.send(Event::Admin(drain));
        });
        rt.spawn(super::http::serve(listener, status.clone(), token, switch));
    }
    drop(tx);

    let mut lp = Loop {
        cfg: &cfg,
        plan: Plan::new(&cfg, Instant::now()),
        jobs,
        status,
    };
    // BIRD's state is read back every (shortest) check interval: a BIRD
    // that restarted (and read `disabled` from its config) gets the routes
    // again within one interval of answering.
    let read_back = matches!(cfg.speaker, SpeakerConfig::Bird { .. }).then(|| {
        Duration::from_millis(cfg.vips.iter().map(|v| v.interval_ms).min().unwrap_or(1000))
    });
    let mut next_read_back = Instant::now();
    let mut read_back_pending = false;
    let mut admin_drain = false;
    let mut systemd = Notifier::from_env();
    if let Some(every) = systemd.watchdog() {
        tracing::info!(
            every_ms = every.as_millis() as u64,
            "systemd watchdog: keep-alives from the decision loop while the speaker answers"
        );
    }
    systemd.send("READY=1");
    loop {
        let ev = rx.recv_timeout(TICK);
        let now = Instant::now();
        match ev {
            Ok(Event::Stop) => {
                systemd.send("STOPPING=1");
                return lp.stop(&rx);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err("every event source has stopped".into())
            }
            Ok(Event::Speaker(Report::Gone(g))) => return gone(g),
            Ok(Event::Check(i, r)) => {
                record_check(&lp.status, i, &r);
                lp.plan.check(i, r, now);
            }
            Ok(Event::Admin(d)) => admin_drain = d,
            Ok(Event::Speaker(Report::Applied(c, r))) => lp.applied(c, r, now),
            Ok(Event::Speaker(Report::Carried(r))) => {
                read_back_pending = false;
                lp.carried(r, now);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        for (i, e) in lp.plan.expire_stale(now) {
            record_check(&lp.status, i, &Err(e));
        }
        let drained = admin_drain || cfg.drain_file.as_ref().is_some_and(|p| p.exists());
        lp.plan.set_drained(drained, now);
        {
            let mut s = lp.status.lock().expect("status lock");
            s.drained = drained;
            s.admin_drain = admin_drain;
        }
        lp.send(now);
        if let Some(every) = read_back {
            if !read_back_pending && now >= next_read_back {
                read_back_pending = lp.jobs.send(Job::ReadBack).is_ok();
                lp.plan.asked(now);
                next_read_back = now + every;
            }
        }
        // Keep-alives only while decisions are made *and* the speaker
        // answers: a hung speaker gets the unit restarted by WatchdogSec.
        if !lp.plan.stalled(now) {
            systemd.keepalive(now);
        }
    }
}

/// ExaBGP went away: the routes went with its BGP sessions.
fn gone(g: Gone) -> Result<(), String> {
    match g {
        Gone::Shutdown => {
            tracing::info!("ExaBGP is shutting down (its BGP sessions end with it): exiting");
            Ok(())
        }
        Gone::Eof => {
            tracing::warn!("ExaBGP closed the API pipe (its BGP sessions ended with it): exiting");
            Err("ExaBGP went away".into())
        }
    }
}

/// The decision thread's state beside the events.
struct Loop<'a> {
    cfg: &'a AnycastConfig,
    plan: Plan,
    jobs: mpsc::Sender<Job>,
    status: Shared,
}

impl Loop<'_> {
    /// Sends the commands due.
    fn send(&mut self, now: Instant) {
        for c in self.plan.commands(now) {
            let _ = self.jobs.send(Job::Apply(c));
        }
    }

    /// A command's outcome: logged, counted, fed to the plan.
    fn applied(&mut self, c: Command, r: Result<(), Failure>, now: Instant) {
        let v = &self.cfg.vips[c.vip];
        let verb = match c.route {
            Route::Announced { .. } => "announce",
            Route::Withdrawn => "withdraw",
        };
        match r {
            Ok(()) => match self.plan.applied(c.vip, c.route) {
                Some(reason) => {
                    let err = self
                        .plan
                        .machine(c.vip)
                        .tracker()
                        .last()
                        .and_then(|(_, r)| r.error.clone())
                        .unwrap_or_default();
                    let what = match c.route {
                        Route::Announced { .. } => "route announced",
                        Route::Withdrawn => "route withdrawn",
                    };
                    tracing::info!(vip = %v.prefix, action = verb, reason = reason.as_str(), last_error = %err, "{what}");
                    self.status.lock().expect("status lock").vips[c.vip]
                        .transition(c.route, reason);
                }
                // No longer wanted: a newer command follows.
                None => self.status.lock().expect("status lock").vips[c.vip].carry(c.route),
            },
            Err(f) => {
                let wait = self.plan.failed(c.vip, f.answered, now);
                tracing::warn!(vip = %v.prefix, action = verb, error = %f, retry_in_ms = wait.as_millis() as u64, "speaker command failed");
                self.status.lock().expect("status lock").vips[c.vip].speaker_errors += 1;
            }
        }
    }

    /// A read-back of what BIRD carries.
    fn carried(&mut self, r: Result<Vec<bool>, Failure>, now: Instant) {
        match r {
            Ok(on) => {
                let found = self.plan.actual(&on);
                if found.back {
                    tracing::info!("BIRD answers again");
                }
                for i in found.lost {
                    let v = &self.cfg.vips[i];
                    tracing::warn!(vip = %v.prefix, protocol = %v.protocol_name(), "BIRD does not carry what the agent applied (BIRD restarted, or changed by hand): applying again");
                }
                self.send(now);
            }
            Err(f) => {
                if self.plan.read_back_failed(f.answered) {
                    tracing::warn!(error = %f, "cannot read BIRD's state");
                }
            }
        }
    }

    /// SIGTERM: withdraw every VIP and wait for the speaker's answers (at
    /// most [`ACK_TIMEOUT`]), unless ExaBGP goes away first.
    fn stop(mut self, rx: &mpsc::Receiver<Event>) -> Result<(), String> {
        tracing::info!("stopping: withdrawing every VIP");
        self.plan.stop();
        let deadline = Instant::now() + ACK_TIMEOUT;
        loop {
            let now = Instant::now();
            self.send(now);
            if self.plan.settled() {
                return Ok(());
            }
            if now >= deadline {
                return Err(format!(
                    "stopping: the speaker did not confirm every withdrawal in {ACK_TIMEOUT:?}"
                ));
            }
            match rx.recv_timeout(TICK.min(deadline - now)) {
                Ok(Event::Speaker(Report::Applied(c, r))) => self.applied(c, r, now),
                Ok(Event::Speaker(Report::Gone(g))) => return gone(g).or(Ok(())),
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("stopping: the speaker thread ended".into())
                }
            }
        }
    }
}

/// `geosteer anycast --withdraw` (the unit's `ExecStopPost`): withdraws every
/// configured VIP through the speaker without running the agent. Returns
/// what was done, one line per VIP.
pub fn withdraw_all(cfg: &AnycastConfig) -> Result<Vec<String>, String> {
    match &cfg.speaker {
        // The routes live in ExaBGP's BGP session, which ended with ExaBGP
        // (the unit's main process): the peer has withdrawn them already.
        SpeakerConfig::Exabgp => Ok(vec![
            "exabgp: the routes ended with ExaBGP's BGP session; nothing to withdraw".into(),
        ]),
        SpeakerConfig::Bird { socket } => {
            // A BIRD that is not running announces nothing.
            if let Err(e) = std::os::unix::net::UnixStream::connect(socket) {
                use std::io::ErrorKind::{ConnectionRefused, NotFound};
                if matches!(e.kind(), NotFound | ConnectionRefused) {
                    return Ok(vec![format!(
                        "bird: not running ({}: {e}); it announces nothing",
                        socket.display()
                    )]);
                }
            }
            let mut bird = Bird::new(socket.clone());
            let mut done = Vec::new();
            let mut failed = Vec::new();
            for v in &cfg.vips {
                let proto = v.protocol_name();
                match bird.command(&format!("disable {proto}")) {
                    Ok(reply) => done.push(format!(
                        "{}: {proto} ({})",
                        v.prefix,
                        reply.lines().last().unwrap_or("").trim()
                    )),
                    Err(e) => failed.push(format!("{}: {e}", v.prefix)),
                }
            }
            if failed.is_empty() {
                Ok(done)
            } else {
                Err(failed.join("; "))
            }
        }
    }
}

fn record_check(status: &Shared, i: usize, r: &Result<Duration, String>) {
    let mut s = status.lock().expect("status lock");
    let v = &mut s.vips[i];
    v.checks += 1;
    match r {
        Ok(d) => {
            v.latency_sum += d.as_secs_f64();
            v.last_error = None;
        }
        Err(e) => {
            v.failures += 1;
            v.last_error = Some(e.clone());
        }
    }
}
