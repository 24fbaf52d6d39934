//! The whole address space compiled into *placement classes*: ranges of
//! addresses that get the same region ranking (same override, same
//! distance order). Built once per snapshot from the GeoIP database and the
//! steering model, like gdnsd's merged networks, so the query path does a
//! binary search in a small array instead of walking the database tree, and
//! the ECS scope is the widest prefix with the same decision.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::model::Steering;
use super::rank::{rank_regions, Placement, RankedRegion};
use crate::geo::NetworkSource;

/// One placement class.
#[derive(Debug, Clone)]
pub struct Class {
    /// The override that applies, if any.
    pub override_idx: Option<usize>,
    /// Regions best first.
    pub ranking: Vec<RankedRegion>,
    /// Whether the database knows these addresses.
    pub located: bool,
}

/// Ranges of one address family: sorted starts and their class.
#[derive(Debug, Clone, Default)]
struct Ranges<T> {
    starts: Vec<T>,
    classes: Vec<u32>,
}

/// The compiled map: class per range, for IPv4 and IPv6.
#[derive(Debug, Clone)]
pub struct CellMap {
    v4: Ranges<u32>,
    /// For each IPv4 /16: index of the range holding its first address, so a
    /// lookup searches only the ranges of one /16 (usually one or a few).
    v4_index: Vec<u32>,
    v6: Ranges<u128>,
    classes: Vec<Class>,
}

/// What a lookup returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellHit {
    /// Class index.
    pub class: u32,
    /// Widest prefix around the address inside one range (the ECS scope).
    pub prefix: u8,
}

#[derive(Default)]
struct Interner {
    classes: Vec<Class>,
    index: HashMap<(Option<usize>, Vec<u16>, bool), u32>,
}

impl Interner {
    fn intern(&mut self, c: Class) -> u32 {
        let key = (
            c.override_idx,
            c.ranking.iter().map(|r| r.region).collect::<Vec<_>>(),
            c.located,
        );
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = self.classes.len() as u32;
        self.classes.push(c);
        self.index.insert(key, i);
        i
    }
}

/// Unsigned integer views of addresses.
trait Bits: Copy + Ord + Default + std::fmt::Debug {
    const BITS: u32;
    const MAX: Self;
    fn span(n: &IpNet) -> Option<(Self, Self)>;
    fn succ(self) -> Option<Self>;
    fn pred(self) -> Self;
    /// Whether the /`p` block around `x` lies inside [s, e].
    fn block_within(x: Self, p: u32, s: Self, e: Self) -> bool;
    /// Leading zeros of `e - s`: no block around an address of [s, e] can
    /// be wider than this prefix allows.
    fn min_prefix(s: Self, e: Self) -> u32;
}

impl Bits for u32 {
    const BITS: u32 = 32;
    const MAX: u32 = u32::MAX;
    fn span(n: &IpNet) -> Option<(u32, u32)> {
        match n {
            IpNet::V4(n) => Some((u32::from(n.network()), u32::from(n.broadcast()))),
            IpNet::V6(_) => None,
        }
    }
    fn succ(self) -> Option<u32> {
        self.checked_add(1)
    }
    fn pred(self) -> u32 {
        self.saturating_sub(1)
    }
    fn block_within(x: u32, p: u32, s: u32, e: u32) -> bool {
        let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
        x & m >= s && (x | !m) <= e
    }
    fn min_prefix(s: u32, e: u32) -> u32 {
        (e - s).leading_zeros()
    }
}

impl Bits for u128 {
    const BITS: u32 = 128;
    const MAX: u128 = u128::MAX;
    fn span(n: &IpNet) -> Option<(u128, u128)> {
        match n {
            IpNet::V6(n) => Some((u128::from(n.network()), u128::from(n.broadcast()))),
            IpNet::V4(_) => None,
        }
    }
    fn succ(self) -> Option<u128> {
        self.checked_add(1)
    }
    fn pred(self) -> u128 {
        self.saturating_sub(1)
    }
    fn block_within(x: u128, p: u32, s: u128, e: u128) -> bool {
        let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
        x & m >= s && (x | !m) <= e
    }
    fn min_prefix(s: u128, e: u128) -> u32 {
        (e - s).leading_zeros()
    }
}

/// Builds sorted, gap-free, merged ranges from (start, end, class) pieces
/// (non-overlapping, as a database's networks are); gaps get `unknown`.
fn ranges<T: Bits>(mut pieces: Vec<(T, T, u32)>, unknown: u32) -> Ranges<T> {
    pieces.sort_by_key(|p| p.0);
    let mut r = Ranges {
        starts: Vec::new(),
        classes: Vec::new(),
    };
    let push = |r: &mut Ranges<T>, start: T, class: u32| {
        if r.classes.last() != Some(&class) {
            r.starts.push(start);
            r.classes.push(class);
        }
    };
    let mut next: Option<T> = Some(T::default());
    for (s, e, c) in pieces {
        let Some(n) = next else { break };
        if e < n {
            continue; // overlapped by an earlier piece
        }
        if s > n {
            push(&mut r, n, unknown);
        }
        push(&mut r, s.max(n), c);
        next = e.succ();
    }
    if let Some(n) = next {
        push(&mut r, n, unknown);
    }
    r
}

/// Splits `r` so that [s, e] is covered by whole ranges and maps the class of
/// each of those through `f`; merges equal neighbours.
fn overlay<T: Bits>(r: &mut Ranges<T>, s: T, e: T, mut f: impl FnMut(u32) -> u32) {
    let mut starts: Vec<T> = Vec::with_capacity(r.starts.len() + 2);
    let mut classes: Vec<u32> = Vec::with_capacity(r.classes.len() + 2);
    let mut push = |start: T, class: u32| {
        if classes.last() != Some(&class) {
            starts.push(start);
            classes.push(class);
        }
    };
    for i in 0..r.starts.len() {
        let rs = r.starts[i];
        let re = r.starts.get(i + 1).map_or(T::MAX, |n| n.pred());
        let c = r.classes[i];
        if re < s || rs > e {
            push(rs, c);
            continue;
        }
        if rs < s {
            push(rs, c);
        }
        push(rs.max(s), f(c));
        if re > e {
            if let Some(n) = e.succ() {
                push(n, c);
            }
        }
    }
    r.starts = starts;
    r.classes = classes;
}

impl<T: Bits> Ranges<T> {
    #[inline]
    fn lookup(&self, x: T) -> CellHit {
        let i = self.starts.partition_point(|&s| s <= x).saturating_sub(1);
        self.hit(i, x)
    }

    /// The hit for `x`, which lies in range `i`.
    #[inline]
    fn hit(&self, i: usize, x: T) -> CellHit {
        let s = self.starts[i];
        let e = self.starts.get(i + 1).map_or(T::MAX, |n| n.pred());
        let mut p = T::min_prefix(s, e);
        while p < T::BITS && !T::block_within(x, p, s, e) {
            p += 1;
        }
        CellHit {
            class: self.classes[i],
            prefix: p as u8,
        }
    }
}

impl CellMap {
    /// Compiles `src` against `s`: every network's location → placement →
    /// ranking; CIDR overrides laid over; equal neighbours merged.
    pub fn build(s: &Steering, src: &dyn NetworkSource) -> CellMap {
        let mut int = Interner::default();
        let unknown = int.intern(Class {
            override_idx: None,
            ranking: rank_regions(s, Placement::Unknown),
            located: false,
        });
        let mut by_record: HashMap<u32, u32> = HashMap::new();
        let mut class_of = |int: &mut Interner, net: &IpNet, rec: Option<u32>| -> u32 {
            let Some(rec) = rec else { return unknown };
            if let Some(&c) = by_record.get(&rec) {
                return c;
            }
            let loc = src.location_at(net.network());
            let placement = match &loc {
                Some(l) => Placement::of_location(s, l),
                None => Placement::Unknown,
            };
            let c = int.intern(Class {
                override_idx: match placement {
                    Placement::Override(i, _) => Some(i),
                    _ => None,
                },
                ranking: rank_regions(s, placement),
                located: loc.is_some(),
            });
            by_record.insert(rec, c);
            c
        };
        let mut p4: Vec<(u32, u32, u32)> = Vec::new();
        src.for_each_network(false, &mut |net, rec| {
            if let Some((a, b)) = u32::span(&net) {
                let c = class_of(&mut int, &net, rec);
                p4.push((a, b, c));
            }
        });
        let mut p6: Vec<(u128, u128, u32)> = Vec::new();
        src.for_each_network(true, &mut |net, rec| {
            if let Some((a, b)) = u128::span(&net) {
                let c = class_of(&mut int, &net, rec);
                p6.push((a, b, c));
            }
        });
        let mut v4 = ranges(p4, unknown);
        let mut v6 = ranges(p6, unknown);
        // CIDR overrides, least specific first so the most specific wins.
        let mut cidrs = s.cidr_overrides.clone();
        cidrs.sort_by_key(|(n, i)| (n.prefix_len(), std::cmp::Reverse(*i)));
        for (net, idx) in cidrs {
            let mut f = |c: u32| {
                let under: Class = int.classes[c as usize].clone();
                let regions = &s.overrides[idx].regions;
                let mut ranking: Vec<RankedRegion> = regions
                    .iter()
                    .map(|&r| {
                        let d = under
                            .ranking
                            .iter()
                            .find(|x| x.region == r)
                            .and_then(|x| x.distance_km);
                        RankedRegion {
                            region: r,
                            distance_km: d,
                            by_override: true,
                        }
                    })
                    .collect();
                ranking.extend(
                    under
                        .ranking
                        .iter()
                        .filter(|x| !regions.contains(&x.region))
                        .map(|x| RankedRegion {
                            by_override: false,
                            ..*x
                        }),
                );
                int.intern(Class {
                    override_idx: Some(idx),
                    ranking,
                    located: under.located,
                })
            };
            match (u32::span(&net), u128::span(&net)) {
                (Some((a, b)), _) => overlay(&mut v4, a, b, &mut f),
                (_, Some((a, b))) => overlay(&mut v6, a, b, &mut f),
                _ => {}
            }
        }
        let v4_index = (0..=u16::MAX as u32)
            .map(|hi| (v4.starts.partition_point(|&s| s <= hi << 16) - 1) as u32)
            .collect();
        CellMap {
            v4,
            v4_index,
            v6,
            classes: int.classes,
        }
    }

    #[inline]
    fn lookup_v4(&self, x: u32) -> CellHit {
        let hi = (x >> 16) as usize;
        let lo = self.v4_index[hi] as usize;
        let end = self
            .v4_index
            .get(hi + 1)
            .map_or(self.v4.starts.len(), |&e| e as usize + 1);
        let i = lo + self.v4.starts[lo..end].partition_point(|&s| s <= x) - 1;
        self.v4.hit(i, x)
    }

    /// The class and ECS scope of an address (hot path: a binary search).
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> CellHit {
        match ip {
            IpAddr::V4(a) => self.lookup_v4(u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.lookup_v4(u32::from(v4)),
                None => self.v6.lookup(u128::from(a)),
            },
        }
    }

    /// A class by index.
    pub fn class(&self, i: u32) -> &Class {
        &self.classes[i as usize]
    }

    /// Number of classes and of IPv4 and IPv6 ranges (for logs).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.classes.len(),
            self.v4.starts.len(),
            self.v6.starts.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_fill_gaps_and_merge() {
        let r = ranges(vec![(10u32, 19, 1), (20, 29, 1), (40, 49, 2)], 0);
        assert_eq!(r.starts, [0, 10, 30, 40, 50]);
        assert_eq!(r.classes, [0, 1, 0, 2, 0]);
        assert_eq!(
            r.lookup(25),
            CellHit {
                class: 1,
                prefix: 30
            }
        ); // 24..=27
        assert_eq!(
            r.lookup(0),
            CellHit {
                class: 0,
                prefix: 29
            }
        );
    }

    #[test]
    fn scope_is_the_widest_block_inside_the_range() {
        // 81.2.64.0 - 81.2.71.255 is a /21 in one class.
        let s = u32::from(std::net::Ipv4Addr::new(81, 2, 64, 0));
        let r = ranges(vec![(s, s + 2047, 1)], 0);
        assert_eq!(r.lookup(s + 1280).prefix, 21);
        // An unaligned range: 10..=25 → 16..=23 is the /29 block around 20.
        let r = ranges(vec![(10u32, 25, 1)], 0);
        assert_eq!(r.lookup(20).prefix, 29);
        assert_eq!(r.lookup(11).prefix, 31);
    }

    #[test]
    fn overlay_splits_and_remerges() {
        let mut r = ranges(vec![(0u32, 99, 1)], 0);
        overlay(&mut r, 10, 19, |c| c + 10);
        assert_eq!(r.starts, [0, 10, 20, 100]);
        assert_eq!(r.classes, [1, 11, 1, 0]);
        overlay(&mut r, 10, 19, |_| 1);
        assert_eq!(r.starts, [0, 100]);
        assert_eq!(r.classes, [1, 0]);
        let mut r = ranges(Vec::<(u32, u32, u32)>::new(), 0);
        overlay(&mut r, u32::MAX - 9, u32::MAX, |_| 5);
        assert_eq!(r.lookup(u32::MAX).class, 5);
        assert_eq!(r.lookup(0).class, 0);
    }

    struct Fake(Vec<(IpNet, u32)>);

    impl NetworkSource for Fake {
        fn for_each_network(&self, v6: bool, f: &mut dyn FnMut(IpNet, Option<u32>)) {
            for (n, r) in &self.0 {
                if n.addr().is_ipv6() == v6 {
                    f(*n, Some(*r));
                }
            }
        }
        fn location_at(&self, ip: IpAddr) -> Option<crate::geo::Location> {
            let (_, r) = self.0.iter().find(|(n, _)| n.contains(&ip))?;
            let (lat, lon) = [(50.0, 8.0), (1.3, 103.8), (39.0, -77.0)][*r as usize % 3];
            Some(crate::geo::Location {
                latitude: Some(lat),
                longitude: Some(lon),
                ..Default::default()
            })
        }
    }

    #[test]
    fn the_v4_index_agrees_with_a_plain_binary_search() {
        let c: crate::config::ConfigFile = toml::from_str(
            "[geoip]\ndatabase=\"x\"\n[regions.a]\nlatitude=50.0\nlongitude=8.0\n[regions.b]\nlatitude=1.3\nlongitude=103.8\n[regions.c]\nlatitude=39.0\nlongitude=-77.0\n[pools.p]\nmembers=[{name=\"m\",region=\"a\",addresses=[\"192.0.2.1\"]}]\n[[overrides]]\ncidr=\"10.1.2.0/23\"\nregions=[\"c\"]\n[[zones]]\norigin=\"e.com\"\nfile=\"z\"\n",
        )
        .unwrap();
        let s = Steering::from_config(&c);
        let mut nets = Vec::new();
        let mut x: u32 = 7;
        for i in 0..3000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let len = 8 + (x % 17) as u8;
            let n = IpNet::new(IpAddr::from(x.to_be_bytes()), len)
                .unwrap()
                .trunc();
            if !nets
                .iter()
                .any(|(m, _): &(IpNet, u32)| m.contains(&n.addr()) || n.contains(&m.addr()))
            {
                nets.push((n, i));
            }
        }
        let m = CellMap::build(&s, &Fake(nets));
        for _ in 0..20000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            assert_eq!(
                m.lookup_v4(x),
                m.v4.lookup(x),
                "{}",
                std::net::Ipv4Addr::from(x)
            );
        }
        // The override sits on top of whatever was there.
        let o = m.lookup("10.1.3.9".parse().unwrap());
        assert_eq!(m.class(o.class).override_idx, Some(0));
        assert!(o.prefix >= 23);
    }
}
