//! A node listening on a wildcard address (`0.0.0.0`, `::`) answers UDP
//! from the address each query was sent to (IP_PKTINFO / IPV6_PKTINFO), as
//! resolvers require: a reply from another address is discarded as spoofed.
//!
//! On loopback: a client bound to 127.0.0.1 asks 127.0.0.2. In a network
//! namespace: a server with two addresses on one interface, a client in a
//! second namespace behind a veth pair (198.18.0.0/15 only); the kernel's
//! own source choice there would be the interface's first address. The
//! namespace part needs root and iproute2: without them it prints
//! SKIPPING, or fails when CI=true.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{build, repo, Q};
use geosteer::config::Config;
use geosteer::dns::ServeState;
use geosteer::node::Node;
use hickory_proto::rr::RecordType;

/// Sends a query from `from` to `to`; returns the reply's source address.
fn reply_source(from: &str, to: SocketAddr) -> SocketAddr {
    let s = UdpSocket::bind((from, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.send_to(&build("ns1.example.com.", RecordType::A, Q::default()), to)
        .unwrap();
    let mut buf = [0u8; 1500];
    let (_, src) = s.recv_from(&mut buf).expect("a reply");
    src
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_listeners_answer_from_the_queried_address_on_loopback() {
    let path = repo("tests/data/test.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"0.0.0.0:0\", \"[::]:0\"]",
    );
    let cfg = Config::from_str(&text, &path).unwrap();
    let node = Node::start(ServeState::load(cfg, 1).unwrap())
        .await
        .unwrap();
    let (v4, v6) = (node.dns.addrs[0].port(), node.dns.addrs[1].port());
    for to in ["127.0.0.2", "127.0.0.1", "127.1.2.3"] {
        let to = SocketAddr::new(to.parse().unwrap(), v4);
        assert_eq!(reply_source("127.0.0.1", to), to);
    }
    let to = SocketAddr::new("::1".parse().unwrap(), v6);
    assert_eq!(reply_source("::1", to), to);
    node.dns.shutdown().await;
}

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn run(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces (deleted on drop) and the server process in one of them.
struct Lab {
    srv: String,
    cli: String,
    server: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.srv, &self.cli] {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

#[test]
fn wildcard_listeners_answer_from_the_queried_address_in_a_namespace() {
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !run(&["ip", "-V"]) {
        assert!(
            !ci(),
            "needs root and iproute2 (the test command runs as root)"
        );
        eprintln!("SKIPPING: needs root and iproute2");
        return;
    }
    let id = std::process::id();
    let mut lab = Lab {
        srv: format!("gs-wl-s-{id}"),
        cli: format!("gs-wl-c-{id}"),
        server: None,
    };
    let (srv, cli) = (lab.srv.clone(), lab.cli.clone());
    must(&["ip", "netns", "add", &srv]);
    must(&["ip", "netns", "add", &cli]);
    let (a, b) = (
        format!("wls{}", id % 100_000),
        format!("wlc{}", id % 100_000),
    );
    must(&[
        "ip", "link", "add", &a, "netns", &srv, "type", "veth", "peer", "name", &b, "netns", &cli,
    ]);
    for (ns, dev, addrs) in [
        (&srv, &a, &["198.18.0.1/24", "198.18.0.2/24"][..]),
        (&cli, &b, &["198.18.0.10/24"][..]),
    ] {
        for addr in addrs {
            must(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
        }
        must(&["ip", "-n", ns, "link", "set", dev, "up"]);
        must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    // The server binary in its namespace, on 0.0.0.0:53.
    let dir = common::tmp_dir("wildcard-listen");
    let text = std::fs::read_to_string(repo("tests/data/test.toml"))
        .unwrap()
        .replace("listen = [\"127.0.0.1:0\"]", "listen = [\"0.0.0.0:53\"]")
        .replace(
            "../../geoip/demo.mmdb",
            repo("geoip/demo.mmdb").to_str().unwrap(),
        )
        .replace(
            "file = \"test.zone\"",
            &format!("file = {:?}", repo("tests/data/test.zone")),
        )
        .replace(
            "file = \"apex.zone\"",
            &format!("file = {:?}", repo("tests/data/apex.zone")),
        );
    std::fs::write(dir.join("g.toml"), text).unwrap();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    lab.server = Some(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &srv,
                env!("CARGO_BIN_EXE_geosteer"),
                "serve",
                "--config",
            ])
            .arg(dir.join("g.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    // From the client namespace: each address's replies must come from it.
    let probe = r#"
import socket, sys, time
q = bytes.fromhex(sys.argv[1])
deadline = time.time() + 20
for dst in ("198.18.0.2", "198.18.0.1", "198.18.0.2"):
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.5)
        s.sendto(q, (dst, 53))
        try:
            _, src = s.recvfrom(1500)
            print(dst, src[0])
            break
        except socket.timeout:
            if time.time() > deadline:
                print(dst, "none")
                break
"#;
    let q: String = build("ns1.example.com.", RecordType::A, Q::default())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let started = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &cli, "python3", "-c", probe, &q])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "198.18.0.2 198.18.0.2",
            "198.18.0.1 198.18.0.1",
            "198.18.0.2 198.18.0.2"
        ],
        "after {:?}; stderr {}; server log:\n{log}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
}
