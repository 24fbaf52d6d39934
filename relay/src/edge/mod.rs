//! The accept stage: TCP, TLS and auto (TLS or plain on one port)
//! listeners, owned by `[relay] handshake_threads` threads of their own so
//! that nothing a new connection does — staying silent, trickling a
//! ClientHello, costing a TLS handshake — runs on a packet loop.
//!
//! A connection is admitted against `limits.max_connections` and
//! `limits.connections_per_ip` ([`table`]), then read until its protocol is
//! known (its first byte, [`sniff`]) and, for TLS, its handshake is complete,
//! all within `limits.handshake_timeout_ms`. Only then is it handed, with any
//! bytes already read, to an event loop ([`Inbox`]), which owns it until it
//! closes and then releases its slot ([`Edge::release`]).

mod accept;
pub mod proxy;
pub mod table;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

pub use accept::Acceptor;
use table::{ConnTable, Refused};

pub use crate::config::Mode;
use crate::limits::locked;

/// What a connection's first byte says it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// A TLS record (content type 22, handshake).
    Tls,
    /// A STUN message: its first two bits are zero (RFC 8489 §5).
    Stun,
    /// Neither (ChannelData cannot open a connection: it needs a channel).
    Unknown,
}

/// Classifies a connection by its first byte.
pub fn sniff(first: u8) -> Sniffed {
    if first == 0x16 {
        Sniffed::Tls
    } else if first & 0xc0 == 0 {
        Sniffed::Stun
    } else {
        Sniffed::Unknown
    }
}

/// What a listener in `mode` does with a connection whose first byte says
/// `s`: `Some(true)` TLS, `Some(false)` plain, `None` close it.
pub fn route(mode: Mode, s: Sniffed) -> Option<bool> {
    match (mode, s) {
        (Mode::Tls, _) => Some(true),
        (Mode::Auto, Sniffed::Tls) => Some(true),
        (Mode::Tcp | Mode::Auto, Sniffed::Stun) => Some(false),
        _ => None,
    }
}

/// Why the accept stage closed a connection (label of
/// `turn_connections_rejected_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Reject {
    /// `limits.max_connections` reached.
    Limit = 0,
    /// `limits.connections_per_ip` reached.
    LimitPerIp,
    /// No protocol shown or handshake not done within the deadline.
    HandshakeTimeout,
    /// The TLS handshake failed.
    TlsError,
    /// The first byte is neither TLS nor STUN (for this listener).
    UnknownProtocol,
    /// The client closed (or reset) before the connection was established.
    Closed,
    /// A PROXY protocol listener got a connection from an untrusted source.
    ProxyUntrusted,
    /// The PROXY protocol header was missing or malformed.
    ProxyMalformed,
}

impl Reject {
    /// All reasons, in index order.
    pub const ALL: [Reject; 8] = [
        Reject::Limit,
        Reject::LimitPerIp,
        Reject::HandshakeTimeout,
        Reject::TlsError,
        Reject::UnknownProtocol,
        Reject::Closed,
        Reject::ProxyUntrusted,
        Reject::ProxyMalformed,
    ];

    /// Metric label value.
    pub fn label(self) -> &'static str {
        match self {
            Reject::Limit => "limit",
            Reject::LimitPerIp => "limit_per_ip",
            Reject::HandshakeTimeout => "handshake_timeout",
            Reject::TlsError => "tls_error",
            Reject::UnknownProtocol => "unknown_protocol",
            Reject::Closed => "closed",
            Reject::ProxyUntrusted => "proxy_untrusted",
            Reject::ProxyMalformed => "proxy_malformed",
        }
    }
}

/// Counters of the accept stage (written once per connection, never per
/// packet).
#[derive(Debug, Default)]
pub struct EdgeStats {
    /// Connections being read or handshaken now.
    pub handshaking: AtomicU64,
    /// Plain TCP connections handed to an event loop.
    pub established_tcp: AtomicU64,
    /// TLS connections handed to an event loop.
    pub established_tls: AtomicU64,
    rejected: [AtomicU64; Reject::ALL.len()],
}

impl EdgeStats {
    /// Counts a connection closed for `r`.
    pub fn reject(&self, r: Reject) {
        self.rejected[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections closed for `r` so far.
    pub fn rejected(&self, r: Reject) -> u64 {
        self.rejected[r as usize].load(Ordering::Relaxed)
    }
}

/// A connection whose protocol is known and whose TLS handshake is done,
/// on its way to an event loop.
pub struct Established {
    /// The socket.
    pub stream: mio::net::TcpStream,
    /// The client's address.
    pub remote: SocketAddr,
    /// The address its admission slot is counted under.
    pub slot: IpAddr,
    /// The TLS session (None for plain TCP).
    pub tls: Option<Box<rustls::ServerConnection>>,
    /// Plaintext already read (the start of the first STUN message).
    pub inbuf: Vec<u8>,
    /// When it was accepted.
    pub accepted: Instant,
}

/// An event loop's queue of established connections. The loop checks one
/// flag per turn and locks only when something arrived.
#[derive(Default)]
pub struct Inbox {
    ready: AtomicBool,
    queue: Mutex<Vec<Established>>,
    waker: OnceLock<Arc<mio::Waker>>,
}

impl Inbox {
    /// Sets the waker of the loop that reads this inbox.
    pub fn set_waker(&self, w: Arc<mio::Waker>) {
        let _ = self.waker.set(w);
    }

    fn push(&self, e: Established) {
        locked(&self.queue).push(e);
        self.ready.store(true, Ordering::Release);
        if let Some(w) = self.waker.get() {
            let _ = w.wake();
        }
    }

    /// Moves what arrived into `out`.
    pub fn take(&self, out: &mut Vec<Established>) {
        if self.ready.swap(false, Ordering::Acquire) {
            out.append(&mut locked(&self.queue));
        }
    }
}

/// What the accept stage and the event loops share.
pub struct Edge {
    table: Mutex<ConnTable>,
    inboxes: Vec<Arc<Inbox>>,
    next: AtomicUsize,
    /// Counters.
    pub stats: EdgeStats,
}

impl Edge {
    /// One inbox per event loop.
    pub fn new(loops: usize) -> Self {
        Self {
            table: Mutex::new(ConnTable::default()),
            inboxes: (0..loops).map(|_| Arc::new(Inbox::default())).collect(),
            next: AtomicUsize::new(0),
            stats: EdgeStats::default(),
        }
    }

    /// Event loop `i`'s inbox.
    pub fn inbox(&self, i: usize) -> Arc<Inbox> {
        self.inboxes[i].clone()
    }

    /// Claims an admission slot.
    fn open(&self, ip: IpAddr, max_total: u32, per_ip: u32) -> Result<(), Reject> {
        locked(&self.table)
            .open(ip, max_total, per_ip)
            .map_err(|r| match r {
                Refused::Total => Reject::Limit,
                Refused::PerIp => Reject::LimitPerIp,
            })
    }

    /// Moves a slot from a balancer's address to the client's it stated.
    fn rekey(&self, from: IpAddr, to: IpAddr, per_ip: u32) -> Result<(), Reject> {
        locked(&self.table)
            .rekey(from, to, per_ip)
            .map_err(|_| Reject::LimitPerIp)
    }

    /// Releases the slot of a connection counted under `ip` (called once
    /// per admitted connection, by whoever closes it).
    pub fn release(&self, ip: IpAddr) {
        locked(&self.table).close(ip);
    }

    /// Open connections (handshaking and established).
    pub fn open_connections(&self) -> u32 {
        locked(&self.table).total()
    }

    /// Hands a connection to the next event loop (round robin: a TCP
    /// allocation lives on its connection's loop, so this spreads them).
    fn hand_off(&self, e: Established) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.inboxes.len();
        self.inboxes[i].push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_tells_tls_from_stun() {
        // A TLS ClientHello record, a STUN Binding request, ChannelData.
        assert_eq!(sniff(0x16), Sniffed::Tls);
        assert_eq!(sniff(0x00), Sniffed::Stun);
        assert_eq!(sniff(0x01), Sniffed::Stun);
        assert_eq!(sniff(0x40), Sniffed::Unknown);
        // "GET " and a PROXY v1 header are neither.
        assert_eq!(sniff(b'G'), Sniffed::Unknown);
        assert_eq!(sniff(b'P'), Sniffed::Unknown);
        assert_eq!(route(Mode::Auto, Sniffed::Tls), Some(true));
        assert_eq!(route(Mode::Auto, Sniffed::Stun), Some(false));
        assert_eq!(route(Mode::Auto, Sniffed::Unknown), None);
        assert_eq!(route(Mode::Tcp, Sniffed::Tls), None);
        assert_eq!(route(Mode::Tcp, Sniffed::Stun), Some(false));
        // A TLS listener leaves non-TLS input to the TLS library's error.
        assert_eq!(route(Mode::Tls, Sniffed::Stun), Some(true));
    }
}
