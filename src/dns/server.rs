//! Binding and running the listeners.

use super::handler::Shared;
use super::tcp::{self, TcpServer};
use super::udp;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A running DNS server; stops when dropped or on [`DnsServer::shutdown`].
pub struct DnsServer {
    /// The shared pipeline (publish new snapshots here).
    pub shared: Arc<Shared>,
    /// Addresses actually bound (ports resolved when 0 was asked for).
    pub addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    tcp: Option<TcpServer>,
}

impl DnsServer {
    /// Binds UDP (`workers` SO_REUSEPORT sockets per address, each with its
    /// own thread) and TCP on every address, and starts serving. TCP runs on
    /// its own runtime of `workers` threads ([`tcp`]).
    pub async fn start(
        shared: Arc<Shared>,
        listen: &[SocketAddr],
        workers: usize,
    ) -> io::Result<DnsServer> {
        let workers = if workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            workers
        };
        let mut sockets = Vec::new();
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for &addr in listen {
            let (udp_socks, tcp_listener, bound) = bind_pair(addr, workers)?;
            sockets.extend(udp_socks);
            listeners.push(tcp_listener);
            addrs.push(bound);
        }
        let tcp = TcpServer::start(listeners, shared.clone(), workers)?;
        let stop = Arc::new(AtomicBool::new(false));
        let threads = udp::spawn_workers(sockets, shared.clone(), stop.clone())?;
        Ok(DnsServer {
            shared,
            addrs,
            stop,
            threads,
            tcp: Some(tcp),
        })
    }

    /// Stops the listeners and waits for the UDP workers.
    pub async fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let tcp = self.tcp.take();
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(mut tcp) = tcp {
                tcp.stop();
            }
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Binds UDP and TCP on the same port. With port 0, the UDP port is chosen
/// first and TCP retried on a fresh port pair if that port is taken for TCP.
fn bind_pair(
    addr: SocketAddr,
    workers: usize,
) -> io::Result<(Vec<std::net::UdpSocket>, std::net::TcpListener, SocketAddr)> {
    let mut last_err = None;
    for _ in 0..16 {
        let first = udp::bind_reuseport(addr)?;
        let bound = first.local_addr()?;
        let mut socks = vec![first];
        for _ in 1..workers {
            socks.push(udp::bind_reuseport(bound)?);
        }
        match tcp::bind(bound) {
            Ok(l) => return Ok((socks, l, bound)),
            Err(e) if addr.port() == 0 => last_err = Some(e),
            Err(e) => return Err(io::Error::new(e.kind(), format!("TCP {bound}: {e}"))),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("could not bind")))
}
