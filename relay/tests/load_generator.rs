//! The benchmark's load generator against the relay: `geosteer-turn-load`
//! sets up every allocation and relays both ways over UDP, TCP and TLS, with
//! several peer sockets, in ChannelData and Send/Data modes, and runs twice in
//! a row on one server (the second run meets the first one's released
//! 5-tuples). What the benchmark (`benches/relay-load.sh`) relies on.
//! Traffic stays on 127.0.0.1.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::*;

fn run(args: &[String]) -> HashMap<String, String> {
    let (out, timed_out) = run_timeout(
        Command::new(env!("CARGO_BIN_EXE_geosteer-turn-load")).args(args),
        Duration::from_secs(60),
    );
    assert!(!timed_out, "geosteer-turn-load {args:?} timed out");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "geosteer-turn-load {args:?}: {stderr}"
    );
    key_values(&out.stdout)
}

#[test]
fn the_load_generator_relays_both_ways_on_every_transport() {
    let dir = temp_dir("load-generator");
    let (cert, key) = self_signed(&dir);
    let tls_port = free_port();
    let (relay, port) = start(|p| config(p, Some((tls_port, &cert, &key))));
    for (transport, server_port, mode) in [
        ("udp", port, "channel"),
        ("udp", port, "channel"),
        ("udp", port, "send"),
        ("tcp", port, "channel"),
        ("tls", tls_port, "channel"),
        ("tls", tls_port, "send"),
    ] {
        let args: Vec<String> = [
            "--server",
            &format!("127.0.0.1:{server_port}"),
            "--transport",
            transport,
            "--mode",
            mode,
            "--realm",
            "geosteer.test",
            "--allocs",
            "12",
            "--peers",
            "3",
            "--rate",
            "600",
            "--duration",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let r = run(&args);
        let num = |k: &str| -> f64 { r[k].parse().unwrap() };
        eprintln!("{transport}/{mode}: {r:?}");
        assert_eq!(
            r["allocs"], "12",
            "{transport}/{mode}: every allocation set up"
        );
        assert!(
            num("sent") >= 500.0,
            "{transport}/{mode}: sent {}",
            r["sent"]
        );
        assert!(
            num("peer_rx") > 0.0 && num("client_rx") > 0.0,
            "{transport}/{mode}: relayed both ways: {r:?}"
        );
        // Loopback at 600 packets/s: a working path loses nothing; the bound
        // leaves room for a descheduled process, not for a broken direction.
        assert!(
            num("loss_pct") <= 2.0,
            "{transport}/{mode}: loss {}",
            r["loss_pct"]
        );
    }
    relay.stop();
}
