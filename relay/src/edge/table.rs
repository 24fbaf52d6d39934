//! Admission of TCP/TLS connections: how many are open in all and per
//! client address. Pure bookkeeping; the accept stage claims a slot when it
//! accepts a connection and the event loop that ends up owning it releases
//! the slot when it closes. The limits come with each call, so a reload
//! applies to the next connection.

use std::collections::HashMap;
use std::net::IpAddr;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `limits.max_connections` reached.
    Total,
    /// `limits.connections_per_ip` reached for this address.
    PerIp,
}

/// Open connections in all and per client address.
#[derive(Debug, Default)]
pub struct ConnTable {
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
}

impl ConnTable {
    /// Claims a slot for a connection from `ip` under `max_total` and
    /// `per_ip_max` (0 = no per-address limit).
    pub fn open(&mut self, ip: IpAddr, max_total: u32, per_ip_max: u32) -> Result<(), Refused> {
        if self.total >= max_total {
            return Err(Refused::Total);
        }
        if per_ip_max > 0 && self.from_ip(ip) >= per_ip_max {
            return Err(Refused::PerIp);
        }
        *self.per_ip.entry(ip).or_insert(0) += 1;
        self.total += 1;
        Ok(())
    }

    /// Releases the slot of a connection from `ip`.
    pub fn close(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Moves a connection's slot from `from` to `to` (a balancer's address
    /// to the client's it stated), under `per_ip_max` for `to`. On refusal
    /// the slot stays with `from`.
    pub fn rekey(&mut self, from: IpAddr, to: IpAddr, per_ip_max: u32) -> Result<(), Refused> {
        if from == to {
            return Ok(());
        }
        if per_ip_max > 0 && self.from_ip(to) >= per_ip_max {
            return Err(Refused::PerIp);
        }
        self.close(from);
        self.total += 1;
        *self.per_ip.entry(to).or_insert(0) += 1;
        Ok(())
    }

    /// Open connections in all.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Open connections from `ip`.
    pub fn from_ip(&self, ip: IpAddr) -> u32 {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_ip_limit_leaves_other_addresses_alone() {
        let mut t = ConnTable::default();
        for _ in 0..3 {
            t.open(ip("192.0.2.1"), 10, 3).unwrap();
        }
        assert_eq!(t.open(ip("192.0.2.1"), 10, 3), Err(Refused::PerIp));
        t.open(ip("192.0.2.2"), 10, 3).unwrap();
        assert_eq!(t.total(), 4);
        t.close(ip("192.0.2.1"));
        t.open(ip("192.0.2.1"), 10, 3).unwrap();
        assert_eq!(t.from_ip(ip("192.0.2.1")), 3);
    }

    #[test]
    fn rekey_moves_a_balancer_slot_to_the_client() {
        let mut t = ConnTable::default();
        let lb = ip("10.0.0.1");
        for _ in 0..3 {
            t.open(lb, 10, 0).unwrap();
        }
        t.rekey(lb, ip("198.51.100.7"), 1).unwrap();
        assert_eq!(t.rekey(lb, ip("198.51.100.7"), 1), Err(Refused::PerIp));
        t.rekey(lb, ip("198.51.100.8"), 1).unwrap();
        assert_eq!((t.from_ip(lb), t.total()), (1, 3));
        t.close(ip("198.51.100.7"));
        t.close(ip("198.51.100.8"));
        t.close(lb);
        assert_eq!(t.total(), 0);
        assert!(t.per_ip.is_empty());
    }

    #[test]
    fn total_limit_and_release() {
        let mut t = ConnTable::default();
        t.open(ip("192.0.2.1"), 2, 0).unwrap();
        t.open(ip("2001:db8::1"), 2, 0).unwrap();
        assert_eq!(t.open(ip("192.0.2.3"), 2, 0), Err(Refused::Total));
        // A refused address holds nothing.
        assert_eq!(t.from_ip(ip("192.0.2.3")), 0);
        assert_eq!(t.per_ip.len(), 2);
        t.close(ip("2001:db8::1"));
        t.close(ip("2001:db8::1")); // a second release is a no-op
        assert_eq!(t.total(), 1);
        t.open(ip("192.0.2.3"), 2, 0).unwrap();
        // A lowered limit (reload) applies to the next connection only.
        assert_eq!(t.open(ip("192.0.2.4"), 1, 0), Err(Refused::Total));
        assert_eq!(t.total(), 2);
    }
}
