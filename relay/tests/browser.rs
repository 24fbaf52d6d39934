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

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

const PAGE: &str = r#"<!doctype html><html><body><script>
async function trial(url, username, credential) {
  const cfg = { iceServers: [{ urls: [url], username, credential }], iceTransportPolicy: 'relay' };
  const a = new RTCPeerConnection(cfg), b = new RTCPeerConnection(cfg);
  const errors = [];
  for (const [pc, other] of [[a, b], [b, a]]) {
    pc.onicecandidate = e => { if (e.candidate) other.addIceCandidate(e.candidate).catch(x => errors.push(String(x))); };
    pc.onicecandidateerror = e => errors.push(e.errorCode + ' ' + e.errorText);
  }
  const echoes = [];
  b.ondatachannel = e => { e.channel.onmessage = m => e.channel.send('echo:' + m.data); };
  const dc = a.createDataChannel('t');
  dc.onmessage = m => echoes.push(m.data);
  dc.onopen = () => { for (let i = 0; i < 5; i++) dc.send('msg' + i); };
  const offer = await a.createOffer(); await a.setLocalDescription(offer); await b.setRemoteDescription(offer);
  const answer = await b.createAnswer(); await b.setLocalDescription(answer); await a.setRemoteDescription(answer);
  const t0 = Date.now();
  while (echoes.length < 5 && Date.now() - t0 < 15000) await new Promise(r => setTimeout(r, 50));
  const stats = await a.getStats();
  let local = null, remote = null;
  stats.forEach(s => {
    if (s.type === 'transport' && s.selectedCandidatePairId) {
      const pair = stats.get(s.selectedCandidatePairId);
      local = stats.get(pair.localCandidateId);
      remote = stats.get(pair.remoteCandidateId);
    }
  });
  a.close(); b.close();
  return { echoes, errors, localType: local && local.candidateType, remoteType: remote && remote.candidateType,
           relayProtocol: local && local.relayProtocol, localAddress: local && local.address };
}
async function main() {
  const p = new URLSearchParams(location.search);
  const out = {};
  for (const proto of ['udp', 'tcp']) {
    out[proto] = await trial('turn:127.0.0.1:' + p.get('port') + '?transport=' + proto, p.get('u'), p.get('p'));
  }
  window.result = JSON.stringify(out);
}
main().catch(e => { window.result = JSON.stringify({ error: String(e) }); });
</script></body></html>"#;

fn serve_page() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            let body = PAGE.as_bytes();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(body);
        }
    });
    port
}

#[test]
fn chromium_data_channel_through_relay() {
    let Some(chromium) = tool("chromium") else {
        return;
    };
    let (relay, port) = start(|p| config(p, None));
    let page_port = serve_page();
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
        "http://127.0.0.1:{page_port}/?port={port}&u={}&p={}",
        enc(&user),
        enc(&pass)
    );
    let mut browser = cdp::Browser::open(&chromium.to_string_lossy(), &url);
    let result = browser.wait_string("window.result || ''", Duration::from_secs(60));
    drop(browser);
    let v: serde_json::Value = serde_json::from_str(&result).unwrap();
    eprintln!("browser result: {v}");
    assert!(v.get("error").is_none(), "{v}");
    for proto in ["udp", "tcp"] {
        let r = &v[proto];
        let echoes: Vec<&str> = r["echoes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert_eq!(
            echoes,
            (0..5).map(|i| format!("echo:msg{i}")).collect::<Vec<_>>(),
            "{proto}: {r}"
        );
        assert_eq!(r["localType"], "relay", "{proto}: {r}");
        assert_eq!(r["remoteType"], "relay", "{proto}: {r}");
        assert_eq!(r["relayProtocol"], proto, "{proto}: {r}");
    }
    // Counters are published once a second.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, m) = http(relay.http, "GET", "/metrics", &[]);
        let sessions = metric(&m, "turn_sessions_total").unwrap_or(0.0);
        if sessions >= 4.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected >= 4 allocations, metrics:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    relay.stop();
}
