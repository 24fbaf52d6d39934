//! Who is asking: the client subnet (from ECS or the packet source) and the
//! decision cell it falls in.

use std::net::IpAddr;

use super::state::ServeState;
use super::wire::{Ecs, Query};
use crate::geo::Location;
use crate::steer::client_hash;

/// How the answer depends on the client, for caching and the ECS scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependence {
    /// The same for every client (ECS scope 0).
    None,
    /// Depends on the client's decision cell (scope = cell network prefix).
    Cell,
    /// Depends on the client's subnet hash too (scope ≥ hashing prefix).
    Subnet,
}

/// The decision cell of a client: its placement class and the widest prefix
/// around it with the same class (the ECS scope of cell-wide answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cell {
    /// Placement class (index into the compiled map).
    pub class: u32,
    /// Prefix length of the block the decision holds for.
    pub prefix: u8,
}

/// A client as steering sees it.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// The client subnet's address, bits beyond `prefix` cleared.
    pub addr: IpAddr,
    /// Effective prefix: the ECS source prefix capped for privacy, or the cap for packet sources.
    pub prefix: u8,
    /// Hash of the subnet, for rendezvous stickiness.
    pub hash: u64,
    /// The query's ECS option, echoed in the response.
    pub ecs: Option<Ecs>,
}

fn mask(ip: IpAddr, prefix: u8) -> (IpAddr, u128) {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix.min(32))
            };
            let v = bits & m;
            (IpAddr::from(v.to_be_bytes()), v as u128)
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix.min(128))
            };
            let v = bits & m;
            (IpAddr::from(v.to_be_bytes()), v)
        }
    }
}

impl Client {
    /// Derives the client from a query's ECS option (when its source prefix
    /// is non-zero) or else from the packet's source address.
    pub fn new(st: &ServeState, q: &Query, src: IpAddr) -> Client {
        let s = &st.config.file.steering;
        let ecs = q.edns.and_then(|e| e.ecs);
        let (ip, want) = match ecs {
            Some(e) if e.source > 0 => (e.addr, e.source),
            _ => {
                let ip = src.to_canonical();
                (ip, if ip.is_ipv4() { 32 } else { 128 })
            }
        };
        let cap = if ip.is_ipv4() {
            s.ecs_max_prefix_v4
        } else {
            s.ecs_max_prefix_v6
        };
        let prefix = want.min(cap);
        let (addr, bits) = mask(ip, prefix);
        Client {
            addr,
            prefix,
            hash: client_hash(bits, prefix),
            ecs,
        }
    }

    /// The decision cell (hot path: a binary search in the compiled map).
    #[inline]
    pub fn cell(&self, st: &ServeState) -> Cell {
        let h = st.cells.lookup(self.addr);
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        Cell {
            class: h.class,
            prefix: h.prefix.min(max),
        }
    }

    /// The decoded location (cache misses, `explain`).
    pub fn location(&self, st: &ServeState) -> Option<Location> {
        st.geo.locate(self.addr)
    }

    /// The ECS SCOPE PREFIX-LENGTH for a response that depends on the client
    /// as `dep` says: 0 for static data or an ECS source of 0; the deciding
    /// network's prefix; at least the hashing prefix for per-subnet answers.
    pub fn scope(&self, dep: Dependence, cell: Option<Cell>) -> u8 {
        let Some(ecs) = self.ecs else { return 0 };
        if ecs.source == 0 {
            return 0;
        }
        match (dep, cell) {
            (Dependence::None, _) | (_, None) => 0,
            (Dependence::Cell, Some(c)) => c.prefix,
            (Dependence::Subnet, Some(c)) => c.prefix.max(self.prefix),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking() {
        let (a, _) = mask("81.2.69.77".parse().unwrap(), 24);
        assert_eq!(a, "81.2.69.0".parse::<IpAddr>().unwrap());
        let (a, _) = mask("2001:db8:1:2ff:3::1".parse().unwrap(), 56);
        assert_eq!(a, "2001:db8:1:200::".parse::<IpAddr>().unwrap());
        let (a, v) = mask("8.8.8.8".parse().unwrap(), 0);
        assert_eq!((a, v), ("0.0.0.0".parse().unwrap(), 0));
    }
}
