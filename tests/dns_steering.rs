//! The server on loopback, queried over UDP and TCP: ECS steering, scopes,
//! stickiness, SRV and the apex name.

mod common;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

const CFG: &str = "tests/data/test.toml";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_subnets_steer_to_their_nearest_region_with_the_network_scope() {
    let node = start(CFG).await;
    let s = node.dns.addrs[0];
    for (subnet, want) in [
        ("81.2.69.0/24", "127.0.2.1"),    // London → Frankfurt
        ("8.8.8.0/24", "127.0.1.1"),      // US → Ashburn
        ("1.0.0.0/24", "127.0.3.1"),      // Australia → Singapore
        ("193.0.0.0/24", "127.0.2.1"),    // RIPE block (Amsterdam) → Frankfurt
        ("200.0.0.0/24", "127.0.1.1"),    // LACNIC block (Montevideo) → Ashburn
        ("41.0.0.0/24", "127.0.3.1"), // AFRINIC block (Mauritius): Singapore is nearer than Frankfurt
        ("203.0.113.0/24", "127.0.2.1"), // CIDR override (would be Ashburn)
        ("198.51.100.0/24", "127.0.1.1"), // Tokyo, but the JP country override says us-east
    ] {
        let m = udp(s, "turn.example.com.", RecordType::A, ecs(subnet));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{subnet}");
        assert!(m.metadata.authoritative, "{subnet}: AA");
        assert!(!m.metadata.recursion_available, "{subnet}: RA");
        assert_eq!(addrs(&m), [want], "{subnet}");
        let (addr, source, scope) = ecs_of(&m).expect("ECS echoed");
        if subnet == "203.0.113.0/24" {
            assert_eq!(scope, 24, "the override CIDR decides");
        }
        if subnet == "81.2.69.0/24" {
            assert_eq!(scope, 4, "London and the RIPE /8s 80-95 rank regions alike");
        }
        let (a, p) = subnet.split_once('/').unwrap();
        assert_eq!(
            (addr.to_string().as_str(), source),
            (a, p.parse().unwrap()),
            "{subnet}: echo"
        );
        // The scope is the widest block around the subnet with the same
        // decision: every /24 inside it must get the same answer.
        assert!(scope <= 24, "{subnet}: scope /{scope}");
        let base = u32::from(a.parse::<std::net::Ipv4Addr>().unwrap());
        let block = if scope == 0 {
            u32::MAX
        } else {
            !(u32::MAX << (32 - scope))
        };
        for other in [
            base & !block,
            (base | block) & !0xFF,
            (base & !block) | (block & 0x00A5_5A00),
        ] {
            let o = format!("{}/24", std::net::Ipv4Addr::from(other));
            let m2 = udp(s, "turn.example.com.", RecordType::A, ecs(&o));
            assert_eq!(
                addrs(&m2),
                [want],
                "{subnet} scope /{scope}: {o} inside it answered differently"
            );
        }
        assert_eq!(m.answers[0].ttl, 30);
    }
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_subnets_and_aaaa() {
    let node = start(CFG).await;
    let s = node.dns.addrs[0];
    let m = udp(
        s,
        "turn.example.com.",
        RecordType::AAAA,
        ecs("2001:db8:2::/48"),
    );
    assert_eq!(addrs(&m), ["2001:db8:3::1"], "Singapore test prefix");
    assert_eq!(ecs_of(&m).unwrap().2, 48);
    // A region without IPv6 relays: NODATA, cached no longer than a steered answer.
    let m = udp(
        s,
        "wide.example.com.",
        RecordType::AAAA,
        ecs("81.2.69.0/24"),
    );
    assert!(m.answers.is_empty());
    assert_eq!(
        m.authorities[0].ttl, 20,
        "negative TTL capped at the steered TTL"
    );
    // An IPv6 client is capped at /56 for privacy: a /64 source uses /56.
    let m = udp(
        s,
        "turn.example.com.",
        RecordType::A,
        ecs("2001:db8:1:ab00::/64"),
    );
    assert_eq!(addrs(&m), ["127.0.2.1"], "Frankfurt test prefix");
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ecs_or_source_zero_uses_the_packet_source_with_scope_zero() {
    let node = start(CFG).await;
    let s = node.dns.addrs[0];
    // Loopback is unknown to the database: default order, first is us-east.
    let m = udp(s, "turn.example.com.", RecordType::A, Q::default());
    assert_eq!(addrs(&m), ["127.0.1.1"]);
    assert!(m.edns.is_none(), "no OPT without EDNS in the query");
    let m = udp(s, "turn.example.com.", RecordType::A, ecs("0.0.0.0/0"));
    assert_eq!(addrs(&m), ["127.0.1.1"]);
    assert_eq!(ecs_of(&m).map(|e| e.2), Some(0), "scope 0 for source 0");
    // Static data: scope 0 even with an ECS query.
    let m = udp(s, "example.com.", RecordType::SOA, ecs("81.2.69.0/24"));
    assert_eq!(ecs_of(&m).map(|e| e.2), Some(0));
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_answers_over_tcp() {
    let node = start(CFG).await;
    let s = node.dns.addrs[0];
    for subnet in ["81.2.69.0/24", "8.8.8.0/24", "1.0.0.0/24"] {
        let u = udp(s, "turn.example.com.", RecordType::A, ecs(subnet));
        let t = tcp(s, "turn.example.com.", RecordType::A, ecs(subnet));
        assert_eq!(addrs(&u), addrs(&t), "{subnet}");
        assert_eq!(ecs_of(&u), ecs_of(&t), "{subnet}");
        assert!(t.metadata.authoritative);
    }
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendezvous_is_sticky_per_subnet_and_spreads_clients() {
    let node = start(CFG).await;
    let s = node.dns.addrs[0];
    let mut seen = std::collections::HashMap::new();
    for i in 0..64u8 {
        let subnet = format!("193.{i}.1.0/24");
        let a = udp(s, "wide.example.com.", RecordType::A, ecs(&subnet));
        let mut got = addrs(&a);
        got.sort();
        assert_eq!(got.len(), 2, "answer_count 2 from one region");
        let b = udp(s, "wide.example.com.", RecordType::A, ecs(&subnet));
        let mut again = addrs(&b);
        again.sort();
        assert_eq!(got, again, "same subnet, same members");
        assert_eq!(ecs_of(&a).unwrap().2, 24, "per-subnet answer: scope /24");
        assert_eq!(a.answers[0].ttl, 20);
        *seen.entry(got).or_insert(0) += 1;
    }
    assert!(
        seen.len() >= 4,
        "64 subnets should use several member pairs, got {seen:?}"
    );
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_names_are_steered_with_targets_in_additional() {
    let node = start(CFG).await;
    let s = node.dns.addrs[0];
    for (svc, port) in [
        ("_turn._udp", 3478),
        ("_turn._tcp", 3478),
        ("_turns._tcp", 5349),
    ] {
        let m = udp(
            s,
            &format!("{svc}.turn.example.com."),
            RecordType::SRV,
            ecs("1.0.0.0/24"),
        );
        let RData::SRV(srv) = &m.answers[0].data else {
            panic!("{svc}: {m:?}")
        };
        assert_eq!(srv.port, port);
        assert_eq!(srv.target.to_ascii(), "apse1-a.turn.example.com.");
        assert!(
            additional_addrs(&m).contains(&"127.0.3.1".to_string()),
            "{svc}: glue"
        );
    }
    // The SRV target resolves on its own.
    let m = udp(s, "apse1-a.turn.example.com.", RecordType::A, Q::default());
    assert_eq!(addrs(&m), ["127.0.3.1"]);
    // SRV is not configured for "wide": NXDOMAIN there.
    let m = udp(
        s,
        "_turn._udp.wide.example.com.",
        RecordType::SRV,
        Q::default(),
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // `_udp.turn.example.com` is an empty non-terminal: NODATA, not NXDOMAIN.
    let m = udp(s, "_udp.turn.example.com.", RecordType::A, Q::default());
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zone_apex_can_be_the_steered_name() {
    let node = start(CFG).await;
    let s = node.dns.addrs[0];
    let m = udp(s, "turn.example.net.", RecordType::A, ecs("81.2.69.0/24"));
    assert_eq!(addrs(&m), ["127.0.2.1"]);
    let m = udp(s, "turn.example.net.", RecordType::SOA, Q::default());
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
    let m = udp(
        s,
        "_turns._tcp.turn.example.net.",
        RecordType::SRV,
        ecs("8.8.8.0/24"),
    );
    assert_eq!(m.answers.len(), 1);
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cname_to_the_steered_name_is_steered_per_client() {
    let node = start(CFG).await;
    let s = node.dns.addrs[0];
    for (subnet, want) in [
        ("1.0.0.0/24", "127.0.3.1"),
        ("81.2.69.0/24", "127.0.2.1"),
        ("1.0.0.0/24", "127.0.3.1"),
    ] {
        let m = udp(s, "relay.example.com.", RecordType::A, ecs(subnet));
        assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
        assert_eq!(addrs(&m), [want], "{subnet}");
        assert_ne!(
            ecs_of(&m).unwrap().2,
            0,
            "client-specific answer has a non-zero scope"
        );
    }
    node.dns.shutdown().await;
}
