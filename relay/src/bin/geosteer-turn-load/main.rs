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
//!
//! Modules: `link` (UDP/TCP/TLS links, the matched request/response
//! exchange), `setup` (allocations, release), `traffic` (the paced run and
//! its accounting); they share this file's imports through `use super::*`.

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
    /// After traffic, refresh every UDP allocation (LIFETIME 600) before
    /// deleting it, and report `refreshed=N` on stderr (soak runs: new,
    /// refresh, delete).
    #[arg(long)]
    refresh: bool,
    /// Local addresses for client sockets, cycled (spreads 5-tuples).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    client_ips: Vec<std::net::IpAddr>,
}

const HDR: usize = 20;
/// Tokens of the peer sockets start here (allocations use 0..allocs).
const PEER_BASE: usize = 1 << 30;
const MAX_BATCH: usize = 64;
const BUF: usize = 2048;

mod link;
mod setup;
mod traffic;

use link::*;
use setup::*;
use traffic::*;

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
    if a.refresh {
        let mut n = 0;
        for al in &mut allocs {
            n += usize::from(setup::refresh(al, &creds, 600));
        }
        eprintln!("refreshed={n} of {}", allocs.len());
    }
    for al in &mut allocs {
        release(al, &creds);
    }
    Ok(())
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
