//! Quotas and rate limits: allocation counts (per user, per client IP,
//! total), token buckets for bandwidth, and the per-source limit on 401
//! replies. All functions take the current time; nothing here reads a clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// Token bucket in bytes; refilled at `rate` bytes/s up to `burst` bytes.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket for `bits_per_sec`, allowing a burst of 1/2 s of traffic
    /// (at least 64 KiB so single large datagrams always fit).
    pub fn new(bits_per_sec: u64, now: Instant) -> Self {
        let rate = bits_per_sec as f64 / 8.0;
        let burst = (rate / 2.0).max(65_536.0);
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes `bytes` if available; returns false (and takes nothing) otherwise.
    #[inline]
    pub fn take(&mut self, bytes: usize, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        if dt > 0.0 {
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
            self.last = now;
        }
        let b = bytes as f64;
        if self.tokens >= b {
            self.tokens -= b;
            true
        } else {
            false
        }
    }
}

/// Key of a source for rate limiting: an IPv4 address (IPv4-mapped IPv6
/// included), or the /64 of an IPv6 address, since one IPv6 subscriber
/// usually holds a whole /64 and would otherwise get 2^64 buckets.
#[inline]
pub fn source_key(ip: IpAddr) -> u128 {
    let v6 = match ip {
        IpAddr::V4(a) => return (0xffff_u128 << 32) | u32::from(a) as u128,
        IpAddr::V6(a) => a,
    };
    match v6.to_ipv4_mapped() {
        Some(a) => (0xffff_u128 << 32) | u32::from(a) as u128,
        None => u128::from(v6) & !((1u128 << 64) - 1),
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    key: u128,
    tokens: f32,
    last: Instant,
}

/// Default number of sources a [`SourceLimiter`] tracks.
pub const SOURCE_SLOTS: usize = 16_384;

/// Per-source token buckets (`rate` events/s, burst `2 * rate`) in a fixed
/// table: two candidate slots per source (keyed hash with a random seed), the
/// least recently used of the two is evicted when neither holds the source.
/// The table never grows and a full table never refuses a new source: an
/// evicted source merely starts again with a full bucket.
#[derive(Debug)]
pub struct SourceLimiter {
    rate: f32,
    burst: f32,
    seed: u64,
    slots: Vec<Option<Slot>>,
}

impl SourceLimiter {
    /// `per_sec == 0` disables the limit (and allocates no table).
    pub fn new(per_sec: u32) -> Self {
        Self::with_slots(per_sec, SOURCE_SLOTS)
    }

    /// Like [`SourceLimiter::new`] with `slots` table entries (rounded up to a power of two).
    pub fn with_slots(per_sec: u32, slots: usize) -> Self {
        let mut seed = [0u8; 8];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
        let n = if per_sec == 0 {
            0
        } else {
            slots.max(2).next_power_of_two()
        };
        Self {
            rate: per_sec as f32,
            burst: (per_sec as f32 * 2.0).max(1.0),
            seed: u64::from_le_bytes(seed),
            slots: vec![None; n],
        }
    }

    /// Number of table entries (the bound on tracked sources).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Number of sources currently tracked.
    pub fn tracked(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    fn index(&self, key: u128, round: u64) -> usize {
        let mut h = (key as u64) ^ ((key >> 64) as u64).rotate_left(29) ^ self.seed;
        h = h.wrapping_add(round.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        (h as usize) & (self.slots.len() - 1)
    }

    /// Takes one token for `ip`'s source; false when its bucket is empty.
    #[inline]
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.slots.is_empty() {
            return true;
        }
        let key = source_key(ip);
        let (i, j) = (self.index(key, 0), self.index(key, 1));
        for k in [i, j] {
            if let Some(s) = self.slots[k].as_mut().filter(|s| s.key == key) {
                let dt = now.saturating_duration_since(s.last).as_secs_f32();
                s.tokens = (s.tokens + dt * self.rate).min(self.burst);
                s.last = now;
                if s.tokens >= 1.0 {
                    s.tokens -= 1.0;
                    return true;
                }
                return false;
            }
        }
        let victim = match (&self.slots[i], &self.slots[j]) {
            (None, _) => i,
            (_, None) => j,
            (Some(a), Some(b)) => {
                if a.last <= b.last {
                    i
                } else {
                    j
                }
            }
        };
        self.slots[victim] = Some(Slot {
            key,
            tokens: self.burst - 1.0,
            last: now,
        });
        true
    }
}

/// Caps the 401/438 replies per source (IPv4 address or IPv6 /64): a
/// [`SourceLimiter`] of `per_sec` replies per second with a burst of twice that.
pub type UnauthorizedLimiter = SourceLimiter;

/// Which quota refused an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaError {
    /// Too many allocations for this username (486).
    PerUser,
    /// Too many allocations from this client IP (486).
    PerIp,
    /// Relay at capacity (508, or 300 with an alternate server).
    Capacity,
}

/// Allocation counters.
#[derive(Debug, Default)]
pub struct Quotas {
    per_user_max: u32,
    per_ip_max: u32,
    capacity: u32,
    total: u32,
    users: HashMap<Arc<str>, u32>,
    ips: HashMap<IpAddr, u32>,
}

impl Quotas {
    /// Limits of 0 for `per_user_max`/`per_ip_max` mean unlimited.
    pub fn new(per_user_max: u32, per_ip_max: u32, capacity: u32) -> Self {
        Self {
            per_user_max,
            per_ip_max,
            capacity,
            ..Default::default()
        }
    }

    /// Replaces the limits (configuration reload); current counts are kept,
    /// so allocations above a lowered limit stay until they end.
    pub fn set_limits(&mut self, per_user_max: u32, per_ip_max: u32, capacity: u32) {
        self.per_user_max = per_user_max;
        self.per_ip_max = per_ip_max;
        self.capacity = capacity;
    }

    /// Current total.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Capacity.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Checks whether one more allocation fits, without taking it.
    pub fn check(&self, user: &str, ip: IpAddr) -> Result<(), QuotaError> {
        self.check_n(user, ip, 1)
    }

    /// Checks whether `n` more slots (an allocation plus a reserved port) fit.
    pub fn check_n(&self, user: &str, ip: IpAddr, n: u32) -> Result<(), QuotaError> {
        if self.total + n > self.capacity {
            return Err(QuotaError::Capacity);
        }
        let user_n = self.users.get(user).copied().unwrap_or(0);
        if self.per_user_max > 0 && user_n + n > self.per_user_max {
            return Err(QuotaError::PerUser);
        }
        if self.per_ip_max > 0 && self.ips.get(&ip).copied().unwrap_or(0) + n > self.per_ip_max {
            return Err(QuotaError::PerIp);
        }
        Ok(())
    }

    /// Takes one allocation slot (call after a successful [`Quotas::check`]).
    pub fn acquire(&mut self, user: &Arc<str>, ip: IpAddr) {
        self.total += 1;
        *self.users.entry(user.clone()).or_default() += 1;
        *self.ips.entry(ip).or_default() += 1;
    }

    /// Releases a slot taken by [`Quotas::acquire`].
    pub fn release(&mut self, user: &str, ip: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(c) = self.users.get_mut(user) {
            *c -= 1;
            if *c == 0 {
                self.users.remove(user);
            }
        }
        if let Some(c) = self.ips.get_mut(&ip) {
            *c -= 1;
            if *c == 0 {
                self.ips.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn token_bucket_limits_rate() {
        let t0 = Instant::now();
        // 1 Mbit/s = 125 kB/s, burst 65.5 kB.
        let mut b = TokenBucket::new(1_000_000, t0);
        let mut sent = 0;
        while b.take(1000, t0) {
            sent += 1000;
        }
        assert!((65_000..=66_000).contains(&sent), "{sent}");
        assert!(!b.take(1000, t0 + Duration::from_millis(1)));
        // After one second about 125 kB more are available (capped by burst).
        let mut later = 0;
        while b.take(1000, t0 + Duration::from_secs(1)) {
            later += 1000;
        }
        assert!((64_000..=66_000).contains(&later), "{later}");
    }

    #[test]
    fn source_limiter_token_bucket_per_source() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        // Burst of 2 * rate, then refused until tokens come back.
        assert!((0..6).all(|_| l.allow(a, t0)));
        assert!(!l.allow(a, t0));
        assert!(l.allow(b, t0));
        assert!(!l.allow(a, t0 + Duration::from_millis(100)));
        assert!(l.allow(a, t0 + Duration::from_millis(400)));
        let mut off = SourceLimiter::new(0);
        assert!((0..1000).all(|_| off.allow(a, t0)));
        assert_eq!(off.slots(), 0);
    }

    #[test]
    fn source_limiter_groups_ipv6_per_64_and_maps_v4() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(1);
        let x: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(l.allow(x, t0) && l.allow(y, t0));
        assert!(
            !l.allow(x, t0) && !l.allow(y, t0),
            "same /64 shares a bucket"
        );
        assert!(l.allow(other, t0));
        assert_eq!(
            source_key("::ffff:192.0.2.1".parse().unwrap()),
            source_key("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn source_limiter_full_table_still_admits_new_sources() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::with_slots(1, 64);
        // A flood from far more sources than the table holds.
        for i in 0..10_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.allow(ip, t0);
        }
        assert!(l.tracked() <= 64);
        // A newcomer is not refused because the table is full.
        assert!(l.allow("198.51.100.1".parse().unwrap(), t0));
        // And a source that keeps asking stays limited despite the churn.
        let hot: IpAddr = "198.51.100.2".parse().unwrap();
        assert!(l.allow(hot, t0) && l.allow(hot, t0));
        assert!(!l.allow(hot, t0));
    }

    #[test]
    fn quotas_per_user_ip_and_capacity() {
        let mut q = Quotas::new(2, 3, 4);
        let alice: Arc<str> = "alice".into();
        let bob: Arc<str> = "bob".into();
        let ip1: IpAddr = "192.0.2.1".parse().unwrap();
        let ip2: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..2 {
            q.check(&alice, ip1).unwrap();
            q.acquire(&alice, ip1);
        }
        assert_eq!(q.check(&alice, ip2), Err(QuotaError::PerUser));
        q.check(&bob, ip1).unwrap();
        q.acquire(&bob, ip1);
        assert_eq!(q.check(&bob, ip1), Err(QuotaError::PerIp));
        q.acquire(&bob, ip2);
        assert_eq!(
            q.check("carol", "192.0.2.3".parse().unwrap()),
            Err(QuotaError::Capacity)
        );
        q.release(&alice, ip1);
        assert_eq!(q.total(), 3);
        q.check(&alice, ip2).unwrap();
        q.release(&alice, ip1);
        q.release(&bob, ip1);
        q.release(&bob, ip2);
        assert_eq!(q.total(), 0);
        assert!(q.users.is_empty() && q.ips.is_empty());
    }
}

/// The allocation counters of a relay with several event loops: one
/// [`Quotas`] behind a lock, taken only when an allocation (or a reserved
/// port) is created, ends or is reconfigured — never per packet.
#[derive(Debug, Clone, Default)]
pub struct SharedQuotas(Arc<std::sync::Mutex<Quotas>>);

impl From<Quotas> for SharedQuotas {
    fn from(q: Quotas) -> Self {
        Self(Arc::new(std::sync::Mutex::new(q)))
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (every update under these locks is a single step).
pub fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SharedQuotas {
    fn lock(&self) -> std::sync::MutexGuard<'_, Quotas> {
        locked(&self.0)
    }

    /// See [`Quotas::check_n`].
    pub fn check_n(&self, user: &str, ip: IpAddr, n: u32) -> Result<(), QuotaError> {
        self.lock().check_n(user, ip, n)
    }

    /// Checks and takes `n` slots in one step, so two loops cannot both pass
    /// the check for the last slot.
    pub fn try_take_n(&self, user: &Arc<str>, ip: IpAddr, n: u32) -> Result<(), QuotaError> {
        let mut q = self.lock();
        q.check_n(user, ip, n)?;
        for _ in 0..n {
            q.acquire(user, ip);
        }
        Ok(())
    }

    /// See [`Quotas::release`].
    pub fn release(&self, user: &str, ip: IpAddr) {
        self.lock().release(user, ip);
    }

    /// See [`Quotas::set_limits`].
    pub fn set_limits(&self, per_user_max: u32, per_ip_max: u32, capacity: u32) {
        self.lock().set_limits(per_user_max, per_ip_max, capacity);
    }

    /// See [`Quotas::capacity`].
    pub fn capacity(&self) -> u32 {
        self.lock().capacity()
    }

    /// See [`Quotas::total`].
    pub fn total(&self) -> u32 {
        self.lock().total()
    }
}

/// A rate of `per_sec` shared by `loops` event loops: each loop enforces its
/// share, rounded up (0 stays 0, "no limit"). The kernel's 5-tuple hash
/// spreads one source's ports over the loops, so the shares add up to the
/// configured rate for a source with many ports; one 5-tuple stays on one
/// loop and gets its loop's share.
pub fn loop_share(per_sec: u32, loops: u32) -> u32 {
    // A share is never above the rate, so it fits back into a u32.
    loop_share_u64(u64::from(per_sec), loops) as u32
}

/// Like [`loop_share`] for a 64-bit rate (bits/s); 0 stays 0.
pub fn loop_share_u64(rate: u64, loops: u32) -> u64 {
    if rate == 0 {
        0
    } else {
        rate.div_ceil(u64::from(loops.max(1))).max(1)
    }
}
