//! Protocol behaviour of the authoritative server on loopback: negative
//! answers, refusals, EDNS, truncation and hostile input.

mod common;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use std::time::{Duration, Instant};

const CFG: &str = "tests/data/test.toml";

fn soa_in_authority(m: &Message) -> bool {
    m.authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA && r.ttl == 300)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_answers_carry_the_soa() {
    let node = start(CFG).await;
    let s = node.dns.addrs[0];
    let m = udp(s, "nope.example.com.", RecordType::A, Q::default());
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative && soa_in_authority(&m) && m.answers.is_empty());
    // NODATA: the name exists, the type does not.
    let m = udp(s, "mail.example.com.", RecordType::TXT, Q::default());
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty() && soa_in_authority(&m));
    // Empty non-terminal.
    let m = udp(s, "sub.example.com.", RecordType::A, Q::default());
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(soa_in_authority(&m));
    // Steered name, type with no data (the test pool has no MX).
    let m = udp(s, "turn.example.com.", RecordType::MX, Q::default());
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty() && soa_in_authority(&m));
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_minimal_any() {
    let node = start(CFG).await;
    let s = node.dns.addrs[0];
    let m = udp(s, "example.org.", RecordType::A, Q::default());
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative);
    for t in [RecordType::AXFR, RecordType::IXFR] {
        let m = tcp(s, "example.com.", t, Q::default());
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{t}");
        let m = udp(s, "example.com.", t, Q::default());
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::Refused,
            "{t} over UDP"
        );
    }
    let m = udp(s, "example.com.", RecordType::ANY, Q::default());
    assert_eq!(m.answers.len(), 1);
    assert!(matches!(&m.answers[0].data, RData::HINFO(h) if &*h.cpu == b"RFC8482"));
    let m = udp(s, "nope.example.com.", RecordType::ANY, Q::default());
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referral_cname_chains_and_additional_data() {
    let node = start(CFG).await;
    let s = node.dns.addrs[0];
    let m = udp(s, "host.lab.example.com.", RecordType::A, Q::default());
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(!m.metadata.authoritative, "referral is not authoritative");
    assert_eq!(m.authorities[0].record_type(), RecordType::NS);
    assert!(additional_addrs(&m).contains(&"192.0.2.54".into()));
    let m = udp(s, "example.com.", RecordType::MX, Q::default());
    assert!(
        m.additionals
            .iter()
            .any(|r| r.record_type() == RecordType::A),
        "MX target glue"
    );
    let m = udp(s, "loop1.example.com.", RecordType::A, Q::default());
    // A loop: the chain up to where it repeats, NOERROR (as NSD answers).
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NoError,
        "CNAME loop"
    );
    let owners: Vec<String> = m.answers.iter().map(|r| r.name.to_string()).collect();
    assert_eq!(owners, ["loop1.example.com.", "loop2.example.com."]);
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn question_case_is_preserved() {
    let node = start(CFG).await;
    let s = node.dns.addrs[0];
    for _ in 0..2 {
        // second round is a cache hit
        let m = udp(s, "TuRn.ExAmPle.CoM.", RecordType::A, ecs("8.8.8.0/24"));
        assert_eq!(m.queries[0].name().to_ascii(), "TuRn.ExAmPle.CoM.");
        assert_eq!(addrs(&m), ["127.0.1.1"]);
        let m = udp(s, "turn.example.com.", RecordType::A, ecs("8.8.8.0/24"));
        assert_eq!(m.queries[0].name().to_ascii(), "turn.example.com.");
    }
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edns_version_negotiation() {
    let node = start(CFG).await;
    let s = node.dns.addrs[0];
    let o = Q {
        edns: true,
        version: 1,
        ..Q::default()
    };
    let m = udp(s, "turn.example.com.", RecordType::A, o);
    assert_eq!(u16::from(m.metadata.response_code), 16, "BADVERS");
    assert_eq!(m.edns.as_ref().unwrap().version(), 0);
    assert!(m.answers.is_empty());
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_truncate_over_udp_and_come_whole_over_tcp() {
    let node = start(CFG).await;
    let s = node.dns.addrs[0];
    let plain = udp_raw(s, &build("big.example.com.", RecordType::TXT, Q::default())).unwrap();
    assert!(plain.len() <= 512);
    let m = Message::from_bytes(&plain).unwrap();
    assert!(m.metadata.truncation && m.answers.is_empty());
    let m = udp(
        s,
        "big.example.com.",
        RecordType::TXT,
        Q {
            edns: true,
            ..Q::default()
        },
    );
    assert!(m.metadata.truncation, "2.5 kB does not fit 1232 either");
    assert!(m.edns.is_some(), "OPT kept in a truncated answer");
    // The client then retries over TCP and gets everything.
    let m = tcp(
        s,
        "big.example.com.",
        RecordType::TXT,
        Q {
            edns: true,
            ..Q::default()
        },
    );
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 40);
    // A 4096-byte buffer is capped by our max_udp_payload (1232).
    let raw = udp_raw(
        s,
        &build(
            "big.example.com.",
            RecordType::TXT,
            Q {
                edns: true,
                payload: Some(4096),
                ..Q::default()
            },
        ),
    )
    .unwrap();
    assert!(raw.len() <= 1232 && Message::from_bytes(&raw).unwrap().metadata.truncation);
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_packets_do_not_stop_the_server() {
    // Response rate limiting is on with its defaults (200 answers/s per /24):
    // the hostile client, 127.0.0.1, gets what RRL gives a flooder, and
    // everyone else is checked from another prefix, 127.0.9.0/24.
    let node = start(CFG).await;
    let s = node.dns.addrs[0];
    let good = build("turn.example.com.", RecordType::A, ecs("8.8.8.0/24"));
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&sock)
        .set_recv_buffer_size(4 << 20)
        .unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut loop_q = good[..12].to_vec();
    loop_q.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);

    // 1. Errors only: 1,000 questions with a compression loop, each answered
    // by a header-only FORMERR. RRL counts error responses in a budget of
    // their own (like Knot's and NSD's error class, BIND's errors-per-second).
    let t = Instant::now();
    for _ in 0..1000 {
        sock.send_to(&loop_q, s).unwrap();
    }
    // So the same client's next real query, sent from the same socket (the
    // same UDP worker, queued behind the flood), gets its full answer.
    let mut q = good.clone();
    q[..2].copy_from_slice(&[0x77, 0x77]);
    sock.send_to(&q, s).unwrap();
    let (mut full, mut slipped) = (0u64, 0u64);
    let mut buf = [0u8; 1500];
    let answer = loop {
        let n = sock
            .recv(&mut buf)
            .expect("the flooding client's query answered");
        if buf[..2] == [0x77, 0x77] {
            break Message::from_bytes(&buf[..n]).unwrap();
        }
        assert_eq!((n, buf[3] & 0xF), (12, 1), "a header-only FORMERR");
        if buf[2] & 0x02 != 0 {
            slipped += 1;
        } else {
            full += 1;
        }
    };
    let elapsed = t.elapsed();
    assert_eq!(
        addrs(&answer),
        ["127.0.1.1"],
        "answers have their own budget"
    );
    // The error replies were limited: one second's burst plus the refill,
    // and every second limited reply went out truncated.
    assert!(
        (200..=rrl_ceiling(200, elapsed)).contains(&full),
        "{full} FORMERRs in {elapsed:?}"
    );
    assert_eq!(
        slipped,
        (1000 - full) / 2,
        "{full} passed, {slipped} slipped"
    );

    // 2. Everything else: truncations of a valid query, random corruptions
    // of it, a response, an oversized datagram.
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for n in 0..good.len() {
        sock.send_to(&good[..n], s).unwrap();
    }
    for _ in 0..2000 {
        let mut p = good.clone();
        for _ in 0..3 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % p.len();
            p[i] = (x >> 32) as u8;
        }
        sock.send_to(&p, s).unwrap();
    }
    let mut resp = good.clone();
    resp[2] |= 0x80;
    sock.send_to(&resp, s).unwrap();
    sock.send_to(&[0u8; 4000], s).unwrap();

    // The server still answers everyone else, on UDP and TCP.
    const OTHER: &str = "127.0.9.1";
    let m = udp_raw_from(OTHER, s, &good).expect("answered after the flood");
    assert_eq!(addrs(&Message::from_bytes(&m).unwrap()), ["127.0.1.1"]);
    let m = tcp(s, "turn.example.com.", RecordType::A, ecs("1.0.0.0/24"));
    assert_eq!(addrs(&m), ["127.0.3.1"]);
    // A malformed question gets FORMERR with the query's id.
    let r = udp_raw_from(OTHER, s, &loop_q).expect("FORMERR reply");
    assert_eq!((r[0], r[1], r[3] & 0xF), (0x42, 0x42, 1));
    // A response is never answered (no reflection).
    assert!(udp_raw_from(OTHER, s, &resp).is_none());
    // Bad ECS (scope set in a query) is FORMERR.
    let mut bad = build("turn.example.com.", RecordType::A, ecs("8.8.8.0/24"));
    let n = bad.len();
    bad[n - 4] = 24; // the scope byte sits before the 3 address bytes
    let r = udp_raw_from(OTHER, s, &bad).unwrap();
    assert_eq!(r[3] & 0xF, 1);
    // UPDATE is not implemented.
    let mut upd = build("example.com.", RecordType::SOA, Q::default());
    upd[2] = (upd[2] & 0x87) | (5 << 3);
    let r = udp_raw_from(OTHER, s, &upd).unwrap();
    assert_eq!(r[3] & 0xF, 4);
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_garbage_closes_only_that_connection() {
    use std::io::Write;
    let node = start(CFG).await;
    let s = node.dns.addrs[0];
    let mut c = std::net::TcpStream::connect(s).unwrap();
    c.write_all(&[0, 5, 1, 2, 3, 4, 5]).unwrap();
    let _ = c.write_all(&[0xff; 100]);
    drop(c);
    let m = tcp(s, "example.com.", RecordType::SOA, Q::default());
    assert_eq!(m.answers.len(), 1);
    node.dns.shutdown().await;
}
