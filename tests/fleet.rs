//! Fleet membership through a real three-member etcd cluster (Debian's
//! etcd-server) in network namespaces: two geosteer DNS nodes, a static relay
//! in each of two regions and one relay that registers itself.
//!
//! Checked: a registered relay appears in both nodes' answers without any
//! config change, disappears after a graceful stop (key deleted) and after
//! SIGKILL (lease expiry); killing the etcd leader changes nothing for
//! answers; a DNS node cut off from etcd keeps answering with the last
//! membership; a malformed key is rejected with a metric and poisons nothing.
//! The health quorum: one node's cut path (nftables) does not fail a relay
//! over, every node's does, and a node cut off from etcd decides alone and
//! says so. A membership change reads no zone file; an admin drain
//! deregisters at once; a relay that cannot bind never registers; fail-open
//! never answers a registered relay never seen up.
//!
//! Needs root, `ip`, `etcd`, `etcdctl`, `dig`, `nft`, `curl`: otherwise SKIPPING, or a
//! failure under CI=true. Only 198.18.0.0/15 addresses inside namespaces
//! named `gsfleet-<pid>-*`; every daemon is tracked and killed by PID.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ETCD: [(&str, &str); 3] = [
    ("e1", "198.18.0.11"),
    ("e2", "198.18.0.12"),
    ("e3", "198.18.0.13"),
];
const DNS_A: &str = "198.18.0.21";
const DNS_B: &str = "198.18.0.22";
const STATIC_RELAY: &str = "198.18.1.10";
/// A static relay in the second region (us-east): where eu-central fails over to.
const STATIC_US: &str = "198.18.1.20";
const REG_RELAY: &str = "198.18.1.11";
const NAME: &str = "turn.example.com";
const LEASE_TTL: u64 = 3;
const ZONE: &str = "$ORIGIN example.com.\n@ 3600 IN SOA ns1 hostmaster 1 7200 900 1209600 60\n@ 3600 IN NS ns1\nns1 3600 IN A 198.18.0.21\n";

macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stderr(), "fleet: {}", format!($($t)*));
    }};
}

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn preflight() -> Option<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            !ci(),
            "fleet needs root (network namespaces); CI runs as root"
        );
        say!("SKIPPING fleet: needs root (network namespaces)");
        return None;
    }
    let tools = [
        ("ip", "iproute2"),
        ("etcd", "etcd-server"),
        ("etcdctl", "etcd-client"),
        ("dig", "bind9-dnsutils"),
        ("nft", "nftables"),
        ("curl", "curl"),
    ];
    let missing: Vec<String> = tools
        .iter()
        .filter(|(cmd, _)| {
            !Command::new("sh")
                .args([
                    "-c",
                    &format!("command -v {cmd} || test -x /usr/sbin/{cmd}"),
                ])
                .stdout(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        })
        .map(|(cmd, pkg)| format!("{cmd} (Debian package {pkg})"))
        .collect();
    if !missing.is_empty() {
        assert!(
            !ci(),
            "fleet: missing tools: {}; tests/run.sh installs them",
            missing.join(", ")
        );
        say!("SKIPPING fleet: missing {}", missing.join(", "));
        return None;
    }
    Some(())
}

fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// geosteer, geosteer-relay and geosteer-turn-load.
fn binaries() -> (PathBuf, PathBuf, PathBuf) {
    let dir = common::relay_binaries(&["geosteer-relay", "geosteer-turn-load"]);
    (
        PathBuf::from(env!("CARGO_BIN_EXE_geosteer")),
        dir.join("geosteer-relay"),
        dir.join("geosteer-turn-load"),
    )
}

struct Lab {
    prefix: String,
    dir: PathBuf,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
}

impl Lab {
    fn new() -> Lab {
        sweep_stale();
        let prefix = format!("gsfleet-{}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = Lab {
            prefix,
            dir,
            namespaces: Vec::new(),
            children: Vec::new(),
        };
        let br = lab.add_ns("br");
        run("ip", &["-n", &br, "link", "add", "br0", "type", "bridge"]);
        run("ip", &["-n", &br, "link", "set", "br0", "up"]);
        lab
    }

    fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    fn add_ns(&mut self, short: &str) -> String {
        let ns = self.ns(short);
        run("ip", &["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    fn host(&mut self, short: &str, addr: &str) {
        let ns = self.add_ns(short);
        let br = self.ns("br");
        let leg = format!("v-{short}");
        run(
            "ip",
            &[
                "-n", &br, "link", "add", &leg, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ],
        );
        run(
            "ip",
            &["-n", &br, "link", "set", &leg, "master", "br0", "up"],
        );
        run(
            "ip",
            &[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/16"),
                "dev",
                "eth0",
            ],
        );
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn spawn(&mut self, label: &str, short: &str, argv: &[&str]) {
        let log = std::fs::File::create(self.dir.join(format!("{label}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(short)])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        self.children.push((label.to_string(), child));
    }

    /// Sends `sig` to the process started as `label` and, for SIGKILL, reaps it.
    fn signal(&mut self, label: &str, sig: i32) {
        let i = self
            .children
            .iter()
            .position(|(l, _)| l == label)
            .unwrap_or_else(|| panic!("no process {label}"));
        let pid = self.children[i].1.id() as i32;
        // SAFETY: kill(2) on a child we started and have not reaped.
        unsafe { libc::kill(pid, sig) };
        if sig == libc::SIGKILL {
            let (_, mut c) = self.children.remove(i);
            let _ = c.wait();
        }
    }

    /// Waits (bounded) for `label` to exit, then forgets it.
    fn reap(&mut self, label: &str, limit: Duration) {
        let i = self.children.iter().position(|(l, _)| l == label).unwrap();
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Ok(Some(_)) = self.children[i].1.try_wait() {
                self.children.remove(i);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal(label, libc::SIGKILL);
    }

    fn exec(&self, short: &str, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(short)])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The sorted A records node `short` answers for the steered name.
    fn answers(&self, short: &str, server: &str) -> Vec<String> {
        let at = format!("@{server}");
        let out = self.exec(
            short,
            &["dig", &at, "+time=1", "+tries=1", "+short", NAME, "A"],
        );
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| l.parse::<std::net::IpAddr>().is_ok())
            .map(String::from)
            .collect();
        v.sort();
        v
    }

    /// Drops (or stops dropping) everything `short` sends to `addr`, with
    /// nftables in its namespace.
    fn cut_path(&self, short: &str, addr: &str, on: bool) {
        let ns = self.ns(short);
        let table = format!("gscut{}", addr.replace('.', "_"));
        let nft = |args: &[&str]| {
            let mut argv = vec!["netns", "exec", ns.as_str(), "nft"];
            argv.extend_from_slice(args);
            run("ip", &argv);
        };
        if on {
            nft(&["add", "table", "inet", &table]);
            nft(&[
                "add", "chain", "inet", &table, "out", "{", "type", "filter", "hook", "output",
                "priority", "0", ";", "}",
            ]);
            nft(&[
                "add", "rule", "inet", &table, "out", "ip", "daddr", addr, "drop",
            ]);
        } else {
            nft(&["delete", "table", "inet", &table]);
        }
    }

    /// Blackholes (or restores) `short`'s routes to every etcd member.
    fn etcd_reachable(&self, short: &str, yes: bool) {
        for (_, a) in ETCD {
            run(
                "ip",
                &[
                    "-n",
                    &self.ns(short),
                    "route",
                    if yes { "del" } else { "add" },
                    "blackhole",
                    &format!("{a}/32"),
                ],
            );
        }
    }

    /// One member's entry in a DNS node's `/v1/state` (null when absent).
    fn member_state(&self, short: &str, host: &str, member: &str) -> serde_json::Value {
        let text = self.http_get(short, host, 8053, "/v1/state");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["members"]
            .as_array()
            .and_then(|a| a.iter().find(|m| m["member"] == member).cloned())
            .unwrap_or_default()
    }

    /// The response code `server` gives for `name` A (`NOERROR`, `NXDOMAIN`, ...).
    fn rcode(&self, short: &str, server: &str, name: &str) -> String {
        let at = format!("@{server}");
        let out = self.exec(short, &["dig", &at, "+time=1", "+tries=2", name, "A"]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.split("status: ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap_or("no answer")
            .to_string()
    }

    fn etcdctl(&self, args: &[&str]) -> String {
        let eps: Vec<String> = ETCD
            .iter()
            .map(|(_, a)| format!("http://{a}:2379"))
            .collect();
        let eps = format!("--endpoints={}", eps.join(","));
        let mut argv = vec!["etcdctl", eps.as_str(), "--command-timeout=2s"];
        argv.extend_from_slice(args);
        let out = self.exec("dnb", &argv);
        // `endpoint health` reports on stderr.
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn http_get(&self, short: &str, host: &str, port: u16, path: &str) -> String {
        let url = format!("http://{host}:{port}{path}");
        let out = self.exec(short, &["curl", "-s", "-m", "2", &url]);
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn until<T: std::fmt::Debug>(
        &self,
        what: &str,
        limit: Duration,
        mut probe: impl FnMut() -> T,
        ok: impl Fn(&T) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let v = probe();
            if ok(&v) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "{what}: still {v:?} after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn both(&self) -> (Vec<String>, Vec<String>) {
        (self.answers("dna", DNS_A), self.answers("dnb", DNS_B))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (label, _) in &self.children {
                let log = std::fs::read_to_string(self.dir.join(format!("{label}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                say!(
                    "--- {label}.log (last lines, newest first)\n{}",
                    tail.join("\n")
                );
            }
        }
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            kill_ns_pids(ns);
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn kill_ns_pids(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) on a pid inside this test's own namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("gsfleet-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            kill_ns_pids(name);
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn etcd_endpoints() -> String {
    ETCD.iter()
        .map(|(_, a)| format!("\"http://{a}:2379\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn geosteer_conf(listen: &str, node: &str) -> String {
    format!(
        "[server]
listen = [\"{listen}:53\"]
udp_workers = 1
[geoip]
database = \"geo.mmdb\"
[steering]
default_regions = [\"eu-central\", \"us-east\"]
answer_count = 4
ttl = 1
degraded_ttl = 1
[health]
interval_ms = 250
timeout_ms = 200
rise = 2
fall = 2
[api]
listen = \"{listen}:8053\"
[membership]
endpoints = [{}]
deployment = \"lab\"
node_name = \"{node}\"
vote_ttl_secs = 3
[regions.eu-central]
latitude = 50.11
longitude = 8.68
[regions.us-east]
latitude = 39.04
longitude = -77.49
[pools.turn]
members = [
  {{ name = \"static1\", region = \"eu-central\", addresses = [\"{STATIC_RELAY}\"], health_url = \"http://{STATIC_RELAY}:8080/health\" }},
  {{ name = \"static2\", region = \"us-east\", addresses = [\"{STATIC_US}\"], health_url = \"http://{STATIC_US}:8080/health\" }},
]
[[zones]]
origin = \"example.com\"
file = \"example.com.zone\"
[[zones.steered]]
name = \"turn\"
pool = \"turn\"
",
        etcd_endpoints()
    )
}

/// A relay on `addr`; with `member = Some(name)` it registers as `name`,
/// also listens on its namespace's 127.0.0.1 (where the load generator,
/// which only talks to loopback, holds an allocation) and has an admin token.
fn relay_conf(addr: &str, member: Option<&str>) -> String {
    let loopback = if member.is_some() {
        ", \"127.0.0.1:3478\""
    } else {
        ""
    };
    let mut t = format!(
        "region = \"eu-central\"
realm = \"geosteer.test\"
[listen]
udp = [\"{addr}:3478\"{loopback}]
tcp = [\"{addr}:3478\"]
http = \"{addr}:8080\"
[relay]
ips = [\"{addr}\"]
[auth]
secrets = [\"fleet-secret\"]
users = {{ alice = \"wonderland\" }}
[peer_policy]
allow_loopback_peers = true
[operations]
admin_token = \"fleet-admin-token-0123\"
drain_timeout = 60
"
    );
    if let Some(name) = member {
        t.push_str(&format!(
            "[membership]
endpoints = [{}]
deployment = \"lab\"
pool = \"turn\"
name = \"{name}\"
lease_ttl_secs = {LEASE_TTL}
",
            etcd_endpoints()
        ));
    }
    t
}

fn member_keys(lab: &Lab) -> String {
    lab.etcdctl(&["get", "--prefix", "--keys-only", "/geosteer/lab/members/"])
}

#[test]
fn registered_relays_come_and_go_through_etcd() {
    let wall = Instant::now();
    if preflight().is_none() {
        return;
    }
    let (geosteer, relay, load) = binaries();
    let mut lab = Lab::new();
    for (short, addr) in ETCD {
        lab.host(short, addr);
    }
    lab.host("dna", DNS_A);
    lab.host("dnb", DNS_B);
    lab.host("rs", STATIC_RELAY);
    lab.host("rr", REG_RELAY);
    lab.host("ru", STATIC_US);

    // --- etcd cluster
    let cluster: Vec<String> = ETCD
        .iter()
        .map(|(n, a)| format!("{n}=http://{a}:2380"))
        .collect();
    let cluster = cluster.join(",");
    for (n, a) in ETCD {
        let data = lab.dir.join(format!("{n}.etcd"));
        let peer = format!("http://{a}:2380");
        let client = format!("http://{a}:2379");
        let token = lab.prefix.clone();
        lab.spawn(
            n,
            n,
            &[
                "etcd",
                "--name",
                n,
                "--data-dir",
                data.to_str().unwrap(),
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--initial-cluster",
                &cluster,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                &token,
                "--heartbeat-interval",
                "100",
                "--election-timeout",
                "1000",
            ],
        );
    }
    lab.until(
        "etcd cluster healthy",
        Duration::from_secs(20),
        || {
            lab.etcdctl(&["endpoint", "health"])
                .matches("is healthy")
                .count()
        },
        |n| *n == 3,
    );

    // --- files and daemons
    let src = lab.write("geo.txt", "198.18.200.0/24,EU,DE,50.11,8.68,Frankfurt\n");
    let mmdb = lab.dir.join("geo.mmdb");
    run(
        geosteer.to_str().unwrap(),
        &[
            "geoip",
            "build",
            src.to_str().unwrap(),
            "-o",
            mmdb.to_str().unwrap(),
        ],
    );
    lab.write("example.com.zone", ZONE);
    let rs = lab.write("relay-static.toml", &relay_conf(STATIC_RELAY, None));
    let rr = lab.write("relay-reg.toml", &relay_conf(REG_RELAY, Some("reg1")));
    let ca = lab.write("dns-a.toml", &geosteer_conf(DNS_A, "dns-a"));
    let cb = lab.write("dns-b.toml", &geosteer_conf(DNS_B, "dns-b"));
    let ru = lab.write("relay-us.toml", &relay_conf(STATIC_US, None));
    let relay = relay.to_str().unwrap().to_string();
    let geosteer = geosteer.to_str().unwrap().to_string();
    lab.spawn(
        "relay-static",
        "rs",
        &[&relay, "serve", "--config", rs.to_str().unwrap()],
    );
    lab.spawn(
        "relay-us",
        "ru",
        &[&relay, "serve", "--config", ru.to_str().unwrap()],
    );
    lab.spawn(
        "dns-a",
        "dna",
        &[&geosteer, "serve", "--config", ca.to_str().unwrap()],
    );
    lab.spawn(
        "dns-b",
        "dnb",
        &[&geosteer, "serve", "--config", cb.to_str().unwrap()],
    );
    let static_only = (
        vec![STATIC_RELAY.to_string()],
        vec![STATIC_RELAY.to_string()],
    );
    let with_reg = {
        let mut v = vec![STATIC_RELAY.to_string(), REG_RELAY.to_string()];
        v.sort();
        (v.clone(), v)
    };
    lab.until(
        "static member answered",
        Duration::from_secs(20),
        || lab.both(),
        |v| *v == static_only,
    );

    // --- a relay registers: answered without a config change
    let start = |lab: &mut Lab| {
        lab.spawn(
            "relay-reg",
            "rr",
            &[&relay, "serve", "--config", rr.to_str().unwrap()],
        );
    };
    start(&mut lab);
    let t = lab.until(
        "registered relay answered",
        Duration::from_secs(15),
        || lab.both(),
        |v| *v == with_reg,
    );
    say!("registration → answered by both nodes: {t:.2?}");

    // --- graceful stop: key deleted at once, relay leaves the answers
    lab.signal("relay-reg", libc::SIGTERM);
    lab.until(
        "key deleted on drain",
        Duration::from_secs(5),
        || member_keys(&lab),
        |k| !k.contains("reg1"),
    );
    let t = lab.until(
        "drained relay removed",
        Duration::from_secs(5),
        || lab.both(),
        |v| *v == static_only,
    );
    say!("graceful stop → removed: {t:.2?}");
    lab.reap("relay-reg", Duration::from_secs(10));

    // --- crash: the lease expires the key
    start(&mut lab);
    lab.until(
        "re-registered",
        Duration::from_secs(15),
        || lab.both(),
        |v| *v == with_reg,
    );
    lab.signal("relay-reg", libc::SIGKILL);
    let t0 = Instant::now();
    lab.until(
        "killed relay removed",
        Duration::from_secs(5),
        || lab.both(),
        |v| *v == static_only,
    );
    lab.until(
        "lease expiry deletes the key",
        Duration::from_secs(LEASE_TTL + 5),
        || member_keys(&lab),
        |k| !k.contains("reg1"),
    );
    say!(
        "kill → key expired: {:.2?} (lease TTL {LEASE_TTL} s)",
        t0.elapsed()
    );

    // --- bad data is rejected per key, the rest keeps working
    lab.etcdctl(&["put", "/geosteer/lab/members/turn/bad1", "{not json"]);
    lab.etcdctl(&[
        "put",
        "/geosteer/lab/members/turn/bad2",
        "{\"region\":\"mars\",\"addresses\":[\"198.18.1.99\"]}",
    ]);
    start(&mut lab);
    lab.until(
        "registered again beside bad keys",
        Duration::from_secs(15),
        || lab.both(),
        |v| *v == with_reg,
    );
    let m = lab.http_get("dna", DNS_A, 8053, "/metrics");
    assert!(
        m.contains("geosteer_membership_rejected_total{reason=\"json\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("geosteer_membership_rejected_total{reason=\"region\"} 1"),
        "{m}"
    );
    assert!(m.contains("geosteer_membership_registered 1"), "{m}");
    assert!(m.contains("geosteer_membership_etcd_up 1"), "{m}");
    lab.etcdctl(&["del", "--prefix", "/geosteer/lab/members/turn/bad"]);

    // --- killing the etcd leader changes nothing for answers
    // Ask each member for itself (a cluster-wide status can miss a member
    // that is slow to answer); retry while an election is in progress.
    let leader = {
        let t = Instant::now();
        loop {
            let found = ETCD.iter().find(|(_, a)| {
                let ep = format!("--endpoints=http://{a}:2379");
                let out = lab.exec(
                    "dnb",
                    &[
                        "etcdctl",
                        &ep,
                        "--command-timeout=2s",
                        "endpoint",
                        "status",
                        "-w",
                        "fields",
                    ],
                );
                is_leader(&String::from_utf8_lossy(&out.stdout))
            });
            if let Some((name, _)) = found {
                break *name;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "no etcd leader found in 20 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    say!("killing etcd leader {leader}");
    lab.signal(leader, libc::SIGKILL);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(LEASE_TTL + 2) {
        assert_eq!(
            lab.both(),
            with_reg,
            "answers changed after the etcd leader died"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        member_keys(&lab).contains("reg1"),
        "registration lost with the leader"
    );

    // --- one DNS node cut off from etcd keeps its last membership
    lab.etcd_reachable("dna", false);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            lab.answers("dna", DNS_A),
            with_reg.0,
            "cut-off node lost its membership"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.signal("relay-reg", libc::SIGKILL);
    lab.etcd_reachable("dna", true);
    lab.until(
        "both converge after the cut",
        Duration::from_secs(10),
        || lab.both(),
        |v| *v == static_only,
    );

    // --- health quorum: one DNS node whose path to a relay breaks does not
    // fail it over while the other node sees it healthy
    let us_only = (vec![STATIC_US.to_string()], vec![STATIC_US.to_string()]);
    lab.cut_path("dna", STATIC_RELAY, true);
    lab.until(
        "dns-a's own probes see static1 down",
        Duration::from_secs(5),
        || lab.member_state("dna", DNS_A, "turn/static1"),
        |m| m["verdict"] == "down",
    );
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            lab.both(),
            static_only,
            "one node's broken path failed static1 over"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = lab.member_state("dna", DNS_A, "turn/static1");
    assert_eq!(m["state"], "up", "{m}");
    assert_eq!(m["quorum"]["basis"], "quorum", "{m}");
    assert_eq!(m["quorum"]["voters"], 2, "{m}");
    assert_eq!(m["quorum"]["votes"][0]["node"], "dns-b", "{m}");
    assert_eq!(m["quorum"]["votes"][0]["up"], true, "{m}");
    let api = format!("http://{DNS_A}:8053");
    let out = lab.exec(
        "dna",
        &[&geosteer, "explain", "--api", &api, "198.18.200.7"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let line = text
        .lines()
        .find(|l| l.contains("turn/static1"))
        .unwrap_or_else(|| panic!("no static1 line in\n{text}"));
    assert!(
        line.contains("own down") && line.contains("dns-b up") && line.contains("-> up"),
        "{line}"
    );
    let metrics = lab.http_get("dna", DNS_A, 8053, "/metrics");
    assert!(metrics.contains("geosteer_quorum_overruled 1"), "{metrics}");
    assert!(metrics.contains("geosteer_quorum_linked 1"), "{metrics}");
    // Every node's path cut: it fails over, within the probe bounds.
    lab.cut_path("dnb", STATIC_RELAY, true);
    let t = lab.until(
        "all-node cut fails static1 over to us-east",
        Duration::from_secs(5),
        || lab.both(),
        |v| *v == us_only,
    );
    say!("quorum: all-node cut → failed over: {t:.2?}");
    lab.cut_path("dna", STATIC_RELAY, false);
    lab.cut_path("dnb", STATIC_RELAY, false);
    lab.until(
        "back after the cuts",
        Duration::from_secs(5),
        || lab.both(),
        |v| *v == static_only,
    );

    // --- a node cut off from etcd decides on its own probes and says so
    lab.etcd_reachable("dna", false);
    lab.until(
        "dns-a unlinked from the quorum",
        Duration::from_secs(10),
        || lab.http_get("dna", DNS_A, 8053, "/metrics"),
        |m| m.contains("geosteer_quorum_linked 0"),
    );
    lab.cut_path("dna", STATIC_RELAY, true);
    lab.until(
        "cut-off node fails over on its own probes",
        Duration::from_secs(5),
        || lab.answers("dna", DNS_A),
        |v| *v == us_only.0,
    );
    assert_eq!(lab.answers("dnb", DNS_B), static_only.1);
    let log = std::fs::read_to_string(lab.dir.join("dns-a.log")).unwrap();
    assert_eq!(
        log.matches("cut off from etcd: health decided on this node's own probes")
            .count(),
        1,
        "logged once"
    );
    lab.cut_path("dna", STATIC_RELAY, false);
    lab.etcd_reachable("dna", true);
    lab.until(
        "dns-a linked again",
        Duration::from_secs(10),
        || lab.http_get("dna", DNS_A, 8053, "/metrics"),
        |m| m.contains("geosteer_quorum_linked 1"),
    );
    lab.until(
        "both answer static1 again",
        Duration::from_secs(5),
        || lab.both(),
        |v| *v == static_only,
    );

    // --- a membership change reads nothing from disk: a zone edit not yet
    // reloaded stays unpublished, and no file watch reloads afterwards.
    // (The killed relay's key must expire first, or its return is no change.)
    lab.until(
        "the killed relay's lease expires",
        Duration::from_secs(LEASE_TTL + 5),
        || member_keys(&lab),
        |k| !k.contains("reg1"),
    );
    let changes = |lab: &Lab| {
        lab.http_get("dna", DNS_A, 8053, "/metrics")
            .lines()
            .find_map(|l| l.strip_prefix("geosteer_membership_changes_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = changes(&lab);
    lab.write(
        "example.com.zone",
        &format!("{ZONE}extra 3600 IN A 198.18.9.9\n"),
    );
    start(&mut lab);
    lab.until(
        "registered after a zone edit",
        Duration::from_secs(15),
        || lab.both(),
        |v| *v == with_reg,
    );
    assert!(changes(&lab) > before, "no membership change was published");
    // The GeoIP file watch polls every second; give it several chances.
    std::thread::sleep(Duration::from_millis(2500));
    for (short, server) in [("dna", DNS_A), ("dnb", DNS_B)] {
        assert_eq!(
            lab.rcode(short, server, "extra.example.com"),
            "NXDOMAIN",
            "{short}: a membership change published an unreloaded zone edit"
        );
    }
    lab.signal("dns-a", libc::SIGHUP);
    lab.until(
        "a reload publishes the edit (so the check above can tell)",
        Duration::from_secs(5),
        || lab.rcode("dna", DNS_A, "extra.example.com"),
        |r| r == "NOERROR",
    );

    // --- POST /admin/drain leaves the fleet at once, while an allocation
    // keeps the draining relay running
    let load_bin = load.to_str().unwrap().to_string();
    lab.spawn(
        "load",
        "rr",
        &[
            &load_bin,
            "--server",
            "127.0.0.1:3478",
            "--realm",
            "geosteer.test",
            "--allocs",
            "1",
            "--rate",
            "20",
            "--duration",
            "30",
        ],
    );
    lab.until(
        "an allocation on the registered relay",
        Duration::from_secs(10),
        || lab.http_get("rr", REG_RELAY, 8080, "/metrics"),
        |m| {
            m.lines()
                .any(|l| l.starts_with("turn_sessions_active ") && !l.ends_with(" 0"))
        },
    );
    let r = lab.exec(
        "rr",
        &[
            "curl",
            "-s",
            "-m",
            "2",
            "-X",
            "POST",
            "-H",
            "Authorization: Bearer fleet-admin-token-0123",
            &format!("http://{REG_RELAY}:8080/admin/drain"),
        ],
    );
    assert!(
        String::from_utf8_lossy(&r.stdout).contains("draining"),
        "{r:?}"
    );
    let t = lab.until(
        "key deleted on admin drain",
        Duration::from_secs(3),
        || member_keys(&lab),
        |k| !k.contains("reg1"),
    );
    say!("admin drain → key deleted: {t:.2?}");
    assert!(
        lab.http_get("rr", REG_RELAY, 8080, "/health")
            .contains("draining"),
        "the relay should still be draining its allocation"
    );
    lab.until(
        "drained relay removed from answers",
        Duration::from_secs(5),
        || lab.both(),
        |v| *v == static_only,
    );
    lab.signal("load", libc::SIGKILL);
    lab.signal("relay-reg", libc::SIGKILL);

    // --- a relay that cannot bind its sockets never registers
    let bad = lab.write("relay-bad.toml", &relay_conf("198.18.1.99", Some("reg2")));
    let out = lab.exec("rr", &[&relay, "serve", "--config", bad.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "a relay on a foreign address started"
    );
    assert!(
        !member_keys(&lab).contains("reg2"),
        "a relay that failed to bind registered"
    );

    // --- fail-open never hands out a registered relay that was never seen
    // up: with the static relay down, a registered member whose relay does
    // not answer must stay out of the answers (the static one is answered,
    // fail-open)
    lab.signal("relay-static", libc::SIGKILL);
    lab.signal("relay-us", libc::SIGKILL);
    for (short, host) in [("dna", DNS_A), ("dnb", DNS_B)] {
        lab.until(
            "static relays seen down",
            Duration::from_secs(5),
            || lab.http_get(short, host, 8053, "/metrics"),
            |m| {
                [
                    "static1\",region=\"eu-central",
                    "static2\",region=\"us-east",
                ]
                .iter()
                .all(|x| {
                    m.contains(&format!(
                        "geosteer_member_usable{{pool=\"turn\",member=\"{x}\"}} 0"
                    ))
                })
            },
        );
    }
    lab.etcdctl(&[
        "put",
        "/geosteer/lab/members/turn/ghost",
        "{\"region\":\"eu-central\",\"addresses\":[\"198.18.1.12\"],\"health_url\":\"http://198.18.1.12:8080/health\"}",
    ]);
    lab.until(
        "ghost registration accepted",
        Duration::from_secs(5),
        || lab.http_get("dnb", DNS_B, 8053, "/metrics"),
        |m| m.contains("geosteer_membership_registered 1"),
    );
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            lab.both(),
            static_only,
            "fail-open answered a registered relay never probed up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.etcdctl(&["del", "/geosteer/lab/members/turn/ghost"]);
    say!("wall time {:.1?}", wall.elapsed());
}

/// The endpoint whose status says it is the leader (`-w fields` output).
/// Whether an `endpoint status -w fields` answer is from the leader.
fn is_leader(fields: &str) -> bool {
    let mut member = None;
    for line in fields.lines() {
        if let Some((k, v)) = line.split_once(" : ") {
            let (k, v) = (k.trim().trim_matches('"'), v.trim().trim_matches('"'));
            match k {
                "MemberID" => member = Some(v.to_string()),
                "Leader" => return member.as_deref() == Some(v),
                _ => {}
            }
        }
    }
    false
}
