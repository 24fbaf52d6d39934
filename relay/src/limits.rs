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

/// Caps the number of 401 replies per source IP per second.
#[derive(Debug, Default)]
pub struct UnauthorizedLimiter {
    per_sec: u32,
    window: u64,
    counts: HashMap<IpAddr, u32>,
}

/// Bound on tracked sources per window; beyond it new sources are refused
/// (their 401 is not sent) until the window turns over.
const MAX_TRACKED: usize = 100_000;

impl UnauthorizedLimiter {
    /// `per_sec == 0` disables the limit.
    pub fn new(per_sec: u32) -> Self {
        Self {
            per_sec,
            window: 0,
            counts: HashMap::new(),
        }
    }

    /// Whether a 401 may be sent to `ip` in the second `now_secs`.
    pub fn allow(&mut self, ip: IpAddr, now_secs: u64) -> bool {
        if self.per_sec == 0 {
            return true;
        }
        if now_secs != self.window {
            self.window = now_secs;
            self.counts.clear();
        }
        let full = self.counts.len() >= MAX_TRACKED;
        match self.counts.get_mut(&ip) {
            Some(c) if *c >= self.per_sec => false,
            Some(c) => {
                *c += 1;
                true
            }
            None if full => false,
            None => {
                self.counts.insert(ip, 1);
                true
            }
        }
    }
}

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
        if self.total >= self.capacity {
            return Err(QuotaError::Capacity);
        }
        if self.per_user_max > 0 && self.users.get(user).copied().unwrap_or(0) >= self.per_user_max
        {
            return Err(QuotaError::PerUser);
        }
        if self.per_ip_max > 0 && self.ips.get(&ip).copied().unwrap_or(0) >= self.per_ip_max {
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
    fn unauthorized_limiter_per_ip_per_second() {
        let mut l = UnauthorizedLimiter::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.allow(a, 10) && l.allow(a, 10) && l.allow(a, 10));
        assert!(!l.allow(a, 10));
        assert!(l.allow(b, 10));
        assert!(l.allow(a, 11));
        let mut off = UnauthorizedLimiter::new(0);
        assert!((0..1000).all(|_| off.allow(a, 1)));
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
