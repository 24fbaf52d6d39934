//! Socket shell around the [`crate::proto::Server`] state machine: each of
//! the relay's `[relay] loops` threads runs one epoll loop (mio) over its own
//! UDP listeners (`SO_REUSEPORT`: the kernel's 5-tuple hash keeps a client on
//! one loop), the TCP/TLS connections the accept stage ([`crate::edge`])
//! handed it once established, and the relay sockets of the allocations it
//! created. UDP traffic moves in batches
//! (`recvmmsg`/`sendmmsg`); a loop owns all its state, so the hot path takes
//! no lock, allocates nothing and touches nothing another loop writes.

pub mod batch;
mod conns;
pub mod relay;
pub mod stream;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::{Events, Interest, Poll, Token, Waker};

use crate::control::Control;
use crate::edge::{Edge, Established, Inbox};
use crate::proto::{
    AllocId, ClientId, Clock, Input, Io, RelayError, RelayGranted, RelayRequest, Server, Transport,
};
use batch::Batch;
use relay::RelayPorts;
use stream::Conn;

const WAKER: Token = Token(usize::MAX);
const CONN_BASE: usize = 1 << 40;
const RELAY_BASE: usize = 1 << 41;
/// Connections without an allocation are closed after this long.
const IDLE_CONN: Duration = Duration::from_secs(60);
const TICK: Duration = Duration::from_secs(1);
/// recvmmsg batches read from one UDP socket (a client listener or an
/// allocation's relay socket) before other sockets get a turn, so one
/// flooding client or peer cannot hold a loop.
const UDP_READ_BATCHES: usize = 4;
/// Bytes read from one TCP/TLS connection before other sockets get a turn.
/// Under overload this keeps the lossy side (UDP from peers and clients)
/// drained first; what a stream client sends beyond it waits in the kernel,
/// and TCP flow control pushes back on the client instead of anything being
/// dropped.
const CONN_READ_BUDGET: usize = 16 * 1024;

/// Sockets handed to the loop (already bound).
pub struct Sockets {
    /// UDP listeners.
    pub udp: Vec<UdpSocket>,
    /// Established TCP/TLS connections arrive here.
    pub inbox: Arc<Inbox>,
    /// Admission slots, released when a connection closes.
    pub edge: Arc<Edge>,
    /// The reloadable configuration snapshot (TLS, credentials, limits).
    pub live: Arc<arc_swap::ArcSwap<crate::reload::Live>>,
    /// Nonce key used when the configuration names none (kept across reloads).
    pub random_nonce_key: Vec<u8>,
}

struct RelaySock {
    socket: mio::net::UdpSocket,
    local: SocketAddr,
    /// The loop turn this socket was last read in.
    read_turn: u64,
}

struct UdpListener {
    socket: mio::net::UdpSocket,
    v6: bool,
    queue: Box<Batch>,
    /// The loop turn this listener was last read in.
    read_turn: u64,
}

/// IO state the state machine writes into.
struct IoState {
    poll_registry: mio::Registry,
    udp: Vec<UdpListener>,
    conns: HashMap<u32, Conn>,
    dirty: Vec<u32>,
    /// Connections marked closed, reaped at the end of the loop iteration.
    closing: Vec<u32>,
    relays: HashMap<AllocId, RelaySock>,
    ports: RelayPorts,
    now: Instant,
    stats: Arc<crate::stats::Stats>,
}

impl Io for IoState {
    #[inline]
    fn send_to_client(&mut self, client: &ClientId, data: &[u8]) {
        match client.transport {
            Transport::Udp => {
                let Some(l) = self.udp.get_mut(client.conn as usize) else {
                    return;
                };
                if l.queue.is_full() {
                    l.queue.flush(l.socket.as_raw_fd());
                }
                l.queue.push(client.remote, data, l.v6);
            }
            Transport::Tcp | Transport::Tls => {
                let Some(c) = self.conns.get_mut(&client.conn) else {
                    return;
                };
                if !c.queue(data) {
                    self.stats.tcp_backlog_drops.fetch_add(1, Relaxed);
                } else if !c.dirty {
                    c.dirty = true;
                    self.dirty.push(client.conn);
                }
                if c.closed {
                    self.closing.push(client.conn);
                }
            }
        }
    }

    #[inline]
    fn send_to_peer(&mut self, alloc: AllocId, peer: SocketAddr, data: &[u8]) {
        if let Some(r) = self.relays.get(&alloc) {
            // Best effort, like any UDP send; errors (e.g. ICMP-refused) are ignored.
            let _ = r.socket.send_to(data, peer);
        }
    }

    fn open_relay(
        &mut self,
        alloc: AllocId,
        req: &RelayRequest,
    ) -> Result<RelayGranted, RelayError> {
        let (sock, granted) = self.ports.open(req, self.now)?;
        let mut socket = mio::net::UdpSocket::from_std(sock);
        if self
            .poll_registry
            .register(
                &mut socket,
                Token(RELAY_BASE + alloc as usize),
                Interest::READABLE,
            )
            .is_err()
        {
            self.ports.release(granted.local);
            return Err(RelayError::NoPorts);
        }
        self.relays.insert(
            alloc,
            RelaySock {
                socket,
                local: granted.local,
                read_turn: 0,
            },
        );
        Ok(granted)
    }

    fn close_relay(&mut self, alloc: AllocId) {
        if let Some(mut r) = self.relays.remove(&alloc) {
            let _ = self.poll_registry.deregister(&mut r.socket);
            self.ports.release(r.local);
        }
    }
}

impl IoState {
    fn flush(&mut self) {
        for l in &mut self.udp {
            if !l.queue.is_empty() {
                l.queue.flush(l.socket.as_raw_fd());
            }
        }
        for id in std::mem::take(&mut self.dirty) {
            if let Some(c) = self.conns.get_mut(&id) {
                c.dirty = false;
                c.flush();
                if c.closed {
                    self.closing.push(id);
                }
            }
        }
    }
}

/// The event loop.
pub struct EventLoop {
    poll: Poll,
    server: Server,
    io: IoState,
    inbox: Arc<Inbox>,
    /// Connections taken from the inbox this turn (kept for its capacity).
    arrivals: Vec<Established>,
    edge: Arc<Edge>,
    live: Arc<arc_swap::ArcSwap<crate::reload::Live>>,
    /// Configuration generation applied to `server`.
    applied: u64,
    random_nonce_key: Vec<u8>,
    rx: Box<Batch>,
    /// Scratch buffer every TCP/TLS read goes through.
    read_chunk: Box<[u8; stream::READ_CHUNK]>,
    pending_udp: Vec<usize>,
    /// Relay sockets stopped by [`UDP_READ_BATCHES`] with data left to read.
    pending_relays: Vec<AllocId>,
    /// Connections stopped by [`CONN_READ_BUDGET`] with data left to read.
    pending_conns: Vec<u32>,
    /// Loop turns so far; a connection records the turn it was last read in.
    turn: u64,
    next_conn: u32,
    control: Arc<Control>,
    drain_timeout: Duration,
    /// This loop's index among the relay's loops.
    index: usize,
}

fn clock() -> Clock {
    Clock {
        mono: Instant::now(),
        unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    }
}

impl EventLoop {
    /// Builds the loop; registers all listeners and creates the control waker.
    pub fn new(
        index: usize,
        sockets: Sockets,
        server: Server,
        ports: RelayPorts,
        control: Arc<Control>,
        drain_timeout: Duration,
    ) -> std::io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        control.add_waker(waker.clone());
        sockets.inbox.set_waker(waker);
        let registry = poll.registry().try_clone()?;
        let mut udp = Vec::new();
        for (i, s) in sockets.udp.into_iter().enumerate() {
            s.set_nonblocking(true)?;
            let v6 = s.local_addr()?.is_ipv6();
            let mut socket = mio::net::UdpSocket::from_std(s);
            registry.register(&mut socket, Token(i), Interest::READABLE)?;
            udp.push(UdpListener {
                socket,
                v6,
                queue: Batch::new_send(),
                read_turn: 0,
            });
        }
        Ok(Self {
            poll,
            server,
            io: IoState {
                poll_registry: registry,
                udp,
                conns: HashMap::new(),
                dirty: Vec::new(),
                closing: Vec::new(),
                relays: HashMap::new(),
                ports,
                now: Instant::now(),
                stats: control.shard(index).clone(),
            },
            inbox: sockets.inbox,
            arrivals: Vec::new(),
            edge: sockets.edge,
            applied: sockets.live.load().generation,
            live: sockets.live,
            random_nonce_key: sockets.random_nonce_key,
            rx: Batch::new(),
            read_chunk: Box::new([0; stream::READ_CHUNK]),
            pending_udp: Vec::new(),
            pending_relays: Vec::new(),
            pending_conns: Vec::new(),
            turn: 0,
            next_conn: 1,
            control,
            drain_timeout,
            index,
        })
    }

    /// Runs until stopped, or until a drain completes or times out.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now();
        let mut drain_deadline: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let idle = self.pending_udp.is_empty()
                && self.pending_relays.is_empty()
                && self.pending_conns.is_empty();
            let timeout = if idle {
                next_tick.saturating_duration_since(now)
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!("poll failed: {e}");
                    break;
                }
            }
            self.io.now = Instant::now();
            self.apply_reload();
            self.adopt_arrivals();
            // Listeners left with data last turn get their next share after
            // this turn's events.
            let pending = std::mem::take(&mut self.pending_udp);
            let pending_relays = std::mem::take(&mut self.pending_relays);
            let pending_conns = std::mem::take(&mut self.pending_conns);
            self.turn += 1;
            for ev in events.iter() {
                let t = ev.token();
                match t.0 {
                    _ if t == WAKER => {}
                    i if i < CONN_BASE => self.udp_readable(i),
                    i if i < RELAY_BASE => self.conn_event(
                        (i - CONN_BASE) as u32,
                        ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                        ev.is_writable(),
                    ),
                    i => self.relay_readable((i - RELAY_BASE) as AllocId),
                }
            }
            for i in pending {
                // Skip listeners an event already read this turn.
                if self.io.udp.get(i).is_some_and(|l| l.read_turn != self.turn) {
                    self.udp_readable(i);
                }
            }
            for alloc in pending_relays {
                // Skip sockets an event already read this turn (and sockets
                // whose allocation ended meanwhile).
                if self
                    .io
                    .relays
                    .get(&alloc)
                    .is_some_and(|r| r.read_turn != self.turn)
                {
                    self.relay_readable(alloc);
                }
            }
            for id in pending_conns {
                // Skip connections an event already read this turn.
                if self
                    .io
                    .conns
                    .get(&id)
                    .is_some_and(|c| c.read_turn != self.turn)
                {
                    self.conn_event(id, true, false);
                }
            }
            self.io.flush();
            self.reap_closed();
            if self.control.stop.load(Relaxed) {
                break;
            }
            if drain_deadline.is_none() && self.control.draining.load(Relaxed) {
                tracing::info!(
                    allocations = self.server.allocations(),
                    "draining: refusing new allocations"
                );
                self.server.set_draining(true);
                drain_deadline = Some(Instant::now() + self.drain_timeout);
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + TICK;
                self.server.handle(Input::Tick, clock(), &mut self.io);
                self.io.ports.sweep(now);
                self.close_idle(now);
                self.io.flush();
                self.reap_closed();
                self.control.heartbeat(self.index);
                if let Some(d) = drain_deadline {
                    if self.server.allocations() == 0 {
                        tracing::info!("drain complete: no allocations left");
                        break;
                    }
                    if now >= d {
                        tracing::info!(
                            allocations = self.server.allocations(),
                            "drain timeout reached"
                        );
                        break;
                    }
                }
            }
        }
        self.control.finished(self.index);
    }

    /// Applies a configuration published since the last turn (one atomic
    /// load per turn, nothing per packet). Allocations are untouched.
    fn apply_reload(&mut self) {
        let live = self.live.load();
        if live.generation == self.applied {
            return;
        }
        let c = &live.config;
        let key = c
            .auth
            .nonce_key
            .as_deref()
            .map(str::as_bytes)
            .unwrap_or(&self.random_nonce_key);
        self.server.reconfigure(c, key, self.io.now);
        self.applied = live.generation;
        self.control.applied(self.index, live.generation);
    }

    /// Reads a UDP listener, at most [`UDP_READ_BATCHES`] batches per turn so
    /// that relay sockets (the peer → client direction) are not starved under
    /// overload. A listener that may still hold data is revisited on the next
    /// loop turn (readiness is edge-triggered, so it would not be reported again).
    fn udp_readable(&mut self, i: usize) {
        let Some(l) = self.io.udp.get_mut(i) else {
            return;
        };
        l.read_turn = self.turn;
        let fd = l.socket.as_raw_fd();
        for _ in 0..UDP_READ_BATCHES {
            let n = match self.rx.recv(fd) {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!("udp receive error: {e}");
                    return;
                }
            };
            if n == 0 {
                return;
            }
            let now = clock();
            self.io.now = now.mono;
            for k in 0..n {
                if let Some((from, data)) = self.rx.get(k) {
                    let client = ClientId {
                        transport: Transport::Udp,
                        conn: i as u32,
                        remote: crate::proto::normalize(from),
                    };
                    self.server
                        .handle(Input::FromClient { client, data }, now, &mut self.io);
                }
            }
            if n < batch::BATCH {
                return;
            }
        }
        // Read at most once a turn, so queued at most once.
        self.pending_udp.push(i);
    }

    /// Reads an allocation's relay socket (the peer → client direction)
    /// under the same budget as a listener: at most [`UDP_READ_BATCHES`]
    /// batches per turn, the rest on the next turn after that turn's events.
    fn relay_readable(&mut self, alloc: AllocId) {
        for _ in 0..UDP_READ_BATCHES {
            let Some(r) = self.io.relays.get_mut(&alloc) else {
                return;
            };
            r.read_turn = self.turn;
            let n = match self.rx.recv(r.socket.as_raw_fd()) {
                Ok(n) => n,
                Err(_) => return,
            };
            if n == 0 {
                return;
            }
            let now = clock();
            for k in 0..n {
                if let Some((peer, data)) = self.rx.get(k) {
                    self.server
                        .handle(Input::FromPeer { alloc, peer, data }, now, &mut self.io);
                }
            }
            if n < batch::BATCH {
                return;
            }
        }
        self.pending_relays.push(alloc);
    }
}
