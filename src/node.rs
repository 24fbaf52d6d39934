//! Wiring of a steering DNS node: load, probe, serve DNS and the admin API,
//! reload on SIGHUP / API / GeoIP file change, stop on signals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use geosteer_etcd::Etcd;

use crate::api::{self, Api};
use crate::config::{Config, ConfigErrors};
use crate::dns::{DnsServer, ServeState, Shared};
use crate::geo::FileStamp;
use crate::health::{HealthHub, HealthSnapshot};
use crate::membership::{spawn_votes, spawn_watch, Members};

/// What reloading needs: the pipeline, the health hub and the config path.
pub struct Reloader {
    /// The shared DNS pipeline.
    pub shared: Arc<Shared>,
    /// The health hub.
    pub hub: Arc<HealthHub>,
    /// Config file.
    pub config_path: PathBuf,
    /// Registered members (etcd), merged into every snapshot.
    pub members: Arc<Members>,
}

impl Reloader {
    /// Re-reads config, zones and GeoIP and swaps them in atomically. On any
    /// error the old state keeps serving and the errors are returned.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        let _serial = self.members.build_lock();
        let old = self.shared.state.load();
        let config = Config::load(&self.config_path)?;
        let st = ServeState::load(self.members.merged(&config), old.generation + 1)?;
        self.members.set_base(config);
        self.hub.install(Arc::new(st));
        Ok(())
    }
}

/// A running node.
pub struct Node {
    /// The DNS server.
    pub dns: DnsServer,
    /// Pipeline, health and reload.
    pub core: Arc<Reloader>,
    /// Bound admin API address, when enabled.
    pub api_addr: Option<SocketAddr>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Node {
    /// Starts probing, waits (bounded) for the first probe round, then
    /// serves DNS and the admin API.
    pub async fn start(st: ServeState) -> std::io::Result<Node> {
        let s = st.config.file.server.clone();
        let api_cfg = st.config.file.api.clone();
        let startup_wait = Duration::from_millis(st.config.file.health.startup_wait_ms);
        let config_path = st.config.path.clone();
        let token = match (&api_cfg.token, &api_cfg.token_file) {
            (Some(t), _) => Some(Arc::from(t.as_str())),
            (None, Some(f)) => {
                let p = st.config.resolve(f);
                let t = std::fs::read_to_string(&p)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
                Some(Arc::from(t.trim()))
            }
            _ => None,
        };
        let geo_path = st.config.resolve(&st.config.file.geoip.database);
        let membership = st.config.file.membership.clone();
        let members = Members::new(
            membership
                .as_ref()
                .map_or("default", |m| m.etcd.deployment.as_str()),
            st.config.clone(),
        );
        let health = HealthSnapshot::all_up(st.steering.members.len(), 1);
        let shared = Shared::new(st, health);
        let hub = HealthHub::start(shared.clone()).map_err(std::io::Error::other)?;
        if !hub.wait_first_round(startup_wait).await {
            tracing::warn!(
                wait_ms = startup_wait.as_millis() as u64,
                "not every member answered a first probe in time; they keep their initial state"
            );
        }
        let dns = DnsServer::start(shared.clone(), &s.listen, s.udp_workers).await?;
        let core = Arc::new(Reloader {
            shared,
            hub,
            config_path,
            members,
        });
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        if let Some(m) = &membership {
            let c = &core;
            // One client (one read of the password, CA and identity files)
            // for the members watch and the health votes.
            let base = &c.shared.state.load().config;
            let etcd = m
                .etcd
                .options(|p| base.resolve(p))
                .and_then(Etcd::new)
                .map_err(|e| std::io::Error::other(format!("membership: {e}")))?;
            spawn_watch(
                etcd.clone(),
                c.members.clone(),
                c.shared.clone(),
                c.hub.clone(),
                stop_rx.clone(),
            );
            spawn_votes(etcd, c.hub.clone(), stop_rx.clone());
        }
        let api_addr = match api_cfg.listen {
            Some(addr) => {
                let l = api::bind(addr)
                    .await
                    .map_err(|e| std::io::Error::new(e.kind(), format!("admin API {addr}: {e}")))?;
                let bound = l.local_addr()?;
                let mut rx = stop_rx.clone();
                tokio::spawn(api::serve(
                    l,
                    Api {
                        node: core.clone(),
                        token,
                    },
                    async move {
                        let _ = rx.wait_for(|s| *s).await;
                    },
                ));
                Some(bound)
            }
            None => None,
        };
        tokio::spawn(watch_file(geo_path, core.clone(), stop_rx));
        Ok(Node {
            dns,
            core,
            api_addr,
            stop,
        })
    }

    /// The shared pipeline.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.core.shared
    }

    /// See [`Reloader::reload`].
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        self.core.reload()
    }

    /// Serves until SIGINT/SIGTERM, reloading on SIGHUP.
    pub async fn run_until_signal(self) {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => { log_reload(&self.core); }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("shutting down");
        self.shutdown().await;
    }

    /// Stops DNS, the API and the watchers.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.dns.shutdown().await;
    }
}

/// Reloads and logs the outcome; true when the new state was published.
fn log_reload(core: &Reloader) -> bool {
    match core.reload() {
        Ok(()) => {
            tracing::info!(config = %core.config_path.display(), "reloaded");
            true
        }
        Err(e) => {
            tracing::error!(config = %core.config_path.display(), errors = %e, "reload rejected; still serving the previous configuration");
            false
        }
    }
}

/// Reloads when the GeoIP database file on disk no longer matches the stamp
/// of the one being served (see [`ServeState::geo_stamp`]). Comparing with
/// the served state, not with an earlier poll, means a replacement between
/// loading and the first poll is not missed; a stamp whose reload failed is
/// not retried until the file changes again.
async fn watch_file(
    path: PathBuf,
    core: Arc<Reloader>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut failed: Option<FileStamp> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = FileStamp::of(&path);
        let served = core.shared.state.load().geo_stamp;
        if now.is_none() || now == served || now == failed {
            continue;
        }
        tracing::info!(database = %path.display(), "GeoIP database changed; reloading");
        let c = core.clone();
        let ok = tokio::task::spawn_blocking(move || log_reload(&c))
            .await
            .unwrap_or(false);
        failed = if ok { None } else { now };
    }
}
