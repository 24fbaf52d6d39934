//! Abuse resistance on loopback: response rate limiting of UDP answers
//! (slip, allow-list, dry-run, TCP exemption, metrics, on by default).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use geosteer::config::Config;
use geosteer::dns::ServeState;
use geosteer::node::Node;
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::BinDecodable;

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
    /// From before the first query to the server's last answer.
    elapsed: Duration,
}

impl Flood {
    /// The most full answers a limiter of `rate` per second may have let
    /// through in this flood (see [`rrl_ceiling`]).
    fn ceiling(&self, rate: u64) -> usize {
        rrl_ceiling(rate, self.elapsed) as usize
    }
}

/// Sends `n` queries from 127.0.0.1 without waiting, then one query from
/// another /24 (127.0.1.1) on the same single UDP worker: once its answer is
/// back, every flood answer the server sent is in our socket's buffer.
fn flood(server: SocketAddr, n: usize) -> Flood {
    flood_with(
        server,
        &build("turn.example.com.", RecordType::A, Q::default()),
        n,
    )
}

/// [`flood`] with the query `q`.
fn flood_with(server: SocketAddr, q: &[u8], n: usize) -> Flood {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Room for every answer (the default buffer holds about 250 datagrams).
    socket2::SockRef::from(&s)
        .set_recv_buffer_size(4 << 20)
        .unwrap();
    let start = Instant::now();
    for _ in 0..n {
        s.send_to(q, server).unwrap();
    }
    let barrier = UdpSocket::bind("127.0.1.1:0").unwrap();
    barrier
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    barrier.send_to(q, server).unwrap();
    let mut buf = [0u8; 1500];
    barrier.recv(&mut buf).expect("barrier query answered");
    let mut f = Flood {
        elapsed: start.elapsed(),
        ..Flood::default()
    };
    s.set_nonblocking(true).unwrap();
    while let Ok(len) = s.recv(&mut buf) {
        assert!(len >= 12);
        assert_eq!(&buf[..2], &q[..2], "id echoed");
        let tc = buf[2] & 0x02 != 0;
        let ancount = u16::from_be_bytes([buf[6], buf[7]]);
        if tc {
            assert_eq!(ancount, 0, "a slipped answer carries no records");
            assert_eq!(buf[5], 1, "question echoed");
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
    assert!((20..=f.ceiling(20)).contains(&f.full), "{f:?}");
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
    let passed = f.ceiling(5).min(200) as u64;
    assert!(metric(&node, "geosteer_dns_rrl_would_limit_total") >= 200 - passed);
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
    assert!((200..=f.ceiling(200)).contains(&f.full), "{f:?}");
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

/// A query with EDNS and a COOKIE option carrying `cookie` (8 or 24 bytes).
fn with_cookie(cookie: &[u8]) -> Vec<u8> {
    let mut q = build(
        "turn.example.com.",
        RecordType::A,
        Q {
            edns: true,
            ..Q::default()
        },
    );
    // The OPT record is last and empty: append the option, patch RDLEN.
    let at = q.len() - 2;
    assert_eq!(&q[at..], &[0, 0]);
    q.extend_from_slice(&[0, 10]);
    q.extend_from_slice(&(cookie.len() as u16).to_be_bytes());
    q.extend_from_slice(cookie);
    let rdlen = (4 + cookie.len()) as u16;
    q[at..at + 2].copy_from_slice(&rdlen.to_be_bytes());
    q
}

/// The COOKIE option data of a response (ours is the last option).
fn cookie_of(resp: &[u8]) -> Option<Vec<u8>> {
    let tail = resp.get(resp.len().checked_sub(28)?..)?;
    (tail[..4] == [0, 10, 0, 24]).then(|| tail[4..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_server_cookie_exempts_from_rate_limiting_and_a_forged_one_does_not() {
    let node = node_with_rrl("responses_per_second = 5\nslip = 0").await;
    let s = node.dns.addrs[0];
    let client = *b"\x01\x02\x03\x04\x05\x06\x07\x08";
    let first = udp_raw(s, &with_cookie(&client)).expect("answer");
    let cookie = cookie_of(&first).expect("a COOKIE option in the answer");
    assert_eq!(&cookie[..8], &client, "client cookie echoed");
    assert_eq!(&cookie[8..12], &[1, 0, 0, 0], "RFC 9018 version 1");
    let m = hickory_proto::op::Message::from_bytes(&first).unwrap();
    assert!(!m.answers.is_empty());

    // 100 queries with the server cookie, back to back: none limited.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let q = with_cookie(&cookie);
    let mut buf = [0u8; 1500];
    for _ in 0..100 {
        sock.send_to(&q, s).unwrap();
        let n = sock.recv(&mut buf).expect("answered: cookie exempts");
        assert!(cookie_of(&buf[..n]).is_some());
    }
    // A forged server cookie is no exemption: the budget is spent.
    let mut forged = cookie.clone();
    forged[20] ^= 0xff;
    let f = flood_with(s, &with_cookie(&forged), 50);
    assert!(f.full <= f.ceiling(5), "{f:?}");
    assert_eq!(
        metric(&node, "geosteer_dns_rrl_dropped_total"),
        50 - f.full as u64
    );
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_sees_a_good_cookie() {
    let node = node_with_rrl(LOOPBACK_ALLOW).await;
    let s = node.dns.addrs[0];
    let dig = |cookie: &str| {
        let out = std::process::Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &s.port().to_string(),
                cookie,
                "+norec",
                "+tries=1",
                "+time=3",
                "turn.example.com",
                "A",
            ])
            .output()
            .expect("dig (bind9-dnsutils) installed");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let out = dig("+cookie");
    let line = out
        .lines()
        .find(|l| l.contains("COOKIE:"))
        .unwrap_or_else(|| panic!("no COOKIE in\n{out}"));
    assert!(line.contains("(good)"), "{line}");
    // Sending the whole cookie back is accepted (and answered normally).
    let hex = line.split_whitespace().nth(2).unwrap();
    assert_eq!(hex.len(), 48, "{line}");
    let again = dig(&format!("+cookie={hex}"));
    assert!(again.contains("status: NOERROR"), "{again}");
    assert!(again.contains("(good)"), "{again}");
    node.dns.shutdown().await;
}

#[test]
fn bad_cookie_secrets_are_reported() {
    let text = demo_toml(&demo_mmdb()).replace(
        "[server.rrl]",
        "[server.cookies]\nsecret = \"abc\"\nprevious_secret = \"zz\"\n[server.rrl]",
    );
    let err = Config::from_str(&text, &repo("zones/demo.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.cookies.secret"), "{err}");
    assert!(err.contains("server.cookies.previous_secret"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_the_admin_api_need_the_read_token_when_one_is_set() {
    const READ: &str = "read-token-0123456789";
    const WRITE: &str = "write-token-0123456789";
    let text = demo_toml(&demo_mmdb()).replace(
        "[api]\nlisten = \"127.0.0.1:0\"",
        &format!("[api]\nlisten = \"127.0.0.1:0\"\nread_token = \"{READ}\"\ntoken = \"{WRITE}\""),
    );
    assert!(text.contains(READ));
    let cfg = Config::from_str(&text, &repo("zones/demo.toml")).unwrap();
    let node = Node::start(ServeState::load(cfg, 1).unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", node.api_addr.unwrap());
    let c = reqwest::Client::new();
    for path in ["/metrics", "/v1/state", "/v1/explain?ip=81.2.69.1", "/"] {
        let url = format!("{base}{path}");
        assert_eq!(send(c.get(&url)).await.status, 401, "{path} without token");
        assert_eq!(
            send(c.get(&url).bearer_auth("wrong-token-0123456789"))
                .await
                .status,
            401,
            "{path} with a wrong token"
        );
        for t in [READ, WRITE] {
            let r = send(c.get(&url).bearer_auth(t)).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
        }
    }
    assert_eq!(get(&c, &format!("{base}/healthz")).await.status, 200);
    // The read token is no change token.
    assert_eq!(
        post(&c, &format!("{base}/v1/reload"), Some(READ))
            .await
            .status,
        401
    );
    node.shutdown().await;
}
