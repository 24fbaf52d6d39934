//! Unit tests of the pure steering core: no sockets, no files.

use super::*;
use crate::config::{AllDownPolicy, ConfigFile};
use crate::geo::Location;
use crate::health::{HealthSnapshot, MemberHealth};

const BASE: &str = r#"
[geoip]
database = "x.mmdb"
[steering]
default_regions = ["ap"]
[regions.us]
latitude = 39.04
longitude = -77.49
[regions.eu]
latitude = 50.11
longitude = 8.68
[regions.ap]
latitude = 1.29
longitude = 103.85
[pools.p]
members = [
  { name = "us1", region = "us", addresses = ["192.0.2.1"] },
  { name = "eu1", region = "eu", addresses = ["192.0.2.11"] },
  { name = "eu2", region = "eu", addresses = ["192.0.2.12"] },
  { name = "eu3", region = "eu", addresses = ["192.0.2.13"], weight = 300 },
  { name = "ap1", region = "ap", addresses = ["192.0.2.21"] },
  { name = "bk", region = "us", addresses = ["192.0.2.99"], backup = true },
]
[[overrides]]
country = "IN"
regions = ["eu"]
[[overrides]]
continent = "AF"
regions = ["us", "ap"]
[[overrides]]
cidr = "198.51.100.0/24"
regions = ["ap"]
[[zones]]
origin = "example.com"
file = "z"
"#;

fn steering(extra: &str) -> Steering {
    let c: ConfigFile = toml::from_str(&format!("{BASE}{extra}")).unwrap();
    Steering::from_config(&c)
}

fn loc(lat: f64, lon: f64, country: &str, continent: &str) -> Location {
    Location {
        latitude: Some(lat),
        longitude: Some(lon),
        country: Some(country.into()),
        continent: Some(continent.into()),
        city: None,
    }
}

fn names(s: &Steering, d: &Decision) -> Vec<String> {
    d.members
        .iter()
        .map(|&m| s.members[m as usize].name.clone())
        .collect()
}

fn region(s: &Steering, d: &Decision) -> String {
    s.regions[d.region.unwrap() as usize].name.clone()
}

fn up(s: &Steering) -> HealthSnapshot {
    HealthSnapshot::all_up(s.members.len(), 1)
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

#[test]
fn nearest_region_by_great_circle_distance() {
    let s = steering("");
    let h = up(&s);
    for (l, want) in [
        (loc(51.5, -0.13, "GB", "EU"), "eu"),
        (loc(40.7, -74.0, "US", "NA"), "us"),
        (loc(35.7, 139.7, "JP", "AS"), "ap"),
        (loc(-33.9, 151.2, "AU", "OC"), "ap"),
        (loc(-23.5, -46.6, "BR", "SA"), "us"),
    ] {
        let d = decide(
            &s,
            &h,
            0,
            Placement::of(&s, ip("192.0.2.200"), Some(&l)),
            7,
            2,
        );
        assert_eq!(region(&s, &d), want, "{l:?}");
        assert_eq!(d.outcome, Outcome::Nearest);
        let dist: Vec<f64> = d.ranking.iter().map(|r| r.distance_km.unwrap()).collect();
        assert!(
            dist.windows(2).all(|w| w[0] <= w[1]),
            "ranking sorted by distance: {dist:?}"
        );
    }
}

#[test]
fn overrides_take_precedence_cidr_then_country_then_continent() {
    let s = steering("");
    let h = up(&s);
    let india = loc(19.0, 72.8, "IN", "AS"); // nearest is ap, override says eu
    let d = decide(
        &s,
        &h,
        0,
        Placement::of(&s, ip("192.0.2.1"), Some(&india)),
        1,
        2,
    );
    assert_eq!(region(&s, &d), "eu");
    assert!(d.ranking[0].by_override && !d.ranking[1].by_override);
    assert_eq!(d.ranking.len(), 3, "regions not in the override follow");
    let kenya = loc(-1.3, 36.8, "KE", "AF");
    let d = decide(
        &s,
        &h,
        0,
        Placement::of(&s, ip("192.0.2.1"), Some(&kenya)),
        1,
        2,
    );
    let order: Vec<_> = d
        .ranking
        .iter()
        .map(|r| s.regions[r.region as usize].name.as_str())
        .collect();
    assert_eq!(order, ["us", "ap", "eu"]);
    // CIDR beats the country override of the same client.
    let d = decide(
        &s,
        &h,
        0,
        Placement::of(&s, ip("198.51.100.7"), Some(&india)),
        1,
        2,
    );
    assert_eq!(region(&s, &d), "ap");
}

#[test]
fn unknown_clients_use_the_default_order() {
    let s = steering("");
    let d = decide(
        &s,
        &up(&s),
        0,
        Placement::of(&s, ip("10.1.2.3"), None),
        1,
        2,
    );
    assert_eq!(region(&s, &d), "ap");
    let order: Vec<_> = d
        .ranking
        .iter()
        .map(|r| s.regions[r.region as usize].name.as_str())
        .collect();
    assert_eq!(
        order,
        ["ap", "eu", "us"],
        "listed first, then config (alphabetical) order"
    );
    // A Country-type record: continent only → continent point.
    let l = Location {
        continent: Some("EU".into()),
        ..Location::default()
    };
    let d = decide(
        &s,
        &up(&s),
        0,
        Placement::of(&s, ip("192.0.2.1"), Some(&l)),
        1,
        2,
    );
    assert_eq!(region(&s, &d), "eu");
}

#[test]
fn answers_never_mix_regions_and_respect_the_count() {
    let s = steering("");
    let l = loc(48.8, 2.3, "FR", "EU");
    for c in 0..200u64 {
        let d = decide(
            &s,
            &up(&s),
            0,
            Placement::Located(&l),
            c.wrapping_mul(0x9E37_79B9),
            2,
        );
        assert_eq!(d.members.len(), 2);
        assert!(d
            .members
            .iter()
            .all(|&m| s.members[m as usize].region == d.region.unwrap()));
        assert!(d.hashed, "3 candidates for 2 slots");
    }
    let d = decide(&s, &up(&s), 0, Placement::Located(&l), 5, 8);
    assert_eq!(d.members.len(), 3);
    assert!(
        !d.hashed,
        "every candidate fits: answer independent of the client"
    );
}

#[test]
fn rendezvous_is_sticky_weighted_and_moves_only_the_lost_members_clients() {
    let s = steering("");
    let l = loc(48.8, 2.3, "FR", "EU");
    let mut h = up(&s);
    let first =
        |h: &HealthSnapshot, c: u64| decide(&s, h, 0, Placement::Located(&l), c, 1).members[0];
    let clients: Vec<u64> = (0..20_000u64)
        .map(|i| crate::steer::client_hash(i as u128, 24))
        .collect();
    let before: Vec<u32> = clients.iter().map(|&c| first(&h, c)).collect();
    // Same client, same member.
    assert!(clients
        .iter()
        .zip(&before)
        .all(|(&c, &m)| first(&h, c) == m));
    // Weights: eu3 (300) gets about 3/5 of the clients, eu1 and eu2 1/5 each.
    let eu3 = s.members.iter().position(|m| m.name == "eu3").unwrap() as u32;
    let share = before.iter().filter(|&&m| m == eu3).count() as f64 / clients.len() as f64;
    assert!((share - 0.6).abs() < 0.02, "eu3 share {share}");
    // eu1 goes down: only its clients move.
    let eu1 = s.members.iter().position(|m| m.name == "eu1").unwrap() as u32;
    h.members[eu1 as usize] = MemberHealth {
        usable: false,
        shed: 0.0,
        fail_open: true,
    };
    let after: Vec<u32> = clients.iter().map(|&c| first(&h, c)).collect();
    for (b, a) in before.iter().zip(&after) {
        if *b != eu1 {
            assert_eq!(a, b, "a client of a healthy member moved");
        } else {
            assert_ne!(*a, eu1);
        }
    }
}

#[test]
fn failover_to_the_next_region_then_backup_then_policy() {
    let s = steering("");
    let l = loc(51.5, -0.13, "GB", "EU");
    let mut h = up(&s);
    let down = |h: &mut HealthSnapshot, prefix: &str| {
        for (i, m) in s.members.iter().enumerate() {
            if m.name.starts_with(prefix) {
                h.members[i].usable = false;
            }
        }
    };
    down(&mut h, "eu");
    let d = decide(&s, &h, 0, Placement::Located(&l), 1, 2);
    assert_eq!(
        (region(&s, &d).as_str(), d.outcome),
        ("us", Outcome::Failover)
    );
    assert_eq!(
        names(&s, &d),
        ["us1"],
        "backups are not mixed with primaries"
    );
    down(&mut h, "us1");
    down(&mut h, "ap");
    let d = decide(&s, &h, 0, Placement::Located(&l), 1, 2);
    assert_eq!(
        (names(&s, &d), d.outcome),
        (vec!["bk".to_string()], Outcome::Backup)
    );
    down(&mut h, "bk");
    let d = decide(&s, &h, 0, Placement::Located(&l), 1, 2);
    assert_eq!(d.outcome, Outcome::AllDownFailOpen);
    assert_eq!(
        region(&s, &d),
        "eu",
        "fail-open answers the nearest region as if healthy"
    );
    // ... except with members never seen up (registered, not yet probed
    // up): the eu ones are left out, so the next region answers.
    for (i, m) in s.members.iter().enumerate() {
        if m.name.starts_with("eu") {
            h.members[i].fail_open = false;
        }
    }
    let d = decide(&s, &h, 0, Placement::Located(&l), 1, 2);
    assert_eq!(
        (region(&s, &d).as_str(), d.outcome),
        ("us", Outcome::AllDownFailOpen)
    );
    assert_eq!(names(&s, &d), ["us1"]);
    for m in h.members.iter_mut() {
        m.fail_open = true;
    }

    let mut s2 = steering("");
    s2.all_down = AllDownPolicy::Servfail;
    let d = decide(&s2, &h, 0, Placement::Located(&l), 1, 2);
    assert_eq!(d.outcome, Outcome::AllDownServfail);
    assert!(d.members.is_empty() && d.region.is_none());
    s2.all_down = AllDownPolicy::BackupOnly;
    let d = decide(&s2, &h, 0, Placement::Located(&l), 1, 2);
    assert_eq!(
        (names(&s2, &d), d.outcome),
        (vec!["bk".to_string()], Outcome::AllDownBackup)
    );
}

#[test]
fn shedding_moves_a_share_of_clients_deterministically() {
    let s = steering("");
    let l = loc(1.3, 103.8, "SG", "AS");
    let mut h = up(&s);
    let ap1 = s.members.iter().position(|m| m.name == "ap1").unwrap();
    h.members[ap1].shed = 0.5;
    let mut moved = 0;
    for i in 0..10_000u64 {
        let c = crate::steer::client_hash(i as u128, 24);
        let d = decide(&s, &h, 0, Placement::Located(&l), c, 2);
        let again = decide(&s, &h, 0, Placement::Located(&l), c, 2);
        assert_eq!(d.members, again.members, "deterministic per client");
        assert!(d.hashed);
        if region(&s, &d) != "ap" {
            moved += 1;
        }
    }
    assert!(
        (4_500..5_500).contains(&moved),
        "about half shed, got {moved}"
    );
}
