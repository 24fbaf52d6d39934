//! A real browser: headless Chromium opens a page where two RTCPeerConnections
//! (iceTransportPolicy 'relay', only our relay in iceServers) exchange
//! data-channel messages, over TURN/UDP and TURN/TCP. The test asserts that
//! every message came back and that the selected candidate pair is of type
//! relay. Chromium is driven over the DevTools protocol on a pipe
//! (`tests/support/cdp.rs`, shared with the steering tests); everything runs
//! on 127.0.0.1.

#[path = "../../tests/support/cdp.rs"]
mod cdp;
mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

/// The page's own part; `trial()` is the shared one of `tests/support/cdp.rs`.
const MAIN_JS: &str = r#"
async function main() {
  const p = new URLSearchParams(location.search);
  const out = {};
  const cases = {
    udp: 'turn:127.0.0.1:' + p.get('port') + '?transport=udp',
    tcp: 'turn:127.0.0.1:' + p.get('port') + '?transport=tcp',
    // TURN over TLS and TURN over TCP on the one (auto) port.
    tls: 'turns:localhost:' + p.get('auto') + '?transport=tcp',
    auto_tcp: 'turn:127.0.0.1:' + p.get('auto') + '?transport=tcp',
  };
  for (const [name, url] of Object.entries(cases)) {
    out[name] = await trial([{ urls: [url], username: p.get('u'), credential: p.get('p') }], 15000);
  }
  window.result = JSON.stringify(out);
}
"#;

#[test]
fn chromium_data_channel_through_relay() {
    let Some(chromium) = tool("chromium") else {
        return;
    };
    let dir = temp_dir("browser");
    let (cert, key) = self_signed(&dir);
    let (relay, port) = start(|p| {
        let mut c = config(p, Some((free_port(), &cert, &key)));
        c.listen.auto = vec![std::net::SocketAddr::from(([127, 0, 0, 1], free_port())).into()];
        c
    });
    let auto = relay.auto[0].port();
    let page = cdp::trial_page(MAIN_JS);
    let page_port = cdp::serve(move |_| ("text/html", page.clone()));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (user, pass) = geosteer_relay::auth::mint(SECRET.as_bytes(), 600, Some("browser"), now);
    let enc = |s: &str| {
        s.replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
            .replace(':', "%3A")
    };
    let url = format!(
        "http://127.0.0.1:{page_port}/?port={port}&auto={auto}&u={}&p={}",
        enc(&user),
        enc(&pass)
    );
    // The test certificate is self-signed.
    let mut browser = cdp::Browser::open_with(
        &chromium.to_string_lossy(),
        &url,
        &["--ignore-certificate-errors"],
    );
    let result = browser.wait_string("window.result || ''", Duration::from_secs(60));
    drop(browser);
    let v: serde_json::Value = serde_json::from_str(&result).unwrap();
    eprintln!("browser result: {v}");
    assert!(v.get("error").is_none(), "{v}");
    for (case, proto) in [
        ("udp", "udp"),
        ("tcp", "tcp"),
        ("tls", "tls"),
        ("auto_tcp", "tcp"),
    ] {
        let r = &v[case];
        cdp::assert_relayed(r, case);
        assert_eq!(r["remoteType"], "relay", "{case}: {r}");
        assert_eq!(r["relayProtocol"], proto, "{case}: {r}");
    }
    // Counters are published once a second.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, m) = http(relay.http, "GET", "/metrics", &[]);
        let sessions = metric(&m, "turn_sessions_total").unwrap_or(0.0);
        if sessions >= 8.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected >= 8 allocations, metrics:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    relay.stop();
}
