//! The relay on several event loops (`[relay] loops = 4`): the kernel spreads
//! UDP clients and TCP connections over the loops by their 5-tuple hash;
//! every allocation relays both ways on the loop that owns it; what must be
//! process-wide stays so — one user's quota across loops, a reload and a
//! drain reach every loop, and the relay exits when every loop has.
//! Traffic stays on 127.0.0.1.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::turn::TurnClient;
use common::*;
use turn_types::message::{ALLOCATE, REFRESH};

const LOOPS: usize = 4;

fn per_loop(http_addr: SocketAddr) -> Vec<f64> {
    let (_, body) = http(http_addr, "GET", "/metrics", &[]);
    (0..LOOPS)
        .map(|i| {
            metric(&body, &format!("turn_loop_sessions_active{{loop=\"{i}\"}}")).unwrap_or(-1.0)
        })
        .collect()
}

#[test]
fn allocations_spread_over_four_loops_and_relay_both_ways() {
    let (relay, port) = start(|p| {
        let mut c = config(p, None);
        c.relay.loops = Some(LOOPS);
        c.limits.allocations_per_user = 0;
        c.limits.allocations_per_ip = 0;
        c
    });
    // 100 UDP and 100 TCP allocations at once, held while the loops are counted.
    let generator = |transport: &str| {
        Command::new(env!("CARGO_BIN_EXE_geosteer-turn-load"))
            .args([
                "--server",
                &format!("127.0.0.1:{port}"),
                "--transport",
                transport,
            ])
            .args([
                "--realm",
                "geosteer.test",
                "--allocs",
                "100",
                "--peers",
                "4",
            ])
            .args(["--rate", "2000", "--duration", "1", "--hold", "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let udp = generator("udp");
    let tcp = generator("tcp");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut counts = per_loop(relay.http);
    while counts.iter().sum::<f64>() < 200.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        counts = per_loop(relay.http);
    }
    eprintln!("allocations per loop: {counts:?}");
    assert_eq!(
        counts.iter().sum::<f64>(),
        200.0,
        "per-loop gauges add up: {counts:?}"
    );
    assert!(
        counts.iter().all(|&n| n > 0.0),
        "the kernel spreads 200 clients over all {LOOPS} loops: {counts:?}"
    );
    let (_, health) = http(relay.http, "GET", "/health", &[]);
    assert!(
        health.contains("\"allocations\":200"),
        "/health sums the loops: {health}"
    );
    for (name, child) in [("udp", udp), ("tcp", tcp)] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = key_values(&out.stdout);
        eprintln!("{name}: {r:?}");
        let num = |k: &str| -> f64 { r[k].parse().unwrap() };
        assert_eq!(r["allocs"], "100");
        assert!(
            num("peer_rx") > 0.0 && num("client_rx") > 0.0,
            "{name}: both ways"
        );
        assert!(num("loss_pct") <= 2.0, "{name}: loss {}", r["loss_pct"]);
    }
    relay.stop();
}

#[test]
fn quota_reload_and_drain_reach_every_loop() {
    let (relay, port) = start(|p| {
        let mut c = config(p, None);
        c.relay.loops = Some(LOOPS);
        c.limits.allocations_per_user = 10;
        c
    });
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let allocate = |n: usize| -> (Vec<TurnClient>, HashMap<u16, usize>) {
        let mut kept = Vec::new();
        let mut codes = HashMap::new();
        for _ in 0..n {
            let mut c = TurnClient::udp(server);
            let code = c.lifetime_request(ALLOCATE, Some(600));
            *codes.entry(code).or_default() += 1;
            if code == 200 {
                kept.push(c);
            }
        }
        (kept, codes)
    };

    // One user's quota holds across loops: 40 clients, 10 allocations.
    let (mut held, codes) = allocate(40);
    assert_eq!(codes.get(&200), Some(&10), "{codes:?}");
    assert_eq!(codes.get(&486), Some(&30), "{codes:?}");
    // The gauges are published once per loop tick (1 s).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut counts = per_loop(relay.http);
    while counts.iter().sum::<f64>() < 10.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        counts = per_loop(relay.http);
    }
    assert_eq!(counts.iter().sum::<f64>(), 10.0, "{counts:?}");
    assert!(
        counts.iter().filter(|&&n| n > 0.0).count() > 1,
        "the 10 allocations sit on several loops: {counts:?}"
    );

    // A reload reaches every loop (reload returns once all applied it).
    let mut c = config(port, None);
    c.relay.loops = Some(LOOPS);
    c.limits.allocations_per_user = 20;
    relay.reload(c).expect("reload");
    let (more, codes) = allocate(40);
    assert_eq!(codes.get(&200), Some(&10), "after the reload: {codes:?}");
    held.extend(more);

    // A drain reaches every loop: no new allocation anywhere.
    relay.drain();
    let (none, codes) = allocate(20);
    assert!(none.is_empty(), "allocations while draining: {codes:?}");
    assert_eq!(codes.get(&508), Some(&20), "{codes:?}");

    // The relay ends once every loop's allocations are gone.
    let control = relay.control();
    assert!(!control.is_finished());
    for c in &mut held {
        assert_eq!(c.lifetime_request(REFRESH, Some(0)), 200);
    }
    assert!(
        control.wait_timeout(Duration::from_secs(10)),
        "every loop exits after the drain"
    );
    relay.wait();
}

/// A client whose NAT rebinds (a new source port: a new 5-tuple, which the
/// kernel may hash to another loop) has no allocation there: its requests get
/// 437 Allocation Mismatch, as from one loop and as coturn answers; the
/// allocation on the old 5-tuple is untouched and keeps answering.
#[test]
fn a_rebound_client_gets_437_on_any_loop() {
    let (relay, port) = start(|p| {
        let mut c = config(p, None);
        c.relay.loops = Some(LOOPS);
        c
    });
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let mut original = TurnClient::udp(server);
    assert_eq!(original.lifetime_request(ALLOCATE, Some(600)), 200);
    // Several rebinds, so that some land on other loops than the original.
    for _ in 0..12 {
        let mut rebound = TurnClient::udp(server);
        assert_eq!(rebound.lifetime_request(REFRESH, Some(600)), 437);
    }
    assert_eq!(original.lifetime_request(REFRESH, Some(600)), 200);
    relay.stop();
}
