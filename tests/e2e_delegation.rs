//! End to end through a real delegation chain, in network namespaces:
//!
//! ```text
//!                       bridge br0 (namespace gse2e-PID-br), 198.18.0.0/16
//!   ┌──────────┬──────────┬──────────┬──────────┬─────────┬─────────┬──────────┐
//!  root       unbound    node A     node B     relay eu  relay us  relay ap   clients
//!  NSD        ECS on     geosteer   geosteer   .1.10     .2.10     .3.10      .10.10 (EU)
//!  .0.1       .0.53      .0.11      .0.12                                     .20.10 (NA)
//!                                                                             .30.10 (AS)
//! ```
//!
//! NSD serves a root zone that delegates `example.com.` to ns1/ns2 with glue
//! (the two geosteer nodes). Unbound, whose root hints name only that NSD,
//! resolves for the clients and sends ECS (subnetcache module) to the two
//! geosteer nodes. The test builds its own GeoIP database placing the three
//! client /24s in Paris, Chicago and Tokyo. It proves, through `dig` in the
//! client namespaces:
//!
//! 1. each client gets its nearest region's relay (and the SRV target too);
//! 2. `ip link set eth0 down` in the EU relay's namespace moves the EU client
//!    to the next region (us-east) within the failover target, without
//!    touching the other clients; `up` brings it back after `rise` probes;
//! 3. with geosteer node A killed, every client still resolves (node B).
//!
//! Needs root (network namespaces) and Debian's `nsd`, `unbound`,
//! `bind9-dnsutils` (dig) and `iproute2`: without them the test prints
//! SKIPPING, or fails when CI=true. It uses only 198.18.0.0/15 addresses,
//! inside namespaces it creates (named after its pid) and deletes on drop.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Failover must be visible to clients within this (the seed target is 5 s;
/// CI machines get slack).
const FAILOVER_LIMIT: Duration = Duration::from_secs(10);

const ROOT_NS: &str = "198.18.0.1";
const UNBOUND: &str = "198.18.0.53";
const NODE_A: &str = "198.18.0.11";
const NODE_B: &str = "198.18.0.12";

/// (short name, region, latitude, longitude, relay address)
const REGIONS: [(&str, &str, f64, f64, &str); 3] = [
    ("eu", "eu-central", 50.11, 8.68, "198.18.1.10"),
    ("us", "us-east", 39.04, -77.49, "198.18.2.10"),
    ("ap", "ap-southeast", 1.29, 103.85, "198.18.3.10"),
];

/// (short name, address, GeoIP source line for its /24, expected region index)
const CLIENTS: [(&str, &str, &str, usize); 3] = [
    (
        "ceu",
        "198.18.10.10",
        "198.18.10.0/24,EU,FR,48.86,2.35,Paris",
        0,
    ),
    (
        "cus",
        "198.18.20.10",
        "198.18.20.0/24,NA,US,41.88,-87.63,Chicago",
        1,
    ),
    (
        "cap",
        "198.18.30.10",
        "198.18.30.0/24,AS,JP,35.68,139.69,Tokyo",
        2,
    ),
];

const NAME: &str = "turn.example.com";

/// Writes past the test harness's output capture, so the measured figures
/// show in CI logs of passing runs too.
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stderr(), "e2e: {}", format!($($t)*));
    }};
}

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Root and every tool present, or None after printing SKIPPING (a panic
/// under CI=true).
fn preflight() -> Option<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if ci() {
            panic!("e2e_delegation needs root (network namespaces); CI runs as root");
        }
        say!("SKIPPING e2e_delegation: needs root (network namespaces)");
        return None;
    }
    let tools = [
        ("ip", "iproute2"),
        ("nsd", "nsd"),
        ("unbound", "unbound"),
        ("dig", "bind9-dnsutils"),
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
        if ci() {
            panic!(
                "e2e_delegation: missing tools: {}; tests/run.sh installs them as root",
                missing.join(", ")
            );
        }
        say!("SKIPPING e2e_delegation: missing {}", missing.join(", "));
        return None;
    }
    Some(())
}

fn tool(cmd: &str) -> String {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = format!("{dir}/{cmd}");
        if Path::new(&p).exists() {
            return p;
        }
    }
    cmd.to_string()
}

/// Runs a command to completion; panics with its output when it fails.
fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) {
    run("ip", args);
}

/// The geosteer binary under test and the relay binary beside it (built with
/// the same profile when missing or older than the relay's sources).
fn binaries() -> (PathBuf, PathBuf) {
    let geosteer = PathBuf::from(env!("CARGO_BIN_EXE_geosteer"));
    let dir = geosteer.parent().unwrap().to_path_buf();
    let relay = dir.join("geosteer-relay");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let newest_src = ["relay/src", "relay/Cargo.toml", "Cargo.lock"]
        .iter()
        .map(|p| newest_mtime(&root.join(p)))
        .max()
        .flatten();
    let fresh = std::fs::metadata(&relay)
        .and_then(|m| m.modified())
        .map(|t| Some(t) >= newest_src)
        .unwrap_or(false);
    if !fresh {
        let profile = dir.file_name().unwrap().to_string_lossy().to_string();
        let target = dir.parent().unwrap();
        say!(
            "building geosteer-relay ({profile}) into {}",
            target.display()
        );
        let mut c = Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
        c.args(["build", "-p", "geosteer-relay", "--bin", "geosteer-relay"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", target);
        if profile == "release" {
            c.arg("--release");
        }
        let t = Instant::now();
        let st = c.status().expect("cargo build -p geosteer-relay");
        assert!(st.success(), "cargo build -p geosteer-relay failed");
        say!("built geosteer-relay in {:.1?}", t.elapsed());
    }
    assert!(relay.exists(), "{} missing", relay.display());
    (geosteer, relay)
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    if dir.is_file() {
        return std::fs::metadata(dir).and_then(|m| m.modified()).ok();
    }
    let mut newest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let t = if p.is_dir() {
            newest_mtime(&p)
        } else {
            e.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(t);
    }
    newest
}

/// The namespaces, processes and files of one run; tears all down on drop.
struct Lab {
    prefix: String,
    dir: PathBuf,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
}

impl Lab {
    fn new() -> Lab {
        sweep_stale();
        let prefix = format!("gse2e-{}", std::process::id());
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
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        lab
    }

    fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    fn add_ns(&mut self, short: &str) -> String {
        let ns = self.ns(short);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        // IPv4 only: no IPv6 link-local addresses either (kernels without
        // IPv6 have no such files, hence no check).
        let _ = self.exec(
            short,
            &[
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; \
                 echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
            ],
        );
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// A host namespace with `eth0` = `addr`/16 on the bridge.
    fn host(&mut self, short: &str, addr: &str) -> String {
        let ns = self.add_ns(short);
        let br = self.ns("br");
        let leg = format!("v-{short}");
        ip(&[
            "-n", &br, "link", "add", &leg, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["-n", &br, "link", "set", &leg, "master", "br0", "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/16"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ns
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Starts `argv` inside namespace `short`, output to `<label>.log`.
    fn spawn(&mut self, label: &str, short: &str, argv: &[&str]) {
        let log = std::fs::File::create(self.path(&format!("{label}.log"))).unwrap();
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

    /// Kills the process started as `label` (SIGKILL: no goodbye).
    fn kill(&mut self, label: &str) {
        let (_, c) = self
            .children
            .iter_mut()
            .find(|(l, _)| l == label)
            .unwrap_or_else(|| panic!("no process {label}"));
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Panics when a started process has exited (it should run throughout).
    fn assert_running(&mut self) {
        let mut dead = Vec::new();
        for (label, c) in &mut self.children {
            if let Ok(Some(st)) = c.try_wait() {
                dead.push(format!("{label} ({st})"));
            }
        }
        assert!(dead.is_empty(), "exited early: {}", dead.join(", "));
    }

    /// `cmd` run inside namespace `short`.
    fn exec(&self, short: &str, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(short)])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `dig` from a namespace; the A/AAAA addresses of the answer, or the
    /// whole output when there are none.
    fn dig(&self, short: &str, server: &str, args: &[&str]) -> Result<Vec<String>, String> {
        let at = format!("@{server}");
        let mut argv = vec!["dig", at.as_str(), "+time=2", "+tries=1", "+short"];
        argv.extend_from_slice(args);
        let out = self.exec(short, &argv);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let addrs: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.parse::<std::net::IpAddr>().is_ok())
            .map(String::from)
            .collect();
        if addrs.is_empty() {
            Err(format!(
                "{}{}",
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        } else {
            Ok(addrs)
        }
    }

    /// The steered answer a client gets through Unbound.
    fn resolve(&self, client: &str) -> Result<Vec<String>, String> {
        self.dig(client, UNBOUND, &[NAME, "A"])
    }

    /// Polls `f` every 100 ms until it holds; Err(last value) after `limit`.
    fn until<T: std::fmt::Debug>(
        &self,
        limit: Duration,
        mut probe: impl FnMut() -> T,
        f: impl Fn(&T) -> bool,
    ) -> Result<Duration, T> {
        let start = Instant::now();
        loop {
            let v = probe();
            if f(&v) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                return Err(v);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every node in `nodes` answers client `client`'s /24 with
    /// region `want` when asked directly, then for Unbound's cache to turn
    /// over (TTL 1 is served down to 0: up to 2 s). Returns when the nodes
    /// agreed.
    fn settle(&self, nodes: &[&str], client: usize, want: usize) -> Instant {
        let (short, _, line, _) = CLIENTS[client];
        let subnet = format!("+subnet={}", line.split(',').next().unwrap());
        for node in nodes {
            let r = self.until(
                FAILOVER_LIMIT,
                || self.dig(short, node, &["+norecurse", &subnet, NAME, "A"]),
                |r| r.as_ref().map(|a| a == &[REGIONS[want].4]).unwrap_or(false),
            );
            assert!(
                r.is_ok(),
                "node {node} does not steer {subnet} to {}: {r:?}\n{}",
                REGIONS[want].1,
                self.diagnostics()
            );
        }
        let agreed = Instant::now();
        std::thread::sleep(Duration::from_millis(2100));
        agreed
    }

    /// An HTTP GET from namespace `short` (bash /dev/tcp; no curl needed).
    fn http_get(&self, short: &str, host: &str, port: u16, path: &str) -> String {
        let script = format!(
            "exec 3<>/dev/tcp/{host}/{port} && printf 'GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' >&3 && timeout 2 cat <&3"
        );
        let out = self.exec(short, &["timeout", "3", "bash", "-c", &script]);
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Log tails and geosteer's health view, for failure messages.
    fn diagnostics(&self) -> String {
        let mut s = String::new();
        for (label, _) in &self.children {
            let text =
                std::fs::read_to_string(self.path(&format!("{label}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            s.push_str(&format!(
                "--- {label}.log (last {} lines)\n{}\n",
                tail.len(),
                tail.join("\n")
            ));
        }
        for (node, addr) in [("nodea", NODE_A), ("nodeb", NODE_B)] {
            let state = self.http_get(node, addr, 8053, "/v1/state");
            let body = state.split("\r\n\r\n").nth(1).unwrap_or(&state);
            s.push_str(&format!(
                "--- {node} /v1/state\n{}\n",
                &body[..body.len().min(3000)]
            ));
        }
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            say!(
                "failure diagnostics (files in {}):\n{}",
                self.dir.display(),
                self.diagnostics()
            );
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

/// Kills what still runs inside one of this test's namespaces (NSD's forked
/// server and xfrd processes), by pid.
fn kill_ns_pids(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: plain kill(2) on a pid listed in our own namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Deletes namespaces left by earlier runs of this test that were killed
/// before their drop ran (their pid no longer exists).
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("gse2e-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            kill_ns_pids(name);
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn root_zone() -> String {
    format!(
        ". 86400 IN SOA a.root-servers.test. hostmaster.root-servers.test. 1 1800 900 604800 86400
. 86400 IN NS a.root-servers.test.
a.root-servers.test. 86400 IN A {ROOT_NS}
example.com. 86400 IN NS ns1.example.com.
example.com. 86400 IN NS ns2.example.com.
ns1.example.com. 86400 IN A {NODE_A}
ns2.example.com. 86400 IN A {NODE_B}
"
    )
}

fn unbound_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "server:
    interface: {UNBOUND}
    port: 53
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    access-control: 198.18.0.0/15 allow
    chroot: \"\"
    username: \"\"
    directory: \"{d}\"
    pidfile: \"{d}/unbound.pid\"
    use-syslog: no
    logfile: \"\"
    verbosity: 1
    num-threads: 1
    so-reuseport: no
    root-hints: \"{d}/root.hints\"
    # No trust anchor and no validator: the lab root is unsigned.
    module-config: \"subnetcache iterator\"
    send-client-subnet: {NODE_A}
    send-client-subnet: {NODE_B}
    max-client-subnet-ipv4: 24
    # Nothing outlives a second, so steering changes reach clients at once.
    cache-min-ttl: 0
    cache-max-ttl: 1
    cache-max-negative-ttl: 1
    prefetch: no
    serve-expired: no
    qname-minimisation: no
    # 0x20: geosteer must echo the question's case.
    use-caps-for-id: yes
remote-control:
    control-enable: no
"
    )
}

fn geosteer_conf(listen: &str) -> String {
    let mut t = format!(
        "[server]
listen = [\"{listen}:53\"]
udp_workers = 1
[log]
level = \"info\"
[geoip]
database = \"geo.mmdb\"
[steering]
default_regions = [\"us-east\", \"eu-central\", \"ap-southeast\"]
answer_count = 1
ttl = 1
degraded_ttl = 1
[health]
interval_ms = 500
timeout_ms = 400
rise = 2
fall = 2
[api]
listen = \"{listen}:8053\"
"
    );
    for (_, region, lat, lon, _) in REGIONS {
        t.push_str(&format!(
            "[regions.{region}]\nlatitude = {lat}\nlongitude = {lon}\n"
        ));
    }
    t.push_str("[pools.turn]\nmembers = [\n");
    for (short, region, _, _, addr) in REGIONS {
        t.push_str(&format!(
            "  {{ name = \"{short}1\", region = \"{region}\", addresses = [\"{addr}\"], health_url = \"http://{addr}:8080/health\" }},\n"
        ));
    }
    t.push_str(
        "]
[[zones]]
origin = \"example.com\"
file = \"example.com.zone\"
[[zones.steered]]
name = \"turn\"
pool = \"turn\"
",
    );
    t
}

fn relay_conf(region: &str, addr: &str) -> String {
    format!(
        "region = \"{region}\"
[listen]
udp = [\"{addr}:3478\"]
tcp = [\"{addr}:3478\"]
http = \"{addr}:8080\"
[relay]
ips = [\"{addr}\"]
[auth]
secrets = [\"e2e-shared-secret\"]
"
    )
}

#[test]
fn delegated_steering_through_unbound_with_ecs_fails_over_per_region() {
    let wall = Instant::now();
    if preflight().is_none() {
        return;
    }
    let (geosteer, relay) = binaries();
    let mut lab = Lab::new();

    // --- topology
    lab.host("root", ROOT_NS);
    lab.host("unbound", UNBOUND);
    lab.host("nodea", NODE_A);
    lab.host("nodeb", NODE_B);
    for (short, _, _, _, addr) in REGIONS {
        lab.host(short, addr);
    }
    for (short, addr, _, _) in CLIENTS {
        lab.host(short, addr);
    }

    // Test hosts carry 198.18.0.0/15 (and loopback) addresses only.
    for ns in &lab.namespaces {
        let out = run("ip", &["-n", ns, "-o", "addr", "show"]);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let addr = line.split_whitespace().nth(3).unwrap_or("");
            assert!(
                (line.contains(" inet ")
                    && (addr.starts_with("198.18.") || addr.starts_with("127.0.0.1/")))
                    || line.contains(" inet6 ") && addr == "::1/128",
                "unexpected address in {ns}: {line}"
            );
        }
    }

    // --- files
    let src: String = CLIENTS.iter().map(|c| format!("{}\n", c.2)).collect();
    let src = lab.write("geo.txt", &src);
    let mmdb = lab.path("geo.mmdb");
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
    lab.write("root.zone", &root_zone());
    let nsd = lab.write(
        "nsd.conf",
        &common::nsd_conf(&lab.dir, ROOT_NS, 53, ".", "root.zone"),
    );
    lab.write(
        "root.hints",
        &format!(". 3600000 NS a.root-servers.test.\na.root-servers.test. 3600000 A {ROOT_NS}\n"),
    );
    let unbound = lab.write("unbound.conf", &unbound_conf(&lab.dir));
    lab.write(
        "example.com.zone",
        &format!(
            "$ORIGIN example.com.
@ 3600 IN SOA ns1 hostmaster 1 7200 900 1209600 60
@ 3600 IN NS ns1
@ 3600 IN NS ns2
ns1 3600 IN A {NODE_A}
ns2 3600 IN A {NODE_B}
"
        ),
    );
    let conf_a = lab.write("nodea.toml", &geosteer_conf(NODE_A));
    let conf_b = lab.write("nodeb.toml", &geosteer_conf(NODE_B));
    run(tool("nsd-checkconf").as_str(), &[nsd.to_str().unwrap()]);
    run(
        tool("unbound-checkconf").as_str(),
        &[unbound.to_str().unwrap()],
    );
    run(
        geosteer.to_str().unwrap(),
        &["check", "--config", conf_a.to_str().unwrap()],
    );

    // --- relays first, so the nodes' first probe round finds them up
    let relay_s = relay.to_str().unwrap().to_string();
    for (short, region, _, _, addr) in REGIONS {
        let conf = lab.write(&format!("relay-{short}.toml"), &relay_conf(region, addr));
        run(&relay_s, &["check", "--config", conf.to_str().unwrap()]);
        lab.spawn(
            &format!("relay-{short}"),
            short,
            &[&relay_s, "serve", "--config", conf.to_str().unwrap()],
        );
    }
    for (short, _, _, _, addr) in REGIONS {
        let r = lab.until(
            Duration::from_secs(10),
            || lab.http_get("nodea", addr, 8080, "/health"),
            |t| t.starts_with("HTTP/1.") && t.contains(" 200 "),
        );
        if let Err(last) = r {
            panic!(
                "relay {short} /health not up from node A's namespace: {last:?}\n{}",
                lab.diagnostics()
            );
        }
    }

    // --- parent (root) authoritative, the two geosteer nodes, the resolver
    let nsd_bin = tool("nsd");
    lab.spawn(
        "nsd",
        "root",
        &[&nsd_bin, "-d", "-c", nsd.to_str().unwrap()],
    );
    let g = geosteer.to_str().unwrap().to_string();
    lab.spawn(
        "nodea",
        "nodea",
        &[&g, "serve", "--config", conf_a.to_str().unwrap()],
    );
    lab.spawn(
        "nodeb",
        "nodeb",
        &[&g, "serve", "--config", conf_b.to_str().unwrap()],
    );
    let unbound_bin = tool("unbound");
    lab.spawn(
        "unbound",
        "unbound",
        &[&unbound_bin, "-d", "-c", unbound.to_str().unwrap()],
    );

    let up = Duration::from_secs(15);
    // The root server answers with a referral carrying both glue addresses.
    let at_root = format!("@{ROOT_NS}");
    let referral = || {
        let out = lab.exec(
            "unbound",
            &[
                "dig",
                &at_root,
                "+norecurse",
                "+time=1",
                "+tries=1",
                NAME,
                "A",
            ],
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let r = lab.until(up, referral, |t| {
        t.contains("status: NOERROR")
            && t.contains("AUTHORITY: 2")
            && t.contains(&format!("ns1.example.com.\t86400\tIN\tA\t{NODE_A}"))
            && t.contains(&format!("ns2.example.com.\t86400\tIN\tA\t{NODE_B}"))
    });
    assert!(
        r.is_ok(),
        "NSD does not refer example.com with glue: {r:?}\n{}",
        lab.diagnostics()
    );
    for (node, addr) in [("A", NODE_A), ("B", NODE_B)] {
        // Directly, with an ECS option as Unbound would send it.
        for (client, _, line, want) in CLIENTS {
            let net = line.split(',').next().unwrap();
            let subnet = format!("+subnet={net}");
            let r = lab.until(
                up,
                || lab.dig(client, addr, &["+norecurse", &subnet, NAME, "A"]),
                |r| r.as_ref().map(|a| a == &[REGIONS[want].4]).unwrap_or(false),
            );
            assert!(
                r.is_ok(),
                "node {node} does not steer {subnet} to {}: {r:?}\n{}",
                REGIONS[want].1,
                lab.diagnostics()
            );
            // The scope is the GeoIP network's /24, so Unbound caches the
            // answer for that /24 only.
            let at = format!("@{addr}");
            let out = lab.exec(client, &["dig", &at, "+norecurse", &subnet, NAME, "A"]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains(&format!("CLIENT-SUBNET: {net}/24")),
                "node {node}: ECS scope for {net}:\n{text}"
            );
        }
    }
    lab.assert_running();
    let setup = wall.elapsed();

    // --- 1. through the delegation and Unbound, each client gets its nearest region
    let r = lab.until(up, || lab.resolve("ceu"), |r| r.is_ok());
    assert!(
        r.is_ok(),
        "no resolution through Unbound: {r:?}\n{}",
        lab.diagnostics()
    );
    for round in 0..3 {
        // Interleaved: a wrong ECS scope would leak one client's answer to the next.
        for (client, _, line, want) in CLIENTS {
            let got = lab.resolve(client);
            assert_eq!(
                got.as_deref(),
                Ok(&[REGIONS[want].4.to_string()][..]),
                "round {round}: client {client} ({line}) should get {} through Unbound\n{}",
                REGIONS[want].1,
                lab.diagnostics()
            );
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    // The SRV name is steered too, to the member host name of the region.
    let srv = lab.exec(
        "ceu",
        &[
            "dig",
            &format!("@{UNBOUND}"),
            "+short",
            "+time=2",
            "+tries=1",
            &format!("_turn._udp.{NAME}"),
            "SRV",
        ],
    );
    let srv = String::from_utf8_lossy(&srv.stdout).to_string();
    assert!(
        srv.contains(&format!("3478 eu1.{NAME}.")),
        "SRV for the EU client: {srv:?}"
    );
    let host = lab.dig("ceu", UNBOUND, &[&format!("eu1.{NAME}"), "A"]);
    assert_eq!(
        host.as_deref(),
        Ok(&[REGIONS[0].4.to_string()][..]),
        "SRV target's address"
    );
    say!(
        "setup {:.1?}; steering through root -> NSD referral -> Unbound (ECS) -> geosteer: ok",
        setup
    );

    // --- 2. cut the EU region's link: EU clients move to the next region (us-east)
    let eu_ns = lab.ns("eu");
    let cut = Instant::now();
    ip(&["-n", &eu_ns, "link", "set", "eth0", "down"]);
    let mut seen = Vec::new();
    let r = lab.until(
        FAILOVER_LIMIT,
        || {
            let a = lab.resolve("ceu");
            seen.push(a.clone());
            a
        },
        |r| r.as_ref().map(|a| a == &[REGIONS[1].4]).unwrap_or(false),
    );
    let failover = cut.elapsed();
    let failover = match r {
        Ok(_) => failover,
        Err(last) => panic!(
            "EU client still {last:?} {failover:.1?} after the EU link went down (target {FAILOVER_LIMIT:?})\n{}",
            lab.diagnostics()
        ),
    };
    // Before the switch, answers are EU (or a failed lookup); never a third region.
    for a in seen.iter().flatten() {
        assert!(
            a == &[REGIONS[0].4] || a == &[REGIONS[1].4],
            "EU client got {a:?} during failover"
        );
    }
    say!("failover: EU client moved eu-central -> us-east {failover:.2?} after `ip link set eth0 down` ({} lookups)", seen.len());
    // The two nodes probe independently, so one may lag the other by up to
    // a probe interval; once both agree and Unbound's cache has turned over,
    // the EU client stays moved and the others never moved.
    let settled = lab.settle(&[NODE_A, NODE_B], 0, 1);
    say!(
        "settled: both nodes steer the EU /24 to us-east, {:.2?} after the cut",
        settled - cut
    );
    for _ in 0..3 {
        for (client, _, _, want) in CLIENTS {
            let want = if want == 0 { 1 } else { want };
            assert_eq!(
                lab.resolve(client).as_deref(),
                Ok(&[REGIONS[want].4.to_string()][..]),
                "client {client} while EU is cut"
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    // --- link back up: the EU client returns after `rise` good probes
    let restore = Instant::now();
    ip(&["-n", &eu_ns, "link", "set", "eth0", "up"]);
    let r = lab.until(
        FAILOVER_LIMIT,
        || lab.resolve("ceu"),
        |r| r.as_ref().map(|a| a == &[REGIONS[0].4]).unwrap_or(false),
    );
    let recovery = restore.elapsed();
    assert!(
        r.is_ok(),
        "EU client did not return to eu-central: {r:?}\n{}",
        lab.diagnostics()
    );
    say!("recovery: EU client back on eu-central {recovery:.2?} after link up");
    lab.settle(&[NODE_A, NODE_B], 0, 0);

    // --- 3. geosteer node A dies: resolution goes on through node B
    lab.kill("nodea");
    let killed = Instant::now();
    let mut worst = Duration::ZERO;
    let mut failures = Vec::new();
    for round in 0..5 {
        for (client, _, _, want) in CLIENTS {
            let t = Instant::now();
            // dig's own retry (as a stub resolver would): 2 tries of 2 s.
            let got = lab.dig(client, UNBOUND, &["+tries=2", NAME, "A"]);
            worst = worst.max(t.elapsed());
            if got.as_deref() != Ok(&[REGIONS[want].4.to_string()][..]) {
                failures.push(format!("round {round} {client}: {got:?}"));
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        failures.is_empty(),
        "with node A down, resolution failed: {failures:#?}\n{}",
        lab.diagnostics()
    );
    say!(
        "node A down: 15/15 lookups answered correctly via node B over {:.1?}, slowest {worst:.2?}",
        killed.elapsed()
    );
    // Node B alone still follows health. Cut Asia: Tokyo's next region is
    // eu-central (9,300 km) rather than us-east (10,900 km), although
    // us-east leads `default_regions`: the ranking is by distance.
    let ap_ns = lab.ns("ap");
    let cut = Instant::now();
    ip(&["-n", &ap_ns, "link", "set", "eth0", "down"]);
    let r = lab.until(
        FAILOVER_LIMIT,
        || lab.resolve("cap"),
        |r| r.as_ref().map(|a| a == &[REGIONS[0].4]).unwrap_or(false),
    );
    let ap_failover = cut.elapsed();
    assert!(
        r.is_ok(),
        "node B alone: the Tokyo client did not move to eu-central: {r:?}\n{}",
        lab.diagnostics()
    );
    for (client, _, _, want) in CLIENTS {
        let want = if want == 2 { 0 } else { want };
        assert_eq!(
            lab.resolve(client).as_deref(),
            Ok(&[REGIONS[want].4.to_string()][..]),
            "client {client} while Asia is cut (node B alone)"
        );
    }
    say!("failover with only node B: Tokyo client moved ap-southeast -> eu-central {ap_failover:.2?} after link down");

    // Control: with both nodes gone, answers stop once Unbound's cache
    // expires (TTL 1 s, served down to TTL 0, so about 2 s): the answers
    // above came live from the nodes.
    lab.kill("nodeb");
    let gone = Instant::now();
    let r = lab.until(
        Duration::from_secs(10),
        || lab.dig("ceu", UNBOUND, &[NAME, "A"]),
        |r| r.is_err(),
    );
    assert!(r.is_ok(), "no geosteer node is up, yet still {r:?}");
    say!(
        "both nodes down: answers stopped after {:.2?}",
        gone.elapsed()
    );

    // Everything but the killed nodes ran throughout.
    for (label, c) in lab.children.iter_mut() {
        if !label.starts_with("node") {
            assert!(matches!(c.try_wait(), Ok(None)), "{label} exited");
        }
    }
    say!(
        "summary: failover {failover:.2?} (EU, two nodes), {ap_failover:.2?} (Asia, node B alone), limit {FAILOVER_LIMIT:?}; recovery {recovery:.2?}; total wall time {:.1?}",
        wall.elapsed()
    );
    drop(lab);
}
