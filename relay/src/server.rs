//! Wiring: binds the sockets, builds the state machine, starts the event-loop
//! thread and the HTTP thread, and exposes drain/stop controls.

use std::future::Future;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};

use crate::auth::Authenticator;
use crate::config::{ConfigError, RelayConfig};
use crate::io::relay::RelayPorts;
use crate::io::{EventLoop, Sockets};
use crate::limits::{locked, Quotas, UnauthorizedLimiter};
use crate::policy::PeerPolicy;
use crate::proto::{LoopShared, ProtoConfig, Server};
use crate::stats::Stats;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Invalid configuration (every problem listed).
    #[error("invalid configuration: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Config(Vec<ConfigError>),
    /// A socket could not be bound.
    #[error("cannot bind {what} {addr}: {source}")]
    Bind {
        /// Listener kind.
        what: &'static str,
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// TLS certificate or key problem.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// Other IO failure while starting.
    #[error("startup: {0}")]
    Io(#[from] std::io::Error),
}

/// Drain/stop flags shared by the event loops, HTTP handlers and signal
/// handlers. Each loop has an index; what the loops report (applied
/// configuration, exit, statistics) is kept per loop.
#[derive(Debug)]
pub struct Control {
    /// Set to start draining.
    pub draining: AtomicBool,
    /// Set to stop at once.
    pub stop: AtomicBool,
    wakers: Mutex<Vec<mio::Waker>>,
    /// Loops that have exited.
    done: Mutex<usize>,
    done_cv: Condvar,
    /// Configuration generation each loop has applied.
    applied: Mutex<Vec<u64>>,
    applied_cv: Condvar,
    /// One statistics shard per loop (each written by its loop only).
    shards: Vec<Arc<Stats>>,
}

impl Control {
    fn new(loops: usize) -> Self {
        Self {
            draining: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            wakers: Mutex::new(Vec::new()),
            done: Mutex::new(0),
            done_cv: Condvar::new(),
            applied: Mutex::new(vec![0; loops]),
            applied_cv: Condvar::new(),
            shards: (0..loops).map(|_| Arc::new(Stats::default())).collect(),
        }
    }

    pub(crate) fn add_waker(&self, w: mio::Waker) {
        locked(&self.wakers).push(w);
    }

    /// Called by event loop `i` once it runs with configuration `generation`.
    pub(crate) fn applied(&self, i: usize, generation: u64) {
        let mut a = locked(&self.applied);
        if let Some(g) = a.get_mut(i) {
            *g = generation;
        }
        self.applied_cv.notify_all();
    }

    /// Waits until every event loop applied `generation` (or one exited, or `timeout`).
    fn wait_applied(&self, generation: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut a = locked(&self.applied);
        while a.iter().any(|g| *g < generation) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.shards.iter().any(|s| s.stopped.load(Relaxed)) {
                return false;
            }
            a = self
                .applied_cv
                .wait_timeout(a, left.min(Duration::from_millis(200)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    pub(crate) fn wake(&self) {
        for w in locked(&self.wakers).iter() {
            let _ = w.wake();
        }
    }

    /// Starts a graceful drain (every loop).
    pub fn drain(&self) {
        self.draining.store(true, Relaxed);
        for s in &self.shards {
            s.draining.store(true, Relaxed);
        }
        self.wake();
    }

    /// Stops immediately (every loop).
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
        self.wake();
    }

    /// Loop `i`'s statistics shard.
    pub(crate) fn shard(&self, i: usize) -> &Arc<Stats> {
        &self.shards[i]
    }

    /// The relay's statistics: the sum over every loop.
    pub fn stats(&self) -> Stats {
        Stats::sum(&self.shards)
    }

    /// Active allocations of each loop, by loop index.
    pub fn loop_allocations(&self) -> Vec<u64> {
        self.shards
            .iter()
            .map(|s| s.allocations.load(Relaxed))
            .collect()
    }

    pub(crate) fn heartbeat(&self, i: usize) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.shards[i].last_tick_unix.store(now, Relaxed);
    }

    /// Called by event loop `i` when it exits.
    pub(crate) fn finished(&self, i: usize) {
        self.shards[i].stopped.store(true, Relaxed);
        let mut d = locked(&self.done);
        *d += 1;
        self.done_cv.notify_all();
    }

    /// Whether every event loop has exited.
    pub fn is_finished(&self) -> bool {
        *locked(&self.done) >= self.shards.len()
    }

    /// Blocks until every event loop exits or `timeout` passes; returns whether they did.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut d = locked(&self.done);
        while *d < self.shards.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            d = self
                .done_cv
                .wait_timeout(d, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

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
        c.listen.tls.is_empty()
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
/// [`RelayHandle::reload`]) and picks up replaced certificate files.
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

/// A running relay.
pub struct RelayHandle {
    /// Bound UDP listener addresses.
    pub udp: Vec<SocketAddr>,
    /// Bound TCP listener addresses.
    pub tcp: Vec<SocketAddr>,
    /// Bound TLS listener addresses.
    pub tls: Vec<SocketAddr>,
    /// Bound HTTP address.
    pub http: SocketAddr,
    control: Arc<Control>,
    reloader: Arc<Reloader>,
    /// The event-loop threads (empty once joined).
    cores: Vec<JoinHandle<()>>,
    http_thread: Option<JoinHandle<()>>,
    http_stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHandle")
            .field("udp", &self.udp)
            .field("tcp", &self.tcp)
            .field("tls", &self.tls)
            .field("http", &self.http)
            .finish()
    }
}

impl RelayHandle {
    /// Controls (drain/stop).
    pub fn control(&self) -> Arc<Control> {
        self.control.clone()
    }

    /// Starts a graceful drain.
    pub fn drain(&self) {
        self.control.drain();
    }

    /// The reloader (SIGHUP handler, admin API).
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    /// Applies a new configuration without dropping allocations.
    pub fn reload(&self, config: RelayConfig) -> Result<ReloadReport, ReloadError> {
        self.reloader.reload(config)
    }

    /// The relay's statistics (every loop summed).
    pub fn stats(&self) -> Stats {
        self.control.stats()
    }

    /// Waits for every event loop to exit (after drain or stop), then stops HTTP.
    pub fn wait(mut self) {
        for c in std::mem::take(&mut self.cores) {
            let _ = c.join();
        }
        self.shutdown_http();
    }

    /// Stops at once and waits.
    pub fn stop(self) {
        self.control.stop();
        self.wait();
    }

    fn shutdown_http(&mut self) {
        if let Some(tx) = self.http_stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.http_thread.take() {
            let _ = h.join();
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        if !self.cores.is_empty() {
            self.control.stop();
            for c in std::mem::take(&mut self.cores) {
                let _ = c.join();
            }
        }
        self.shutdown_http();
    }
}

/// Binds `addr` once per loop. One loop: one plain socket (a second relay on
/// the same address fails to start). Several: the address is first bound
/// exclusively and released — proving no other socket holds it, and fixing
/// the port when `addr` asks for port 0 — then every loop's socket is bound
/// to that port with `SO_REUSEPORT`, so the kernel spreads clients over the
/// loops by their 5-tuple hash.
fn bind_group<S>(
    addr: SocketAddr,
    loops: usize,
    bind: impl Fn(SocketAddr, bool) -> Result<S, StartError>,
) -> Result<Vec<S>, StartError>
where
    S: AsLocalAddr,
{
    if loops <= 1 {
        return Ok(vec![bind(addr, false)?]);
    }
    let probe = bind(addr, false)?;
    let actual = probe.local_addr_of()?;
    drop(probe);
    (0..loops).map(|_| bind(actual, true)).collect()
}

/// The address each listener group is bound to (all of a group share it).
fn group_addrs<S: AsLocalAddr>(groups: &[Vec<S>]) -> std::io::Result<Vec<SocketAddr>> {
    groups.iter().map(|g| g[0].local_addr_of()).collect()
}

/// The bound address of a listener (UDP or TCP).
trait AsLocalAddr {
    fn local_addr_of(&self) -> std::io::Result<SocketAddr>;
}
impl AsLocalAddr for UdpSocket {
    fn local_addr_of(&self) -> std::io::Result<SocketAddr> {
        self.local_addr()
    }
}
impl AsLocalAddr for TcpListener {
    fn local_addr_of(&self) -> std::io::Result<SocketAddr> {
        self.local_addr()
    }
}

fn bind_udp(addr: SocketAddr, reuse_port: bool) -> Result<UdpSocket, StartError> {
    let b = |source| StartError::Bind {
        what: "udp",
        addr,
        source,
    };
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(b)?;
    if addr.is_ipv6() {
        s.set_only_v6(true).map_err(b)?;
    }
    // Large buffers absorb bursts; the kernel caps them at rmem_max/wmem_max.
    let _ = s.set_recv_buffer_size(8 << 20);
    let _ = s.set_send_buffer_size(8 << 20);
    if reuse_port {
        s.set_reuse_port(true).map_err(b)?;
    }
    s.set_nonblocking(true).map_err(b)?;
    s.bind(&addr.into()).map_err(b)?;
    Ok(s.into())
}

fn bind_tcp(
    addr: SocketAddr,
    what: &'static str,
    reuse_port: bool,
) -> Result<TcpListener, StartError> {
    let b = |source| StartError::Bind { what, addr, source };
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(b)?;
    if addr.is_ipv6() {
        s.set_only_v6(true).map_err(b)?;
    }
    s.set_reuse_address(true).map_err(b)?;
    if reuse_port {
        s.set_reuse_port(true).map_err(b)?;
    }
    s.set_nonblocking(true).map_err(b)?;
    s.bind(&addr.into()).map_err(b)?;
    s.listen(1024).map_err(b)?;
    Ok(s.into())
}

/// Loads a rustls server configuration (TLS 1.2 and 1.3 only, ring provider).
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<rustls::ServerConfig, StartError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| StartError::Tls(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| StartError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(StartError::Tls(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| StartError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    // RFC 7443: TURN over TLS announces itself as `stun.turn`, which is what
    // lets it share port 443 with HTTPS behind ALPN-routing middleboxes.
    // Clients that offer no ALPN at all are served too.
    cfg.alpn_protocols = vec![ALPN_TURN.to_vec()];
    Ok(cfg)
}

/// ALPN protocol id of TURN/STUN over TLS (RFC 7443).
pub const ALPN_TURN: &[u8] = b"stun.turn";

fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Validates the configuration, binds every socket and starts the relay.
/// Returns once it is serving, with the bound addresses.
pub fn start(config: RelayConfig) -> Result<RelayHandle, StartError> {
    start_inner(config, None)
}

/// Like [`start`], reading `path`, which SIGHUP and `POST /admin/reload`
/// re-read later.
pub fn start_file(path: &std::path::Path) -> Result<RelayHandle, StartError> {
    let config = RelayConfig::load(path).map_err(|e| StartError::Config(vec![e]))?;
    start_inner(config, Some(path.to_path_buf()))
}

fn start_inner(
    config: RelayConfig,
    path: Option<std::path::PathBuf>,
) -> Result<RelayHandle, StartError> {
    config.validate().map_err(StartError::Config)?;
    raise_fd_limit();
    let loops = config.loops();
    // Per listener, one socket per loop (index [listener][loop]).
    let udp: Vec<Vec<UdpSocket>> = config
        .listen
        .udp
        .iter()
        .map(|a| bind_group(*a, loops, bind_udp))
        .collect::<Result<_, _>>()?;
    let tcp: Vec<Vec<TcpListener>> = config
        .listen
        .tcp
        .iter()
        .map(|a| bind_group(*a, loops, |a, r| bind_tcp(a, "tcp", r)))
        .collect::<Result<_, _>>()?;
    let tls: Vec<Vec<TcpListener>> = config
        .listen
        .tls
        .iter()
        .map(|a| bind_group(*a, loops, |a, r| bind_tcp(a, "tls", r)))
        .collect::<Result<_, _>>()?;
    let (tls_config, tls_stamp) = load_tls(&config).map_err(StartError::Config)?;
    let http =
        std::net::TcpListener::bind(config.listen.http).map_err(|source| StartError::Bind {
            what: "http",
            addr: config.listen.http,
            source,
        })?;
    http.set_nonblocking(true)?;
    let udp_addrs = group_addrs(&udp)?;
    let tcp_addrs = group_addrs(&tcp)?;
    let tls_addrs = group_addrs(&tls)?;
    let http_addr = http.local_addr()?;

    let control = Arc::new(Control::new(loops));
    for i in 0..loops {
        control.heartbeat(i);
    }
    // A random nonce key is kept for the life of the process, so reloads
    // leave outstanding nonces valid.
    let mut random_nonce_key = vec![0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random_nonce_key)
        .map_err(|_| std::io::Error::other("system RNG unavailable"))?;
    let lim = &config.limits;
    // One set of allocation counters and reservations for every loop
    // (locked on allocate, release and reservation only).
    let shared = LoopShared::new(Quotas::new(
        lim.allocations_per_user,
        lim.allocations_per_ip,
        lim.capacity,
    ));
    // One port map for every loop (locked when a relay socket is opened or
    // closed): a reserved port may be claimed by another loop.
    let ports = RelayPorts::new(
        config.relay_ipv4(),
        config.relay_ipv6(),
        config.relay.port_min,
        config.relay.port_max,
    );
    let live = Arc::new(ArcSwap::from_pointee(Live {
        generation: 1,
        config: Arc::new(config.clone()),
        tls: tls_config,
        tls_stamp,
    }));
    for i in 0..loops {
        control.applied(i, 1);
    }
    let reloader = Arc::new(Reloader {
        path,
        live: live.clone(),
        lock: Mutex::new(()),
        control: control.clone(),
        failed_stamp: Mutex::new(None),
    });
    let max_conns = (lim.capacity as usize).saturating_mul(2).max(1024);
    let drain_timeout = Duration::from_secs(config.operations.drain_timeout);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut udp: Vec<std::vec::IntoIter<UdpSocket>> = udp.into_iter().map(Vec::into_iter).collect();
    let mut tcp: Vec<std::vec::IntoIter<TcpListener>> =
        tcp.into_iter().map(Vec::into_iter).collect();
    let mut tls: Vec<std::vec::IntoIter<TcpListener>> =
        tls.into_iter().map(Vec::into_iter).collect();
    let mut cores = Vec::with_capacity(loops);
    for i in 0..loops {
        let auth = Authenticator::new(
            &config.realm,
            config.auth.users.clone(),
            &config.auth.secrets,
            Some(
                config
                    .auth
                    .nonce_key
                    .as_deref()
                    .map(str::as_bytes)
                    .unwrap_or(&random_nonce_key),
            ),
            config.auth.nonce_ttl,
        );
        let now = Instant::now();
        let server = Server::new(
            ProtoConfig::from_config(&config),
            auth,
            PeerPolicy::new(&config.peer_policy),
            Quotas::default(),
            UnauthorizedLimiter::new(lim.unauthorized_per_ip),
            control.shard(i).clone(),
            now,
        )
        .into_loop(loops as u32, &shared, &config, now);
        let ports = ports.clone();
        let sockets = Sockets {
            udp: udp.iter_mut().filter_map(Iterator::next).collect(),
            tcp: tcp.iter_mut().filter_map(Iterator::next).collect(),
            tls: tls.iter_mut().filter_map(Iterator::next).collect(),
            live: live.clone(),
            random_nonce_key: random_nonce_key.clone(),
        };
        let ctl = control.clone();
        let ready_tx = ready_tx.clone();
        let core = std::thread::Builder::new()
            .name(format!("relay-loop-{i}"))
            .spawn(move || {
                match EventLoop::new(
                    i,
                    sockets,
                    server,
                    ports,
                    ctl.clone(),
                    max_conns,
                    drain_timeout,
                ) {
                    Ok(l) => {
                        let _ = ready_tx.send(Ok(()));
                        l.run();
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        ctl.finished(i);
                    }
                }
            })?;
        cores.push(core);
    }
    drop(ready_tx);
    for _ in 0..loops {
        if let Err(e) = ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("event loop thread died"))
            .and_then(|r| r)
        {
            control.stop();
            for c in cores {
                let _ = c.join();
            }
            return Err(e.into());
        }
    }

    let (http_stop, http_rx) = tokio::sync::oneshot::channel();
    let state = crate::http::HttpState::new(control.clone(), reloader.clone());
    let poller = reloader.clone();
    let http_thread = std::thread::Builder::new()
        .name("relay-http".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("http runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                // Replaced certificate files are picked up within two seconds.
                tokio::spawn(async move {
                    let mut every = tokio::time::interval(Duration::from_secs(2));
                    loop {
                        every.tick().await;
                        let p = poller.clone();
                        let _ = tokio::task::spawn_blocking(move || p.poll_certificates()).await;
                    }
                });
                if let Err(e) = crate::http::serve(http, state, http_rx).await {
                    tracing::error!("http server: {e}");
                }
            });
        })?;
    tracing::info!(
        udp = ?udp_addrs, tcp = ?tcp_addrs, tls = ?tls_addrs, http = %http_addr,
        region = %config.region, loops, "relay started"
    );
    Ok(RelayHandle {
        udp: udp_addrs,
        tcp: tcp_addrs,
        tls: tls_addrs,
        http: http_addr,
        control,
        reloader,
        cores,
        http_thread: Some(http_thread),
        http_stop: Some(http_stop),
    })
}

/// Runs the relay until `shutdown` resolves, then drains gracefully (new
/// allocations refused, existing ones relayed until they end or the drain
/// timeout) and returns. `POST /admin/drain` also ends it this way.
pub async fn run(
    config: RelayConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let handle = start(config)?;
    let control = handle.control();
    tokio::pin!(shutdown);
    let waiter = {
        let c = control.clone();
        tokio::task::spawn_blocking(move || while !c.wait_timeout(Duration::from_secs(3600)) {})
    };
    tokio::select! {
        _ = &mut shutdown => {
            tracing::info!("shutdown requested: draining");
            control.drain();
        }
        _ = async { while !control.is_finished() { tokio::time::sleep(Duration::from_millis(200)).await } } => {}
    }
    let _ = waiter.await;
    tokio::task::spawn_blocking(move || handle.wait())
        .await
        .map_err(|e| StartError::Io(std::io::Error::other(e.to_string())))?;
    Ok(())
}
