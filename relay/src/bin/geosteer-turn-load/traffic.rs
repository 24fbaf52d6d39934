//! The traffic phase: paced sends over every allocation, the peers' echo,
//! and the client side accounting loss and round trips.

use super::*;

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) sent: u64,
    pub(crate) peer_rx: u64,
    pub(crate) client_rx: u64,
    pub(crate) elapsed: f64,
    pub(crate) send_errors: u64,
}

/// Reusable sendmmsg/recvmmsg vectors.
pub(crate) struct Mmsg {
    pub(crate) bufs: Vec<[u8; BUF]>,
    pub(crate) iov: Vec<libc::iovec>,
    pub(crate) hdr: Vec<libc::mmsghdr>,
    pub(crate) addr: Vec<libc::sockaddr_in>,
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

pub(crate) fn now_ns(t0: Instant) -> u64 {
    t0.elapsed().as_nanos() as u64
}

pub(crate) fn fill_payload(p: &mut [u8], idx: u32, seq: u64, ts: u64) {
    p[..4].copy_from_slice(&idx.to_be_bytes());
    p[4..12].copy_from_slice(&seq.to_be_bytes());
    p[12..20].copy_from_slice(&ts.to_be_bytes());
}

pub(crate) fn drive(
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
pub(crate) fn send_client(
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
pub(crate) fn write_send(out: &mut [u8], peer: SocketAddr, payload: &[u8]) -> usize {
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
pub(crate) fn peer_echo(fd: i32, mm: &mut Mmsg) -> u64 {
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
pub(crate) fn frame_payload(f: &[u8]) -> Option<&[u8]> {
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

pub(crate) fn account(
    p: &[u8],
    received: &mut u64,
    t0: Instant,
    rtts: &mut Vec<u32>,
    st: &mut Stats,
) {
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

pub(crate) fn client_recv(
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
