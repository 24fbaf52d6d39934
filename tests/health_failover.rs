//! Health-driven steering against real relays on loopback: kill, restart,
//! drain, overload, all-down, operator overrides persisted across restarts.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use geosteer::node::Node;
use geosteer_relay::{RelayConfig, RelayHandle};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const SECRET: &str = "test-shared-secret";
const ADMIN: &str = "relay-admin-token-0123456789";
const API_TOKEN: &str = "api-token-0123456789abcdef";

/// Regions and their relay addresses; each test uses its own 127.0.N.x block.
const REGIONS: [(&str, f64, f64); 3] = [
    ("us-east", 39.04, -77.49),
    ("eu-central", 50.11, 8.68),
    ("ap-southeast", 1.29, 103.85),
];

fn relay_config(region: &str, ip: &str, http: Option<SocketAddr>, capacity: u32) -> RelayConfig {
    let http = http.map(|h| h.to_string()).unwrap_or(format!("{ip}:0"));
    toml::from_str(&format!(
        r#"
region = "{region}"
[listen]
udp = ["{ip}:0"]
tcp = ["{ip}:0"]
http = "{http}"
[relay]
ips = ["{ip}"]
[auth]
secrets = ["{SECRET}"]
[peer_policy]
allow_loopback_peers = true
[limits]
capacity = {capacity}
[operations]
admin_token = "{ADMIN}"
drain_timeout = 60
"#
    ))
    .unwrap()
}

struct Fleet {
    relays: Vec<Option<RelayHandle>>,
    https: Vec<SocketAddr>,
    ips: Vec<String>,
    capacity: u32,
}

impl Fleet {
    fn start(block: u8, capacity: u32) -> Fleet {
        let mut f = Fleet {
            relays: Vec::new(),
            https: Vec::new(),
            ips: Vec::new(),
            capacity,
        };
        for (i, (region, _, _)) in REGIONS.iter().enumerate() {
            let ip = format!("127.0.{block}.{}", i + 1);
            let h = geosteer_relay::start(relay_config(region, &ip, None, capacity)).unwrap();
            f.https.push(h.http);
            f.ips.push(ip);
            f.relays.push(Some(h));
        }
        f
    }

    fn stop(&mut self, i: usize) {
        if let Some(h) = self.relays[i].take() {
            h.stop();
        }
    }

    fn restart(&mut self, i: usize) {
        let (region, _, _) = REGIONS[i];
        let h = geosteer_relay::start(relay_config(
            region,
            &self.ips[i],
            Some(self.https[i]),
            self.capacity,
        ))
        .unwrap();
        self.relays[i] = Some(h);
    }

    fn turn_addr(&self, i: usize) -> SocketAddr {
        self.relays[i].as_ref().unwrap().udp[0]
    }

    /// A DNS config steering to this fleet with fast probes.
    fn dns_config(&self, dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
        let mut t = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_workers = 1\n[geoip]\ndatabase = {:?}\n{extra}\n",
            repo("geoip/demo.mmdb").display().to_string()
        );
        t.push_str("[health]\ninterval_ms = 250\ntimeout_ms = 200\nrise = 2\nfall = 2\nlow_watermark = 0.1\nhigh_watermark = 0.2\nflap_threshold = 100\n");
        t.push_str(&format!("[api]\nlisten = \"127.0.0.1:0\"\ntoken = \"{API_TOKEN}\"\nstate_file = \"state.json\"\n"));
        for (region, lat, lon) in REGIONS {
            t.push_str(&format!(
                "[regions.{region}]\nlatitude = {lat}\nlongitude = {lon}\n"
            ));
        }
        t.push_str("[pools.turn]\nmembers = [\n");
        for (i, (region, _, _)) in REGIONS.iter().enumerate() {
            t.push_str(&format!(
                "  {{ name = \"m{i}\", region = \"{region}\", addresses = [\"{}\"], health_url = \"http://{}/health\" }},\n",
                self.ips[i], self.https[i]
            ));
        }
        t.push_str("]\n[[zones]]\norigin = \"example.com\"\nfile = \"z.zone\"\n[[zones.steered]]\nname = \"turn\"\npool = \"turn\"\n");
        std::fs::write(
            dir.join("z.zone"),
            "@ 3600 IN SOA ns hm 1 2 3 4 60\n@ 3600 IN NS ns\nns 3600 IN A 192.0.2.53\n",
        )
        .unwrap();
        let p = dir.join("g.toml");
        std::fs::write(&p, t).unwrap();
        p
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for i in 0..self.relays.len() {
            self.stop(i);
        }
    }
}

const LONDON: &str = "81.2.69.0/24";

fn answer(n: &Node) -> (Vec<String>, u32, ResponseCode) {
    let m = udp(
        n.dns.addrs[0],
        "turn.example.com.",
        RecordType::A,
        ecs(LONDON),
    );
    (
        addrs(&m),
        m.answers.first().map(|a| a.ttl).unwrap_or(0),
        m.metadata.response_code,
    )
}

/// Polls until the London answer satisfies `f`, for at most 10 s.
async fn until(
    n: &Node,
    what: &str,
    f: impl Fn(&(Vec<String>, u32, ResponseCode)) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let a = answer(n);
        if f(&a) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: still {a:?} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_relay_stops_being_answered_and_returns_after_rise_probes() {
    let mut fleet = Fleet::start(41, 1000);
    let dir = tmp_dir("kill");
    let n = start_file(&fleet.dns_config(&dir, "")).await;
    let eu = fleet.ips[1].clone();
    assert_eq!(
        answer(&n).0,
        std::slice::from_ref(&eu),
        "London starts on eu-central"
    );
    assert_eq!(answer(&n).1, 30);

    fleet.stop(1);
    until(&n, "failover", |a| a.0 == [fleet.ips[0].clone()]).await;
    let (_, ttl, _) = answer(&n);
    assert_eq!(ttl, 10, "failover answers carry the degraded TTL");
    let st = n.core.hub.state();
    assert_eq!(st[1].state, "down");
    assert!(st[1].last_probe.as_ref().unwrap().error.is_some());

    fleet.restart(1);
    let back = until(&n, "recovery", |a| a.0 == [eu.clone()]).await;
    assert!(
        back >= Duration::from_millis(250),
        "needs `rise` (2) consecutive probes, came back in {back:?}"
    );
    until(&n, "normal TTL", |a| a.1 == 30).await;
    let events = n.core.hub.events();
    assert!(
        events
            .iter()
            .any(|e| e.member == "turn/m1" && e.change.starts_with("down")),
        "{events:?}"
    );
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_down_follows_the_policy() {
    let mut fleet = Fleet::start(42, 1000);
    let dir = tmp_dir("alldown");
    let n = start_file(&fleet.dns_config(&dir, "[steering]\nall_down = \"fail-open\"")).await;
    for i in 0..3 {
        fleet.stop(i);
    }
    // Fail-open: everything down → answer the nearest as if healthy.
    until(&n, "all down", |_| {
        n.core.hub.state().iter().all(|m| m.state == "down")
    })
    .await;
    assert_eq!(answer(&n).0, [fleet.ips[1].clone()]);
    n.shutdown().await;

    let n = start_file(&fleet.dns_config(&dir, "[steering]\nall_down = \"servfail\"")).await;
    until(&n, "servfail", |a| a.2 == ResponseCode::ServFail).await;
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_drain_is_token_protected_and_survives_a_restart() {
    let fleet = Fleet::start(43, 1000);
    let dir = tmp_dir("operator");
    let cfg = fleet.dns_config(&dir, "");
    let n = start_file(&cfg).await;
    let api = format!("http://{}", n.api_addr.unwrap());
    let http = reqwest::Client::new();
    let drain = format!("{api}/v1/members/turn/m1/drain");
    let auth = Some(API_TOKEN);
    let r = post(&http, &drain, None).await;
    assert_eq!(r.status, 401);
    let r = post(&http, &drain, Some("wrong-token-wrong-token")).await;
    assert_eq!(r.status, 401);
    let r = post(&http, &format!("{api}/v1/members/turn/nope/drain"), auth).await;
    assert_eq!(r.status, 404);
    let r = post(&http, &format!("{api}/v1/members/turn/m1/explode"), auth).await;
    assert_eq!(r.status, 400);
    let r = post(&http, &drain, auth).await;
    assert_eq!(r.status, 200);
    until(&n, "drained", |a| a.0 == [fleet.ips[0].clone()]).await;
    n.shutdown().await;

    // The override is in the state file and applies after a restart.
    assert!(std::fs::read_to_string(dir.join("state.json"))
        .unwrap()
        .contains("turn/m1"));
    let n = start_file(&cfg).await;
    assert_eq!(
        answer(&n).0,
        [fleet.ips[0].clone()],
        "still drained after restart"
    );
    let api = format!("http://{}", n.api_addr.unwrap());
    let r = post(&http, &format!("{api}/v1/members/turn/m1/release"), auth).await;
    assert_eq!(r.status, 200);
    until(&n, "released", |a| a.0 == [fleet.ips[1].clone()]).await;
    // Region-wide force-down, then the read endpoints.
    let r = post(&http, &format!("{api}/v1/regions/eu-central/down"), auth).await;
    assert_eq!(r.status, 200);
    until(&n, "region down", |a| a.0 == [fleet.ips[0].clone()]).await;
    let state = get(&http, &format!("{api}/v1/state")).await.json();
    assert_eq!(state["members"][1]["state"], "forced-down");
    let x = get(&http, &format!("{api}/v1/explain?ip=81.2.69.7"))
        .await
        .json();
    assert_eq!(x["region"], "us-east");
    assert_eq!(x["outcome"], "failover");
    let r = get(&http, &format!("{api}/v1/explain?ip=nope")).await;
    assert_eq!(r.status, 400);
    let metrics = get(&http, &format!("{api}/metrics")).await.body;
    assert!(
        metrics.contains(
            "geosteer_member_usable{pool=\"turn\",member=\"m1\",region=\"eu-central\"} 0"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("geosteer_probes_total{pool=\"turn\",member=\"m0\",result=\"ok\"}"));
    assert!(metrics.contains("geosteer_dns_queries_total{transport=\"udp\"}"));
    assert!(metrics.contains("geosteer_dns_answers_by_region_total{region=\"us-east\"}"));
    assert!(metrics.contains("geosteer_dns_queries_by_type_total{qtype=\"A\"}"));
    assert!(metrics.contains("geosteer_dns_answer_generation_seconds_count"));
    n.shutdown().await;
}

/// `turnutils_uclient` from Debian's coturn, or None (a failure under CI=true).
fn uclient() -> Option<&'static str> {
    let ok = std::process::Command::new("sh")
        .args([
            "-c",
            "command -v turnutils_uclient && command -v turnutils_peer",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Some("turnutils_uclient");
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("turnutils_uclient/turnutils_peer missing (Debian package coturn); tests/run.sh installs it as root");
    }
    eprintln!("SKIPPING: coturn's test clients are not installed");
    None
}

/// A `turnutils_peer` (UDP echo) on 127.0.0.1, killed on drop.
struct Peer(std::process::Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a [`Peer`] on `port` and gives it 200 ms to bind.
fn peer(port: u16) -> Peer {
    let child = std::process::Command::new("turnutils_peer")
        .args(["-L", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    Peer(child)
}

/// Runs uclient against `relay` for about `secs` seconds; returns its output.
fn uclient_run(
    relay: SocketAddr,
    peer_port: u16,
    clients: u32,
    msgs: u32,
    gap_ms: u32,
) -> std::process::Child {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (user, pass) = geosteer_relay::auth::mint(SECRET.as_bytes(), 3600, Some("t"), now);
    std::process::Command::new("turnutils_uclient")
        .args([
            "-u",
            &user,
            "-w",
            &pass,
            "-y",
            "-c",
            "-n",
            &msgs.to_string(),
            "-m",
            &clients.to_string(),
            "-z",
            &gap_ms.to_string(),
        ])
        .args([
            "-e",
            "127.0.0.1",
            "-r",
            &peer_port.to_string(),
            "-p",
            &relay.port().to_string(),
            &relay.ip().to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_relay_is_not_steered_to_and_keeps_its_sessions() {
    if uclient().is_none() {
        return;
    }
    let fleet = Fleet::start(44, 1000);
    let dir = tmp_dir("drain");
    let n = start_file(&fleet.dns_config(&dir, "")).await;
    let _peer = peer(34_401);
    // A session of ~4 s through eu-central, drained 1 s in.
    let session = uclient_run(fleet.turn_addr(1), 34_401, 1, 40, 100);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let relay_drain = format!("http://{}/admin/drain", fleet.https[1]);
    let r = post(&reqwest::Client::new(), &relay_drain, Some(ADMIN)).await;
    assert!(r.status.is_success(), "{r:?}");
    until(&n, "drained relay not steered", |a| {
        a.0 == [fleet.ips[0].clone()]
    })
    .await;
    assert_eq!(n.core.hub.state()[1].state, "draining");
    let out = session.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("Total lost packets 0 "),
        "the existing session lost packets:\n{text}"
    );
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utilization_above_the_high_watermark_sheds_the_relay() {
    if uclient().is_none() {
        return;
    }
    // Capacity 4: one client's allocations put utilization at ≥ 0.25, above
    // the test's high watermark (0.2).
    let fleet = Fleet::start(45, 4);
    let dir = tmp_dir("shed");
    let n = start_file(&fleet.dns_config(&dir, "")).await;
    assert_eq!(answer(&n).0, [fleet.ips[1].clone()]);
    let _peer = peer(34_402);
    let session = uclient_run(fleet.turn_addr(1), 34_402, 1, 60, 100);
    until(&n, "shed", |a| a.0 == [fleet.ips[0].clone()]).await;
    assert!(
        matches!(n.core.hub.state()[1].state, "shed" | "shedding"),
        "{:?}",
        n.core.hub.state()[1]
    );
    let _ = session.wait_with_output();
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stun_probe_catches_a_relay_whose_udp_side_does_not_answer() {
    let fleet = Fleet::start(46, 1000);
    // The STUN probe against a live relay's UDP listener succeeds…
    let ok = geosteer::health::probe::stun(fleet.turn_addr(1), Duration::from_millis(500)).await;
    assert!(ok.is_ok(), "{ok:?}");
    // …and fails against a port where nothing answers.
    let dead = SocketAddr::new(fleet.turn_addr(1).ip(), 9);
    let err = geosteer::health::probe::stun(dead, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(err.contains("STUN"), "{err}");
    // A node whose STUN probes go to a dead UDP port takes the members down
    // although their HTTP health endpoints answer.
    let dir = tmp_dir("stun");
    let n = start_file(&fleet.dns_config(&dir, "")).await;
    let cfg = std::fs::read_to_string(dir.join("g.toml"))
        .unwrap()
        .replace("[health]\n", "[health]\nstun = true\nstun_port = 9\n");
    std::fs::write(dir.join("g.toml"), cfg).unwrap();
    n.reload().unwrap();
    until(&n, "members down by STUN", |_| {
        n.core.hub.state().iter().all(|m| m.state == "down")
    })
    .await;
    let st = n.core.hub.state();
    assert!(
        st[1]
            .last_probe
            .as_ref()
            .unwrap()
            .error
            .as_deref()
            .unwrap_or("")
            .contains("STUN"),
        "{:?}",
        st[1]
    );
    n.shutdown().await;
}
