//! The agent's loop: checks run on a small tokio runtime and report to one
//! decision thread, which owns the state machines and the speaker.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;

use super::check::Check;
use super::config::{AnycastConfig, SpeakerConfig};
use super::decide::{Change, Reason, Route, VipMachine};
use super::metrics::{AgentStatus, VipStatus};
use super::notify::Notifier;
use super::speaker::{Bird, Exabgp, Speaker};

/// What the decision thread hears.
enum Event {
    /// A check of VIP `i` finished.
    Check(usize, Result<Duration, String>),
    /// Admin switch: true = drain.
    Admin(bool),
    /// SIGTERM / SIGINT.
    Stop,
}

type Shared = Arc<Mutex<AgentStatus>>;

/// Runs the agent until SIGTERM/SIGINT (withdrawing first) or until ExaBGP
/// goes away.
pub fn run(cfg: AnycastConfig) -> Result<(), String> {
    let mut speaker = match &cfg.speaker {
        SpeakerConfig::Exabgp => Speaker::Exabgp(Exabgp::stdio()),
        SpeakerConfig::Bird { socket } => Speaker::Bird(Bird::new(socket.clone())),
    };
    let checks = cfg
        .vips
        .iter()
        .map(Check::new)
        .collect::<Result<Vec<_>, _>>()?;
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
        rt.spawn(serve_http(listener, status.clone(), tx.clone()));
    }
    drop(tx);

    let now = Instant::now();
    let mut machines: Vec<VipMachine> = cfg
        .vips
        .iter()
        .map(|v| VipMachine::new(v, &cfg.flap, now))
        .collect();
    // Whatever an earlier instance (crashed, restarted by the speaker or
    // systemd) left announced is withdrawn until this one's checks pass.
    let mut applied: Vec<Option<Route>> = vec![None; cfg.vips.len()];
    let mut last_check: Vec<Instant> = vec![now; cfg.vips.len()];
    let mut pending: Vec<Reason> = vec![Reason::Startup; cfg.vips.len()];
    let mut admin_drain = false;
    let mut systemd = Notifier::from_env();
    if let Some(every) = systemd.watchdog() {
        tracing::info!(
            every_ms = every.as_millis() as u64,
            "systemd watchdog: keep-alives from the decision loop"
        );
    }
    systemd.send("READY=1");
    loop {
        let ev = rx.recv_timeout(Duration::from_millis(50));
        let now = Instant::now();
        let mut changes: Vec<(usize, Change)> = Vec::new();
        match ev {
            Ok(Event::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                tracing::info!("stopping: withdrawing every VIP");
                systemd.send("STOPPING=1");
                for (i, m) in machines.iter_mut().enumerate() {
                    m.shutdown();
                    pending[i] = Reason::Shutdown;
                }
                sync(
                    &cfg,
                    &mut speaker,
                    &machines,
                    &mut applied,
                    &pending,
                    &status,
                );
                return Ok(());
            }
            Ok(Event::Check(i, r)) => {
                last_check[i] = now;
                record_check(&status, i, &r);
                if let Some(c) = machines[i].observe(r, now) {
                    changes.push((i, c));
                }
            }
            Ok(Event::Admin(d)) => admin_drain = d,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let drained = admin_drain || cfg.drain_file.as_ref().is_some_and(|p| p.exists());
        for (i, m) in machines.iter_mut().enumerate() {
            // A check that has stopped reporting (hung runtime, starved
            // process) counts as failing: never keep a route on stale news.
            let v = &cfg.vips[i];
            let stale = Duration::from_millis(3 * v.interval_ms + v.timeout_ms);
            if now.duration_since(last_check[i]) > stale {
                last_check[i] = now;
                let r = Err(format!("no check result for {} ms", stale.as_millis()));
                record_check(&status, i, &r);
                if let Some(c) = m.observe(r, now) {
                    changes.push((i, c));
                }
            }
            if let Some(c) = m.set_drained(drained, now) {
                changes.push((i, c));
            }
        }
        for (i, c) in changes {
            pending[i] = c.reason;
        }
        {
            let mut s = status.lock().expect("status lock");
            s.drained = drained;
            s.admin_drain = admin_drain;
        }
        sync(
            &cfg,
            &mut speaker,
            &machines,
            &mut applied,
            &pending,
            &status,
        );
        if speaker.gone() {
            tracing::warn!("ExaBGP closed the API pipe: exiting");
            return Err("ExaBGP went away".into());
        }
        // Only here, after a whole turn: a turn stuck anywhere (speaker not
        // answering, check results not processed) starves the watchdog.
        systemd.keepalive(now);
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

/// Brings the speaker in line with the machines; a failed command is retried
/// on the next turn.
fn sync(
    cfg: &AnycastConfig,
    speaker: &mut Speaker,
    machines: &[VipMachine],
    applied: &mut [Option<Route>],
    reasons: &[Reason],
    status: &Shared,
) {
    for (i, m) in machines.iter().enumerate() {
        let want = m.route();
        if applied[i] == Some(want) {
            continue;
        }
        let v = &cfg.vips[i];
        let verb = match want {
            Route::Announced { .. } => "announce",
            Route::Withdrawn => "withdraw",
        };
        match speaker.apply(v, want) {
            Ok(()) => {
                let err = m
                    .tracker()
                    .last()
                    .and_then(|(_, r)| r.error.clone())
                    .unwrap_or_default();
                let what = match want {
                    Route::Announced { .. } => "route announced",
                    Route::Withdrawn => "route withdrawn",
                };
                tracing::info!(vip = %v.prefix, action = verb, reason = reasons[i].as_str(), last_error = %err, "{what}");
                applied[i] = Some(want);
                status.lock().expect("status lock").vips[i].transition(want, reasons[i]);
            }
            Err(e) => {
                tracing::warn!(vip = %v.prefix, action = verb, error = %e, "speaker command failed; retrying");
                status.lock().expect("status lock").vips[i].speaker_errors += 1;
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

async fn serve_http(listener: tokio::net::TcpListener, status: Shared, tx: mpsc::Sender<Event>) {
    let tx = Arc::new(Mutex::new(tx));
    let admin = |drain: bool| {
        let tx = tx.clone();
        move || async move {
            let _ = tx.lock().expect("admin lock").send(Event::Admin(drain));
            if drain {
                "draining: every VIP is withdrawn\n"
            } else {
                "drain released\n"
            }
        }
    };
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Shared>| async move { s.lock().expect("status lock").render() }),
        )
        .route(
            "/v1/state",
            get(|State(s): State<Shared>| async move {
                axum::Json(s.lock().expect("status lock").clone())
            }),
        )
        .route("/v1/drain", post(admin(true)))
        .route("/v1/undrain", post(admin(false)))
        .with_state(status);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics endpoint stopped");
    }
}
