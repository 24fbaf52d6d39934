//! DNS over TCP (RFC 7766) on its own tokio runtime, so a flood of
//! connections cannot starve health probes or the admin API, which run on
//! the node's main runtime.
//!
//! Each connection answers its queries in order (pipelined queries are
//! read together and their answers written together), waits at most the
//! idle timeout for its next query, and must deliver a begun query and take
//! its answer within the I/O timeout. Admission is decided by
//! [`table::ConnTable`]: at a limit the oldest idle connection is closed to
//! make room.

pub mod table;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::handler::{Shared, Transport};
use super::metrics::TcpClose;
use table::{ClientKey, ConnId, ConnTable, Limits, Slot};

/// Read buffer of a connection between large messages.
const READ_BUF: usize = 4096;

/// The running TCP side of a DNS server.
pub struct TcpServer {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpServer {
    /// Serves `listeners` on a runtime of `workers` threads until stopped.
    pub fn start(
        listeners: Vec<std::net::TcpListener>,
        shared: Arc<Shared>,
        workers: usize,
    ) -> io::Result<TcpServer> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name("dns-tcp")
            .enable_all()
            .build()?;
        for l in &listeners {
            l.set_nonblocking(true)?;
        }
        let (stop, stop_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("dns-tcp-accept".into())
            .spawn(move || {
                rt.block_on(serve(listeners, shared, stop_rx));
                // Dropping the runtime cancels every connection task.
                rt.shutdown_timeout(Duration::from_millis(200));
            })?;
        Ok(TcpServer {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops accepting, closes every connection and waits for the runtime.
    pub fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// What every connection task shares.
struct Ctx {
    shared: Arc<Shared>,
    table: Mutex<ConnTable>,
    epoch: Instant,
}

impl Ctx {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

fn limits(shared: &Shared) -> (Limits, Duration, Duration) {
    let st = shared.state.load();
    let t = &st.config.file.server.tcp;
    (
        Limits {
            max: t.max_connections,
            per_client: t.max_connections_per_client,
        },
        Duration::from_millis(t.idle_timeout_ms),
        Duration::from_millis(t.io_timeout_ms),
    )
}

async fn serve(
    listeners: Vec<std::net::TcpListener>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let ctx = Arc::new(Ctx {
        table: Mutex::new(ConnTable::new(limits(&shared).0)),
        shared,
        epoch: Instant::now(),
    });
    for l in listeners {
        match TcpListener::from_std(l) {
            Ok(l) => {
                tokio::spawn(accept_loop(l, ctx.clone(), stop.clone()));
            }
            Err(e) => tracing::error!(error = %e, "DNS TCP listener"),
        }
    }
    let _ = stop.wait_for(|s| *s).await;
}

async fn accept_loop(l: TcpListener, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, peer) = tokio::select! {
            r = l.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "DNS TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let (lim, idle, io) = limits(&ctx.shared);
        let admitted = {
            let mut t = ctx.table.lock().unwrap_or_else(|e| e.into_inner());
            t.set_limits(lim);
            t.admit(ClientKey::of(peer.ip()), ctx.now_ms())
        };
        let Ok(a) = admitted else {
            ctx.shared.metrics.tcp_conns.refused();
            continue; // dropping the stream closes it
        };
        ctx.shared.metrics.tcp_conns.opened(a.evicted);
        let _ = stream.set_nodelay(true);
        let guard = Guard {
            ctx: ctx.clone(),
            id: a.id,
            why: TcpClose::Shutdown,
        };
        tokio::spawn(connection(stream, peer.ip(), a.slot, guard, idle, io));
    }
}

/// Takes a connection out of the table and counts why it closed, however
/// its task ends (also when the runtime is dropped). An evicted connection
/// was counted when it was evicted, so the open-connections gauge always
/// equals the table's size.
struct Guard {
    ctx: Arc<Ctx>,
    id: ConnId,
    why: TcpClose,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let present = self
            .ctx
            .table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(self.id);
        if present {
            self.ctx.shared.metrics.tcp_conns.closed(self.why);
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    ip: IpAddr,
    slot: Arc<Slot>,
    mut guard: Guard,
    idle: Duration,
    io: Duration,
) {
    guard.why = answer_queries(&mut stream, ip, &guard.ctx, &slot, idle, io).await;
}

/// Serves one connection until it must close; says why.
async fn answer_queries(
    stream: &mut TcpStream,
    ip: IpAddr,
    ctx: &Ctx,
    slot: &Slot,
    idle: Duration,
    io: Duration,
) -> TcpClose {
    let shared = &ctx.shared;
    let mut inbuf = vec![0u8; READ_BUF];
    let mut have = 0usize;
    let mut out = Vec::with_capacity(512);
    let mut replies: Vec<u8> = Vec::with_capacity(1024);
    let mut w = shared.worker(Transport::Tcp);
    // When the query now being read must be complete.
    let mut deadline = tokio::time::Instant::now();
    // The first wait's idle stamp is the table's, from admission: the
    // connection's age, so the oldest idle one is the one displaced.
    let mut first_wait = true;
    loop {
        // Answer every complete message, in order.
        let mut at = 0;
        if have >= 2 {
            let (st, health) = shared.view();
            while have - at >= 2 {
                let len = u16::from_be_bytes([inbuf[at], inbuf[at + 1]]) as usize;
                if have - at < 2 + len {
                    break;
                }
                let msg = &inbuf[at + 2..at + 2 + len];
                if !shared.handle(&st, &health, msg, ip, Transport::Tcp, &mut w, &mut out) {
                    return TcpClose::Malformed;
                }
                replies.extend_from_slice(&(out.len() as u16).to_be_bytes());
                replies.extend_from_slice(&out);
                at += 2 + len;
            }
        }
        if at > 0 {
            inbuf.copy_within(at..have, 0);
            have -= at;
            deadline = tokio::time::Instant::now() + io;
        }
        if !replies.is_empty() {
            match tokio::time::timeout(io, stream.write_all(&replies)).await {
                Err(_) => return TcpClose::IoTimeout,
                Ok(Err(_)) => return TcpClose::Error,
                Ok(Ok(())) => replies.clear(),
            }
            if replies.capacity() > 64 * 1024 {
                replies = Vec::with_capacity(1024);
            }
        }
        let read = if have == 0 {
            if inbuf.len() > READ_BUF {
                inbuf = vec![0u8; READ_BUF];
            }
            if !first_wait {
                slot.set_idle(ctx.now_ms());
            }
            first_wait = false;
            let r = tokio::select! {
                biased;
                _ = slot.evict.notified() => return TcpClose::Evicted,
                r = tokio::time::timeout(idle, stream.read(&mut inbuf)) => r,
            };
            slot.set_busy();
            deadline = tokio::time::Instant::now() + io;
            match r {
                Err(_) => return TcpClose::Idle,
                Ok(r) => r,
            }
        } else {
            // A query has begun: the rest of it by the deadline.
            let need = if have >= 2 {
                2 + u16::from_be_bytes([inbuf[0], inbuf[1]]) as usize
            } else {
                2
            };
            if inbuf.len() < need {
                inbuf.resize(need, 0);
            }
            match tokio::time::timeout_at(deadline, stream.read(&mut inbuf[have..])).await {
                Err(_) => return TcpClose::IoTimeout,
                Ok(r) => r,
            }
        };
        match read {
            Ok(0) => return TcpClose::Peer,
            Ok(n) => have += n,
            Err(_) => return TcpClose::Error,
        }
    }
}

/// A listening TCP socket for `addr` (address reuse, a deep accept queue).
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}
