//! Wiring of a steering DNS node: load, start, reload, stop on signals.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ConfigErrors};
use crate::dns::{DnsServer, ServeState, Shared};
use crate::health::HealthSnapshot;

/// A running node.
pub struct Node {
    /// The DNS server.
    pub dns: DnsServer,
    /// Where the config came from (for reload).
    pub config_path: PathBuf,
}

impl Node {
    /// Starts serving a loaded state.
    pub async fn start(st: ServeState) -> std::io::Result<Node> {
        let s = &st.config.file.server;
        let listen = s.listen.clone();
        let workers = s.udp_workers;
        let timeout = Duration::from_secs(s.tcp_timeout_secs);
        let config_path = st.config.path.clone();
        let health = HealthSnapshot::all_up(st.steering.members.len(), 1);
        let shared = Shared::new(st, health);
        let dns = DnsServer::start(shared, &listen, workers, timeout).await?;
        Ok(Node { dns, config_path })
    }

    /// The shared pipeline.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.dns.shared
    }

    /// Re-reads the configuration, zones and GeoIP database and swaps them in
    /// atomically. On any error the old state keeps serving and the errors
    /// are returned.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        reload(self.shared(), &self.config_path)
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
                _ = hup.recv() => match self.reload() {
                    Ok(()) => tracing::info!(config = %self.config_path.display(), "reloaded"),
                    Err(e) => tracing::error!(config = %self.config_path.display(), errors = %e, "reload rejected; still serving the previous configuration"),
                },
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("shutting down");
        self.dns.shutdown().await;
    }
}

/// Loads `path` into a new snapshot and publishes it on `shared`.
pub fn reload(shared: &Shared, path: &Path) -> Result<(), ConfigErrors> {
    let old = shared.state.load();
    let config = Config::load(path)?;
    let st = ServeState::load(config, old.generation + 1)?;
    let members = st.steering.members.len();
    shared.publish_state(st);
    let h = shared.health.load();
    if h.members.len() != members {
        shared.publish_health(HealthSnapshot::all_up(members, h.epoch + 1));
    }
    Ok(())
}
