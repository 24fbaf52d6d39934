//! geosteer-turn-load: a one-core TURN load generator.
//!
//! Opens `--allocs` allocations on a TURN server (UDP, TCP or TLS transport,
//! long-term credentials), binds a channel (or creates a permission, for
//! Send/Data) towards one of `--peers` peer sockets it runs itself, then drives traffic through
//! every allocation: client → relay → peer (ChannelData or Send indication),
//! the peer echoes each datagram back to the relayed address, relay → client
//! (ChannelData or Data indication). Every payload carries the allocation
//! index, a sequence number and the send time, so the client computes loss and
//! round-trip latency itself. UDP sockets use `sendmmsg`/`recvmmsg`.
//!
//! Relayed packets are counted in both directions: one echoed round trip is
//! two packets the relay moved. Output is one `key=value` line (see `report`).
//! Setup matches responses to requests by transaction ID, so late answers
//! (retransmissions, an earlier run on a reused port) are never mistaken for
//! the current one. Traffic is meant for loopback; the generator refuses other
//! addresses.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use geosteer_relay::proto::wire;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use stun_types::attribute::{ErrorCode, Nonce, Realm, Username};
use stun_types::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageWrite,
    MessageWriteExt, MessageWriteVec, Method, TransactionId,
};
use turn_types::attribute::XorRelayedAddress;
use turn_types::attribute::{ChannelNumber, Lifetime, RequestedTransport, XorPeerAddress};
use turn_types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION};

/// Client-to-server transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Transport {
    Udp,
    Tcp,
    /// TURN over TLS (TCP framing inside TLS 1.3/1.2; the server's
    /// certificate is not verified: loopback benchmarks only).
    Tls,
}

/// How payloads travel between client and relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// ChannelBind, then ChannelData both ways.
    Channel,
    /// CreatePermission, then Send indications out and Data indications back.
    Send,
}

#[derive(Parser, Debug)]
#[command(about = "TURN load generator (loopback only)")]
struct Args {
    /// TURN server address (UDP and TCP listener; the TLS listener with
    /// `--transport tls`).
    #[arg(long, default_value = "127.0.0.1:3478")]
    server: SocketAddr,
    #[arg(long, value_enum, default_value = "udp")]
    transport: Transport,
    #[arg(long, value_enum, default_value = "channel")]
    mode: Mode,
    #[arg(long, default_value = "alice")]
    user: String,
    #[arg(long, default_value = "wonderland")]
    password: String,
    #[arg(long, default_value = "geosteer.test")]
    realm: String,
    /// Number of allocations.
    #[arg(long, default_value_t = 100)]
    allocs: usize,
    /// Of these, how many carry traffic (default: all).
    #[arg(long)]
    active: Option<usize>,
    /// Offered client→peer packets per second over all allocations; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Payload bytes (≥ 20: index, sequence, timestamp).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Seconds of traffic (bounded to 600).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Packets per sendmmsg batch on one client socket (UDP).
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Maximum packets in flight per allocation when `--rate 0` (window).
    #[arg(long, default_value_t = 64)]
    window: u64,
    /// Address the generator's peer sockets bind.
    #[arg(long, default_value = "127.0.0.1:0")]
    peer: SocketAddr,
    /// Peer sockets; allocation i talks to peer i mod N (several 5-tuples
    /// on the peer side, as many remote parties would be).
    #[arg(long, default_value_t = 1)]
    peers: usize,
    /// Hold the allocations this many seconds after traffic (density runs).
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Local addresses for client sockets, cycled (spreads 5-tuples).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    client_ips: Vec<std::net::IpAddr>,
}

const HDR: usize = 20;
/// Tokens of the peer sockets start here (allocations use 0..allocs).
const PEER_BASE: usize = 1 << 30;
const MAX_BATCH: usize = 64;
const BUF: usize = 2048;

enum Link {
    Udp(UdpSocket),
    /// TCP or TLS, with the bytes read but not yet framed.
    Tcp(Stream, Vec<u8>),
}

/// A stream transport: plain TCP or TLS over TCP.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

/// Accepts any server certificate: the generator talks to loopback servers
/// it is benchmarking, with throwaway self-signed certificates.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_client() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    Arc::new(cfg)
}

struct Alloc {
    link: Link,
    relayed: SocketAddr,
    peer_addr: SocketAddr,
    channel: u16,
    nonce: String,
    sent: u64,
    received: u64,
}

struct Creds {
    user: String,
    realm: String,
    key: stun_types::message::MessageIntegrityCredentials,
}

fn main() -> Result<()> {
    let a = Args::parse();
    if !a.server.ip().is_loopback() || !a.peer.ip().is_loopback() {
        bail!("only loopback servers and peers are allowed");
    }
    if a.size < HDR || a.size > 1400 {
        bail!("--size must be 20..=1400");
    }
    let duration = a.duration.clamp(0.0, 600.0);
    let creds = Creds {
        user: a.user.clone(),
        realm: a.realm.clone(),
        key: LongTermKeyCredentials::new(a.user.clone(), a.password.clone(), a.realm.clone())
            .into(),
    };
    if a.peers == 0 || a.peers > 1024 {
        bail!("--peers must be 1..=1024");
    }
    let peers = (0..a.peers)
        .map(|_| -> Result<UdpSocket> {
            let p = UdpSocket::bind(a.peer).context("peer socket")?;
            enlarge_buffers(p.as_raw_fd());
            Ok(p)
        })
        .collect::<Result<Vec<_>>>()?;
    let peer_addrs = peers
        .iter()
        .map(|p| p.local_addr())
        .collect::<std::io::Result<Vec<_>>>()?;
    let tls = (a.transport == Transport::Tls).then(tls_client);

    let t0 = Instant::now();
    let mut allocs = Vec::with_capacity(a.allocs);
    for i in 0..a.allocs {
        let ip = a.client_ips[i % a.client_ips.len()];
        let al = open(
            &a,
            &creds,
            tls.as_ref(),
            ip,
            peer_addrs[i % peer_addrs.len()],
            i,
        )
        .with_context(|| format!("allocation {i} of {}", a.allocs))?;
        allocs.push(al);
    }
    let setup = t0.elapsed().as_secs_f64();
    eprintln!(
        "setup: {} allocations in {setup:.2}s ({:.0}/s)",
        a.allocs,
        a.allocs as f64 / setup.max(1e-9)
    );
    let active = a.active.unwrap_or(a.allocs).min(a.allocs);
    let mut rtts: Vec<u32> = Vec::with_capacity(1 << 20);
    let stats = drive(&a, &mut allocs[..active], &peers, duration, &mut rtts)?;
    report(&a, active, setup, &allocs[..active], &stats, &mut rtts);
    if a.hold > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(a.hold.min(3600.0)));
    }
    for al in &mut allocs {
        release(al, &creds);
    }
    Ok(())
}

fn connect(
    a: &Args,
    tls: Option<&Arc<rustls::ClientConfig>>,
    ip: std::net::IpAddr,
) -> Result<Link> {
    Ok(match a.transport {
        Transport::Udp => {
            let s = UdpSocket::bind(SocketAddr::new(ip, 0))?;
            s.connect(a.server)?;
            Link::Udp(s)
        }
        Transport::Tcp | Transport::Tls => {
            let s = TcpStream::connect(a.server)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.set_write_timeout(Some(Duration::from_secs(5)))?;
            let stream = match tls {
                None => Stream::Plain(s),
                Some(cfg) => {
                    let name = rustls_pki_types::ServerName::IpAddress(a.server.ip().into());
                    let mut conn = rustls::ClientConnection::new(cfg.clone(), name)
                        .map_err(|e| anyhow!("TLS: {e}"))?;
                    let mut s = s;
                    while conn.is_handshaking() {
                        conn.complete_io(&mut s).context("TLS handshake")?;
                    }
                    Stream::Tls(Box::new(rustls::StreamOwned::new(conn, s)))
                }
            };
            Link::Tcp(stream, Vec::new())
        }
    })
}

/// Opens one allocation and binds its channel (or permission) to `peer`.
fn open(
    a: &Args,
    c: &Creds,
    tls: Option<&Arc<rustls::ClientConfig>>,
    ip: std::net::IpAddr,
    peer: SocketAddr,
    i: usize,
) -> Result<Alloc> {
    let mut link = connect(a, tls, ip)?;
    // Fetch a nonce with an unauthenticated Allocate. A 437 means the server
    // still holds an allocation for this 5-tuple: the kernel handed out a
    // client port an earlier run (or a server's late cleanup) still owns.
    // Take another port, keeping the old socket until then so it is not
    // handed out again.
    let mut stale = Vec::new();
    let nonce = loop {
        let r = roundtrip(
            &mut link,
            &Message::builder_request(ALLOCATE, MessageWriteVec::new()).finish(),
        )?;
        let m = Message::from_bytes(&r).map_err(|e| anyhow!("bad response: {e:?}"))?;
        let code = m.attribute::<ErrorCode>().map(|e| e.code()).unwrap_or(0);
        if code == 437 && matches!(link, Link::Udp(_)) && stale.len() < 8 {
            stale.push(std::mem::replace(&mut link, connect(a, tls, ip)?));
            continue;
        }
        match m.attribute::<Nonce>() {
            Ok(n) => break n.nonce().to_string(),
            Err(_) => bail!(
                "first Allocate answered {} (code {code}) without a NONCE",
                if m.class() == MessageClass::Success {
                    "success"
                } else {
                    "error"
                }
            ),
        }
    };
    drop(stale);
    let mut al = Alloc {
        link,
        relayed: peer,
        peer_addr: peer,
        nonce: String::new(),
        channel: wire::CHANNEL_MIN + (i % 0x0fff) as u16,
        sent: 0,
        received: 0,
    };
    let r = signed(&mut al.link, c, &nonce, ALLOCATE, |w, _| {
        w.add_attribute(&RequestedTransport::new(RequestedTransport::UDP))?;
        w.add_attribute(&Lifetime::new(3600))?;
        Ok(())
    })?;
    let m = Message::from_bytes(&r).map_err(|e| anyhow!("{e:?}"))?;
    al.relayed = m
        .attribute::<XorRelayedAddress>()
        .map_err(|_| anyhow!("no XOR-RELAYED-ADDRESS"))?
        .addr(m.transaction_id());
    al.nonce = nonce.clone();
    let ch = al.channel;
    match a.mode {
        Mode::Channel => signed(&mut al.link, c, &nonce, CHANNEL_BIND, |w, tid| {
            w.add_attribute(&ChannelNumber::new(ch))?;
            w.add_attribute(&XorPeerAddress::new(peer, tid))?;
            Ok(())
        })?,
        Mode::Send => signed(&mut al.link, c, &nonce, CREATE_PERMISSION, |w, tid| {
            w.add_attribute(&XorPeerAddress::new(peer, tid))?;
            Ok(())
        })?,
    };
    match &al.link {
        Link::Udp(s) => {
            s.set_nonblocking(true)?;
            enlarge_buffers(s.as_raw_fd());
        }
        Link::Tcp(s, _) => s.tcp().set_nonblocking(true)?,
    }
    Ok(al)
}

type AddAttrs<'a> = dyn FnOnce(&mut MessageWriteVec, TransactionId) -> Result<(), stun_types::message::StunWriteError>
    + 'a;

/// A signed request; the response whatever its class.
fn signed_raw(
    link: &mut Link,
    c: &Creds,
    nonce: &str,
    method: Method,
    add: impl FnOnce(
        &mut MessageWriteVec,
        TransactionId,
    ) -> Result<(), stun_types::message::StunWriteError>,
) -> Result<Vec<u8>> {
    let add: Box<AddAttrs> = Box::new(add);
    let mut w = Message::builder_request(method, MessageWriteVec::new());
    let tid = w.transaction_id();
    add(&mut w, tid).map_err(|e| anyhow!("{e:?}"))?;
    w.add_attribute(&Username::new(&c.user).map_err(|e| anyhow!("{e:?}"))?)
        .map_err(|e| anyhow!("{e:?}"))?;
    w.add_attribute(&Realm::new(&c.realm).map_err(|e| anyhow!("{e:?}"))?)
        .map_err(|e| anyhow!("{e:?}"))?;
    w.add_attribute(&Nonce::new(nonce).map_err(|e| anyhow!("{e:?}"))?)
        .map_err(|e| anyhow!("{e:?}"))?;
    w.add_message_integrity(&c.key, IntegrityAlgorithm::Sha1)
        .map_err(|e| anyhow!("{e:?}"))?;
    w.add_fingerprint().map_err(|e| anyhow!("{e:?}"))?;
    roundtrip(link, &w.finish())
}

/// A signed request that must succeed.
fn signed(
    link: &mut Link,
    c: &Creds,
    nonce: &str,
    method: Method,
    add: impl FnOnce(
        &mut MessageWriteVec,
        TransactionId,
    ) -> Result<(), stun_types::message::StunWriteError>,
) -> Result<Vec<u8>> {
    let r = signed_raw(link, c, nonce, method, add)?;
    let m = Message::from_bytes(&r).map_err(|e| anyhow!("bad response: {e:?}"))?;
    if m.class() != MessageClass::Success {
        let code = m.attribute::<ErrorCode>().map(|e| e.code()).unwrap_or(0);
        bail!("{method:?} failed with {code}");
    }
    Ok(r)
}

/// Sends a request and returns the response with its transaction ID.
/// Anything else that arrives meanwhile is dropped: a late answer to a
/// retransmission, or to a request of an earlier run on a reused port.
fn roundtrip(link: &mut Link, req: &[u8]) -> Result<Vec<u8>> {
    let tid = &req[8..20];
    let matches = |m: &[u8]| m.len() >= 20 && m[0] & 0xc0 == 0 && &m[8..20] == tid;
    match link {
        Link::Udp(s) => {
            // Retransmit like RFC 8489 (RTO 500 ms doubling, 4 tries).
            let mut buf = [0u8; BUF];
            let mut rto = Duration::from_millis(500);
            for _ in 0..4 {
                s.send(req)?;
                let deadline = Instant::now() + rto;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    s.set_read_timeout(Some(left))?;
                    match s.recv(&mut buf) {
                        Ok(n) if matches(&buf[..n]) => return Ok(buf[..n].to_vec()),
                        Ok(_) => continue,
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            break
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                rto *= 2;
            }
            bail!("no response after 4 tries")
        }
        Link::Tcp(s, _) => {
            s.write_all(req)?;
            loop {
                // A STUN message (top bits 00) or ChannelData (01): length
                // from the header, ChannelData padded to 4 over TCP.
                let mut msg = vec![0u8; 4];
                s.read_exact(&mut msg)?;
                let len = u16::from_be_bytes([msg[2], msg[3]]) as usize;
                let total = if msg[0] & 0xc0 == 0 {
                    20 + len
                } else {
                    4 + len.div_ceil(4) * 4
                };
                msg.resize(total.max(4), 0);
                s.read_exact(&mut msg[4..])?;
                if matches(&msg) {
                    return Ok(msg);
                }
            }
        }
    }
}

fn enlarge_buffers(fd: i32) {
    let size: libc::c_int = 4 << 20;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: valid fd and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &size as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

#[derive(Default)]
struct Stats {
    sent: u64,
    peer_rx: u64,
    client_rx: u64,
    elapsed: f64,
    send_errors: u64,
}

/// Reusable sendmmsg/recvmmsg vectors.
struct Mmsg {
    bufs: Vec<[u8; BUF]>,
    iov: Vec<libc::iovec>,
    hdr: Vec<libc::mmsghdr>,
    addr: Vec<libc::sockaddr_in>,
}

impl Mmsg {
    fn new() -> Box<Self> {
        let mut m = Box::new(Mmsg {
            bufs: vec![[0u8; BUF]; MAX_BATCH],
            // SAFETY: plain C structs, all-zero is a valid value.
            iov: vec![unsafe { std::mem::zeroed() }; MAX_BATCH],
            hdr: vec![unsafe { std::mem::zeroed() }; MAX_BATCH],
            addr: vec![unsafe { std::mem::zeroed() }; MAX_BATCH],
        });
        for i in 0..MAX_BATCH {
            m.iov[i].iov_base = m.bufs[i].as_mut_ptr() as *mut libc::c_void;
            m.iov[i].iov_len = BUF;
            m.hdr[i].msg_hdr.msg_iov = &mut m.iov[i];
            m.hdr[i].msg_hdr.msg_iovlen = 1;
        }
        m
    }

    /// Receives up to MAX_BATCH datagrams (with source addresses if `names`).
    fn recv(&mut self, fd: i32, names: bool) -> usize {
        for i in 0..MAX_BATCH {
            self.iov[i].iov_len = BUF;
            self.hdr[i].msg_hdr.msg_name = if names {
                &mut self.addr[i] as *mut _ as *mut libc::c_void
            } else {
                std::ptr::null_mut()
            };
            self.hdr[i].msg_hdr.msg_namelen = if names {
                std::mem::size_of::<libc::sockaddr_in>() as u32
            } else {
                0
            };
        }
        // SAFETY: hdr/iov point into self, which outlives the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdr.as_mut_ptr(),
                MAX_BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        n.max(0) as usize
    }

    /// Sends the first `n` prepared buffers (lengths in iov, names as set).
    fn send(&mut self, fd: i32, n: usize) -> usize {
        // SAFETY: as in recv.
        let r = unsafe { libc::sendmmsg(fd, self.hdr.as_mut_ptr(), n as u32, libc::MSG_DONTWAIT) };
        r.max(0) as usize
    }
}

fn now_ns(t0: Instant) -> u64 {
    t0.elapsed().as_nanos() as u64
}

fn fill_payload(p: &mut [u8], idx: u32, seq: u64, ts: u64) {
    p[..4].copy_from_slice(&idx.to_be_bytes());
    p[4..12].copy_from_slice(&seq.to_be_bytes());
    p[12..20].copy_from_slice(&ts.to_be_bytes());
}

fn drive(
    a: &Args,
    allocs: &mut [Alloc],
    peers: &[UdpSocket],
    duration: f64,
    rtts: &mut Vec<u32>,
) -> Result<Stats> {
    let mut poll = Poll::new()?;
    let pfds: Vec<i32> = peers.iter().map(|p| p.as_raw_fd()).collect();
    for (k, pfd) in pfds.iter().enumerate() {
        poll.registry()
            .register(&mut SourceFd(pfd), Token(PEER_BASE + k), Interest::READABLE)?;
    }
    for (i, al) in allocs.iter().enumerate() {
        let fd = match &al.link {
            Link::Udp(s) => s.as_raw_fd(),
            Link::Tcp(s, _) => s.tcp().as_raw_fd(),
        };
        poll.registry()
            .register(&mut SourceFd(&fd), Token(i), Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(1024);
    let mut mm = Mmsg::new();
    let mut payload = vec![0u8; a.size];
    for (i, b) in payload.iter_mut().enumerate().skip(HDR) {
        *b = i as u8;
    }
    let mut st = Stats::default();
    let batch = a.batch.clamp(1, MAX_BATCH);
    let t0 = Instant::now();
    let end = Duration::from_secs_f64(duration);
    let drain = Duration::from_millis(500);
    let mut next = 0usize;
    let mut tcp_out = vec![0u8; BUF * MAX_BATCH];
    let n = allocs.len().max(1);
    loop {
        let el = t0.elapsed();
        if el >= end + drain {
            break;
        }
        // Send what is due.
        if el < end && !allocs.is_empty() {
            let due = if a.rate == 0 {
                u64::MAX
            } else {
                (el.as_secs_f64() * a.rate as f64) as u64
            };
            let mut budget = if a.rate == 0 {
                (n * batch) as u64
            } else {
                due.saturating_sub(st.sent)
            };
            let mut visited = 0;
            while budget > 0 && visited < n {
                let i = next;
                next = (next + 1) % n;
                visited += 1;
                let al = &mut allocs[i];
                let mut k = (budget as usize).min(batch);
                if a.rate == 0 {
                    let inflight = al.sent - al.received;
                    k = k.min(a.window.saturating_sub(inflight) as usize);
                }
                if k == 0 {
                    continue;
                }
                let ts = now_ns(t0);
                let sent = send_client(a, al, i as u32, k, ts, &mut payload, &mut mm, &mut tcp_out);
                if sent < k {
                    st.send_errors += 1;
                }
                al.sent += sent as u64;
                st.sent += sent as u64;
                budget -= k as u64;
            }
        }
        let timeout = if a.rate == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(200)
        };
        poll.poll(&mut events, Some(timeout))?;
        for ev in events.iter() {
            if ev.token().0 >= PEER_BASE {
                st.peer_rx += peer_echo(pfds[ev.token().0 - PEER_BASE], &mut mm);
            } else {
                let i = ev.token().0;
                client_recv(a, &mut allocs[i], t0, &mut mm, rtts, &mut st);
            }
        }
    }
    st.elapsed = duration;
    Ok(st)
}

#[allow(clippy::too_many_arguments)]
fn send_client(
    a: &Args,
    al: &mut Alloc,
    idx: u32,
    k: usize,
    ts: u64,
    payload: &mut [u8],
    mm: &mut Mmsg,
    tcp_out: &mut [u8],
) -> usize {
    let pad = matches!(al.link, Link::Tcp(..));
    let mut lens = [0usize; MAX_BATCH];
    for (j, len) in lens.iter_mut().enumerate().take(k) {
        fill_payload(payload, idx, al.sent + j as u64, ts);
        let out: &mut [u8] = if pad {
            &mut tcp_out[j * BUF..(j + 1) * BUF]
        } else {
            &mut mm.bufs[j]
        };
        *len = match a.mode {
            Mode::Channel => wire::write_channel_data(out, al.channel, payload, pad).unwrap_or(0),
            Mode::Send => write_send(out, al.peer_addr, payload),
        };
    }
    match &mut al.link {
        Link::Udp(s) => {
            for (j, len) in lens.iter().enumerate().take(k) {
                mm.iov[j].iov_len = *len;
                mm.hdr[j].msg_hdr.msg_name = std::ptr::null_mut();
                mm.hdr[j].msg_hdr.msg_namelen = 0;
            }
            mm.send(s.as_raw_fd(), k)
        }
        Link::Tcp(s, _) => {
            // Frames are contiguous only if each fills its slot; copy them together.
            let mut cat = Vec::with_capacity(k * (a.size + 64));
            for (j, len) in lens.iter().enumerate().take(k) {
                cat.extend_from_slice(&tcp_out[j * BUF..j * BUF + len]);
            }
            match s.write(&cat) {
                Ok(w) if w == cat.len() => k,
                Ok(w) => {
                    // Partial write: finish it blocking so framing stays intact (bounded by the socket).
                    let _ = s.tcp().set_nonblocking(false);
                    let r = s.write_all(&cat[w..]).and_then(|_| s.flush());
                    let _ = s.tcp().set_nonblocking(true);
                    if r.is_ok() {
                        k
                    } else {
                        0
                    }
                }
                Err(_) => 0,
            }
        }
    }
}

/// Writes a Send indication (XOR-PEER-ADDRESS, DATA) for an IPv4 peer.
fn write_send(out: &mut [u8], peer: SocketAddr, payload: &[u8]) -> usize {
    let padded = (payload.len() + 3) & !3;
    let total = 20 + 12 + 4 + padded;
    out[..2].copy_from_slice(&0x0016u16.to_be_bytes());
    out[2..4].copy_from_slice(&((total - 20) as u16).to_be_bytes());
    out[4..8].copy_from_slice(&wire::MAGIC_COOKIE.to_be_bytes());
    out[8..20].copy_from_slice(&[0x5a; 12]);
    out[20..22].copy_from_slice(&0x0012u16.to_be_bytes());
    out[22..24].copy_from_slice(&8u16.to_be_bytes());
    out[24] = 0;
    out[25] = 1;
    out[26..28].copy_from_slice(&(peer.port() ^ 0x2112).to_be_bytes());
    let cookie = wire::MAGIC_COOKIE.to_be_bytes();
    if let std::net::IpAddr::V4(ip) = peer.ip() {
        for (i, b) in ip.octets().iter().enumerate() {
            out[28 + i] = b ^ cookie[i];
        }
    }
    out[32..34].copy_from_slice(&0x0013u16.to_be_bytes());
    out[34..36].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    out[36..36 + payload.len()].copy_from_slice(payload);
    out[36 + payload.len()..total].fill(0);
    total
}

/// The peer: echoes every datagram back to the relayed address it came from.
fn peer_echo(fd: i32, mm: &mut Mmsg) -> u64 {
    let mut total = 0;
    for _ in 0..64 {
        let n = mm.recv(fd, true);
        if n == 0 {
            break;
        }
        for j in 0..n {
            mm.iov[j].iov_len = mm.hdr[j].msg_len as usize;
        }
        let mut off = 0;
        while off < n {
            // SAFETY: hdr[off..n] were filled by recvmmsg above.
            let s =
                unsafe { libc::sendmmsg(fd, mm.hdr.as_mut_ptr().add(off), (n - off) as u32, 0) };
            if s <= 0 {
                break;
            }
            off += s as usize;
        }
        total += n as u64;
        if n < MAX_BATCH {
            break;
        }
    }
    total
}

/// Extracts the payload of a ChannelData frame or Data indication.
fn frame_payload(f: &[u8]) -> Option<&[u8]> {
    match wire::classify(f) {
        wire::FrameKind::Channel(_, len) if len <= f.len() => Some(&f[4..len]),
        wire::FrameKind::Stun(len) if len <= f.len() => {
            let mut o = 20;
            while o + 4 <= len {
                let t = u16::from_be_bytes([f[o], f[o + 1]]);
                let l = u16::from_be_bytes([f[o + 2], f[o + 3]]) as usize;
                if t == 0x0013 && o + 4 + l <= len {
                    return Some(&f[o + 4..o + 4 + l]);
                }
                o += 4 + ((l + 3) & !3);
            }
            None
        }
        _ => None,
    }
}

fn account(p: &[u8], received: &mut u64, t0: Instant, rtts: &mut Vec<u32>, st: &mut Stats) {
    if p.len() < HDR {
        return;
    }
    let ts = u64::from_be_bytes(p[12..20].try_into().unwrap());
    let rtt = now_ns(t0).saturating_sub(ts) / 1000;
    if rtts.len() < 50_000_000 {
        rtts.push(rtt.min(u32::MAX as u64) as u32);
    }
    *received += 1;
    st.client_rx += 1;
}

fn client_recv(
    _a: &Args,
    al: &mut Alloc,
    t0: Instant,
    mm: &mut Mmsg,
    rtts: &mut Vec<u32>,
    st: &mut Stats,
) {
    match &mut al.link {
        Link::Udp(s) => {
            let fd = s.as_raw_fd();
            for _ in 0..64 {
                let n = mm.recv(fd, false);
                for j in 0..n {
                    let len = mm.hdr[j].msg_len as usize;
                    if let Some(p) = frame_payload(&mm.bufs[j][..len]) {
                        account(p, &mut al.received, t0, rtts, st);
                    }
                }
                if n < MAX_BATCH {
                    break;
                }
            }
        }
        Link::Tcp(s, buf) => {
            let mut chunk = [0u8; 65536];
            let mut got = Vec::new();
            for _ in 0..64 {
                match s.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(_) => break,
                }
            }
            let mut o = 0;
            while buf.len() - o >= 4 {
                let len = match wire::classify(&buf[o..]) {
                    wire::FrameKind::Channel(_, l) => (l + 3) & !3,
                    wire::FrameKind::Stun(l) => l,
                    wire::FrameKind::Invalid => buf.len() - o,
                };
                if buf.len() - o < len {
                    break;
                }
                if let Some(p) = frame_payload(&buf[o..o + len]) {
                    if p.len() >= HDR {
                        got.push(p[..HDR].to_vec());
                    }
                }
                o += len;
            }
            buf.drain(..o);
            for p in got {
                account(&p, &mut al.received, t0, rtts, st);
            }
        }
    }
}

fn pct(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// One `key=value` line on stdout.
fn report(a: &Args, active: usize, setup: f64, allocs: &[Alloc], st: &Stats, rtts: &mut [u32]) {
    rtts.sort_unstable();
    let secs = st.elapsed.max(1e-9);
    let relayed = st.peer_rx + st.client_rx;
    let loss = if st.sent == 0 {
        0.0
    } else {
        1.0 - st.client_rx as f64 / st.sent as f64
    };
    let _ = allocs;
    println!(
        "transport={:?} mode={:?} allocs={} active={} size={} offered_pps={} sent={} peer_rx={} client_rx={} \
relayed_pps={:.0} relayed_gbps={:.3} loss_pct={:.3} rtt_p50_us={} rtt_p95_us={} rtt_p99_us={} setup_s={:.2} alloc_rate={:.0} send_stalls={}",
        a.transport,
        a.mode,
        a.allocs,
        active,
        a.size,
        a.rate,
        st.sent,
        st.peer_rx,
        st.client_rx,
        relayed as f64 / secs,
        relayed as f64 * a.size as f64 * 8.0 / secs / 1e9,
        loss * 100.0,
        pct(rtts, 0.50),
        pct(rtts, 0.95),
        pct(rtts, 0.99),
        setup,
        a.allocs as f64 / setup.max(1e-9),
        st.send_errors,
    );
}

/// Ends an allocation (Refresh with LIFETIME 0) and waits for the answer, so
/// the next run reusing the same client port finds no stale allocation (a
/// 438 Stale Nonce is retried once with the new nonce). TCP allocations end
/// with their connection anyway.
fn release(al: &mut Alloc, c: &Creds) {
    let Link::Udp(s) = &al.link else { return };
    if s.set_nonblocking(false).is_err() {
        return;
    }
    let mut nonce = al.nonce.clone();
    for _ in 0..2 {
        let r = signed_raw(
            &mut al.link,
            c,
            &nonce,
            turn_types::message::REFRESH,
            |w, _| {
                w.add_attribute(&Lifetime::new(0))?;
                Ok(())
            },
        );
        let Ok(r) = r else { return };
        let Ok(m) = Message::from_bytes(&r) else {
            return;
        };
        if m.class() == MessageClass::Success {
            return;
        }
        match (
            m.attribute::<ErrorCode>().map(|e| e.code()),
            m.attribute::<Nonce>(),
        ) {
            (Ok(438), Ok(n)) => nonce = n.nonce().to_string(),
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response with the request's transaction ID and `class` bits.
    fn response(req: &[u8], tid_from: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; 20];
        r[0] = 0x01; // success response class of the Binding/Allocate method
        r[1] = req[1];
        r[4..8].copy_from_slice(&req[4..8]);
        r[8..20].copy_from_slice(&tid_from[8..20]);
        r
    }

    #[test]
    fn udp_roundtrip_skips_late_answers_and_channel_data() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; BUF];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let req = buf[..n].to_vec();
            let mut other = req.clone();
            other[8] ^= 0xff; // an earlier transaction's answer
            server.send_to(&response(&req, &other), from).unwrap();
            server
                .send_to(&[0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4], from)
                .unwrap(); // ChannelData
            server.send_to(&response(&req, &req), from).unwrap();
            req
        });
        let mut link = Link::Udp(client);
        let req = Message::builder_request(ALLOCATE, MessageWriteVec::new()).finish();
        let got = roundtrip(&mut link, &req).unwrap();
        let sent = t.join().unwrap();
        assert_eq!(&got[8..20], &sent[8..20]);
        assert_eq!(got, response(&sent, &sent));
    }

    #[test]
    fn tcp_roundtrip_skips_frames_of_other_transactions() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = vec![0u8; 20];
            c.read_exact(&mut req).unwrap();
            let len = u16::from_be_bytes([req[2], req[3]]) as usize;
            req.resize(20 + len, 0);
            c.read_exact(&mut req[20..]).unwrap();
            let mut other = req.clone();
            other[19] ^= 0x01;
            c.write_all(&response(&req, &other)).unwrap();
            // ChannelData of 5 bytes, padded to 8 over TCP.
            c.write_all(&[0x40, 0x01, 0x00, 0x05, 9, 9, 9, 9, 9, 0, 0, 0])
                .unwrap();
            c.write_all(&response(&req, &req)).unwrap();
            req
        });
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut link = Link::Tcp(Stream::Plain(s), Vec::new());
        let req = Message::builder_request(ALLOCATE, MessageWriteVec::new()).finish();
        let got = roundtrip(&mut link, &req).unwrap();
        let sent = t.join().unwrap();
        assert_eq!(got, response(&sent, &sent));
    }
}
