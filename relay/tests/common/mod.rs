//! Helpers shared by the integration tests: in-process relay, external tools,
//! minimal HTTP client. All traffic stays on 127.0.0.1.
#![allow(dead_code)]

pub mod turn;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use geosteer_relay::{RelayConfig, RelayHandle};

pub const SECRET: &str = "rest-secret-0123";
pub const ADMIN: &str = "admin-token-0123456789";

/// Returns the path of an external tool, or `None` (after a loud message) when
/// it is missing and CI is not set. With `CI=true` a missing tool fails the test.
pub fn tool(name: &str) -> Option<PathBuf> {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin", "/usr/sbin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    let ci = std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false);
    let msg = format!(
        "required tool `{name}` not found (install Debian packages: apt-get install -y coturn chromium haproxy)"
    );
    if ci {
        panic!("{msg}");
    }
    eprintln!("\n!!!!!!!! SKIPPING: {msg} !!!!!!!!\n");
    None
}

/// A free port on 127.0.0.1 usable for both UDP and TCP (best effort).
pub fn free_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Writes a self-signed certificate for 127.0.0.1/localhost; returns (cert, key) paths.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("geosteer-relay-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Base test configuration: loopback listeners on `port` (UDP+TCP), TLS on
/// `tls_port` when given, loopback peers allowed (tests only).
pub fn config(port: u16, tls: Option<(u16, &Path, &Path)>) -> RelayConfig {
    let tls_part = match tls {
        Some((p, cert, key)) => format!(
            "tls = [\"127.0.0.1:{p}\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
        None => String::new(),
    };
    let text = format!(
        r#"
region = "test-1"
realm = "geosteer.test"
[listen]
udp = ["127.0.0.1:{port}"]
tcp = ["127.0.0.1:{port}"]
{tls_part}http = "127.0.0.1:0"
[auth]
users = {{ alice = "wonderland" }}
secrets = ["{SECRET}", "older-secret-4567"]
nonce_key = "nonce-key-0123456789"
[peer_policy]
allow_loopback_peers = true
[operations]
admin_token = "{ADMIN}"
drain_timeout = 3
"#
    );
    RelayConfig::from_toml(&text).unwrap()
}

/// Starts a relay in-process, retrying on port races.
pub fn start(mut make: impl FnMut(u16) -> RelayConfig) -> (RelayHandle, u16) {
    let mut last = None;
    for _ in 0..5 {
        let port = free_port();
        match geosteer_relay::start(make(port)) {
            Ok(h) => return (h, port),
            Err(e) => last = Some(e),
        }
    }
    panic!("relay did not start: {:?}", last);
}

/// Kills the child on drop.
pub struct ChildGuard(pub Child);
impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the relay binary (`serve --config path`), output discarded.
pub fn serve_binary(path: &Path) -> ChildGuard {
    let child = Command::new(env!("CARGO_BIN_EXE_geosteer-relay"))
        .args(["serve", "--config"])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ChildGuard(child)
}

/// Starts `turnutils_peer` on a free UDP port; returns the guard and port.
pub fn start_peer(peer_bin: &Path) -> (ChildGuard, u16) {
    start_peer_on(peer_bin, "127.0.0.1")
}

/// Starts `turnutils_peer` on `ip` and a free UDP port.
pub fn start_peer_on(peer_bin: &Path, ip: &str) -> (ChildGuard, u16) {
    let port = UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(peer_bin)
        .args(["-L", ip, "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn turnutils_peer");
    // Wait until the peer owns its port (binding it ourselves then fails).
    let deadline = Instant::now() + Duration::from_secs(10);
    while UdpSocket::bind((ip, port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "turnutils_peer did not bind {ip}:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (ChildGuard(child), port)
}

/// Runs a command with a timeout; returns its output (killed on timeout).
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> (Output, bool) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            timed_out = true;
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    };
    (out, timed_out)
}

/// Minimal HTTP/1.1 request; returns (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Chunked bodies (axum sends JSON with content-length; metrics may be chunked).
    (status, body)
}

/// The relay's `/metrics` text (which must answer 200).
pub fn metrics(relay: &RelayHandle) -> String {
    let (status, body) = http(relay.http, "GET", "/metrics", &[]);
    assert_eq!(status, 200, "GET /metrics");
    body
}

/// Reads one metric value from the Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The `key=value` words of a report line (geosteer-turn-load's output).
pub fn key_values(out: &[u8]) -> std::collections::HashMap<String, String> {
    String::from_utf8_lossy(out)
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// SO_RCVBUFFORCE (root only); returns whether it was granted.
pub fn force_recv_buffer(sock: &std::net::UdpSocket, bytes: libc::c_int) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket and a c_int option value of the given size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// What `turnutils_uclient` reported.
pub struct Run {
    pub sent: u64,
    pub recv: u64,
    pub lost: Option<u64>,
    pub text: String,
}

/// Parses `turnutils_uclient` output.
pub fn parse_uclient(text: &str) -> Run {
    // Final summary: "start_mclient: tot_send_msgs=40, tot_recv_msgs=40"
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("start_mclient: tot_send_msgs="))
        .unwrap_or("");
    let num = |key: &str| {
        line.split(key)
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let lost = text
        .lines()
        .find(|l| l.contains("Total lost packets"))
        .and_then(|l| l.split("Total lost packets ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    Run {
        sent: num("tot_send_msgs="),
        recv: num("tot_recv_msgs="),
        lost,
        text: text.to_string(),
    }
}

/// Runs `turnutils_uclient` (2 clients, 10 messages each unless `extra`
/// says otherwise) against 127.0.0.1:`port`, peer at 127.0.0.1:`peer_port`.
pub fn uclient(bin: &std::path::Path, port: u16, peer_port: u16, extra: &[&str]) -> Run {
    let mut cmd = Command::new(bin);
    cmd.args([
        "-n",
        "10",
        "-m",
        "2",
        "-l",
        "120",
        "-z",
        "5",
        "-e",
        "127.0.0.1",
    ])
    .args([
        "-r",
        &peer_port.to_string(),
        "-p",
        &port.to_string(),
        "-X",
        "-g",
    ])
    .args(extra)
    .arg("127.0.0.1");
    let (out, timed_out) = run_timeout(&mut cmd, Duration::from_secs(40));
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    assert!(!timed_out, "uclient {extra:?} timed out:\n{text}");
    parse_uclient(&text)
}

/// A TCP connection to `to` from `src` (another loopback address).
pub fn connect_from(src: &str, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{src}:0").parse().unwrap();
    s.bind(&from.into()).unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}
