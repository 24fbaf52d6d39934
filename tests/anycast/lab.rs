//! The anycast test's lab: network namespaces, daemons and files of one run,
//! torn down on drop; the router's view of each VIP; what systemd's notify
//! socket receives.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn ip(args: &[&str]) {
    let s = Command::new("ip").args(args).status().unwrap();
    assert!(s.success(), "ip {args:?} failed");
}

/// A VIP as the router sees it: the prefix and each service node's next hop.
pub struct Vip {
    pub prefix: &'static str,
    /// (`"a"`/`"b"`, the node's address the router peers with).
    pub hops: &'static [(&'static str, &'static str)],
}

/// The namespaces, daemons and files of one run; torn down on drop.
pub struct Lab {
    pub prefix: String,
    pub dir: PathBuf,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
}

impl Lab {
    pub fn new(dir: PathBuf) -> Lab {
        Lab {
            prefix: format!("gsac{}", std::process::id()),
            dir,
            namespaces: vec![],
            children: vec![],
        }
    }

    pub fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    pub fn add_ns(&mut self, short: &str) -> String {
        let ns = self.ns(short);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    pub fn exec(&self, short: &str, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(short)])
            .args(args)
            .output()
            .unwrap()
    }

    pub fn sh(&self, short: &str, script: &str) {
        let o = self.exec(short, &["sh", "-c", script]);
        assert!(
            o.status.success(),
            "{short}: {script}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Starts `args` in namespace `short`, logging to `<name>.log`.
    pub fn spawn(&mut self, name: &str, short: &str, args: &[&str], env: &[(&str, &str)]) -> u32 {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(short)])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let pid = child.id();
        self.children.push((name.to_string(), child));
        pid
    }

    /// Sends `sig` to child `name`; SIGKILL and SIGTERM also reap it.
    pub fn kill(&mut self, name: &str, sig: i32) {
        for (n, c) in &mut self.children {
            if n == name {
                unsafe { libc::kill(c.id() as i32, sig) };
                if sig == libc::SIGKILL || sig == libc::SIGTERM {
                    let _ = c.wait();
                }
            }
        }
        if sig == libc::SIGKILL || sig == libc::SIGTERM {
            self.children.retain(|(n, _)| n != name);
        }
    }

    /// Sends `sig` to child `name` without waiting for it.
    pub fn signal(&self, name: &str, sig: i32) {
        for (n, c) in &self.children {
            if n == name {
                unsafe { libc::kill(c.id() as i32, sig) };
            }
        }
    }

    /// Waits up to `limit` for child `name` to exit by itself; how long it took.
    pub fn wait_exit(&mut self, name: &str, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let i = self.children.iter().position(|(n, _)| n == name)?;
        while start.elapsed() < limit {
            if self.children[i].1.try_wait().unwrap().is_some() {
                self.children.remove(i);
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    fn birdc(&self, ns: &str, ctl: &str, args: &[&str]) -> std::process::Output {
        let sock = self.dir.join(format!("{ctl}.ctl"));
        let mut a = vec!["birdc", "-s", sock.to_str().unwrap()];
        a.extend_from_slice(args);
        self.exec(ns, &a)
    }

    /// Which service nodes the router has a path through for `vip`.
    pub fn paths(&self, vip: &Vip) -> Vec<&'static str> {
        let o = self.birdc(
            "router",
            "router",
            &["show", "route", "for", vip.prefix, "all"],
        );
        let text = String::from_utf8_lossy(&o.stdout);
        vip.hops
            .iter()
            .filter(|(_, h)| text.contains(&format!("BGP.next_hop: {h}")))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Waits until the router's paths for `vip` are `want`; how long it took.
    pub fn wait_paths(&self, vip: &Vip, want: &[&str], limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let got = self.paths(vip);
            if got == want {
                return start.elapsed();
            }
            if start.elapsed() > limit {
                panic!(
                    "router paths for {}: want {want:?}, have {got:?} after {limit:?}\n-- exabgp-a:\n{}\n-- agent-b:\n{}\n-- bird-b:\n{}",
                    vip.prefix,
                    self.log("exabgp-a"),
                    self.log("agent-b"),
                    self.log("bird-b")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The router's BGP session `proto`: (state, since) from `show protocols`.
    pub fn session(&self, proto: &str) -> (String, String) {
        let o = self.birdc("router", "router", &["show", "protocols", proto]);
        let text = String::from_utf8_lossy(&o.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with(proto))
            .unwrap_or_else(|| panic!("router has no protocol {proto}: {text}"));
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(5).unwrap_or(&"").to_string(), f[4].to_string())
    }

    /// A BIRD protocol's state (`up`, `down`, ...) as B's BIRD reports it,
    /// or None while B's BIRD does not answer.
    pub fn bird_b_state(&self, proto: &str) -> Option<String> {
        let o = self.birdc("b", "b", &["show", "protocols", proto]);
        if !o.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&o.stdout);
        let line = text.lines().find(|l| l.starts_with(proto))?;
        line.split_whitespace().nth(3).map(str::to_string)
    }

    /// `dig` from the client to `server`: whether it answered the SOA.
    pub fn client_resolves(&self, server: &str) -> bool {
        let o = self.exec(
            "client",
            &[
                "dig",
                "+short",
                "+time=1",
                "+tries=2",
                &format!("@{server}"),
                "example.com",
                "SOA",
            ],
        );
        String::from_utf8_lossy(&o.stdout).contains("hostmaster.example.com.")
    }

    /// `curl -X POST` from namespace `short`; the HTTP status.
    pub fn post(&self, short: &str, url: &str, token: Option<&str>) -> u16 {
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let mut args = vec!["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"];
        if let Some(a) = &auth {
            args.extend(["-H", a.as_str()]);
        }
        args.extend(["-X", "POST", url]);
        let o = self.exec(short, &args);
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// PIDs of processes whose command line names this lab's directory and
    /// that are not the lab's own children.
    pub fn strays(&self) -> Vec<String> {
        let o = Command::new("pgrep")
            .args(["-af", &self.dir.display().to_string()])
            .output()
            .unwrap();
        let ours: Vec<u32> = self.children.iter().map(|(_, c)| c.id()).collect();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| {
                let pid: u32 = l.split_whitespace().next().unwrap().parse().unwrap();
                !ours.contains(&pid) && pid != std::process::id()
            })
            .map(str::to_string)
            .collect()
    }

    /// Stops every child with SIGTERM, in start order reversed, and asserts
    /// that nothing of the lab is left running.
    pub fn stop_all_and_check(&mut self) {
        while let Some((name, mut c)) = self.children.pop() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while c.try_wait().unwrap().is_none() {
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = c.kill();
                    panic!("{name} ignored SIGTERM for 10 s");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let left = self.strays();
        assert!(left.is_empty(), "processes outlived the test: {left:?}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
            let _ = c.wait();
        }
        // ExaBGP's agent is ExaBGP's child, not ours: on a failed run
        // whatever still names a file of this lab goes too.
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", &self.dir.display().to_string()])
            .status();
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// What systemd's notify socket would receive (`NOTIFY_SOCKET`): the test
/// stands where systemd stands and records every message with its time.
pub struct NotifySocket {
    pub path: PathBuf,
    got: std::sync::Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    pub fn bind(path: PathBuf) -> NotifySocket {
        use std::os::unix::fs::PermissionsExt;
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        // Like /run/systemd/notify: any process of the unit may send.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                g.lock().unwrap().push((Instant::now(), msg));
            }
        });
        NotifySocket { path, got }
    }

    pub fn count(&self, msg: &str) -> usize {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| m == msg)
            .count()
    }

    /// Waits until `msg` has arrived more than `after` times.
    pub fn wait_more(&self, msg: &str, after: usize, limit: Duration) {
        let start = Instant::now();
        while self.count(msg) <= after {
            assert!(
                start.elapsed() < limit,
                "{}: no new {msg:?} in {limit:?} (have {})",
                self.path.display(),
                self.count(msg)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts no keep-alive arrives during `window` (after `settle`, which
    /// lets one already on its way land): the agent is stuck.
    pub fn assert_starved(&self, settle: Duration, window: Duration, what: &str) {
        std::thread::sleep(settle);
        let before = self.count("WATCHDOG=1");
        std::thread::sleep(window);
        let after = self.count("WATCHDOG=1");
        assert_eq!(
            before, after,
            "{what}: keep-alives went on for {window:?} while the agent was stuck"
        );
    }
}

/// The processes whose command line contains `pattern`.
pub fn pids_of(pattern: &str) -> Vec<i32> {
    let o = Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Waits for exactly one process matching `pattern` other than `not`.
pub fn wait_pid(pattern: &str, not: Option<i32>, limit: Duration) -> i32 {
    let start = Instant::now();
    loop {
        let p: Vec<i32> = pids_of(pattern)
            .into_iter()
            .filter(|p| Some(*p) != not)
            .collect();
        if p.len() == 1 {
            return p[0];
        }
        assert!(
            start.elapsed() < limit,
            "processes matching {pattern:?} (not {not:?}): {p:?} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
