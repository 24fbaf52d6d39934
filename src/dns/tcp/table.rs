//! Admission of TCP connections: the connection limits in all and per
//! client, and which idle connection makes room when one is reached. A pure
//! state machine (no sockets, no clock: idleness is stamped by the
//! connections themselves in milliseconds of the caller's choosing).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::Notify;

/// Who a connection counts against: an IPv4 address, or an IPv6 /64
/// (one host usually has a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u128);

impl ClientKey {
    /// The key of a peer address.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(a) => ClientKey(u32::from(a) as u128),
            IpAddr::V6(a) => ClientKey(1 << 127 | (u128::from(a) >> 64)),
        }
    }
}

/// One connection's shared state: when it became idle, and the signal that
/// closes it.
#[derive(Debug, Default)]
pub struct Slot {
    /// 0 while a query is in progress; else 1 + the time it became idle.
    idle_since: AtomicU64,
    /// Notified when the table evicts the connection.
    pub evict: Notify,
}

impl Slot {
    /// The connection waits for its next query since `now_ms`.
    pub fn set_idle(&self, now_ms: u64) {
        self.idle_since.store(now_ms + 1, Relaxed);
    }

    /// A query is in progress.
    pub fn set_busy(&self) {
        self.idle_since.store(0, Relaxed);
    }

    fn idle(&self) -> Option<u64> {
        match self.idle_since.load(Relaxed) {
            0 => None,
            t => Some(t - 1),
        }
    }
}

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// In all.
    pub max: usize,
    /// Per [`ClientKey`].
    pub per_client: usize,
}

/// A connection's id in the table.
pub type ConnId = u64;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The client holds its limit of connections, all mid-query.
    ClientBusy,
    /// The server holds its limit of connections, all mid-query.
    AllBusy,
}

/// An admitted connection.
#[derive(Debug)]
pub struct Admitted {
    /// Its id (for [`ConnTable::remove`]).
    pub id: ConnId,
    /// Its shared state.
    pub slot: Arc<Slot>,
    /// Idle connections closed to make room (already out of the table and
    /// notified).
    pub evicted: usize,
}

struct Entry {
    key: ClientKey,
    slot: Arc<Slot>,
}

/// The open connections.
pub struct ConnTable {
    limits: Limits,
    conns: HashMap<ConnId, Entry>,
    per_client: HashMap<ClientKey, usize>,
    next: ConnId,
}

impl ConnTable {
    /// An empty table.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            conns: HashMap::new(),
            per_client: HashMap::new(),
            next: 0,
        }
    }

    /// New limits (on reload); connections over them stay until they close
    /// or are evicted by later admissions.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Admits a connection from `key` at `now_ms`, closing the oldest idle
    /// connection of the same client when it is at its limit, then the
    /// oldest idle one of all when the server is at its limit. The new
    /// connection is idle (it waits for its first query).
    pub fn admit(&mut self, key: ClientKey, now_ms: u64) -> Result<Admitted, Refused> {
        let mut evicted = 0;
        while self.per_client.get(&key).copied().unwrap_or(0) >= self.limits.per_client {
            let victim = self.oldest_idle(Some(key)).ok_or(Refused::ClientBusy)?;
            self.evict(victim);
            evicted += 1;
        }
        while self.conns.len() >= self.limits.max {
            let victim = self.oldest_idle(None).ok_or(Refused::AllBusy)?;
            self.evict(victim);
            evicted += 1;
        }
        let id = self.next;
        self.next += 1;
        let slot = Arc::new(Slot::default());
        slot.set_idle(now_ms);
        self.conns.insert(
            id,
            Entry {
                key,
                slot: slot.clone(),
            },
        );
        *self.per_client.entry(key).or_default() += 1;
        Ok(Admitted { id, slot, evicted })
    }

    /// Forgets a closed connection. False when it was no longer in the
    /// table (evicted: already accounted for by [`Admitted::evicted`]).
    pub fn remove(&mut self, id: ConnId) -> bool {
        let Some(e) = self.conns.remove(&id) else {
            return false;
        };
        if let Some(n) = self.per_client.get_mut(&e.key) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&e.key);
            }
        }
        true
    }

    fn oldest_idle(&self, key: Option<ClientKey>) -> Option<ConnId> {
        self.conns
            .iter()
            .filter(|(_, e)| key.is_none_or(|k| e.key == k))
            .filter_map(|(id, e)| e.slot.idle().map(|t| (t, *id)))
            .min()
            .map(|(_, id)| id)
    }

    fn evict(&mut self, id: ConnId) {
        if let Some(e) = self.conns.get(&id) {
            // A permit is stored if the connection is not waiting right now,
            // so it closes the next time it would wait.
            e.slot.evict.notify_one();
        }
        self.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ClientKey {
        ClientKey::of(s.parse().unwrap())
    }

    #[test]
    fn ipv6_clients_count_per_64_and_ipv4_per_address() {
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        assert_ne!(key("::"), key("0.0.0.0"), "families never collide");
    }

    #[test]
    fn a_client_at_its_limit_loses_its_oldest_idle_connection() {
        let mut t = ConnTable::new(Limits {
            max: 100,
            per_client: 3,
        });
        let a: Vec<Admitted> = (0..3)
            .map(|_| t.admit(key("192.0.2.1"), 0).unwrap())
            .collect();
        a[0].slot.set_idle(50);
        a[1].slot.set_idle(10); // the oldest idle
        a[2].slot.set_busy();
        let other = t.admit(key("192.0.2.2"), 0).unwrap();
        other.slot.set_idle(0); // older, but another client's
        let n = t.admit(key("192.0.2.1"), 0).unwrap();
        assert_eq!(n.evicted, 1);
        assert_eq!(t.len(), 4);
        // a[1] was told to close; the others were not.
        let fired = |s: &Slot| {
            let f = s.evict.notified();
            tokio::pin!(f);
            f.as_mut().enable()
        };
        assert!(fired(&a[1].slot));
        assert!(!fired(&a[0].slot) && !fired(&a[2].slot) && !fired(&other.slot));
        // Removing an evicted connection later changes nothing.
        assert!(!t.remove(a[1].id));
        assert_eq!(t.len(), 4);
        assert!(t.remove(a[0].id));
    }

    #[test]
    fn a_full_server_loses_its_oldest_idle_connection_of_any_client() {
        let mut t = ConnTable::new(Limits {
            max: 3,
            per_client: 3,
        });
        let a = t.admit(key("192.0.2.1"), 0).unwrap();
        let b = t.admit(key("192.0.2.2"), 0).unwrap();
        let c = t.admit(key("192.0.2.3"), 0).unwrap();
        a.slot.set_idle(30);
        b.slot.set_idle(20);
        c.slot.set_busy();
        let d = t.admit(key("192.0.2.4"), 0).unwrap();
        assert_eq!((d.evicted, t.len()), (1, 3));
        // b is gone: a is the oldest idle now.
        d.slot.set_busy();
        assert_eq!(t.admit(key("192.0.2.5"), 0).unwrap().evicted, 1);
    }

    #[test]
    fn only_busy_slots_refuse() {
        let mut t = ConnTable::new(Limits {
            max: 2,
            per_client: 1,
        });
        let a = t.admit(key("192.0.2.1"), 0).unwrap();
        a.slot.set_busy();
        assert_eq!(
            t.admit(key("192.0.2.1"), 0).unwrap_err(),
            Refused::ClientBusy
        );
        let b = t.admit(key("192.0.2.2"), 0).unwrap();
        b.slot.set_busy();
        assert_eq!(t.admit(key("192.0.2.3"), 0).unwrap_err(), Refused::AllBusy);
        // A new connection is idle (no query yet): it makes room.
        t.remove(b.id);
        let c = t.admit(key("192.0.2.3"), 7).unwrap();
        assert_eq!(c.slot.idle(), Some(7));
        let d = t.admit(key("192.0.2.4"), 8).unwrap();
        assert_eq!(d.evicted, 1);
        t.remove(d.id);
        t.remove(a.id);
        t.remove(c.id);
        assert!(t.is_empty());
        assert!(t.per_client.is_empty());
    }
}
