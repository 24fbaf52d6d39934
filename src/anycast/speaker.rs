//! Thin drivers for the BGP speakers. The agent never speaks BGP itself.
//!
//! * ExaBGP: the agent is an ExaBGP `process`; it writes API commands on
//!   stdout and reads ExaBGP's `done` / `error` acknowledgement of each one on
//!   stdin before sending the next (ExaBGP 4.x acks by default, and a process
//!   that leaves acks unread eventually stalls ExaBGP).
//! * BIRD 2: the agent talks BIRD's control-socket protocol directly (the one
//!   `birdc` speaks): one static protocol per VIP, `enable` to announce,
//!   `disable` to withdraw. BIRD's own export filters and BGP sessions stay in
//!   BIRD's config, where operators expect them.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use super::config::VipConfig;
use super::decide::Route;

/// How long a speaker may take to acknowledge one command.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// A connected speaker.
pub enum Speaker {
    /// ExaBGP over stdio.
    Exabgp(Exabgp),
    /// BIRD over its control socket.
    Bird(Bird),
}

impl Speaker {
    /// Makes `route` true for `vip` at the speaker.
    pub fn apply(&mut self, vip: &VipConfig, route: Route) -> Result<(), String> {
        match self {
            Speaker::Exabgp(x) => x.command(&exabgp_command(vip, route)),
            Speaker::Bird(b) => {
                let verb = match route {
                    Route::Announced { .. } => "enable",
                    Route::Withdrawn => "disable",
                };
                b.command(&format!("{verb} {}", vip.protocol_name()))
                    .map(|_| ())
            }
        }
    }

    /// Whether the speaker has gone away (ExaBGP closed our stdin).
    pub fn gone(&self) -> bool {
        match self {
            Speaker::Exabgp(x) => x.gone,
            Speaker::Bird(_) => false,
        }
    }
}

/// The ExaBGP API command for a route.
pub fn exabgp_command(vip: &VipConfig, route: Route) -> String {
    match route {
        Route::Withdrawn => format!("withdraw route {}", vip.prefix),
        Route::Announced { med } => {
            let mut s = format!("announce route {} next-hop self", vip.prefix);
            if let Some(m) = med {
                s.push_str(&format!(" med {m}"));
            }
            if !vip.communities.is_empty() {
                s.push_str(&format!(" community [{}]", vip.communities.join(" ")));
            }
            s
        }
    }
}

/// ExaBGP's process API on our stdio.
pub struct Exabgp {
    acks: mpsc::Receiver<String>,
    gone: bool,
}

impl Exabgp {
    /// Starts reading stdin (acks; EOF means ExaBGP went away).
    pub fn stdio() -> Exabgp {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("exabgp-acks".into())
            .spawn(move || {
                let stdin = std::io::stdin();
                for line in stdin.lock().lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        return;
                    }
                }
                let _ = tx.send(String::new()); // EOF marker
            })
            .expect("spawn stdin reader");
        Exabgp {
            acks: rx,
            gone: false,
        }
    }

    fn command(&mut self, cmd: &str) -> Result<(), String> {
        if self.gone {
            return Err("ExaBGP has closed the API pipe".into());
        }
        // Acks of earlier commands that timed out are stale: drop them.
        while self.acks.try_recv().is_ok() {}
        let mut out = std::io::stdout().lock();
        writeln!(out, "{cmd}")
            .and_then(|_| out.flush())
            .map_err(|e| format!("cannot write to ExaBGP: {e}"))?;
        drop(out);
        loop {
            match self.acks.recv_timeout(ACK_TIMEOUT) {
                Ok(l) if l.is_empty() => {
                    self.gone = true;
                    return Err("ExaBGP closed the API pipe".into());
                }
                Ok(l) if l.trim() == "done" => return Ok(()),
                Ok(l) if l.trim() == "error" => return Err(format!("ExaBGP refused {cmd:?}")),
                Ok(l) if l.trim() == "shutdown" => {
                    self.gone = true;
                    return Err("ExaBGP is shutting down".into());
                }
                Ok(_) => continue, // other API output (not configured, ignored)
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "no acknowledgement of {cmd:?} from ExaBGP in {ACK_TIMEOUT:?}"
                    ))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.gone = true;
                    return Err("ExaBGP closed the API pipe".into());
                }
            }
        }
    }
}

/// BIRD's control socket (reconnected on error).
pub struct Bird {
    path: PathBuf,
    conn: Option<BufReader<UnixStream>>,
}

impl Bird {
    /// A driver for the socket at `path` (connects lazily).
    pub fn new(path: PathBuf) -> Bird {
        Bird { path, conn: None }
    }

    fn connect(&mut self) -> Result<&mut BufReader<UnixStream>, String> {
        if self.conn.is_none() {
            let s = UnixStream::connect(&self.path)
                .map_err(|e| format!("cannot connect to BIRD at {}: {e}", self.path.display()))?;
            s.set_read_timeout(Some(ACK_TIMEOUT)).ok();
            s.set_write_timeout(Some(ACK_TIMEOUT)).ok();
            let mut r = BufReader::new(s);
            read_reply(&mut r)?; // "0001 BIRD x.y ready."
            self.conn = Some(r);
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    /// Sends one command; returns the reply text or BIRD's error.
    pub fn command(&mut self, cmd: &str) -> Result<String, String> {
        let r = self.connect().and_then(|c| {
            c.get_mut()
                .write_all(format!("{cmd}\n").as_bytes())
                .map_err(|e| format!("cannot write to BIRD: {e}"))?;
            read_reply(c)
        });
        if r.is_err() {
            self.conn = None;
        }
        r.map_err(|e| format!("BIRD {cmd:?}: {e}"))
    }
}

/// Reads one BIRD reply: lines `DDDD-text` continue, `DDDD text` ends it;
/// codes 8xxx and 9xxx are errors.
fn read_reply(r: &mut impl BufRead) -> Result<String, String> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("BIRD closed the control socket".into());
        }
        let line = line.trim_end_matches('\n');
        let b = line.as_bytes();
        if b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) {
            let msg = &line[5..];
            text.push_str(msg);
            text.push('\n');
            if b[4] == b' ' {
                return if matches!(b[0], b'8' | b'9') {
                    Err(msg.to_string())
                } else {
                    Ok(text)
                };
            }
        } else {
            text.push_str(line.trim_start());
            text.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip() -> VipConfig {
        toml::from_str(
            "prefix = \"198.51.100.53/32\"\ncommunities = [\"64512:1\", \"64512:2\"]\n\
             check = { kind = \"dns\", name = \"example.com\" }",
        )
        .unwrap()
    }

    #[test]
    fn exabgp_commands_carry_med_and_communities() {
        let v = vip();
        assert_eq!(
            exabgp_command(&v, Route::Announced { med: Some(50) }),
            "announce route 198.51.100.53/32 next-hop self med 50 community [64512:1 64512:2]"
        );
        assert_eq!(
            exabgp_command(&v, Route::Withdrawn),
            "withdraw route 198.51.100.53/32"
        );
    }

    #[test]
    fn bird_replies_end_on_a_space_and_errors_are_8xxx_9xxx() {
        let ok = "0001 BIRD 2.0.12 ready.\n";
        assert_eq!(
            read_reply(&mut ok.as_bytes()).unwrap(),
            "BIRD 2.0.12 ready.\n"
        );
        let multi = "1002-first\n more\n0011 anycast_x: enabled\n";
        assert_eq!(
            read_reply(&mut multi.as_bytes()).unwrap(),
            "first\nmore\nanycast_x: enabled\n"
        );
        let err = "8003 No protocols match\n";
        assert_eq!(
            read_reply(&mut err.as_bytes()).unwrap_err(),
            "No protocols match"
        );
        assert!(read_reply(&mut "".as_bytes()).is_err());
    }
}
