//! One accept-stage thread: its own epoll (mio) over its copies of the
//! stream listeners (`SO_REUSEPORT` when there are several threads) and the
//! connections it is still reading, each with a deadline.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use mio::{Events, Interest, Poll, Token, Waker};

use super::proxy::{self, Parsed};
use super::{route, sniff, Edge, Established, Mode, Reject};
use crate::config::{ProxyProtocol, StreamListener};
use crate::control::Control;
use crate::reload::Live;

const WAKER: Token = Token(usize::MAX);
const PENDING_BASE: usize = 1 << 32;
/// Longest sleep without an event: how soon a stop is seen at the latest.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// A connection not yet established.
struct Pending {
    stream: mio::net::TcpStream,
    remote: SocketAddr,
    slot: IpAddr,
    mode: Mode,
    /// The PROXY header still expected (`Off` once read, or never).
    proxy: ProxyProtocol,
    tls: Option<Box<rustls::ServerConnection>>,
    accepted: Instant,
}

/// What reading a pending connection led to.
enum Step {
    Wait,
    /// Established; the plaintext read so far.
    Done(Vec<u8>),
    Fail(Reject),
}

impl Pending {
    /// Peeks at what has arrived without consuming it: at least one byte,
    /// or the step to take (wait for more, or the client left).
    fn peek(&self, buf: &mut [u8]) -> Result<usize, Step> {
        match self.stream.peek(buf) {
            Ok(0) => Err(Step::Fail(Reject::Closed)),
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Err(Step::Wait)
            }
            Err(_) => Err(Step::Fail(Reject::Closed)),
        }
    }

    /// Reads a PROXY header when one is expected, then the first byte: the
    /// header's client takes the connection's slot (under the per-address
    /// limit) and stands for it from then on.
    fn read_proxy_header(&mut self, live: &Live, edge: &Edge) -> Option<Step> {
        let mut buf = [0u8; proxy::MAX_HEADER];
        let n = match self.peek(&mut buf) {
            Ok(n) => n,
            Err(step) => return Some(step),
        };
        let (len, client) = match proxy::parse(self.proxy, &buf[..n]) {
            Parsed::Incomplete => return Some(Step::Wait),
            Parsed::Malformed => return Some(Step::Fail(Reject::ProxyMalformed)),
            Parsed::Header { len, client } => (len, client),
        };
        // Consume exactly the header: it is in the socket buffer already.
        let mut done = 0;
        while done < len {
            match self.stream.read(&mut buf[done..len]) {
                Ok(0) => return Some(Step::Fail(Reject::Closed)),
                Ok(k) => done += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Some(Step::Fail(Reject::Closed)),
            }
        }
        self.proxy = ProxyProtocol::Off;
        if let Some(c) = client {
            let c = crate::proto::normalize(c);
            let per_ip = live.config.limits.connections_per_ip;
            if let Err(r) = edge.rekey(self.slot, c.ip(), per_ip) {
                return Some(Step::Fail(r));
            }
            self.remote = c;
            self.slot = c.ip();
        }
        None
    }

    /// Reads what the connection has; decides its protocol; drives its TLS
    /// handshake.
    fn advance(&mut self, live: &Live, edge: &Edge) -> Step {
        if self.proxy != ProxyProtocol::Off {
            if let Some(step) = self.read_proxy_header(live, edge) {
                return step;
            }
        }
        if self.tls.is_none() {
            let tls = if self.mode == Mode::Tls {
                true
            } else {
                let mut first = [0u8; 1];
                if let Err(step) = self.peek(&mut first) {
                    return step;
                }
                match route(self.mode, sniff(first[0])) {
                    Some(t) => t,
                    None => {
                        tracing::debug!(remote = %self.remote, first = first[0], "neither TLS nor STUN: closed");
                        return Step::Fail(Reject::UnknownProtocol);
                    }
                }
            };
            if !tls {
                return Step::Done(Vec::new());
            }
            let Some(cfg) = live.tls.clone() else {
                return Step::Fail(Reject::TlsError);
            };
            match rustls::ServerConnection::new(cfg) {
                Ok(s) => self.tls = Some(Box::new(s)),
                Err(_) => return Step::Fail(Reject::TlsError),
            }
        }
        let Some(tls) = self.tls.as_mut() else {
            return Step::Wait;
        };
        loop {
            match tls.read_tls(&mut self.stream) {
                Ok(0) => return Step::Fail(Reject::Closed),
                Ok(_) => {
                    if tls.process_new_packets().is_err() {
                        // Deliver the alert if the socket takes it.
                        let _ = tls.write_tls(&mut self.stream);
                        return Step::Fail(Reject::TlsError);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Fail(Reject::Closed),
            }
        }
        while tls.wants_write() {
            match tls.write_tls(&mut self.stream) {
                Ok(_) => {}
                // The rest goes on the next writable event (or, once
                // established, from the event loop).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Fail(Reject::Closed),
            }
        }
        if tls.is_handshaking() {
            return Step::Wait;
        }
        // Application data that came with the client's Finished.
        let mut inbuf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match tls.reader().read(&mut chunk) {
                Ok(0) => return Step::Fail(Reject::Closed),
                Ok(n) => inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return Step::Fail(Reject::Closed),
            }
        }
        Step::Done(inbuf)
    }

    /// The connection, established, with the plaintext already read.
    fn into_established(self, inbuf: Vec<u8>) -> Established {
        Established {
            stream: self.stream,
            remote: self.remote,
            slot: self.slot,
            tls: self.tls,
            inbuf,
            accepted: self.accepted,
        }
    }
}

/// One accept-stage thread.
pub struct Acceptor {
    poll: Poll,
    listeners: Vec<(mio::net::TcpListener, Mode, StreamListener)>,
    pending: HashMap<usize, Pending>,
    deadlines: BinaryHeap<Reverse<(Instant, usize)>>,
    next_id: usize,
    live: Arc<ArcSwap<Live>>,
    edge: Arc<Edge>,
    control: Arc<Control>,
}

impl Acceptor {
    /// Registers `listeners` (already bound, one copy per thread).
    pub fn new(
        listeners: Vec<(TcpListener, Mode, StreamListener)>,
        live: Arc<ArcSwap<Live>>,
        edge: Arc<Edge>,
        control: Arc<Control>,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        control.add_waker(Arc::new(Waker::new(poll.registry(), WAKER)?));
        let mut out = Vec::with_capacity(listeners.len());
        for (i, (l, mode, spec)) in listeners.into_iter().enumerate() {
            l.set_nonblocking(true)?;
            let mut l = mio::net::TcpListener::from_std(l);
            poll.registry()
                .register(&mut l, Token(i), Interest::READABLE)?;
            out.push((l, mode, spec));
        }
        Ok(Self {
            poll,
            listeners: out,
            pending: HashMap::new(),
            deadlines: BinaryHeap::new(),
            next_id: 0,
            live,
            edge,
            control,
        })
    }

    /// Runs until the relay stops or every event loop has exited.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            let wait = self
                .deadlines
                .peek()
                .map_or(MAX_WAIT, |Reverse((d, _))| d.saturating_duration_since(now))
                .min(MAX_WAIT);
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!("accept stage: poll failed: {e}");
                    break;
                }
            }
            if self.control.stop.load(Relaxed) || self.control.is_finished() {
                break;
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    Token(i) if i < PENDING_BASE => self.accept(i),
                    Token(t) => self.advance(t - PENDING_BASE),
                }
            }
            self.expire(Instant::now());
        }
        for (_, p) in self.pending.drain() {
            self.edge.release(p.slot);
        }
    }

    fn accept(&mut self, i: usize) {
        loop {
            let Some((l, mode, spec)) = self.listeners.get(i) else {
                return;
            };
            let (mode, expect_proxy) = (*mode, spec.proxy_protocol);
            let (stream, remote) = match l.accept() {
                Ok((stream, remote)) => (stream, crate::proto::normalize(remote)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // e.g. EMFILE: back off until the next event.
                    tracing::warn!("accept failed: {e}");
                    return;
                }
            };
            let trusted = spec.trusts(remote.ip());
            let live = self.live.load();
            let lim = &live.config.limits;
            // A balancer's connections count under the client each states,
            // not under the balancer's address.
            let per_ip = if expect_proxy == ProxyProtocol::Off {
                lim.connections_per_ip
            } else if trusted {
                0
            } else {
                tracing::debug!(%remote, "PROXY protocol listener: untrusted source closed");
                self.edge.stats.reject(Reject::ProxyUntrusted);
                continue;
            };
            if let Err(r) = self.edge.open(remote.ip(), lim.max_connections(), per_ip) {
                self.edge.stats.reject(r);
                continue; // dropped: closes the connection
            }
            let _ = stream.set_nodelay(true);
            let id = self.next_id;
            self.next_id += 1;
            let mut p = Pending {
                stream,
                remote,
                slot: remote.ip(),
                mode,
                proxy: expect_proxy,
                tls: None,
                accepted: Instant::now(),
            };
            if self
                .poll
                .registry()
                .register(
                    &mut p.stream,
                    Token(PENDING_BASE + id),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                self.edge.release(p.slot);
                self.edge.stats.reject(Reject::Closed);
                continue;
            }
            let deadline = p.accepted + Duration::from_millis(lim.handshake_timeout_ms);
            self.deadlines.push(Reverse((deadline, id)));
            self.pending.insert(id, p);
            self.edge.stats.handshaking.fetch_add(1, Relaxed);
            // Data may already be waiting (edge-triggered registration).
            self.advance(id);
        }
    }

    fn advance(&mut self, id: usize) {
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        let step = p.advance(&self.live.load(), &self.edge);
        match step {
            Step::Wait => {}
            Step::Done(inbuf) => {
                let Some(p) = self.finish(id, None) else {
                    return;
                };
                let e = p.into_established(inbuf);
                if e.tls.is_some() {
                    self.edge.stats.established_tls.fetch_add(1, Relaxed);
                } else {
                    self.edge.stats.established_tcp.fetch_add(1, Relaxed);
                }
                self.edge.hand_off(e);
            }
            Step::Fail(r) => drop(self.finish(id, Some(r))),
        }
    }

    /// Takes a connection out of the pending set. On `reject` it is closed
    /// (dropped) and its slot released; otherwise it is returned.
    fn finish(&mut self, id: usize, reject: Option<Reject>) -> Option<Pending> {
        let mut p = self.pending.remove(&id)?;
        let _ = self.poll.registry().deregister(&mut p.stream);
        self.edge.stats.handshaking.fetch_sub(1, Relaxed);
        match reject {
            Some(r) => {
                self.edge.release(p.slot);
                self.edge.stats.reject(r);
                None
            }
            None => Some(p),
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(Reverse((d, id))) = self.deadlines.peek().copied() {
            if d > now {
                break;
            }
            self.deadlines.pop();
            if self.pending.contains_key(&id) {
                self.finish(id, Some(Reject::HandshakeTimeout));
            }
        }
    }
}
