//! Response rate limiting (the BIND/NSD/Knot model), sans-IO.
//!
//! Each UDP worker owns one [`RrlTable`]: a fixed-size array of token
//! buckets allocated once, indexed by a keyed hash of the client's prefix
//! (/24 IPv4, /56 IPv6 by default). A bucket refills at
//! `responses_per_second` and holds at most one second's worth. When it is
//! empty, every `slip`-th limited answer is sent truncated (TC=1, question
//! only) so a real resolver retries over TCP, the others are dropped. No lock,
//! no allocation and no system call per query: the caller passes the time,
//! read once per receive batch.
//!
//! Classes: like Knot's and NSD's error class and BIND's `errors-per-second`,
//! error responses (FORMERR, SERVFAIL, NOTIMP, REFUSED, ...) are counted in a
//! bucket of their own per prefix, at the same rate. A client that sends
//! garbage thus spends its error budget, not the budget of its real answers
//! (NOERROR and NXDOMAIN): a resolver behind a prefix that also carries a
//! broken or hostile client keeps getting its answers, and a spoofed error
//! flood is limited all the same.
//!
//! Collisions: a slot is probed at two positions; a slot held by another
//! prefix is taken over only when that prefix has been idle for a second
//! (its bucket would be full again anyway), otherwise the newcomer shares
//! the busy slot's budget. A flood can thus never escape its limit by
//! colliding with someone else; at worst an innocent colliding prefix shares
//! a flooder's budget until the flood stops (the hash is keyed with a random
//! seed per table so that an attacker cannot aim at a victim).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::RrlConfig;

/// What to do with one UDP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it as is.
    Send,
    /// Send it truncated (TC=1, no records) instead.
    Slip,
    /// Send nothing.
    Drop,
}

/// The limiter's settings, copied out of the config (no heap on the hot path
/// except the allow-list, which is only read).
#[derive(Debug, Clone, PartialEq)]
pub struct RrlParams {
    /// Limiting on at all.
    pub enabled: bool,
    /// Answers per second per prefix.
    pub rate: u32,
    /// Every `slip`-th limited answer is truncated instead of dropped; 0 = never.
    pub slip: u32,
    /// IPv4 prefix length of a bucket.
    pub v4_prefix: u8,
    /// IPv6 prefix length of a bucket.
    pub v6_prefix: u8,
    /// Count what would be limited, limit nothing.
    pub dry_run: bool,
    /// Clients never limited.
    pub allow: Vec<IpNet>,
}

impl From<&RrlConfig> for RrlParams {
    fn from(c: &RrlConfig) -> Self {
        RrlParams {
            enabled: c.enabled,
            rate: c.responses_per_second,
            slip: c.slip,
            v4_prefix: c.ipv4_prefix,
            v6_prefix: c.ipv6_prefix,
            dry_run: c.dry_run,
            allow: c.allow.clone(),
        }
    }
}

/// Millitokens per answer.
const COST: u64 = 1000;
/// A bucket untouched this long (ms) is full again and may be reused.
const IDLE_MS: u64 = 1000;

#[derive(Clone, Copy, Default)]
struct Bucket {
    /// Prefix key (0 = empty slot; real keys have the family bit set).
    key: u128,
    /// Millitokens left.
    tokens: u64,
    /// Time of the last refill, ms.
    stamp: u64,
    /// Limited answers so far, for slip.
    limited: u32,
}

/// The budget an answer is counted in (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A real answer: NOERROR (with or without records, referrals) or NXDOMAIN.
    Answer = 0,
    /// An error response: any other rcode.
    Error = 1,
}

impl Class {
    /// The class of the finished response in `resp` (by its header rcode).
    pub fn of_response(resp: &[u8]) -> Class {
        match resp.get(3).map(|b| b & 0x0F) {
            Some(0 | 3) => Class::Answer,
            _ => Class::Error,
        }
    }
}

/// Why the limiter did what it did (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Under the limit, exempt, or limiting off.
    Pass,
    /// Over the limit, sent truncated.
    Slipped,
    /// Over the limit, dropped.
    Dropped,
    /// Over the limit but dry-run: sent anyway.
    WouldLimit,
}

/// One worker's buckets.
pub struct RrlTable {
    slots: Box<[Bucket]>,
    mask: usize,
    seed: u64,
}

impl RrlTable {
    /// A table of `size` slots (rounded up to a power of two), allocated now.
    pub fn new(size: usize, seed: u64) -> RrlTable {
        let n = size.max(2).next_power_of_two();
        RrlTable {
            slots: vec![Bucket::default(); n].into_boxed_slice(),
            mask: n - 1,
            seed: seed | 1,
        }
    }

    /// The prefix key of `ip` (family bit set so that no key is 0; bit 0
    /// clear, for the class).
    pub fn key(p: &RrlParams, ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                let m = if p.v4_prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - p.v4_prefix.min(32) as u32)
                };
                (1u128 << 127) | (((bits & m) as u128) << 8)
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                let m = if p.v6_prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - p.v6_prefix.min(128) as u32)
                };
                // Bucket prefixes are at most /64 in practice; keep the top
                // 126 bits and tag the family in the low bits.
                ((bits & m) >> 2 << 2) | 2
            }
        }
    }

    fn index(&self, key: u128) -> usize {
        let x = (key as u64) ^ ((key >> 64) as u64).rotate_left(29) ^ self.seed;
        let h = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 32) as usize & self.mask
    }

    /// Accounts one UDP answer of class `class` to `src` at `now_ms` and
    /// says what to do. `exempt` is set for answers that must never be
    /// limited (a valid server cookie).
    pub fn check(
        &mut self,
        p: &RrlParams,
        src: IpAddr,
        class: Class,
        now_ms: u64,
        exempt: bool,
    ) -> Outcome {
        if !p.enabled || exempt || p.allow.iter().any(|n| n.contains(&src)) {
            return Outcome::Pass;
        }
        // The low bit of every prefix key is clear (see `key`).
        let key = Self::key(p, src) | class as u128;
        let cap = p.rate as u64 * COST;
        let i = self.index(key);
        let j = (i + 1) & self.mask;
        let slot = if self.slots[i].key == key {
            i
        } else if self.slots[j].key == key {
            j
        } else {
            let free = |b: &Bucket| b.key == 0 || now_ms.saturating_sub(b.stamp) >= IDLE_MS;
            let pick = if free(&self.slots[i]) {
                Some(i)
            } else if free(&self.slots[j]) {
                Some(j)
            } else {
                None
            };
            match pick {
                Some(s) => {
                    self.slots[s] = Bucket {
                        key,
                        tokens: cap,
                        stamp: now_ms,
                        limited: 0,
                    };
                    s
                }
                None => i, // share a busy slot's budget
            }
        };
        let b = &mut self.slots[slot];
        let elapsed = now_ms.saturating_sub(b.stamp);
        if elapsed > 0 {
            b.tokens = (b.tokens + elapsed * p.rate as u64).min(cap);
            b.stamp = now_ms;
        }
        if b.tokens >= COST {
            b.tokens -= COST;
            return Outcome::Pass;
        }
        if p.dry_run {
            return Outcome::WouldLimit;
        }
        b.limited = b.limited.wrapping_add(1);
        if p.slip != 0 && b.limited % p.slip == 0 {
            Outcome::Slipped
        } else {
            Outcome::Dropped
        }
    }
}

impl Outcome {
    /// The action for the transport.
    pub fn verdict(self) -> Verdict {
        match self {
            Outcome::Pass | Outcome::WouldLimit => Verdict::Send,
            Outcome::Slipped => Verdict::Slip,
            Outcome::Dropped => Verdict::Drop,
        }
    }
}

/// Rewrites the response in `buf` as its truncated form: header with TC=1
/// and no records, then the question (if any). Returns false if the response
/// cannot be read (then it must not be sent).
pub fn slip_in_place(buf: &mut Vec<u8>) -> bool {
    if buf.len() < 12 {
        return false;
    }
    let qd = u16::from_be_bytes([buf[4], buf[5]]);
    let mut end = 12;
    if qd == 1 {
        loop {
            let Some(&len) = buf.get(end) else {
                return false;
            };
            if len & 0xC0 != 0 {
                return false;
            }
            end += 1 + len as usize;
            if len == 0 {
                break;
            }
        }
        end += 4;
        if end > buf.len() {
            return false;
        }
    } else if qd != 0 {
        return false;
    }
    buf.truncate(end);
    buf[2] |= 0x02;
    buf[6..12].fill(0);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Class = Class::Answer;

    fn params(rate: u32, slip: u32) -> RrlParams {
        RrlParams {
            enabled: true,
            rate,
            slip,
            v4_prefix: 24,
            v6_prefix: 56,
            dry_run: false,
            allow: Vec::new(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_gets_one_seconds_worth_then_slips_every_second_answer() {
        let p = params(10, 2);
        let mut t = RrlTable::new(64, 7);
        let out: Vec<_> = (0..30)
            .map(|_| t.check(&p, ip("192.0.2.1"), A, 5_000, false))
            .collect();
        assert!(out[..10].iter().all(|o| *o == Outcome::Pass));
        let slipped = out[10..].iter().filter(|o| **o == Outcome::Slipped).count();
        let dropped = out[10..].iter().filter(|o| **o == Outcome::Dropped).count();
        assert_eq!((slipped, dropped), (10, 10));
        // Same /24, other host: same bucket. Other /24: its own.
        assert_ne!(
            t.check(&p, ip("192.0.2.200"), A, 5_000, false),
            Outcome::Pass
        );
        assert_eq!(t.check(&p, ip("192.0.3.1"), A, 5_000, false), Outcome::Pass);
        // 100 ms later one token is back.
        assert_eq!(t.check(&p, ip("192.0.2.1"), A, 5_100, false), Outcome::Pass);
        assert_ne!(t.check(&p, ip("192.0.2.1"), A, 5_100, false), Outcome::Pass);
    }

    #[test]
    fn sustained_rate_is_the_configured_rate() {
        let p = params(200, 2);
        let mut t = RrlTable::new(64, 1);
        let mut passed = 0;
        // 10 s at 2000 queries/s, 2 per ms.
        for ms in 0..10_000u64 {
            for _ in 0..2 {
                passed += (t.check(&p, ip("2001:db8:0:1::5"), A, 1_000 + ms, false)
                    == Outcome::Pass) as u32;
            }
        }
        // One second's burst plus 200/s for 10 s.
        assert!((2_150..=2_250).contains(&passed), "{passed}");
    }

    #[test]
    fn v6_prefix_is_56_bits() {
        let p = params(1, 0);
        let mut t = RrlTable::new(64, 1);
        assert_eq!(
            t.check(&p, ip("2001:db8:0:100::1"), A, 0, false),
            Outcome::Pass
        );
        assert_eq!(
            t.check(&p, ip("2001:db8:0:1ff::2"), A, 0, false),
            Outcome::Dropped
        );
        assert_eq!(
            t.check(&p, ip("2001:db8:0:200::1"), A, 0, false),
            Outcome::Pass
        );
    }

    #[test]
    fn allow_list_exemption_dry_run_and_off() {
        let mut p = params(1, 0);
        p.allow = vec!["192.0.2.0/25".parse().unwrap()];
        let mut t = RrlTable::new(64, 1);
        for _ in 0..5 {
            assert_eq!(t.check(&p, ip("192.0.2.1"), A, 0, false), Outcome::Pass);
            assert_eq!(t.check(&p, ip("198.51.100.1"), A, 0, true), Outcome::Pass);
        }
        assert_eq!(t.check(&p, ip("192.0.2.200"), A, 0, false), Outcome::Pass);
        assert_eq!(
            t.check(&p, ip("192.0.2.200"), A, 0, false),
            Outcome::Dropped
        );
        p.dry_run = true;
        assert_eq!(
            t.check(&p, ip("192.0.2.200"), A, 0, false),
            Outcome::WouldLimit
        );
        p.enabled = false;
        assert_eq!(t.check(&p, ip("192.0.2.200"), A, 0, false), Outcome::Pass);
    }

    #[test]
    fn a_flood_cannot_escape_by_colliding_in_a_tiny_table() {
        // Two slots: every prefix collides. The flooder alternates with
        // other prefixes and must still be held to its rate.
        let p = params(5, 0);
        let mut t = RrlTable::new(2, 3);
        let mut passed = 0;
        for k in 0..100u32 {
            passed += (t.check(&p, ip("203.0.113.1"), A, 0, false) == Outcome::Pass) as u32;
            let other = IpAddr::from([10, (k >> 8) as u8, k as u8, 1]);
            let _ = t.check(&p, other, A, 0, false);
        }
        assert!(passed <= 5, "{passed}");
    }

    #[test]
    fn errors_have_a_budget_of_their_own() {
        let p = params(5, 0);
        let mut t = RrlTable::new(64, 9);
        let c = ip("192.0.2.7");
        // A garbage flood spends the prefix's error budget only ...
        let errors: Vec<_> = (0..50)
            .map(|_| t.check(&p, c, Class::Error, 0, false))
            .collect();
        assert!(errors[..5].iter().all(|o| *o == Outcome::Pass));
        assert!(errors[5..].iter().all(|o| *o == Outcome::Dropped));
        // ... its real answers still have theirs, and are limited in turn.
        for _ in 0..5 {
            assert_eq!(t.check(&p, c, A, 0, false), Outcome::Pass);
        }
        assert_eq!(t.check(&p, c, A, 0, false), Outcome::Dropped);
        assert_eq!(t.check(&p, c, Class::Error, 0, false), Outcome::Dropped);
        // IPv6 keys take the class bit too.
        let v6 = ip("2001:db8::1");
        assert_eq!(t.check(&p, v6, Class::Error, 0, false), Outcome::Pass);
        assert_eq!(t.check(&p, v6, A, 0, false), Outcome::Pass);
    }

    #[test]
    fn the_class_comes_from_the_rcode() {
        let mut r = vec![0x12, 0x34, 0x84, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for (rcode, class) in [
            (0, A),
            (3, A),
            (1, Class::Error),
            (2, Class::Error),
            (4, Class::Error),
            (5, Class::Error),
        ] {
            r[3] = 0x80 | rcode;
            assert_eq!(Class::of_response(&r), class, "rcode {rcode}");
        }
        assert_eq!(Class::of_response(&r[..3]), Class::Error);
    }

    #[test]
    fn slip_keeps_header_and_question_only() {
        let mut r = vec![0x12, 0x34, 0x84, 0x00, 0, 1, 0, 1, 0, 0, 0, 1];
        r.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        let q_end = r.len();
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 1, 2, 3, 4]);
        assert!(slip_in_place(&mut r));
        assert_eq!(r.len(), q_end);
        assert_eq!(&r[..12], &[0x12, 0x34, 0x86, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        let mut bad = vec![0; 11];
        assert!(!slip_in_place(&mut bad));
    }
}
