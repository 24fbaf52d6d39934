//! Batched UDP receive and send with `recvmmsg(2)` / `sendmmsg(2)`: one system
//! call moves up to [`BATCH`] datagrams, which is where the relay saves most of
//! the per-packet kernel cost compared with one `recvfrom`/`sendto` per packet.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Largest datagram received; longer ones are dropped (MSG_TRUNC).
pub const SLOT: usize = 10_240;
/// Send slots are larger so a received datagram plus TURN framing
/// (Data indication overhead) always fits.
pub const SEND_SLOT: usize = SLOT + 128;

/// Decodes a kernel socket address.
pub fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: ss_family says this storage holds a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: ss_family says this storage holds a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Encodes a socket address for the kernel; returns its length.
/// `v6_socket` maps IPv4 destinations to `::ffff:a.b.c.d` for AF_INET6 sockets.
pub fn to_storage(
    addr: SocketAddr,
    s: &mut libc::sockaddr_storage,
    v6_socket: bool,
) -> libc::socklen_t {
    let addr = match (addr, v6_socket) {
        (SocketAddr::V4(a), true) => {
            SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
        }
        (a, _) => a,
    };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let out: &mut libc::sockaddr_in =
                unsafe { &mut *(s as *mut _ as *mut libc::sockaddr_in) };
            out.sin_family = libc::AF_INET as libc::sa_family_t;
            out.sin_port = a.port().to_be();
            out.sin_addr = libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            };
            out.sin_zero = [0; 8];
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in6.
            let out: &mut libc::sockaddr_in6 =
                unsafe { &mut *(s as *mut _ as *mut libc::sockaddr_in6) };
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = a.port().to_be();
            out.sin6_flowinfo = a.flowinfo();
            out.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            out.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Pre-allocated buffers and headers for one `recvmmsg`/`sendmmsg` batch.
/// The header arrays point into the buffers, so a `Batch` must stay boxed.
pub struct Batch {
    slot: usize,
    bufs: Box<[u8]>,
    addrs: Box<[libc::sockaddr_storage]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// Datagrams currently held (send side) or received (receive side).
    count: usize,
}

impl Batch {
    /// Allocates a receive batch ([`SLOT`]-byte buffers).
    pub fn new() -> Box<Self> {
        Self::with_slot(SLOT)
    }

    /// Allocates a send batch ([`SEND_SLOT`]-byte buffers).
    pub fn new_send() -> Box<Self> {
        Self::with_slot(SEND_SLOT)
    }

    fn with_slot(slot: usize) -> Box<Self> {
        // SAFETY: all-zero is a valid value for these plain C structs.
        let mut b = Box::new(Batch {
            slot,
            bufs: vec![0u8; BATCH * slot].into_boxed_slice(),
            addrs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            iovs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            hdrs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            count: 0,
        });
        for i in 0..BATCH {
            b.iovs[i].iov_base = b.bufs[i * slot..].as_mut_ptr() as *mut libc::c_void;
            b.iovs[i].iov_len = slot;
            let iov = &mut b.iovs[i] as *mut libc::iovec;
            let addr = &mut b.addrs[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
            let h = &mut b.hdrs[i].msg_hdr;
            h.msg_iov = iov;
            h.msg_iovlen = 1;
            h.msg_name = addr;
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        b
    }

    /// Receives up to [`BATCH`] datagrams; returns how many (0 when none are waiting).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i].iov_len = self.slot;
            self.hdrs[i].msg_hdr.msg_namelen =
                size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            self.hdrs[i].msg_hdr.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: hdrs has BATCH valid entries pointing into our own buffers.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            self.count = 0;
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        self.count = n as usize;
        Ok(self.count)
    }

    /// The `i`-th received datagram and its sender; `None` if truncated or of an unknown family.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let h = &self.hdrs[i];
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let slot = self.slot;
        let len = (h.msg_len as usize).min(slot);
        let addr = from_storage(&self.addrs[i])?;
        Some((addr, &self.bufs[i * slot..i * slot + len]))
    }

    /// Whether the send batch is full.
    pub fn is_full(&self) -> bool {
        self.count == BATCH
    }

    /// Whether the send batch is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Queues a datagram; returns false if it does not fit (too long or batch full).
    pub fn push(&mut self, to: SocketAddr, data: &[u8], v6_socket: bool) -> bool {
        if data.len() > self.slot || self.count == BATCH {
            return false;
        }
        let i = self.count;
        let slot = self.slot;
        self.bufs[i * slot..i * slot + data.len()].copy_from_slice(data);
        self.iovs[i].iov_len = data.len();
        let len = to_storage(to, &mut self.addrs[i], v6_socket);
        self.hdrs[i].msg_hdr.msg_namelen = len;
        self.hdrs[i].msg_hdr.msg_flags = 0;
        self.count += 1;
        true
    }

    /// Sends all queued datagrams; datagrams the kernel refuses are dropped
    /// (UDP is best effort). Returns how many were sent.
    pub fn flush(&mut self, fd: RawFd) -> usize {
        let mut sent = 0;
        while sent < self.count {
            // SAFETY: entries sent..count are initialised by push().
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs[sent..].as_mut_ptr(),
                    (self.count - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                sent += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => break,
                // Per-destination errors (unreachable, refused): skip that datagram.
                _ => sent += 1,
            }
        }
        let done = sent.min(self.count);
        self.count = 0;
        done
    }
}
