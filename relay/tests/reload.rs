//! Changes without restarts: `POST /admin/reload` and SIGHUP apply new
//! secrets, limits and peer rules while allocations keep relaying; a bad
//! file is rejected with every problem and the old configuration stays; a
//! replaced certificate is served without any reload call. Loopback only.

mod common;
mod edge;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use edge::*;

const NEW_SECRET: &str = "rotated-secret-89ab";

fn reload(http_addr: SocketAddr) -> (u16, serde_json::Value) {
    let bearer = format!("Bearer {ADMIN}");
    let (code, body) = http(
        http_addr,
        "POST",
        "/admin/reload",
        &[("Authorization", &bearer)],
    );
    (code, serde_json::from_str(&body).unwrap_or_default())
}

/// Round trips through one allocation in a thread until `stop`; counts losses.
fn keep_relaying(
    udp: SocketAddr,
) -> (
    Arc<AtomicBool>,
    Arc<AtomicU32>,
    std::thread::JoinHandle<(u32, u32)>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU32::new(0));
    let mut echo = Echo::new(udp);
    let (s, d) = (stop.clone(), done.clone());
    let t = std::thread::spawn(move || {
        let (mut ok, mut lost) = (0, 0);
        while !s.load(Relaxed) {
            if echo.echo() {
                ok += 1;
            } else {
                lost += 1;
            }
            d.store(ok, Relaxed);
        }
        (ok, lost)
    });
    (stop, done, t)
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn admin_reload_rotates_secrets_and_limits_without_dropping_allocations() {
    let dir = temp_dir("reload-admin");
    let (relay, path, mut cfg) = start_file(&dir, |p| config(p, None));
    let udp = relay.udp[0];
    let (stop, done, t) = keep_relaying(udp);
    wait_until("relaying", || done.load(Relaxed) >= 20);

    // Not with a wrong token.
    let (code, _) = http(
        relay.http,
        "POST",
        "/admin/reload",
        &[("Authorization", "Bearer wrong-token-0000000")],
    );
    assert_eq!(code, 401);
    // The new secret is unknown before the reload.
    assert_eq!(Client::rest(Udp::new(udp), NEW_SECRET).allocate().code, 401);

    // Rotate: the new secret first (used for minting), the old one still accepted.
    cfg.auth.secrets = vec![NEW_SECRET.into(), SECRET.into()];
    cfg.limits.allocations_per_ip = 50;
    write_config(&path, &cfg);
    let before = done.load(Relaxed);
    let (code, rep) = reload(relay.http);
    assert_eq!(code, 200, "{rep}");
    assert_eq!(rep["generation"], 2, "{rep}");
    let changed = rep["changed"].to_string();
    assert!(
        changed.contains("auth.secrets") && changed.contains("limits"),
        "{rep}"
    );
    assert_eq!(Client::rest(Udp::new(udp), NEW_SECRET).allocate().code, 200);
    assert_eq!(Client::rest(Udp::new(udp), SECRET).allocate().code, 200);

    // Retire the old secret: it is refused, the allocation made with it stays.
    cfg.auth.secrets = vec![NEW_SECRET.into()];
    write_config(&path, &cfg);
    assert_eq!(reload(relay.http).0, 200);
    assert_eq!(Client::rest(Udp::new(udp), SECRET).allocate().code, 401);

    // A bad file: every problem listed, nothing changes.
    let mut bad = cfg.clone();
    bad.limits.capacity = 0;
    bad.listen.udp = vec!["127.0.0.1:1".parse().unwrap()];
    bad.auth.secrets = vec![SECRET.into()];
    write_config(&path, &bad);
    let (code, rep) = reload(relay.http);
    assert_eq!(code, 422, "{rep}");
    let errs = rep["errors"].to_string();
    assert!(errs.contains("limits.capacity"), "{rep}");
    // Syntax is fine, so only the validation errors come back; the listener
    // change would also be refused once the rest is valid.
    bad.limits.capacity = 10;
    write_config(&path, &bad);
    let (code, rep) = reload(relay.http);
    assert_eq!(code, 422, "{rep}");
    assert!(
        rep["errors"]
            .to_string()
            .contains("listen.udp: changing it needs a restart"),
        "{rep}"
    );
    std::fs::write(&path, "region = \"x\"\n[limits]\nbogus = 1\n").unwrap();
    let (code, rep) = reload(relay.http);
    assert_eq!(code, 422, "{rep}");
    assert!(rep["errors"].to_string().contains("line 3"), "{rep}");
    // The old configuration is still the one running.
    assert_eq!(Client::rest(Udp::new(udp), NEW_SECRET).allocate().code, 200);
    assert_eq!(Client::rest(Udp::new(udp), SECRET).allocate().code, 401);

    wait_until("relaying after the reloads", || {
        done.load(Relaxed) >= before + 20
    });
    stop.store(true, Relaxed);
    let (ok, lost) = t.join().unwrap();
    assert_eq!(lost, 0, "{lost} round trips lost across reloads ({ok} ok)");
    // Every allocation made during the test is still there (published each second).
    wait_until("allocations in /health", || {
        let h: serde_json::Value =
            serde_json::from_str(&http(relay.http, "GET", "/health", &[]).1).unwrap();
        h["allocations"] == 4
    });
}

#[test]
fn reloaded_peer_rules_cut_existing_permissions() {
    let dir = temp_dir("reload-policy");
    let (relay, path, mut cfg) = start_file(&dir, |p| config(p, None));
    let mut echo = Echo::new(relay.udp[0]);
    assert!(echo.echo());
    cfg.peer_policy.deny = vec!["127.0.0.0/8".parse().unwrap()];
    write_config(&path, &cfg);
    assert_eq!(reload(relay.http).0, 200);
    assert!(
        !echo.echo(),
        "a denied peer is still relayed after the reload"
    );
    cfg.peer_policy.deny.clear();
    write_config(&path, &cfg);
    assert_eq!(reload(relay.http).0, 200);
    // The allocation itself survived: binding the channel again relays.
    assert_eq!(
        echo.client
            .channel_bind(0x4000, echo.peer.local_addr().unwrap()),
        200
    );
    assert!(echo.echo());
}

#[test]
fn replaced_certificate_files_are_served_without_a_reload() {
    let dir = temp_dir("reload-cert");
    let (c1, k1, der1) = cert_pair(&dir, "one");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::copy(&c1, &cert).unwrap();
    std::fs::copy(&k1, &key).unwrap();
    let tls_port = free_port();
    let (relay, _) = start(|p| config(p, Some((tls_port, &cert, &key))));
    let tls = relay.tls[0];
    let mut old = tls_connect(tls, &[b"stun.turn"]);
    assert_eq!(served_cert(&old), der1);
    // RFC 7443 ALPN: the relay answers `stun.turn`.
    assert_eq!(old.conn.alpn_protocol(), Some(&b"stun.turn"[..]));
    let mut old_client = Client::alice(Stream(&mut old));
    assert_eq!(old_client.allocate().code, 200);

    // Replace both files the way certbot/cert-manager do: write aside, rename.
    let (c2, k2, der2) = cert_pair(&dir, "two");
    std::fs::rename(&k2, &key).unwrap();
    std::fs::rename(&c2, &cert).unwrap();
    wait_until("the new certificate", || {
        served_cert(&tls_connect(tls, &[b"stun.turn"])) == der2
    });
    // The session opened before still works.
    assert_eq!(
        old_client
            .request(turn_types::message::REFRESH, |_, _| {})
            .code,
        200
    );

    // A broken replacement is not taken: the last good certificate stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    let (code, rep) = reload_in_process(&relay);
    assert!(code.is_err(), "{rep}");
    assert!(rep.contains("listen.tls_cert"), "{rep}");
    assert_eq!(served_cert(&tls_connect(tls, &[b"stun.turn"])), der2);
}

fn reload_in_process(relay: &geosteer_relay::RelayHandle) -> (Result<(), ()>, String) {
    let live = relay.reloader().live();
    match relay.reload((*live.config).clone()) {
        Ok(r) => (Ok(()), format!("{r:?}")),
        Err(e) => (Err(()), e.to_string()),
    }
}

#[test]
fn sighup_reloads_the_file_of_a_running_binary() {
    let dir = temp_dir("reload-sighup");
    let port = free_port();
    let mut cfg = config(port, None);
    let http_port = free_port();
    cfg.listen.http = SocketAddr::from(([127, 0, 0, 1], http_port));
    let path = dir.join("relay.toml");
    write_config(&path, &cfg);
    let relay = serve_binary(&path);
    let pid = relay.0.id() as i32;
    let http_addr = cfg.listen.http;
    wait_until("the relay binary", || {
        std::net::TcpStream::connect(http_addr).is_ok()
            && http(http_addr, "GET", "/livez", &[]).0 == 200
    });
    let udp = cfg.listen.udp[0];
    let (stop, done, t) = keep_relaying(udp);
    wait_until("relaying", || done.load(Relaxed) >= 20);
    assert_eq!(Client::rest(Udp::new(udp), NEW_SECRET).allocate().code, 401);

    cfg.auth.secrets = vec![NEW_SECRET.into()];
    write_config(&path, &cfg);
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    wait_until("the rotated secret", || {
        Client::rest(Udp::new(udp), NEW_SECRET).allocate().code == 200
    });
    let before = done.load(Relaxed);
    // A bad file on SIGHUP: the process keeps running the old configuration.
    std::fs::write(&path, "region = ").unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    wait_until("relaying after the reloads", || {
        done.load(Relaxed) >= before + 20
    });
    assert_eq!(http(http_addr, "GET", "/livez", &[]).0, 200);
    assert_eq!(Client::rest(Udp::new(udp), NEW_SECRET).allocate().code, 200);
    stop.store(true, Relaxed);
    let (ok, lost) = t.join().unwrap();
    assert_eq!(lost, 0, "{lost} round trips lost across SIGHUP ({ok} ok)");
}
