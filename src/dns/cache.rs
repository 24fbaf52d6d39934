//! The answer cache: pre-encoded responses keyed by what decides them.

use std::sync::Arc;

use moka::sync::Cache;

use super::encode::Template;

/// What decides an answer: the name, the type, the EDNS shape (none, EDNS,
/// EDNS+DO) and — for steered answers — the client's decision cell, plus the
/// subnet hash when the choice within a region depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Name id from the serving snapshot.
    pub name: u32,
    /// Query type.
    pub qtype: u16,
    /// 0 = no EDNS, 1 = EDNS, 2 = EDNS with DO.
    pub edns: u8,
    /// Placement class for steered answers.
    pub cell: Option<u32>,
    /// Client subnet hash, when the answer depends on it (else 0).
    pub bucket: u64,
}

/// A cached response and the snapshots it was built from.
#[derive(Debug)]
pub struct Cached {
    /// (serve-state generation, health epoch of the answer's pool or 0) it is valid for.
    pub generation: (u64, u64),
    /// Its response code (for metrics on hits).
    pub rcode: u16,
    /// The region a steered answer came from (for metrics on hits).
    pub region: Option<u16>,
    /// The encoded response.
    pub template: Template,
}

/// A bounded concurrent cache (moka, TinyLFU admission).
pub struct AnswerCache {
    inner: Cache<CacheKey, Arc<Cached>, ahash::RandomState>,
}

impl AnswerCache {
    /// A cache holding at most `capacity` answers.
    pub fn new(capacity: u64) -> Self {
        Self {
            inner: Cache::builder()
                .max_capacity(capacity)
                .build_with_hasher(ahash::RandomState::new()),
        }
    }

    /// Looks an answer up.
    #[inline]
    pub fn get(&self, k: &CacheKey) -> Option<Arc<Cached>> {
        self.inner.get(k)
    }

    /// Stores an answer.
    pub fn insert(&self, k: CacheKey, v: Arc<Cached>) {
        self.inner.insert(k, v);
    }

    /// Drops every entry (after a snapshot change).
    pub fn clear(&self) {
        self.inner.invalidate_all();
    }

    /// Number of entries (approximate).
    pub fn len(&self) -> u64 {
        self.inner.entry_count()
    }

    /// Whether the cache is empty (approximate).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A small direct-mapped cache in front of the shared one, owned by one UDP
/// worker: no lock, no atomic, no reference-count traffic on a hit.
pub struct LocalCache {
    slots: Box<[Slot]>,
}

/// One slot of a [`LocalCache`].
type Slot = Option<(CacheKey, Arc<Cached>)>;

impl LocalCache {
    /// Slots (a power of two).
    pub const SLOTS: usize = 8192;

    /// An empty cache.
    pub fn new() -> Self {
        Self {
            slots: (0..Self::SLOTS).map(|_| None).collect(),
        }
    }

    #[inline]
    fn slot(k: &CacheKey) -> usize {
        let h = crate::steer::client_hash(
            (k.name as u128) << 64
                | (k.qtype as u128) << 32
                | (k.edns as u128) << 24
                | k.cell.map_or(0, |c| c as u128 + 1),
            0,
        ) ^ k.bucket;
        h as usize & (Self::SLOTS - 1)
    }

    /// The entry for `k`, if this slot holds it.
    #[inline]
    pub fn get(&self, k: &CacheKey) -> Option<&Arc<Cached>> {
        match &self.slots[Self::slot(k)] {
            Some((key, v)) if key == k => Some(v),
            _ => None,
        }
    }

    /// Stores `v` for `k`, evicting whatever shared the slot.
    #[inline]
    pub fn insert(&mut self, k: CacheKey, v: Arc<Cached>) {
        self.slots[Self::slot(&k)] = Some((k, v));
    }
}

impl Default for LocalCache {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::client::Dependence;

    fn key(name: u32, cell: Option<u32>, bucket: u64) -> CacheKey {
        CacheKey {
            name,
            qtype: 1,
            edns: 1,
            cell,
            bucket,
        }
    }

    fn entry(rcode: u16) -> Arc<Cached> {
        Arc::new(Cached {
            generation: (1, 0),
            rcode,
            region: None,
            template: Template {
                bytes: Box::new([0; 12]),
                question_end: 12,
                answer_end: 12,
                authority_end: 12,
                additional_ends: Box::new([]),
                referral: false,
                opt_at: None,
                dependence: Dependence::None,
            },
        })
    }

    #[test]
    fn local_cache_holds_one_key_per_slot() {
        let mut c = LocalCache::new();
        let a = key(1, Some(3), 0);
        c.insert(a, entry(0));
        assert_eq!(c.get(&a).map(|e| e.rcode), Some(0));
        // Another cell, bucket or name is another key.
        assert!(c.get(&key(1, Some(4), 0)).is_none());
        assert!(c.get(&key(1, Some(3), 9)).is_none());
        assert!(c.get(&key(2, Some(3), 0)).is_none());
        // A key in the same slot evicts the first: find one.
        let b = (2..)
            .map(|n| key(n, Some(3), 0))
            .find(|k| LocalCache::slot(k) == LocalCache::slot(&a))
            .unwrap();
        c.insert(b, entry(3));
        assert!(c.get(&a).is_none());
        assert_eq!(c.get(&b).map(|e| e.rcode), Some(3));
    }

    #[test]
    fn shared_cache_stores_and_clears() {
        let c = AnswerCache::new(100);
        let a = key(1, None, 0);
        c.insert(a, entry(0));
        assert!(c.get(&a).is_some());
        assert!(c.get(&key(1, Some(0), 0)).is_none(), "no cell ≠ cell 0");
        c.clear();
        assert!(c.get(&a).is_none());
    }
}
