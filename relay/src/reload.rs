//! The reloadable configuration snapshot ([`Live`]) and what publishes it:
//! SIGHUP, `POST /admin/reload` and replaced certificate files ([`Reloader`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{ConfigError, RelayConfig};
use crate::control::Control;
use crate::limits::locked;

/// A certificate or key that does not load (the message names the file).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// Size, inode and modification time of a file: a certificate replaced in
/// place (new inode by `mv`, or rewritten) gives a different stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl FileStamp {
    /// Stamps `path`; `None` when it cannot be read.
    pub fn of(path: &std::path::Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        })
    }
}

/// The reloadable parts of the relay, published as one immutable snapshot:
/// the event loop compares [`Live::generation`] once per turn and applies a
/// new configuration between packets; the acceptor takes [`Live::tls`] for
/// each new connection. Nothing on the packet path reads it.
#[derive(Debug)]
pub struct Live {
    /// Configuration generation (1 at start, +1 per accepted reload).
    pub generation: u64,
    /// The configuration in force.
    pub config: Arc<RelayConfig>,
    /// TLS server configuration, when TLS listeners exist.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    tls_stamp: Option<(FileStamp, FileStamp)>,
}

impl Live {
    /// Generation 1: `config` with its certificate loaded.
    pub(crate) fn first(config: RelayConfig) -> Result<Self, Vec<ConfigError>> {
        let (tls, tls_stamp) = load_tls(&config)?;
        Ok(Self {
            generation: 1,
            config: Arc::new(config),
            tls,
            tls_stamp,
        })
    }
}

/// What an accepted reload changed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadReport {
    /// The new configuration generation.
    pub generation: u64,
    /// Sections that changed (`auth.secrets`, `limits`, `tls certificate`, ...).
    pub changed: Vec<String>,
}

/// Why a reload was refused (the running configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The relay was started without a configuration file.
    #[error("no configuration file to reload (relay started in-process)")]
    NoFile,
    /// The new configuration is invalid or changes keys that need a restart.
    #[error("reload rejected: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ConfigError>),
    /// The event loop did not pick the new configuration up (it is stopping).
    #[error("event loop did not apply the new configuration")]
    NotApplied,
}

impl ReloadError {
    /// Every problem as text.
    pub fn messages(&self) -> Vec<String> {
        match self {
            ReloadError::Invalid(v) => v.iter().map(|e| e.to_string()).collect(),
            e => vec![e.to_string()],
        }
    }
}

fn load_tls(c: &RelayConfig) -> Result<TlsState, Vec<ConfigError>> {
    let (Some(cert), Some(key), false) = (&c.listen.tls_cert, &c.listen.tls_key, {
        c.listen.tls.is_empty() && c.listen.auto.is_empty()
    }) else {
        return Ok((None, None));
    };
    let stamps = FileStamp::of(cert).zip(FileStamp::of(key));
    let cfg = tls_config(cert, key).map_err(|e| {
        vec![ConfigError {
            path: "listen.tls_cert".into(),
            message: e.to_string(),
        }]
    })?;
    Ok((Some(Arc::new(cfg)), stamps))
}

type TlsState = (
    Option<Arc<rustls::ServerConfig>>,
    Option<(FileStamp, FileStamp)>,
);

/// Validates and publishes new configurations (SIGHUP, `POST /admin/reload`,
/// [`crate::server::RelayHandle::reload`]) and picks up replaced certificate files.
pub struct Reloader {
    path: Option<std::path::PathBuf>,
    live: Arc<ArcSwap<Live>>,
    lock: Mutex<()>,
    control: Arc<Control>,
    /// Stamps of certificate files that failed to load (logged once).
    failed_stamp: Mutex<Option<(FileStamp, FileStamp)>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.path)
            .finish()
    }
}

impl Reloader {
    pub(crate) fn new(
        path: Option<std::path::PathBuf>,
        live: Arc<ArcSwap<Live>>,
        control: Arc<Control>,
    ) -> Self {
        Self {
            path,
            live,
            lock: Mutex::new(()),
            control,
            failed_stamp: Mutex::new(None),
        }
    }

    /// The snapshot in force.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Re-reads the configuration file and applies it.
    pub fn reload_file(&self) -> Result<ReloadReport, ReloadError> {
        let path = self.path.as_ref().ok_or(ReloadError::NoFile)?;
        let cfg = RelayConfig::load(path).map_err(|e| ReloadError::Invalid(vec![e]))?;
        self.reload(cfg)
    }

    /// Validates `new` and, if it is good, publishes it and waits until the
    /// event loop runs with it. On any error the running configuration stays.
    pub fn reload(&self, new: RelayConfig) -> Result<ReloadReport, ReloadError> {
        let _g = locked(&self.lock);
        new.validate().map_err(ReloadError::Invalid)?;
        let cur = self.live.load_full();
        let conflicts = cur.config.reload_conflicts(&new);
        if !conflicts.is_empty() {
            return Err(ReloadError::Invalid(conflicts));
        }
        let (tls, tls_stamp) = load_tls(&new).map_err(ReloadError::Invalid)?;
        let mut changed: Vec<String> = cur
            .config
            .reload_changes(&new)
            .into_iter()
            .map(String::from)
            .collect();
        if tls_stamp != cur.tls_stamp && !changed.iter().any(|c| c == "listen.tls_cert") {
            changed.push("tls certificate".into());
        }
        let generation = cur.generation + 1;
        self.live.store(Arc::new(Live {
            generation,
            config: Arc::new(new),
            tls,
            tls_stamp,
        }));
        self.control.wake();
        if !self
            .control
            .wait_applied(generation, Duration::from_secs(10))
        {
            return Err(ReloadError::NotApplied);
        }
        tracing::info!(generation, changed = ?changed, "configuration reloaded");
        Ok(ReloadReport {
            generation,
            changed,
        })
    }

    /// Reloads the TLS certificate if its files were replaced since it was
    /// loaded (called every couple of seconds). A half-written pair fails to
    /// load and is retried on the next call; the old certificate stays.
    /// Returns whether a new certificate was published.
    pub fn poll_certificates(&self) -> bool {
        let _g = locked(&self.lock);
        let cur = self.live.load_full();
        let l = &cur.config.listen;
        let (Some(cert), Some(key), Some(old)) = (&l.tls_cert, &l.tls_key, cur.tls_stamp) else {
            return false;
        };
        let now = FileStamp::of(cert).zip(FileStamp::of(key));
        let mut failed = locked(&self.failed_stamp);
        if now.is_none() || now == Some(old) || now == *failed {
            return false;
        }
        match load_tls(&cur.config) {
            Ok((tls, tls_stamp)) => {
                self.live.store(Arc::new(Live {
                    generation: cur.generation,
                    config: cur.config.clone(),
                    tls,
                    tls_stamp,
                }));
                tracing::info!(cert = %cert.display(), "TLS certificate files changed: reloaded");
                true
            }
            Err(e) => {
                *failed = now;
                tracing::warn!(
                    "TLS certificate files changed but do not load (old certificate kept): {}",
                    e.iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                false
            }
        }
    }
}

/// Loads a rustls server configuration (TLS 1.2 and 1.3 only, ring provider).
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<rustls::ServerConfig, TlsError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(e.to_string()))?;
    // RFC 7443: TURN over TLS announces itself as `stun.turn`, which is what
    // lets it share port 443 with HTTPS behind ALPN-routing middleboxes.
    // Clients that offer no ALPN at all are served too.
    cfg.alpn_protocols = vec![ALPN_TURN.to_vec()];
    Ok(cfg)
}

/// ALPN protocol id of TURN/STUN over TLS (RFC 7443).
pub const ALPN_TURN: &[u8] = b"stun.turn";
