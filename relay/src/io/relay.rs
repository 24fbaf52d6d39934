//! Relay sockets: one UDP socket per allocation, bound to the relay address
//! in the configured port range, with EVEN-PORT and RESERVATION-TOKEN support.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};

pub use crate::proto::RESERVATION_TTL;
use crate::proto::{Family, RelayError, RelayGranted, RelayRequest};

struct Reserved {
    socket: UdpSocket,
    family: Family,
    expires: Instant,
}

/// Port allocator and reservation store, shared by the relay's event loops
/// (clones share one map): locked when a relay socket is opened, closed or
/// reserved, never per packet. Shared rather than split per loop because a
/// port reserved by one loop (EVEN-PORT R) may be claimed from a client
/// socket the kernel hashes to another loop.
#[derive(Clone)]
pub struct RelayPorts {
    ip4: Option<IpAddr>,
    ip6: Option<IpAddr>,
    min: u16,
    max: u16,
    map: std::sync::Arc<std::sync::Mutex<PortMap>>,
    rng: ring::rand::SystemRandom,
}

/// Ports in use and reserved sockets.
struct PortMap {
    used4: Vec<u64>,
    used6: Vec<u64>,
    reserved: HashMap<u64, Reserved>,
}

impl PortMap {
    fn used(&mut self, f: Family) -> &mut Vec<u64> {
        match f {
            Family::V4 => &mut self.used4,
            Family::V6 => &mut self.used6,
        }
    }
}

fn bit(v: &[u64], p: u16) -> bool {
    v[p as usize / 64] & (1 << (p % 64)) != 0
}
fn set(v: &mut [u64], p: u16, on: bool) {
    if on {
        v[p as usize / 64] |= 1 << (p % 64);
    } else {
        v[p as usize / 64] &= !(1 << (p % 64));
    }
}

fn bind(ip: IpAddr, port: u16, dont_fragment: bool) -> io::Result<UdpSocket> {
    let domain = if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if ip.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::new(ip, port).into())?;
    if dont_fragment {
        let (level, name, val) = if ip.is_ipv4() {
            (
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DO,
            )
        } else {
            (
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_DO,
            )
        };
        // SAFETY: valid fd, option value is a c_int.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                level,
                name,
                &val as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(s.into())
}

impl RelayPorts {
    /// Creates an allocator for the given relay addresses and inclusive port range.
    pub fn new(ip4: Option<IpAddr>, ip6: Option<IpAddr>, min: u16, max: u16) -> Self {
        Self {
            ip4,
            ip6,
            min,
            max,
            map: std::sync::Arc::new(std::sync::Mutex::new(PortMap {
                used4: vec![0; 1024],
                used6: vec![0; 1024],
                reserved: HashMap::new(),
            })),
            rng: ring::rand::SystemRandom::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PortMap> {
        crate::limits::locked(&self.map)
    }

    /// Opens a relay socket as requested; returns it, its address and an
    /// optional reservation token.
    pub fn open(
        &mut self,
        req: &RelayRequest,
        now: Instant,
    ) -> Result<(UdpSocket, RelayGranted), RelayError> {
        let mut map = self.lock();
        if let Some(token) = req.reservation {
            let r = map.reserved.remove(&token).ok_or(RelayError::BadToken)?;
            if r.expires <= now {
                let port = r.socket.local_addr().map(|a| a.port()).unwrap_or(0);
                set(map.used(r.family), port, false);
                return Err(RelayError::BadToken);
            }
            let local = r.socket.local_addr().map_err(|_| RelayError::BadToken)?;
            return Ok((
                r.socket,
                RelayGranted {
                    local,
                    reservation_token: None,
                },
            ));
        }
        let ip = match req.family {
            Family::V4 => self.ip4,
            Family::V6 => self.ip6,
        }
        .ok_or(RelayError::NoPorts)?;
        let span = self.max as u32 - self.min as u32 + 1;
        let even = req.even_port || req.reserve_next;
        // RFC 6056 algorithm 1: a random starting point in the range, then
        // the next free port from there, so relayed ports are not guessable
        // from earlier allocations.
        let mut r = [0u8; 4];
        let _ = ring::rand::SecureRandom::fill(&self.rng, &mut r);
        let start = u32::from_le_bytes(r) % span;
        for i in 0..span {
            let port = (self.min as u32 + (start + i) % span) as u16;
            if even && port % 2 == 1 {
                continue;
            }
            if bit(map.used(req.family), port) {
                continue;
            }
            if req.reserve_next && (port == self.max || bit(map.used(req.family), port + 1)) {
                continue;
            }
            let Ok(sock) = bind(ip, port, req.dont_fragment) else {
                continue;
            };
            let mut token = None;
            if req.reserve_next {
                let Ok(next) = bind(ip, port + 1, false) else {
                    continue;
                };
                let mut t = [0u8; 8];
                let _ = ring::rand::SecureRandom::fill(&self.rng, &mut t);
                let t = u64::from_le_bytes(t);
                set(map.used(req.family), port + 1, true);
                map.reserved.insert(
                    t,
                    Reserved {
                        socket: next,
                        family: req.family,
                        expires: now + RESERVATION_TTL,
                    },
                );
                token = Some(t);
            }
            set(map.used(req.family), port, true);
            let local = sock.local_addr().map_err(|_| RelayError::NoPorts)?;
            return Ok((
                sock,
                RelayGranted {
                    local,
                    reservation_token: token,
                },
            ));
        }
        Err(RelayError::NoPorts)
    }

    /// Returns a port to the pool.
    pub fn release(&mut self, local: SocketAddr) {
        let f = Family::of(&local);
        set(self.lock().used(f), local.port(), false);
    }

    /// Drops expired reservations (whichever loop's tick comes first).
    pub fn sweep(&mut self, now: Instant) {
        let mut map = self.lock();
        if map.reserved.is_empty() {
            return;
        }
        let expired: Vec<u64> = map
            .reserved
            .iter()
            .filter(|(_, r)| r.expires <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in expired {
            if let Some(r) = map.reserved.remove(&t) {
                if let Ok(a) = r.socket.local_addr() {
                    set(map.used(Family::of(&a)), a.port(), false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(even: bool, reserve: bool, token: Option<u64>) -> RelayRequest {
        RelayRequest {
            family: Family::V4,
            even_port: even,
            reserve_next: reserve,
            reservation: token,
            dont_fragment: false,
        }
    }

    #[test]
    fn even_port_reservation_and_exhaustion() {
        let now = Instant::now();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        // Pick a range unlikely to be in use.
        let mut p = RelayPorts::new(Some(lo), None, 41_000, 41_009);
        let (_s, g) = p.open(&req(true, true, None), now).unwrap();
        assert_eq!(g.local.port() % 2, 0);
        let token = g.reservation_token.unwrap();
        let (_s2, g2) = p.open(&req(false, false, Some(token)), now).unwrap();
        assert_eq!(g2.local.port(), g.local.port() + 1);
        // A token is single use.
        assert_eq!(
            p.open(&req(false, false, Some(token)), now).err(),
            Some(RelayError::BadToken)
        );
        let mut socks = Vec::new();
        while let Ok((s, g)) = p.open(&req(false, false, None), now) {
            assert!((41_000..=41_009).contains(&g.local.port()));
            socks.push((s, g));
        }
        assert_eq!(socks.len(), 8);
        assert_eq!(
            p.open(&req(false, false, None), now).err(),
            Some(RelayError::NoPorts)
        );
        p.release(socks.pop().unwrap().1.local);
        // released port can be bound again once its socket is closed
        assert!(p.open(&req(false, false, None), now).is_ok());
        // No IPv6 relay address: refused.
        let mut v6 = req(false, false, None);
        v6.family = Family::V6;
        assert_eq!(p.open(&v6, now).err(), Some(RelayError::NoPorts));
    }

    #[test]
    fn ports_are_random_within_the_range() {
        let now = Instant::now();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let mut p = RelayPorts::new(Some(lo), None, 42_000, 42_999);
        let ports: Vec<u16> = (0..16)
            .map(|_| {
                let (s, g) = p.open(&req(false, false, None), now).unwrap();
                drop(s);
                p.release(g.local);
                g.local.port()
            })
            .collect();
        assert!(ports.iter().all(|p| (42_000..=42_999).contains(p)));
        // Sequential allocation would give 42000, 42001, ...: random starting
        // points make consecutive successors vanishingly unlikely (16/1000 each).
        let successors = ports.windows(2).filter(|w| w[1] == w[0] + 1).count();
        assert!(successors < 4, "{ports:?}");
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert!(distinct.len() > 8, "{ports:?}");
    }

    #[test]
    fn reservations_expire() {
        let now = Instant::now();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let mut p = RelayPorts::new(Some(lo), None, 41_100, 41_109);
        let (_s, g) = p.open(&req(true, true, None), now).unwrap();
        let token = g.reservation_token.unwrap();
        p.sweep(now + RESERVATION_TTL);
        assert_eq!(
            p.open(&req(false, false, Some(token)), now).err(),
            Some(RelayError::BadToken)
        );
    }
}
