//! Wiring: binds the sockets, builds the state machine, starts the event-loop
//! thread and the HTTP thread, and exposes drain/stop controls.

use std::future::Future;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};

use crate::auth::Authenticator;
use crate::config::{ConfigError, RelayConfig, StreamListener};
use crate::control::Control;
use crate::edge::{Acceptor, Edge, Mode};
use crate::io::relay::RelayPorts;
use crate::io::{EventLoop, Sockets};
use crate::limits::{Quotas, UnauthorizedLimiter};
use crate::policy::PeerPolicy;
use crate::proto::{LoopShared, ProtoConfig, Server};
use crate::reload::{Live, ReloadError, ReloadReport, Reloader};
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
    /// Other IO failure while starting.
    #[error("startup: {0}")]
    Io(#[from] std::io::Error),
}

/// A running relay.
pub struct RelayHandle {
    /// Bound UDP listener addresses.
    pub udp: Vec<SocketAddr>,
    /// Bound TCP listener addresses.
    pub tcp: Vec<SocketAddr>,
    /// Bound TLS listener addresses.
    pub tls: Vec<SocketAddr>,
    /// Bound auto (TLS or plain TCP on one port) listener addresses.
    pub auto: Vec<SocketAddr>,
    /// Bound HTTP address.
    pub http: SocketAddr,
    control: Arc<Control>,
    reloader: Arc<Reloader>,
    /// The event-loop and accept-stage threads (empty once joined).
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
            .field("auto", &self.auto)
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
    // Stream listeners: one socket per accept-stage thread.
    let threads = config.relay.handshake_threads;
    let stream_groups = |listeners: &[StreamListener], what: &'static str| {
        listeners
            .iter()
            .map(|l| bind_group(l.address, threads, |a, r| bind_tcp(a, what, r)))
            .collect::<Result<Vec<Vec<TcpListener>>, _>>()
    };
    let tcp = stream_groups(&config.listen.tcp, "tcp")?;
    let tls = stream_groups(&config.listen.tls, "tls")?;
    let auto = stream_groups(&config.listen.auto, "auto")?;
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
    let auto_addrs = group_addrs(&auto)?;
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
    let live = Arc::new(ArcSwap::from_pointee(
        Live::first(config.clone()).map_err(StartError::Config)?,
    ));
    for i in 0..loops {
        control.applied(i, 1);
    }
    let reloader = Arc::new(Reloader::new(path, live.clone(), control.clone()));
    let edge = Arc::new(Edge::new(loops));
    let drain_timeout = Duration::from_secs(config.operations.drain_timeout);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut udp: Vec<std::vec::IntoIter<UdpSocket>> = udp.into_iter().map(Vec::into_iter).collect();
    let mut cores = Vec::with_capacity(loops + threads);
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
            inbox: edge.inbox(i),
            edge: edge.clone(),
            live: live.clone(),
            random_nonce_key: random_nonce_key.clone(),
        };
        let ctl = control.clone();
        let ready_tx = ready_tx.clone();
        let core = std::thread::Builder::new()
            .name(format!("relay-loop-{i}"))
            .spawn(move || {
                match EventLoop::new(i, sockets, server, ports, ctl.clone(), drain_timeout) {
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
    // The accept stage starts once every loop can take connections.
    // Sockets in the order of `streams()`: tcp, tls, auto.
    let mut groups: Vec<(std::vec::IntoIter<TcpListener>, (&StreamListener, Mode))> = tcp
        .into_iter()
        .chain(tls)
        .chain(auto)
        .map(Vec::into_iter)
        .zip(config.listen.streams())
        .collect();
    for t in 0..threads {
        let listeners = groups
            .iter_mut()
            .filter_map(|(it, (spec, mode))| it.next().map(|l| (l, *mode, (*spec).clone())))
            .collect();
        let started = Acceptor::new(listeners, live.clone(), edge.clone(), control.clone())
            .and_then(|a| {
                std::thread::Builder::new()
                    .name(format!("relay-accept-{t}"))
                    .spawn(move || a.run())
            });
        match started {
            Ok(h) => cores.push(h),
            Err(e) => {
                control.stop();
                for c in cores {
                    let _ = c.join();
                }
                return Err(e.into());
            }
        }
    }

    let (http_stop, http_rx) = tokio::sync::oneshot::channel();
    let state = crate::http::HttpState::new(control.clone(), reloader.clone(), edge);
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
        udp = ?udp_addrs, tcp = ?tcp_addrs, tls = ?tls_addrs, auto = ?auto_addrs, http = %http_addr,
        region = %config.region, loops, "relay started"
    );
    Ok(RelayHandle {
        udp: udp_addrs,
        tcp: tcp_addrs,
        tls: tls_addrs,
        auto: auto_addrs,
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
