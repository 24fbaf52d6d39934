//! Abuse resistance on loopback: response rate limiting of UDP answers
//! (slip, allow-list, dry-run, TCP exemption, metrics, on by default).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;
use geosteer::config::Config;
use geosteer::dns::ServeState;
use geosteer::node::Node;
use hickory_proto::rr::RecordType;

const LOOPBACK_ALLOW: &str = "allow = [\"127.0.0.0/8\", \"::1/128\"]";

/// The demo config with one UDP worker and `rrl` as the `[server.rrl]` body.
async fn node_with_rrl(rrl: &str) -> Node {
    let text = demo_toml(&demo_mmdb())
        .replace("udp_workers = 2", "udp_workers = 1")
        .replace(LOOPBACK_ALLOW, rrl);
    let cfg = Config::from_str(&text, &repo("zones/demo.toml")).unwrap();
    Node::start(ServeState::load(cfg, 1).unwrap())
        .await
        .unwrap()
}

/// What came back for a flood of `n` queries sent back to back from one socket.
#[derive(Debug, Default)]
struct Flood {
    full: usize,
    truncated: usize,
}

/// Sends `n` queries from 127.0.0.1 without waiting, then one query from
/// another /24 (127.0.1.1) on the same single UDP worker: once its answer is
/// back, every flood answer the server sent is in our socket's buffer.
fn flood(server: SocketAddr, n: usize) -> Flood {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Room for every answer (the default buffer holds about 250 datagrams).
    socket2::SockRef::from(&s)
        .set_recv_buffer_size(4 << 20)
        .unwrap();
    let q = build("turn.example.com.", RecordType::A, Q::default());
    for _ in 0..n {
        s.send_to(&q, server).unwrap();
    }
    let barrier = UdpSocket::bind("127.0.1.1:0").unwrap();
    barrier
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    barrier.send_to(&q, server).unwrap();
    let mut buf = [0u8; 1500];
    barrier.recv(&mut buf).expect("barrier query answered");
    s.set_nonblocking(true).unwrap();
    let mut f = Flood::default();
    while let Ok(len) = s.recv(&mut buf) {
        assert!(len >= 12);
        assert_eq!(&buf[..2], &q[..2], "id echoed");
        let tc = buf[2] & 0x02 != 0;
        let ancount = u16::from_be_bytes([buf[6], buf[7]]);
        if tc {
            assert_eq!(ancount, 0, "a slipped answer carries no records");
            assert_eq!(&buf[12..len], &q[12..len], "question echoed");
            f.truncated += 1;
        } else {
            assert!(ancount > 0);
            f.full += 1;
        }
    }
    f
}

fn metric(node: &Node, name: &str) -> u64 {
    let mut out = String::new();
    node.shared().metrics.render(&mut out);
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_flood_is_limited_with_every_second_answer_slipped_and_tcp_is_exempt() {
    let node = node_with_rrl("responses_per_second = 20\nslip = 2").await;
    let s = node.dns.addrs[0];
    let n = 300;
    let f = flood(s, n);
    // A burst of one second's worth (20), plus what refilled while sending.
    assert!((20..=60).contains(&f.full), "{f:?}");
    let limited = n - f.full;
    assert_eq!(f.truncated, limited / 2, "{f:?}");
    assert_eq!(
        metric(&node, "geosteer_dns_rrl_slipped_total"),
        f.truncated as u64
    );
    assert_eq!(
        metric(&node, "geosteer_dns_rrl_dropped_total"),
        (limited - f.truncated) as u64
    );
    // The same prefix over TCP is never limited.
    for _ in 0..40 {
        let m = tcp(s, "turn.example.com.", RecordType::A, Q::default());
        assert!(!m.metadata.truncation && !m.answers.is_empty());
    }
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_listed_clients_and_dry_run_are_never_limited() {
    let node = node_with_rrl("responses_per_second = 5\nallow = [\"127.0.0.1/32\"]").await;
    let f = flood(node.dns.addrs[0], 200);
    assert_eq!((f.full, f.truncated), (200, 0));
    node.dns.shutdown().await;

    let node = node_with_rrl("responses_per_second = 5\ndry_run = true").await;
    let f = flood(node.dns.addrs[0], 200);
    assert_eq!((f.full, f.truncated), (200, 0));
    assert!(metric(&node, "geosteer_dns_rrl_would_limit_total") >= 150);
    assert_eq!(metric(&node, "geosteer_dns_rrl_dropped_total"), 0);
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiting_is_on_by_default() {
    // The demo config without its loopback exemption: the defaults apply.
    let node = node_with_rrl("").await;
    let rrl = &node.shared().state.load().config.file.server.rrl;
    assert!(rrl.enabled && !rrl.dry_run);
    assert_eq!((rrl.responses_per_second, rrl.slip), (200, 2));
    assert_eq!((rrl.ipv4_prefix, rrl.ipv6_prefix), (24, 56));
    let n = 1000;
    let f = flood(node.dns.addrs[0], n);
    assert!((200..400).contains(&f.full), "{f:?}");
    assert_eq!(f.truncated, (n - f.full) / 2, "{f:?}");
    node.dns.shutdown().await;
}

#[test]
fn bad_rrl_settings_are_reported_with_their_paths() {
    let text = demo_toml(&demo_mmdb()).replace(
        LOOPBACK_ALLOW,
        "responses_per_second = 0\nslip = 1000\nipv4_prefix = 40\nipv6_prefix = 100\ntable_size = 1000",
    );
    let err = Config::from_str(&text, &repo("zones/demo.toml"))
        .unwrap_err()
        .to_string();
    for p in [
        "server.rrl.responses_per_second",
        "server.rrl.slip",
        "server.rrl.ipv4_prefix",
        "server.rrl.ipv6_prefix",
        "server.rrl.table_size",
    ] {
        assert!(err.contains(p), "{p} not in {err}");
    }
    let text = demo_toml(&demo_mmdb()).replace(LOOPBACK_ALLOW, "rate = 5");
    let err = Config::from_str(&text, &repo("zones/demo.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("rate"), "{err}");
}
