//! `geosteer-relay`: run, check or mint credentials for the regional TURN relay.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use geosteer_relay::config::RelayConfig;

#[derive(Parser)]
#[command(
    name = "geosteer-relay",
    version,
    about = "geosteer regional STUN/TURN relay"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the relay. SIGTERM/SIGINT start a graceful drain; a second signal stops at once.
    /// SIGHUP reloads the configuration file (certificates, secrets, limits, peer
    /// rules) without dropping allocations; a bad file is rejected and logged.
    Serve {
        /// TOML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a configuration file and list every problem.
    Check {
        /// TOML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Mint TURN REST credentials (coturn compatible).
    Creds {
        /// Shared secret (one of the relay's auth.secrets).
        #[arg(long)]
        secret: String,
        /// Validity in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
        /// Optional user id appended to the expiry (`expiry:user`).
        #[arg(long)]
        user: Option<String>,
        /// Print a WebRTC iceServers-style JSON object.
        #[arg(long)]
        json: bool,
        /// TURN/STUN URLs for --json (repeatable).
        #[arg(long = "url")]
        urls: Vec<String>,
    },
}

fn load(path: &std::path::Path) -> Result<RelayConfig, Vec<String>> {
    let cfg = RelayConfig::load(path).map_err(|e| vec![e.to_string()])?;
    cfg.validate()
        .map_err(|errs| errs.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    Ok(cfg)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { config } => match load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(errs) => {
                for e in errs {
                    eprintln!("{e}");
                }
                ExitCode::from(2)
            }
        },
        Cmd::Creds {
            secret,
            ttl,
            user,
            json,
            urls,
        } => {
            if secret.is_empty() {
                eprintln!("--secret must not be empty");
                return ExitCode::from(2);
            }
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let (u, p) = geosteer_relay::auth::mint(secret.as_bytes(), ttl, user.as_deref(), now);
            if json {
                let v = serde_json::json!({
                    "iceServers": [{ "urls": urls, "username": u, "credential": p }],
                    "ttl": ttl,
                });
                println!("{v}");
            } else {
                println!("username: {u}\npassword: {p}");
            }
            ExitCode::SUCCESS
        }
        Cmd::Serve { config } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                        // stun-types logs malformed input at warn level: keep that quiet.
                        tracing_subscriber::EnvFilter::new(
                            "info,stun_types=error,turn_types=error,stun_proto=error",
                        )
                    }),
                )
                .init();
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(errs) => {
                    for e in errs {
                        eprintln!("{e}");
                    }
                    return ExitCode::from(2);
                }
            };
            serve(cfg, config)
        }
    }
}

fn serve(cfg: RelayConfig, path: PathBuf) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let pending = match geosteer_relay::membership::prepare(&cfg) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let handle = match geosteer_relay::server::start_file(&path) {
            Ok(h) => h,
            Err(e) => {
                // Never registered: DNS nodes are not told about a relay
                // that cannot serve.
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        // Registered once every socket is bound. Registration is not
        // liveness: DNS nodes still probe before answering.
        let mut registrar = pending.map(|p| p.spawn());
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            eprintln!("cannot install signal handlers");
            return ExitCode::FAILURE;
        };
        let control = handle.control();
        let mut signals = 0;
        loop {
            tokio::select! {
                _ = term.recv() => signals += 1,
                _ = int.recv() => signals += 1,
                _ = hup.recv() => {
                    let r = handle.reloader();
                    match tokio::task::spawn_blocking(move || r.reload_file()).await {
                        Ok(Ok(rep)) => tracing::info!(
                            generation = rep.generation, changed = ?rep.changed, "SIGHUP: reloaded"
                        ),
                        Ok(Err(e)) => {
                            for m in e.messages() {
                                tracing::error!("SIGHUP: reload rejected, old configuration kept: {m}");
                            }
                        }
                        Err(e) => tracing::error!("SIGHUP: reload failed: {e}"),
                    }
                    continue;
                }
                _ = tokio::time::sleep(Duration::from_millis(250)) => {
                    if control.is_finished() { break; }
                    // Drained through the admin endpoint: leave the fleet
                    // now rather than when the DNS nodes' probes notice.
                    if control.is_draining() {
                        if let Some(r) = registrar.take() {
                            tracing::info!("draining: deregistering from etcd");
                            r.deregister().await;
                        }
                    }
                    continue;
                }
            }
            if let Some(r) = registrar.take() {
                r.deregister().await;
            }
            if signals == 1 {
                tracing::info!("signal received: draining (send again to stop at once)");
                control.drain();
            } else {
                tracing::info!("second signal: stopping");
                control.stop();
            }
        }
        if let Some(r) = registrar.take() {
            r.deregister().await;
        }
        let _ = tokio::task::spawn_blocking(move || handle.wait()).await;
        tracing::info!("relay stopped");
        ExitCode::SUCCESS
    })
}
