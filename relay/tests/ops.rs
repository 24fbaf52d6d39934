//! Operations: health/readiness, overload, admin drain, SIGTERM drain, and the
//! `check` / `creds` subcommands. Traffic stays on 127.0.0.1.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::turn::TurnClient;
use common::*;
use turn_types::message::{ALLOCATE, REFRESH};

fn health(addr: SocketAddr) -> serde_json::Value {
    let (status, body) = http(addr, "GET", "/health", &[]);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn admin_drain_refuses_new_allocations_and_exits_after_timeout() {
    let (relay, _) = start(|p| config(p, None));
    let udp = relay.udp[0];
    assert_eq!(http(relay.http, "GET", "/livez", &[]).0, 200);
    assert_eq!(http(relay.http, "GET", "/readyz", &[]).0, 200);
    let mut a = TurnClient::udp(udp);
    assert_eq!(a.lifetime_request(ALLOCATE, None), 200);
    wait_for("allocation in /health", Duration::from_secs(3), || {
        health(relay.http)["allocations"] == 1
    });
    let h = health(relay.http);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["utilization"], 0.0001);

    assert_eq!(http(relay.http, "POST", "/admin/drain", &[]).0, 401);
    assert_eq!(
        http(
            relay.http,
            "POST",
            "/admin/drain",
            &[("Authorization", "Bearer wrong-token-0000000")]
        )
        .0,
        401
    );
    let bearer = format!("Bearer {ADMIN}");
    assert_eq!(
        http(
            relay.http,
            "POST",
            "/admin/drain",
            &[("Authorization", &bearer)]
        )
        .0,
        202
    );
    assert_eq!(health(relay.http)["status"], "draining");
    assert_eq!(http(relay.http, "GET", "/readyz", &[]).0, 503);
    let (_, m) = http(relay.http, "GET", "/metrics", &[]);
    assert_eq!(metric(&m, "turn_draining"), Some(1.0));
    // New allocations are refused; the existing one keeps working.
    std::thread::sleep(Duration::from_millis(200));
    let mut b = TurnClient::udp(udp);
    assert_eq!(b.lifetime_request(ALLOCATE, None), 508);
    assert_eq!(a.lifetime_request(REFRESH, Some(600)), 200);
    // drain_timeout is 3 s: the loop exits although the allocation is still there.
    let control = relay.control();
    let t = Instant::now();
    assert!(
        control.wait_timeout(Duration::from_secs(6)),
        "drain did not end"
    );
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert_eq!(http(relay.http, "GET", "/livez", &[]).0, 503);
    relay.wait();
}

#[test]
fn drain_ends_early_when_allocations_end() {
    let (relay, _) = start(|p| {
        let mut c = config(p, None);
        c.operations.drain_timeout = 60;
        c
    });
    let mut a = TurnClient::udp(relay.udp[0]);
    assert_eq!(a.lifetime_request(ALLOCATE, None), 200);
    relay.drain();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(a.lifetime_request(REFRESH, Some(0)), 200);
    let control = relay.control();
    assert!(
        control.wait_timeout(Duration::from_secs(5)),
        "drain should end once allocations are gone"
    );
    relay.wait();
}

#[test]
fn overload_and_capacity_with_alternate_server() {
    let (relay, _) = start(|p| {
        let mut c = config(p, None);
        c.limits.capacity = 2;
        c.operations.high_watermark = 0.5;
        c.operations.alternate_server = Some("127.0.0.1:3479".parse().unwrap());
        c
    });
    let udp = relay.udp[0];
    let mut a = TurnClient::udp(udp);
    let mut b = TurnClient::udp(udp);
    let mut c = TurnClient::udp(udp);
    assert_eq!(a.lifetime_request(ALLOCATE, None), 200);
    wait_for("overloaded", Duration::from_secs(3), || {
        health(relay.http)["status"] == "overloaded"
    });
    assert_eq!(http(relay.http, "GET", "/readyz", &[]).0, 503);
    assert_eq!(b.lifetime_request(ALLOCATE, None), 200);
    // Full: 300 Try Alternate (an alternate server is configured).
    assert_eq!(c.lifetime_request(ALLOCATE, None), 300);
    wait_for("utilization 1", Duration::from_secs(3), || {
        health(relay.http)["utilization"] == 1.0
    });
    let (_, m) = http(relay.http, "GET", "/metrics", &[]);
    assert_eq!(
        metric(&m, "turn_allocation_errors_total{reason=\"capacity\"}"),
        Some(1.0)
    );
    assert_eq!(metric(&m, "turn_sessions_active"), Some(2.0));
    relay.stop();
}

#[test]
fn binary_check_creds_and_sigterm_drain() {
    let bin = env!("CARGO_BIN_EXE_geosteer-relay");
    let dir = temp_dir("ops-bin");
    // check: every problem with its key path, non-zero exit.
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "region = \"\"\n[limits]\nmax_bps = 0\n[relay]\nport_min = 9\nport_max = 8\n",
    )
    .unwrap();
    let out = Command::new(bin)
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "region: must not be empty",
        "limits.max_bps: must be > 0",
        "relay.port_max",
        "auth:",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    let out = Command::new(bin)
        .args(["check", "--config"])
        .arg(dir.join("missing.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());

    // creds: coturn-compatible REST credentials.
    let out = Command::new(bin)
        .args(["creds", "--secret", SECRET, "--ttl", "600", "--user", "bob"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let user = text
        .lines()
        .find_map(|l| l.strip_prefix("username: "))
        .unwrap();
    let pass = text
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap();
    assert!(user.ends_with(":bob"));
    assert_eq!(
        pass,
        geosteer_relay::auth::rest_password(SECRET.as_bytes(), user)
    );
    let out = Command::new(bin)
        .args([
            "creds",
            "--secret",
            SECRET,
            "--json",
            "--url",
            "turn:127.0.0.1:3478",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["iceServers"][0]["urls"][0], "turn:127.0.0.1:3478");
    assert!(v["iceServers"][0]["credential"].as_str().unwrap().len() == 28);

    // serve + SIGTERM: draining, then exit after the drain timeout.
    let port = free_port();
    let http_port = free_port();
    let cfg = config(port, None);
    let mut text = toml::to_string(&cfg).unwrap();
    text = text.replace("127.0.0.1:0", &format!("127.0.0.1:{http_port}"));
    let path = dir.join("relay.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(bin)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let http_addr: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    wait_for("relay up", Duration::from_secs(5), || {
        std::net::TcpStream::connect(http_addr).is_ok()
    });
    let mut a = TurnClient::udp(format!("127.0.0.1:{port}").parse().unwrap());
    assert_eq!(a.lifetime_request(ALLOCATE, None), 200);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(guard.0.id() as i32, libc::SIGTERM) };
    wait_for("draining", Duration::from_secs(3), || {
        health(http_addr)["status"] == "draining"
    });
    let t = Instant::now();
    wait_for("exit", Duration::from_secs(8), || {
        guard.0.try_wait().unwrap().is_some()
    });
    assert!(t.elapsed() < Duration::from_secs(8));
    assert!(guard.0.wait().unwrap().success());
}

#[test]
fn run_drains_and_returns_when_shutdown_resolves() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = free_port();
    let t = Instant::now();
    rt.block_on(async {
        let cfg = config(port, None);
        let shutdown = tokio::time::sleep(Duration::from_millis(300));
        geosteer_relay::run(cfg, shutdown).await.unwrap();
    });
    // No allocations: the drain ends at the next tick, well before drain_timeout.
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // The ports are free again.
    assert!(UdpSocket::bind(("127.0.0.1", port)).is_ok());
    // Invalid configuration is reported, not served.
    let mut bad = config(free_port(), None);
    bad.limits.capacity = 0;
    let err = rt
        .block_on(geosteer_relay::run(bad, std::future::pending()))
        .unwrap_err();
    assert!(
        err.to_string().contains("limits.capacity: must be > 0"),
        "{err}"
    );
}
