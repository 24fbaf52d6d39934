//! Shared helpers for integration tests: start a server on loopback, query
//! it with a real DNS message codec (hickory-proto) over UDP and TCP, call
//! its HTTP API.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use geosteer::config::Config;
use geosteer::dns::ServeState;
use geosteer::node::Node;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::BinDecodable;

/// Path inside the repository.
pub fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Starts a node for `config` (its listen address replaced by 127.0.0.1:0).
pub async fn start(config: &str) -> Node {
    let path = repo(config);
    let text = std::fs::read_to_string(&path).unwrap();
    let text = rewrite_listen(&text);
    let cfg = Config::from_str(&text, &path).unwrap();
    let st = ServeState::load(cfg, 1).unwrap();
    Node::start(st).await.unwrap()
}

/// Starts a node for the config file at `path`, as written (no rewriting).
pub async fn start_file(path: &Path) -> Node {
    let st = ServeState::load(Config::load(path).unwrap(), 1).unwrap();
    Node::start(st).await.unwrap()
}

/// Builds binaries of the relay crate (`geosteer-relay`, `geosteer-turn-load`)
/// with the profile of the test binary; returns the directory holding them.
pub fn relay_binaries(bins: &[&str]) -> PathBuf {
    let geosteer = PathBuf::from(env!("CARGO_BIN_EXE_geosteer"));
    let dir = geosteer.parent().unwrap().to_path_buf();
    let profile = dir.file_name().unwrap().to_string_lossy().to_string();
    let mut c = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
    c.args(["build", "-p", "geosteer-relay"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", dir.parent().unwrap());
    for b in bins {
        c.args(["--bin", b]);
    }
    if profile == "release" {
        c.arg("--release");
    }
    assert!(
        c.status().expect("cargo build").success(),
        "building {bins:?} failed"
    );
    dir
}

/// A fresh, empty temporary directory `geosteer-{name}-{pid}`.
pub fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("geosteer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The demo config (`zones/demo.toml`) on ephemeral loopback ports, with its
/// GeoIP database path replaced by `geoip`.
pub fn demo_toml(geoip: &str) -> String {
    rewrite_listen(&std::fs::read_to_string(repo("zones/demo.toml")).unwrap())
        .replace("../geoip/demo.mmdb", geoip)
}

/// The repository's demo GeoIP database, as an absolute path.
pub fn demo_mmdb() -> String {
    repo("geoip/demo.mmdb").to_str().unwrap().to_string()
}

/// A fresh [`tmp_dir`] holding the demo zone file (`example.com.zone`) and
/// `config` as `g.toml`; returns the directory.
pub fn demo_dir(name: &str, config: &str) -> PathBuf {
    let dir = tmp_dir(name);
    std::fs::copy(repo("zones/example.com.zone"), dir.join("example.com.zone")).unwrap();
    std::fs::write(dir.join("g.toml"), config).unwrap();
    dir
}

/// Replaces the DNS `listen = [...]` and the API `listen = "..."` addresses
/// with ephemeral loopback ports.
pub fn rewrite_listen(text: &str) -> String {
    text.lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("listen = [") {
                "listen = [\"127.0.0.1:0\"]"
            } else if t.starts_with("listen = \"") {
                "listen = \"127.0.0.1:0\""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An NSD configuration serving one zone (`zonefile` in `dir`) on
/// `ip`:`port`, with its state files in `dir`, no rate limiting, IPv4 only
/// and no control socket: what the tests that run Debian's `nsd` need.
pub fn nsd_conf(dir: &Path, ip: &str, port: u16, zone: &str, zonefile: &str) -> String {
    let d = dir.display();
    format!(
        "server:
    ip-address: {ip}
    port: {port}
    username: \"\"
    chroot: \"\"
    zonesdir: \"{d}\"
    database: \"\"
    pidfile: \"{d}/nsd.pid\"
    xfrdfile: \"{d}/nsd-xfrd.state\"
    zonelistfile: \"{d}/nsd-zone.list\"
    server-count: 1
    verbosity: 1
    rrl-ratelimit: 0
    do-ip6: no
remote-control:
    control-enable: no
zone:
    name: \"{zone}\"
    zonefile: \"{zonefile}\"
"
    )
}

/// Options of a test query.
#[derive(Clone, Copy, Default)]
pub struct Q {
    /// Send EDNS (payload 1232).
    pub edns: bool,
    /// ECS (address, source prefix).
    pub ecs: Option<(IpAddr, u8)>,
    /// EDNS payload override.
    pub payload: Option<u16>,
    /// EDNS version.
    pub version: u8,
}

/// ECS query options.
pub fn ecs(subnet: &str) -> Q {
    let (a, p) = subnet.split_once('/').unwrap();
    Q {
        edns: true,
        ecs: Some((a.parse().unwrap(), p.parse().unwrap())),
        ..Q::default()
    }
}

/// Encodes a query.
pub fn build(name: &str, t: RecordType, o: Q) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    if o.edns || o.ecs.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(o.payload.unwrap_or(1232));
        e.set_version(o.version);
        if let Some((a, p)) = o.ecs {
            e.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(a, p, 0)));
        }
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// Sends raw bytes over UDP and returns the raw reply (None on timeout).
pub fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    udp_raw_from("127.0.0.1", server, bytes)
}

/// [`udp_raw`] from a socket bound to `local` (another loopback address
/// is another client prefix to the server's rate limiter).
pub fn udp_raw_from(local: &str, server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind((local, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    s.send_to(bytes, server).unwrap();
    let mut buf = vec![0u8; 65535];
    let n = s.recv(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// A UDP query.
pub fn udp(server: SocketAddr, name: &str, t: RecordType, o: Q) -> Message {
    let raw = udp_raw(server, &build(name, t, o)).expect("no UDP reply");
    Message::from_bytes(&raw).unwrap()
}

/// The most answers one response-rate-limiter bucket of `rate` per second
/// can pass in `elapsed`: its burst (one second's worth) plus the refill,
/// with a millisecond for the server's clock granularity. A test that
/// floods measures `elapsed` from before its first packet to after the
/// server's last reply, so the bound holds however slow the machine is.
pub fn rrl_ceiling(rate: u64, elapsed: Duration) -> u64 {
    rate + (rate as f64 * (elapsed.as_secs_f64() + 0.001)).ceil() as u64
}

/// A TCP query.
pub fn tcp(server: SocketAddr, name: &str, t: RecordType, o: Q) -> Message {
    let raw = tcp_raw(server, &build(name, t, o));
    Message::from_bytes(&raw).unwrap()
}

/// Sends one length-prefixed message over a new TCP connection.
pub fn tcp_raw(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    s.write_all(&framed).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    buf
}

/// The A/AAAA addresses of the answer section.
pub fn addrs(m: &Message) -> Vec<String> {
    addresses(&m.answers)
}

/// The A/AAAA addresses of the additional section.
pub fn additional_addrs(m: &Message) -> Vec<String> {
    addresses(&m.additionals)
}

fn addresses(records: &[hickory_proto::rr::Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            RData::AAAA(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}

/// The ECS option of a response: (address, source, scope).
pub fn ecs_of(m: &Message) -> Option<(IpAddr, u8, u8)> {
    let e = m.edns.as_ref()?;
    match e.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((s.addr(), s.source_prefix(), s.scope_prefix())),
        _ => None,
    }
}

/// Status and body of an HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: reqwest::StatusCode,
    pub body: String,
}

impl Reply {
    /// The body parsed as JSON (panics, showing the body, when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// Sends `req` and reads the whole response.
pub async fn send(req: reqwest::RequestBuilder) -> Reply {
    let r = req.send().await.unwrap();
    let status = r.status();
    Reply {
        status,
        body: r.text().await.unwrap(),
    }
}

/// `GET url`.
pub async fn get(c: &reqwest::Client, url: &str) -> Reply {
    send(c.get(url)).await
}

/// `POST url` without a body, with `Authorization: Bearer token` when given.
pub async fn post(c: &reqwest::Client, url: &str, token: Option<&str>) -> Reply {
    send(authorized(c.post(url), token)).await
}

/// `POST url` with `body`, with `Authorization: Bearer token` when given.
pub async fn post_body(c: &reqwest::Client, url: &str, token: Option<&str>, body: &str) -> Reply {
    send(authorized(c.post(url), token).body(body.to_string())).await
}

fn authorized(req: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
}
