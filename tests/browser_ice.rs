//! A real browser call through a steered relay: headless Chromium loads a
//! page whose app backend (this test) gets ICE servers from geosteer's
//! `/v1/ice-servers` (direct mode, for a given end-user address); two
//! RTCPeerConnections with `iceTransportPolicy: 'relay'` exchange data-channel
//! messages, and `getStats()` tells which relay carried the call. It must be
//! the relay steering chose; expired credentials must be refused; the status
//! page must show the members.

#[path = "support/cdp.rs"]
mod cdp;
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

const SECRET: &str = "browser-test-secret";
const KEY: &str = "browser-test-api-key-0123";
const RELAYS: [(&str, &str, f64, f64); 3] = [
    ("us-east", "127.0.71.1", 39.04, -77.49),
    ("eu-central", "127.0.72.1", 50.11, 8.68),
    ("ap-southeast", "127.0.73.1", 1.29, 103.85),
];

/// The page's own part; `trial()` is the shared one of `support/cdp.rs`.
const MAIN_JS: &str = r#"
function udpOnly(s) { return [{ urls: s.urls.filter(u => u.startsWith('turn:') && u.endsWith('transport=udp')), username: s.username, credential: s.credential }]; }
async function main() {
  const out = {};
  for (const ip of ['81.2.69.7', '1.0.0.9']) {
    const cfg = await (await fetch('/ice?client_ip=' + ip)).json();
    const turn = cfg.iceServers.find(s => s.username);
    out[ip] = { urls: turn.urls, result: await trial(udpOnly(turn), 15000) };
  }
  const expired = await (await fetch('/expired')).json();
  out.expired = await trial(udpOnly(expired), 4000);
  window.result = JSON.stringify(out);
}
"#;

/// POSTs `body` to the geosteer API (the app backend's call) and returns the response body.
fn post_ice(api: SocketAddr, body: &str) -> String {
    let mut s = TcpStream::connect(api).unwrap();
    write!(
        s,
        "POST /v1/ice-servers HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    resp.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// The test's "app": serves the page, `/ice?client_ip=` (proxied to geosteer
/// with the API key, which never reaches the browser) and `/expired`.
fn serve_app(api: SocketAddr) -> u16 {
    let page = cdp::trial_page(MAIN_JS);
    cdp::serve(move |path| {
        if let Some(ip) = path.strip_prefix("/ice?client_ip=") {
            (
                "application/json",
                post_ice(
                    api,
                    &format!("{{\"ttl\":600,\"client_ip\":\"{ip}\",\"user\":\"browser\"}}"),
                ),
            )
        } else if path == "/expired" {
            // Credentials that expired an hour ago, for the London relay.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let (u, p) = geosteer_relay::auth::mint(SECRET.as_bytes(), 60, Some("old"), now - 3600);
            ("application/json", format!("{{\"urls\":[\"turn:{}:3478?transport=udp\"],\"username\":\"{u}\",\"credential\":\"{p}\"}}", RELAYS[1].1))
        } else {
            ("text/html", page.clone())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_call_flows_through_the_steered_relay() {
    let Some(chromium) = cdp::chromium() else {
        return;
    };
    let mut relays = Vec::new();
    let mut members = String::new();
    let mut regions = String::new();
    for (i, (region, ip, lat, lon)) in RELAYS.iter().enumerate() {
        let cfg: geosteer_relay::RelayConfig = toml::from_str(&format!(
            "region = \"{region}\"\n[listen]\nudp = [\"{ip}:3478\"]\ntcp = [\"{ip}:3478\"]\nhttp = \"{ip}:0\"\n[relay]\nips = [\"{ip}\"]\n[auth]\nsecrets = [\"{SECRET}\"]\n[peer_policy]\nallow_loopback_peers = true\n"
        ))
        .unwrap();
        let h = geosteer_relay::start(cfg).expect("relay");
        members.push_str(&format!("  {{ name = \"m{i}\", region = \"{region}\", addresses = [\"{ip}\"], health_url = \"http://{}/health\" }},\n", h.http));
        regions.push_str(&format!(
            "[regions.{region}]\nlatitude = {lat}\nlongitude = {lon}\n"
        ));
        relays.push(h);
    }
    let dir = tmp_dir("browser");
    std::fs::write(
        dir.join("z.zone"),
        "@ 3600 IN SOA ns hm 1 2 3 4 60\n@ 3600 IN NS ns\nns 3600 IN A 192.0.2.53\n",
    )
    .unwrap();
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_workers = 1\n[geoip]\ndatabase = {:?}\n[health]\ninterval_ms = 250\ntimeout_ms = 200\n[api]\nlisten = \"127.0.0.1:0\"\n[ice]\napi_keys = [\"{KEY}\"]\nsecrets = [\"{SECRET}\"]\nmode = \"direct\"\n{regions}[pools.turn]\nmembers = [\n{members}]\n[[zones]]\norigin = \"example.com\"\nfile = \"z.zone\"\n[[zones.steered]]\nname = \"turn\"\npool = \"turn\"\n",
        repo("geoip/demo.mmdb").display().to_string()
    );
    std::fs::write(dir.join("g.toml"), cfg).unwrap();
    let node = start_file(&dir.join("g.toml")).await;
    let api = node.api_addr.unwrap();
    let app = serve_app(api);

    let result = tokio::task::spawn_blocking(move || {
        let mut b = cdp::Browser::open(&chromium, &format!("http://127.0.0.1:{app}/"));
        let result = b.wait_string("window.result || ''", Duration::from_secs(90));
        // The status page, checked in the DOM (no screenshot).
        b.navigate(&format!("http://{api}/"));
        let state =
            b.eval("document.querySelector('[data-member=\"turn/m1\"] .state').textContent");
        let regions = b.eval("document.querySelectorAll('#regions tr[data-region]').length");
        (result, state, regions)
    })
    .await
    .unwrap();
    let (result, state, regions) = result;
    let v: serde_json::Value = serde_json::from_str(&result).unwrap();
    eprintln!("browser result: {v}");
    assert!(v.get("error").is_none(), "{v}");
    for (ip, relay) in [("81.2.69.7", RELAYS[1].1), ("1.0.0.9", RELAYS[2].1)] {
        let t = &v[ip];
        // The ICE servers name the relay steering chose for this end user…
        assert_eq!(
            t["urls"][0],
            format!("turn:{relay}:3478?transport=udp"),
            "{ip}: {t}"
        );
        // …and that relay carried the call.
        let r = &t["result"];
        cdp::assert_relayed(r, ip);
        assert_eq!(r["localAddress"], relay, "{ip}: {r}");
    }
    let e = &v["expired"];
    assert!(
        e["echoes"].as_array().unwrap().is_empty(),
        "expired credentials carried data: {e}"
    );
    assert!(e["localType"].is_null(), "{e}");
    assert!(
        e["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x.as_str().unwrap_or("").starts_with("401")),
        "expected a 401 from the relay: {e}"
    );
    assert_eq!(state, "up");
    assert_eq!(regions, 3);
    node.shutdown().await;
    for r in relays {
        r.stop();
    }
}
