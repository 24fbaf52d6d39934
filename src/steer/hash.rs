//! Stable hashing for rendezvous (highest-random-weight) selection.
//!
//! Seeds come from names, not from randomness, so every DNS node of a fleet
//! and every restart picks the same member for the same client.

/// SplitMix64 finaliser: a fast, well-distributed 64-bit mixer.
#[inline]
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A member's seed: FNV-1a of `pool/member`, mixed.
pub fn member_seed(pool: &str, member: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in pool.bytes().chain([b'/']).chain(member.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// The hash of a client subnet (address bits already masked, plus its prefix length).
#[inline]
pub fn client_hash(masked: u128, prefix: u8) -> u64 {
    mix(mix(masked as u64) ^ (masked >> 64) as u64 ^ ((prefix as u64) << 56))
}

/// Uniform value in (0, 1) from a hash.
#[inline]
pub(crate) fn unit(h: u64) -> f64 {
    // 52 bits keep `x + 0.5` exact in an f64, so the result is never 0 or 1.
    ((h >> 12) as f64 + 0.5) / (1u64 << 52) as f64
}

/// Weighted rendezvous score: the member with the highest score wins.
/// `weight / -ln(u)` gives each member a share proportional to its weight
/// and moves only the lost member's clients when one disappears.
#[inline]
pub(crate) fn rendezvous_score(seed: u64, client: u64, weight: u32) -> f64 {
    weight as f64 / -unit(mix(seed ^ client)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_is_open_interval() {
        assert!(unit(0) > 0.0);
        assert!(unit(u64::MAX) < 1.0);
    }

    #[test]
    fn seeds_differ_and_are_stable() {
        assert_eq!(member_seed("p", "a"), member_seed("p", "a"));
        assert_ne!(member_seed("p", "a"), member_seed("p", "b"));
        assert_ne!(member_seed("p", "ab"), member_seed("pa", "b"));
    }
}
