//! A real browser: headless Chromium opens a page where two RTCPeerConnections
//! (iceTransportPolicy 'relay', only our relay in iceServers) exchange
//! data-channel messages, over TURN/UDP and TURN/TCP. The test asserts that
//! every message came back and that the selected candidate pair is of type
//! relay. Chromium is driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`); everything runs on 127.0.0.1.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
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

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two new descriptors that we take ownership of.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

struct Cdp {
    tx: std::fs::File,
    rx: mpsc::Receiver<serde_json::Value>,
    next: u64,
}

impl Cdp {
    fn call(
        &mut self,
        method: &str,
        params: serde_json::Value,
        session: Option<&str>,
    ) -> serde_json::Value {
        self.next += 1;
        let mut msg = serde_json::json!({ "id": self.next, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.tx.write_all(&bytes).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no CDP reply to {method}"));
            if v["id"] == self.next {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }
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
    let profile = temp_dir("chromium");

    // fd 3: commands to Chromium, fd 4: replies from Chromium.
    let (cmd_r, cmd_w) = pipe();
    let (rep_r, rep_w) = pipe();
    use std::os::fd::AsRawFd;
    let (c_r, r_w) = (cmd_r.as_raw_fd(), rep_w.as_raw_fd());
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--remote-debugging-pipe",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(&url)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    // SAFETY: only async-signal-safe dup2 calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(c_r, 3) < 0 || libc::dup2(r_w, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn chromium");
    let _guard = ChildGuard(child);
    drop(cmd_r);
    drop(rep_w);

    let (tx, rx) = mpsc::channel();
    let mut reader = std::fs::File::from(rep_r);
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        loop {
            let n = match reader.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            while let Some(i) = buf.iter().position(|b| *b == 0) {
                let msg: Vec<u8> = buf.drain(..=i).collect();
                if let Ok(v) = serde_json::from_slice(&msg[..msg.len() - 1]) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut cdp = Cdp {
        tx: std::fs::File::from(cmd_w),
        rx,
        next: 0,
    };

    // Find the page target and attach to it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let target = loop {
        let t = cdp.call("Target.getTargets", serde_json::json!({}), None);
        let found = t["targetInfos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| {
                i["type"] == "page"
                    && i["url"]
                        .as_str()
                        .unwrap_or("")
                        .contains(&page_port.to_string())
            })
            .map(|i| i["targetId"].as_str().unwrap().to_string());
        if let Some(id) = found {
            break id;
        }
        assert!(Instant::now() < deadline, "page target not found: {t}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let s = cdp.call(
        "Target.attachToTarget",
        serde_json::json!({ "targetId": target, "flatten": true }),
        None,
    );
    let session = s["sessionId"].as_str().unwrap().to_string();

    let deadline = Instant::now() + Duration::from_secs(60);
    let result = loop {
        let r = cdp.call(
            "Runtime.evaluate",
            serde_json::json!({ "expression": "window.result || ''", "returnByValue": true }),
            Some(&session),
        );
        let v = r["result"]["value"].as_str().unwrap_or("").to_string();
        if !v.is_empty() {
            break v;
        }
        assert!(Instant::now() < deadline, "page did not finish");
        std::thread::sleep(Duration::from_millis(250));
    };
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
    let _ = std::fs::remove_dir_all(&profile);
}
