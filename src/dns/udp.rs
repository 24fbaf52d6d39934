//! The UDP fast path: one thread per SO_REUSEPORT socket, batched
//! `recvmmsg`/`sendmmsg`, buffers allocated once, snapshots loaded once per
//! batch. No task, lock or allocation per query on cache hits.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::handler::{Shared, Transport};
use super::rrl::{slip_in_place, Class, RrlParams, RrlTable, Verdict};

/// Datagrams per system call.
const BATCH: usize = 32;
/// Receive buffer per datagram (larger queries are not DNS we answer).
const RX_SIZE: usize = 4096;

/// Binds a UDP socket with SO_REUSEPORT so several workers share the address.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if addr.ip().is_unspecified() {
        // On a wildcard address, learn each query's destination so the
        // answer leaves from it (`pktinfo`).
        let (level, name) = match addr {
            SocketAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_PKTINFO),
            SocketAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
        };
        let on: libc::c_int = 1;
        // SAFETY: a valid socket and an int option value.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                level,
                name,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s.into())
}

/// Starts `workers` threads serving `sockets` (one each) until `stop` is set.
pub fn spawn_workers(
    sockets: Vec<UdpSocket>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> io::Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::new();
    for (i, sock) in sockets.into_iter().enumerate() {
        let shared = shared.clone();
        let stop = stop.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || worker(sock, &shared, &stop))?,
        );
    }
    Ok(handles)
}

/// Room for one packet-info control message (IPv4 or IPv6), aligned.
type Control = [u64; 8];

fn worker(sock: UdpSocket, shared: &Shared, stop: &AtomicBool) {
    let fd = sock.as_raw_fd();
    // Bound to a wildcard address: answers must leave from the address each
    // query was sent to, which the kernel reports per datagram.
    let pktinfo = sock.local_addr().is_ok_and(|a| a.ip().is_unspecified());
    let mut ctl_rx: [Control; BATCH] = [[0; 8]; BATCH];
    let mut ctl_tx: [Control; BATCH] = [[0; 8]; BATCH];
    let mut rx = vec![0u8; BATCH * RX_SIZE];
    let mut tx: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(4096)).collect();
    // SAFETY: plain C structs, zero is a valid initial state for all of them.
    let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
    let mut iov_rx: [libc::iovec; BATCH] = unsafe { zeroed() };
    let mut hdr_rx: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    let mut iov_tx: [libc::iovec; BATCH] = unsafe { zeroed() };
    let mut hdr_tx: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    let mut w = shared.worker(Transport::Udp);
    // Rate limiting: this worker's own buckets, sized once from the config
    // at start; parameters re-read when a new configuration is published.
    let (mut rrl, mut params, mut params_gen) = {
        let st = shared.state.load();
        let c = &st.config.file.server.rrl;
        (
            RrlTable::new(c.table_size, rand::random()),
            RrlParams::from(c),
            st.generation,
        )
    };
    let epoch = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        for i in 0..BATCH {
            iov_rx[i] = libc::iovec {
                iov_base: rx[i * RX_SIZE..].as_mut_ptr().cast(),
                iov_len: RX_SIZE,
            };
            hdr_rx[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr_rx[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
            hdr_rx[i].msg_hdr.msg_iov = &mut iov_rx[i];
            hdr_rx[i].msg_hdr.msg_iovlen = 1;
            if pktinfo {
                hdr_rx[i].msg_hdr.msg_control = ctl_rx[i].as_mut_ptr().cast();
                hdr_rx[i].msg_hdr.msg_controllen = size_of::<Control>();
            }
            hdr_rx[i].msg_len = 0;
        }
        // SAFETY: every header points at live buffers owned by this frame.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdr_rx.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => continue,
                _ => {
                    tracing::warn!(error = %e, "recvmmsg failed");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let n = n as usize;
        let (st, health) = shared.view();
        if st.generation != params_gen {
            params = RrlParams::from(&st.config.file.server.rrl);
            params_gen = st.generation;
        }
        let now_ms = epoch.elapsed().as_millis() as u64;
        let mut out = 0usize;
        for i in 0..n {
            let len = (hdr_rx[i].msg_len as usize).min(RX_SIZE);
            let Some(src) = sockaddr_ip(&addrs[i]) else {
                continue;
            };
            let pkt = &rx[i * RX_SIZE..i * RX_SIZE + len];
            let buf = &mut tx[out];
            let h = shared.handle_query(&st, &health, pkt, src, Transport::Udp, &mut w, buf);
            if !h.respond {
                continue;
            }
            let class = Class::of_response(buf);
            let outcome = rrl.check(&params, src, class, now_ms, h.cookie_ok);
            match outcome.verdict() {
                Verdict::Send => {}
                Verdict::Slip => {
                    if !slip_in_place(buf) {
                        continue;
                    }
                }
                Verdict::Drop => {
                    w.counters.count_rrl(outcome);
                    continue;
                }
            }
            w.counters.count_rrl(outcome);
            iov_tx[out] = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            hdr_tx[out].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr_tx[out].msg_hdr.msg_namelen = hdr_rx[i].msg_hdr.msg_namelen;
            hdr_tx[out].msg_hdr.msg_iov = &mut iov_tx[out];
            hdr_tx[out].msg_hdr.msg_iovlen = 1;
            hdr_tx[out].msg_hdr.msg_control = std::ptr::null_mut();
            hdr_tx[out].msg_hdr.msg_controllen = 0;
            if pktinfo {
                // SAFETY: the receive header's control buffer was filled by
                // the kernel for this datagram; the send one is ours.
                if let Some(dst) = unsafe { destination(&hdr_rx[i].msg_hdr) } {
                    unsafe { set_source(&mut hdr_tx[out].msg_hdr, &mut ctl_tx[out], dst) };
                }
            }
            out += 1;
        }
        let mut sent = 0;
        while sent < out {
            // SAFETY: headers [sent..out] point at live buffers.
            let r =
                unsafe { libc::sendmmsg(fd, hdr_tx[sent..].as_mut_ptr(), (out - sent) as u32, 0) };
            if r <= 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // A failing destination (e.g. unreachable) must not block the
                // rest of the batch: skip it.
                sent += 1;
                continue;
            }
            sent += r as usize;
        }
    }
}

/// The destination address (and interface) of a received datagram, from its
/// IP_PKTINFO / IPV6_PKTINFO control message.
///
/// # Safety
/// `h` is a header filled by `recvmsg`/`recvmmsg` whose control buffer is live.
unsafe fn destination(h: &libc::msghdr) -> Option<(IpAddr, u32)> {
    let mut c = libc::CMSG_FIRSTHDR(h);
    while !c.is_null() {
        let (level, ty) = ((*c).cmsg_level, (*c).cmsg_type);
        if level == libc::IPPROTO_IP && ty == libc::IP_PKTINFO {
            let pi = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::in_pktinfo);
            let a = Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr));
            return Some((IpAddr::V4(a), pi.ipi_ifindex as u32));
        }
        if level == libc::IPPROTO_IPV6 && ty == libc::IPV6_PKTINFO {
            let pi = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::in6_pktinfo);
            return Some((
                IpAddr::V6(Ipv6Addr::from(pi.ipi6_addr.s6_addr)),
                pi.ipi6_ifindex,
            ));
        }
        c = libc::CMSG_NXTHDR(h, c);
    }
    None
}

/// Makes a datagram leave from `src` (IPv6: on its interface too, which
/// link-local addresses need).
///
/// # Safety
/// `h` is a send header; `buf` outlives the `sendmmsg` call that uses it.
unsafe fn set_source(h: &mut libc::msghdr, buf: &mut Control, (src, ifindex): (IpAddr, u32)) {
    let len = match src {
        IpAddr::V4(_) => size_of::<libc::in_pktinfo>(),
        IpAddr::V6(_) => size_of::<libc::in6_pktinfo>(),
    } as u32;
    h.msg_control = buf.as_mut_ptr().cast();
    h.msg_controllen = libc::CMSG_SPACE(len) as usize;
    let c = libc::CMSG_FIRSTHDR(h);
    (*c).cmsg_len = libc::CMSG_LEN(len) as usize;
    match src {
        IpAddr::V4(a) => {
            (*c).cmsg_level = libc::IPPROTO_IP;
            (*c).cmsg_type = libc::IP_PKTINFO;
            let pi = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(a).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut libc::in_pktinfo, pi);
        }
        IpAddr::V6(a) => {
            (*c).cmsg_level = libc::IPPROTO_IPV6;
            (*c).cmsg_type = libc::IPV6_PKTINFO;
            let pi = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: a.octets(),
                },
                ipi6_ifindex: ifindex,
            };
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut libc::in6_pktinfo, pi);
        }
    }
}

fn sockaddr_ip(sa: &libc::sockaddr_storage) -> Option<IpAddr> {
    match sa.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: family says this is a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(sa as *const _ as *const libc::sockaddr_in) };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))))
        }
        libc::AF_INET6 => {
            // SAFETY: family says this is a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(sa as *const _ as *const libc::sockaddr_in6) };
            Some(IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}
