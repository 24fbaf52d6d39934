//! Interop with real external DNS clients: ISC `dig` and Knot `kdig`.
//! Missing tools fail the test under CI=true (the test command installs them).

mod common;

use std::process::Command;

use common::start;

fn tool(name: &str) -> Option<String> {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .ok()?;
    if found.status.success() {
        return Some(name.to_string());
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{name} is not installed (Debian package: {}); the test command installs it when run as root", match name {
            "dig" => "bind9-dnsutils",
            _ => "knot-dnsutils",
        });
    }
    eprintln!("SKIPPING: {name} not installed");
    None
}

/// Runs `bin @server -p port ARGS…` and returns its standard output.
fn query(bin: &str, server: std::net::SocketAddr, args: &[&str]) -> String {
    let out = Command::new(bin)
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A records of `+short`-like output lines `name TTL IN A addr`.
fn a_records(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 5 && f[3] == "A").then(|| f[4].to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_over_udp_and_tcp_with_ecs() {
    let Some(dig) = tool("dig") else { return };
    let node = start("zones/demo.toml").await;
    let a = node.dns.addrs[0];
    for (subnet, want, scope) in [
        // source /24; scope = widest block with the same decision in the demo DB
        ("81.2.69.0/24", "127.0.2.1", "/24/4"),
        ("1.0.0.0/24", "127.0.3.1", "/24/24"),
        ("8.8.8.0/24", "127.0.1.1", "/24/7"),
    ] {
        for transport in ["+notcp", "+tcp"] {
            let out = query(
                &dig,
                a,
                &[
                    "turn.example.com",
                    "A",
                    &format!("+subnet={subnet}"),
                    transport,
                    "+norec",
                ],
            );
            assert!(out.contains("status: NOERROR"), "{out}");
            assert!(out.contains("flags: qr aa;"), "AA set, RA clear: {out}");
            assert_eq!(a_records(&out), [want], "{subnet} {transport}: {out}");
            assert!(
                out.contains(&format!(
                    "CLIENT-SUBNET: {}{scope}",
                    subnet.split('/').next().unwrap()
                )),
                "{out}"
            );
        }
    }
    let out = query(&dig, a, &["nope.example.com", "+norec"]);
    assert!(
        out.contains("status: NXDOMAIN") && out.contains("SOA"),
        "{out}"
    );
    let out = query(&dig, a, &["example.com", "AXFR"]);
    assert!(out.contains("Transfer failed"), "{out}");
    node.dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kdig_with_ecs_and_srv() {
    let Some(kdig) = tool("kdig") else { return };
    let node = start("zones/demo.toml").await;
    let a = node.dns.addrs[0];
    let out = query(
        &kdig,
        a,
        &["_turn._udp.turn.example.com", "SRV", "+subnet=81.2.69.0/24"],
    );
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("3478 euc1-a.turn.example.com."), "{out}");
    assert!(out.contains("CLIENT-SUBNET: 81.2.69.0/24/4"), "{out}");
    assert!(
        out.contains("127.0.2.1"),
        "target address in additional: {out}"
    );
    node.dns.shutdown().await;
}
