//! Interop with coturn's own test clients (Debian package `coturn`):
//! `turnutils_stunclient`, and `turnutils_uclient` over UDP, TCP and TLS, with
//! long-term and REST credentials, channels and indications, against
//! `turnutils_peer`. Every message must come back.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn coturn_clients_interoperate() {
    let (Some(stunclient), Some(uclient_bin), Some(peer_bin)) = (
        tool("turnutils_stunclient"),
        tool("turnutils_uclient"),
        tool("turnutils_peer"),
    ) else {
        return;
    };
    let dir = temp_dir("interop");
    let (cert, key) = self_signed(&dir);
    let tls_port = free_port();
    let (relay, port) = start(|p| config(p, Some((tls_port, &cert, &key))));
    let tls_port = relay.tls[0].port();
    let (_peer, peer_port) = start_peer(&peer_bin);

    // STUN Binding.
    let (out, _) = run_timeout(
        Command::new(&stunclient).args(["-p", &port.to_string(), "127.0.0.1"]),
        Duration::from_secs(20),
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("UDP reflexive addr: 127.0.0.1:"),
        "stunclient failed:\n{text}"
    );

    let lt: &[&str] = &["-u", "alice", "-w", "wonderland"];
    let rest: &[&str] = &["-W", SECRET];
    let tls_port_s = tls_port.to_string();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("udp channels long-term", lt.to_vec()),
        ("udp indications long-term", [lt, &["-s"]].concat()),
        ("tcp channels long-term", [lt, &["-t"]].concat()),
        ("tcp indications long-term", [lt, &["-t", "-s"]].concat()),
        ("udp channels rest", rest.to_vec()),
        ("udp indications rest", [rest, &["-s"]].concat()),
        ("tcp channels rest", [rest, &["-t"]].concat()),
        ("tls channels long-term", [lt, &["-t", "-S"]].concat()),
        ("tls indications rest", [rest, &["-t", "-S", "-s"]].concat()),
    ];
    for (name, args) in cases {
        // TLS cases connect to the TLS port.
        let p = if args.contains(&"-S") { tls_port } else { port };
        let _ = &tls_port_s;
        let r = uclient(&uclient_bin, p, peer_port, &args);
        assert!(
            r.sent >= 20,
            "{name}: too few messages sent ({})\n{}",
            r.sent,
            r.text
        );
        assert_eq!(r.sent, r.recv, "{name}: lost messages\n{}", r.text);
        assert_eq!(r.lost, Some(0), "{name}: lost packets\n{}", r.text);
        eprintln!("{name}: {} sent, {} received", r.sent, r.recv);
    }

    // TLS 1.2 and 1.3 only.
    if let Some(openssl) = tool("openssl") {
        let connect = format!("127.0.0.1:{tls_port}");
        for (flag, ok) in [
            ("-tls1_3", true),
            ("-tls1_2", true),
            ("-tls1_1", false),
            ("-tls1", false),
        ] {
            let (out, _) = run_timeout(
                Command::new(&openssl)
                    .args(["s_client", "-connect", &connect, flag])
                    .stdin(std::process::Stdio::null()),
                Duration::from_secs(10),
            );
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let handshake = text.contains("Cipher is") && !text.contains("Cipher is (NONE)");
            assert_eq!(handshake, ok, "TLS {flag}: handshake={handshake}\n{text}");
        }
    }

    // Wrong password: no relaying at all.
    let r = uclient(
        &uclient_bin,
        port,
        peer_port,
        &["-u", "alice", "-w", "bad", "-n", "2"],
    );
    assert_eq!(r.recv, 0, "wrong password must not relay\n{}", r.text);

    // Metrics and health reflect the traffic.
    std::thread::sleep(Duration::from_millis(1200));
    let (status, body) = http(relay.http, "GET", "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(
        metric(&body, "turn_sessions_total").unwrap() >= 18.0,
        "{body}"
    );
    assert!(
        metric(&body, "turn_relay_packets_total{direction=\"in\"}").unwrap() >= 180.0,
        "{body}"
    );
    assert!(
        metric(&body, "stun_binding_requests_total").unwrap() >= 1.0,
        "{body}"
    );
    assert!(
        metric(&body, "turn_auth_failures_total").unwrap() >= 1.0,
        "{body}"
    );
    let (status, body) = http(relay.http, "GET", "/health", &[]);
    assert_eq!(status, 200);
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["region"], "test-1");
    assert_eq!(h["capacity"], 10000);
    relay.stop();
}

#[test]
fn loopback_peers_are_refused_by_default() {
    let (Some(uclient_bin), Some(peer_bin)) = (tool("turnutils_uclient"), tool("turnutils_peer"))
    else {
        return;
    };
    let (relay, port) = start(|p| {
        let mut c = config(p, None);
        c.peer_policy.allow_loopback_peers = false;
        c
    });
    let (_peer, peer_port) = start_peer(&peer_bin);
    let r = uclient(
        &uclient_bin,
        port,
        peer_port,
        &["-u", "alice", "-w", "wonderland", "-n", "3"],
    );
    assert_eq!(r.recv, 0, "loopback peer must be refused\n{}", r.text);
    std::thread::sleep(Duration::from_millis(1200));
    let (_, body) = http(relay.http, "GET", "/metrics", &[]);
    assert!(
        metric(&body, "turn_peer_denied_total").unwrap() >= 1.0,
        "{body}"
    );
    relay.stop();
}

#[test]
fn ipv6_relay_addresses() {
    let (Some(uclient_bin), Some(peer_bin)) = (tool("turnutils_uclient"), tool("turnutils_peer"))
    else {
        return;
    };
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("\n!!!!!!!! SKIPPING: no IPv6 loopback on this host !!!!!!!!\n");
        return;
    }
    let (relay, port) = start(|p| {
        let mut c = config(p, None);
        c.relay.ips = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        c
    });
    let (_peer, peer_port) = start_peer_on(&peer_bin, "::1");
    // -x: IPv6 relay address requested (REQUESTED-ADDRESS-FAMILY), peer on ::1.
    let mut cmd = Command::new(&uclient_bin);
    cmd.args(["-n", "10", "-m", "2", "-l", "120", "-z", "5", "-e", "::1"])
        .args(["-r", &peer_port.to_string(), "-p", &port.to_string(), "-x"])
        .args(["-v", "-u", "alice", "-w", "wonderland", "127.0.0.1"]);
    let (out, timed_out) = run_timeout(&mut cmd, Duration::from_secs(40));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!timed_out, "{text}");
    let r = parse_uclient(&text);
    assert!(
        r.sent >= 20 && r.sent == r.recv,
        "IPv6 relay lost messages\n{text}"
    );
    assert!(
        text.contains("IPv6. Received relay addr: ::1"),
        "expected an IPv6 relayed address:\n{text}"
    );
    relay.stop();
}
