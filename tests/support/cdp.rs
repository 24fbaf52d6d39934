//! Headless Chromium (Debian's `chromium`) driven over the DevTools protocol
//! on a pipe (`--remote-debugging-pipe`): no extra packages, no network
//! beyond loopback. Shared by the browser tests of both crates, with the
//! page script they run ([`trial_page`]) and a tiny HTTP server for it
//! ([`serve`]).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running Chromium and a CDP session attached to its page.
pub struct Browser {
    child: Child,
    tx: std::fs::File,
    rx: mpsc::Receiver<serde_json::Value>,
    next: u64,
    session: String,
    profile: PathBuf,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two new descriptors that we take ownership of.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// The Chromium binary, or `None` (a failure under CI=true).
pub fn chromium() -> Option<String> {
    for c in ["chromium", "chromium-browser"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Some(c.to_string());
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "chromium is not installed (Debian package chromium); tests/run.sh installs it as root"
        );
    }
    eprintln!("SKIPPING: chromium not installed");
    None
}

impl Browser {
    /// Starts headless Chromium on `url` and attaches to the page.
    pub fn open(bin: &str, url: &str) -> Browser {
        Self::open_with(bin, url, &[])
    }

    /// As [`Browser::open`], with extra command-line switches.
    pub fn open_with(bin: &str, url: &str, extra: &[&str]) -> Browser {
        let profile = std::env::temp_dir().join(format!(
            "geosteer-chromium-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        // fd 3: commands to Chromium, fd 4: replies from Chromium.
        let (cmd_r, cmd_w) = pipe();
        let (rep_r, rep_w) = pipe();
        let (c_r, r_w) = (cmd_r.as_raw_fd(), rep_w.as_raw_fd());
        let mut cmd = Command::new(bin);
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
        .args(extra)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
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
        let mut b = Browser {
            child,
            tx: std::fs::File::from(cmd_w),
            rx,
            next: 0,
            session: String::new(),
            profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let target = loop {
            let t = b.call("Target.getTargets", serde_json::json!({}), false);
            let found = t["targetInfos"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["type"] == "page")
                .map(|i| i["targetId"].as_str().unwrap().to_string());
            if let Some(id) = found {
                break id;
            }
            assert!(Instant::now() < deadline, "page target not found: {t}");
            std::thread::sleep(Duration::from_millis(200));
        };
        let s = b.call(
            "Target.attachToTarget",
            serde_json::json!({ "targetId": target, "flatten": true }),
            false,
        );
        b.session = s["sessionId"].as_str().unwrap().to_string();
        b
    }

    /// Sends a CDP command (to the page session when `page`) and returns its result.
    pub fn call(
        &mut self,
        method: &str,
        params: serde_json::Value,
        page: bool,
    ) -> serde_json::Value {
        self.next += 1;
        let mut msg = serde_json::json!({ "id": self.next, "method": method, "params": params });
        if page {
            msg["sessionId"] = self.session.clone().into();
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

    /// Evaluates a JavaScript expression in the page; returns its value.
    pub fn eval(&mut self, expr: &str) -> serde_json::Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({ "expression": expr, "returnByValue": true }),
            true,
        );
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it yields a non-empty string, at most `max`.
    pub fn wait_string(&mut self, expr: &str, max: Duration) -> String {
        let deadline = Instant::now() + max;
        loop {
            let v = self.eval(expr);
            if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
                return s.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "page did not produce {expr} in {max:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Navigates the page to `url` and waits for the load.
    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", serde_json::json!({ "url": url }), true);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.eval("document.readyState").as_str() != Some("complete")
            || self.eval("location.href").as_str() != Some(url)
        {
            assert!(
                Instant::now() < deadline,
                "navigation to {url} did not complete"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// `trial(iceServers, waitMs)`: two RTCPeerConnections with
/// `iceTransportPolicy: 'relay'` and the given ICE servers open a data channel;
/// `a` sends msg0..msg4, `b` echoes each back as `echo:msgN`. After all five
/// echoes (or `waitMs`) it reads `getStats()` and resolves to `{ echoes,
/// errors, localType, remoteType, relayProtocol, localAddress }`, where the
/// last four describe the selected candidate pair (null without one) and
/// `errors` holds ICE candidate errors as `"<code> <text>"`.
pub const TRIAL_JS: &str = r#"
async function trial(iceServers, waitMs) {
  const cfg = { iceServers, iceTransportPolicy: 'relay' };
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
  while (echoes.length < 5 && Date.now() - t0 < waitMs) await new Promise(r => setTimeout(r, 50));
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
"#;

/// Asserts that a [`TRIAL_JS`] result `r` got all five echoes back and that
/// its selected candidate pair's local side is a relay candidate; `what`
/// names the trial in the failure message.
pub fn assert_relayed(r: &serde_json::Value, what: &str) {
    let echoes: Vec<&str> = r["echoes"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no echoes in {r}"))
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(
        echoes,
        (0..5).map(|i| format!("echo:msg{i}")).collect::<Vec<_>>(),
        "{what}: {r}"
    );
    assert_eq!(r["localType"], "relay", "{what}: {r}");
}

/// An HTML page defining [`TRIAL_JS`]'s `trial()` and running `main_js`,
/// which must define `async function main()` that sets `window.result` (a
/// JSON string); if `main()` throws, `window.result` is `{"error": ...}`.
pub fn trial_page(main_js: &str) -> String {
    format!(
        "<!doctype html><html><body><script>{TRIAL_JS}{main_js}\nmain().catch(e => {{ window.result = JSON.stringify({{ error: String(e) }}); }});\n</script></body></html>"
    )
}

/// Serves HTTP/1.1 on 127.0.0.1 (one request per connection) from a thread:
/// `route(path)` gives the content type and body of a 200 response. Returns
/// the port.
pub fn serve(route: impl Fn(&str) -> (&'static str, String) + Send + 'static) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            let path = first.split_whitespace().nth(1).unwrap_or("/");
            let (ctype, body) = route(path);
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    port
}
