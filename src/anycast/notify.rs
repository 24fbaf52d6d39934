//! systemd's notify protocol (`sd_notify`): `READY=1`, `STOPPING=1` and the
//! watchdog keep-alive `WATCHDOG=1`.
//!
//! The decision thread calls [`Notifier::keepalive`] once per loop turn, so
//! keep-alives flow only while decisions are being made: a decision loop
//! stuck anywhere (a speaker that does not answer, a deadlock) stops them, and
//! systemd's `WatchdogSec` restarts the unit.
//!
//! Under ExaBGP the agent is ExaBGP's child, not the unit's main process:
//! `WATCHDOG_PID` then names ExaBGP, and `sd_watchdog_enabled()` would say
//! "not for you". The agent deliberately ignores `WATCHDOG_PID` and pings
//! whenever `WATCHDOG_USEC` is set; the unit has `NotifyAccess=all`, so
//! systemd accepts the agent's messages and kills the whole unit (ExaBGP
//! and its BGP session with it) when they stop.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where `NOTIFY_SOCKET` points.
enum Target {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

/// A connection to the service manager (inert when not run by systemd).
pub struct Notifier {
    sock: Option<(UnixDatagram, Target)>,
    /// Keep-alive period: half of `WATCHDOG_USEC`, as systemd recommends.
    every: Option<Duration>,
    last: Option<Instant>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` and `WATCHDOG_USEC` of the environment.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").map(|p| {
            let p = p.to_string_lossy().into_owned();
            match p.strip_prefix('@') {
                Some(abs) => Target::Abstract(abs.as_bytes().to_vec()),
                None => Target::Path(PathBuf::from(p)),
            }
        });
        let sock = target.and_then(|t| UnixDatagram::unbound().ok().map(|s| (s, t)));
        let every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .and_then(keepalive_period);
        Notifier {
            sock,
            every,
            last: None,
        }
    }

    /// The keep-alive period, if systemd asked for keep-alives.
    pub fn watchdog(&self) -> Option<Duration> {
        self.every
    }

    /// Sends one message; errors are ignored (systemd may be gone).
    pub fn send(&self, msg: &str) {
        let Some((sock, target)) = &self.sock else {
            return;
        };
        match target {
            Target::Path(p) => {
                let _ = sock.send_to(msg.as_bytes(), p);
            }
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                if let Ok(a) = std::os::unix::net::SocketAddr::from_abstract_name(name) {
                    let _ = sock.send_to_addr(msg.as_bytes(), &a);
                }
            }
        }
    }

    /// `WATCHDOG=1` if one is due at `now`.
    pub fn keepalive(&mut self, now: Instant) {
        if let Some(every) = self.every {
            if keepalive_due(self.last, every, now) {
                self.send("WATCHDOG=1");
                self.last = Some(now);
            }
        }
    }
}

/// Half of `WATCHDOG_USEC` (none for 0, which means "disabled").
fn keepalive_period(usec: u64) -> Option<Duration> {
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Whether a keep-alive is due: never sent yet, or `every` has passed.
fn keepalive_due(last: Option<Instant>, every: Duration, now: Instant) -> bool {
    last.is_none_or(|l| now.duration_since(l) >= every)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalives_every_half_watchdog_period() {
        assert_eq!(keepalive_period(0), None);
        assert_eq!(keepalive_period(10_000_000), Some(Duration::from_secs(5)));
        let t0 = Instant::now();
        let every = Duration::from_millis(500);
        assert!(keepalive_due(None, every, t0));
        assert!(!keepalive_due(
            Some(t0),
            every,
            t0 + Duration::from_millis(499)
        ));
        assert!(keepalive_due(Some(t0), every, t0 + every));
    }

    #[test]
    fn messages_reach_the_notify_socket() {
        let dir = std::env::temp_dir().join(format!("gs-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut n = Notifier {
            sock: Some((UnixDatagram::unbound().unwrap(), Target::Path(path.clone()))),
            every: Some(Duration::from_millis(100)),
            last: None,
        };
        n.send("READY=1");
        let t0 = Instant::now();
        n.keepalive(t0);
        n.keepalive(t0 + Duration::from_millis(50)); // not due: nothing sent
        n.keepalive(t0 + Duration::from_millis(100));
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        for _ in 0..3 {
            let k = listener.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..k]).into_owned());
        }
        assert_eq!(got, ["READY=1", "WATCHDOG=1", "WATCHDOG=1"]);
        listener.set_nonblocking(true).unwrap();
        assert!(listener.recv(&mut buf).is_err(), "no fourth message");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
