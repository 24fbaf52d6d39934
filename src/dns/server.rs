//! Binding and running the listeners.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_server::Server;
use tokio::net::TcpListener;

use super::handler::Shared;
use super::tcp::Handler;
use super::udp;

/// A running DNS server; stops when dropped or on [`DnsServer::shutdown`].
pub struct DnsServer {
    /// The shared pipeline (publish new snapshots here).
    pub shared: Arc<Shared>,
    /// Addresses actually bound (ports resolved when 0 was asked for).
    pub addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    tcp: Server<Handler>,
}

impl DnsServer {
    /// Binds UDP (`workers` SO_REUSEPORT sockets per address, each with its
    /// own thread) and TCP on every address, and starts serving. Must run
    /// inside a tokio runtime (TCP is served by hickory-server).
    pub async fn start(
        shared: Arc<Shared>,
        listen: &[SocketAddr],
        workers: usize,
        tcp_timeout: Duration,
    ) -> io::Result<DnsServer> {
        let workers = if workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            workers
        };
        let mut sockets = Vec::new();
        let mut tcp = Server::new(Handler(shared.clone()));
        let mut addrs = Vec::new();
        for &addr in listen {
            let (udp_socks, tcp_listener, bound) = bind_pair(addr, workers).await?;
            sockets.extend(udp_socks);
            tcp.register_listener(tcp_listener, tcp_timeout, 64 * 1024);
            addrs.push(bound);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let threads = udp::spawn_workers(sockets, shared.clone(), stop.clone())?;
        Ok(DnsServer {
            shared,
            addrs,
            stop,
            threads,
            tcp,
        })
    }

    /// Stops the listeners and waits for the UDP workers.
    pub async fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.tcp.shutdown_gracefully().await;
        for t in std::mem::take(&mut self.threads) {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Binds UDP and TCP on the same port. With port 0, the UDP port is chosen
/// first and TCP retried on a fresh port pair if that port is taken for TCP.
async fn bind_pair(
    addr: SocketAddr,
    workers: usize,
) -> io::Result<(Vec<std::net::UdpSocket>, TcpListener, SocketAddr)> {
    let mut last_err = None;
    for _ in 0..16 {
        let first = udp::bind_reuseport(addr)?;
        let bound = first.local_addr()?;
        let mut socks = vec![first];
        for _ in 1..workers {
            socks.push(udp::bind_reuseport(bound)?);
        }
        match TcpListener::bind(bound).await {
            Ok(l) => return Ok((socks, l, bound)),
            Err(e) if addr.port() == 0 => last_err = Some(e),
            Err(e) => return Err(io::Error::new(e.kind(), format!("TCP {bound}: {e}"))),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("could not bind")))
}
