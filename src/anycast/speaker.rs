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
use super::plan::Command;

/// How long a speaker may take to acknowledge one command.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// A speaker command that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong, for logs.
    pub error: String,
    /// False when the speaker did not reply at all within [`ACK_TIMEOUT`]
    /// (hung); true for a refusal, an error reply or a speaker not there.
    pub answered: bool,
}

impl Failure {
    fn answered(error: impl Into<String>) -> Failure {
        Failure {
            error: error.into(),
            answered: true,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)
    }
}

/// Why ExaBGP is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// ExaBGP said `shutdown`: it is stopping and its BGP sessions with it.
    Shutdown,
    /// Our stdin reached EOF: ExaBGP died (or closed the pipe).
    Eof,
}

/// A connected speaker.
pub enum Speaker {
    /// ExaBGP over stdio.
    Exabgp(Exabgp),
    /// BIRD over its control socket.
    Bird(Bird),
}

impl Speaker {
    /// Makes `route` true for `vip` at the speaker.
    pub fn apply(&mut self, vip: &VipConfig, route: Route) -> Result<(), Failure> {
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

    /// What the speaker carries for each VIP, when it can tell: BIRD says
    /// whether each VIP's static protocol is enabled. ExaBGP keeps its RIB
    /// for as long as it lives, and the agent lives and dies with it:
    /// `None`.
    pub fn carried(&mut self, vips: &[VipConfig]) -> Result<Option<Vec<bool>>, Failure> {
        match self {
            Speaker::Exabgp(_) => Ok(None),
            Speaker::Bird(b) => b.carried(vips).map(Some),
        }
    }
}

/// Work for the speaker thread.
pub enum Job {
    /// Send one command.
    Apply(Command),
    /// Read back what the speaker carries.
    ReadBack,
}

/// What the speaker thread (and ExaBGP's pipe) report.
pub enum Report {
    /// A command's outcome.
    Applied(Command, Result<(), Failure>),
    /// A read-back: per VIP, whether the speaker carries its route.
    Carried(Result<Vec<bool>, Failure>),
    /// ExaBGP is gone.
    Gone(Gone),
}

/// Runs `speaker` on its own thread: a speaker that is slow or hung never
/// blocks the decision loop. Jobs are done in order; each outcome is sent
/// to `events`. The thread ends when the job sender is dropped.
pub fn spawn<E: From<Report> + Send + 'static>(
    mut speaker: Speaker,
    vips: Vec<VipConfig>,
    events: mpsc::Sender<E>,
) -> mpsc::Sender<Job> {
    let (tx, jobs) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("anycast-speaker".into())
        .spawn(move || {
            for job in jobs {
                let report = match job {
                    Job::Apply(c) => Report::Applied(c, speaker.apply(&vips[c.vip], c.route)),
                    Job::ReadBack => match speaker.carried(&vips) {
                        Ok(None) => continue,
                        Ok(Some(v)) => Report::Carried(Ok(v)),
                        Err(e) => Report::Carried(Err(e)),
                    },
                };
                if events.send(report.into()).is_err() {
                    return;
                }
            }
        })
        .expect("spawn speaker thread");
    tx
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
}

impl Exabgp {
    /// Starts reading stdin: acknowledgements go to the command in flight;
    /// EOF (ExaBGP died) or ExaBGP's `shutdown` calls `on_gone` at once,
    /// whether or not a command is waiting.
    pub fn stdio(on_gone: impl FnOnce(Gone) + Send + 'static) -> Exabgp {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("exabgp-stdin".into())
            .spawn(move || {
                let stdin = std::io::stdin();
                for line in stdin.lock().lines() {
                    let Ok(line) = line else { break };
                    if is_shutdown(&line) {
                        on_gone(Gone::Shutdown);
                        return; // drops `tx`: a waiting command ends at once
                    }
                    if tx.send(line).is_err() {
                        return;
                    }
                }
                on_gone(Gone::Eof);
            })
            .expect("spawn stdin reader");
        Exabgp { acks: rx }
    }

    fn command(&mut self, cmd: &str) -> Result<(), Failure> {
        let gone = || Failure::answered("ExaBGP has closed the API pipe");
        // Acks of earlier commands that timed out are stale: drop them.
        loop {
            match self.acks.try_recv() {
                Ok(_) => continue,
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return Err(gone()),
            }
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "{cmd}")
            .and_then(|_| out.flush())
            .map_err(|e| Failure::answered(format!("cannot write to ExaBGP: {e}")))?;
        drop(out);
        loop {
            match self.acks.recv_timeout(ACK_TIMEOUT) {
                Ok(l) if l.trim() == "done" => return Ok(()),
                Ok(l) if l.trim() == "error" => {
                    return Err(Failure::answered(format!("ExaBGP refused {cmd:?}")))
                }
                Ok(_) => continue, // other API output (not configured, ignored)
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(Failure {
                        error: format!(
                            "no acknowledgement of {cmd:?} from ExaBGP in {ACK_TIMEOUT:?}"
                        ),
                        answered: false,
                    })
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(gone()),
            }
        }
    }
}

/// ExaBGP's notice that it is stopping: `shutdown PID PPID` from the text
/// encoder (4.2), or the JSON encoder's `"notification": "shutdown"`.
fn is_shutdown(line: &str) -> bool {
    line.split_whitespace().next() == Some("shutdown")
        || (line.starts_with('{') && line.contains("\"notification\": \"shutdown\""))
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

    fn connect(&mut self) -> Result<&mut BufReader<UnixStream>, Failure> {
        if self.conn.is_none() {
            let s = UnixStream::connect(&self.path).map_err(|e| {
                Failure::answered(format!(
                    "cannot connect to BIRD at {}: {e}",
                    self.path.display()
                ))
            })?;
            s.set_read_timeout(Some(ACK_TIMEOUT)).ok();
            s.set_write_timeout(Some(ACK_TIMEOUT)).ok();
            let mut r = BufReader::new(s);
            read_reply(&mut r)?.map_err(bird_says)?; // "0001 BIRD x.y ready."
            self.conn = Some(r);
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    /// Sends one command; returns the reply text or BIRD's error. A kept
    /// connection that turns out dead (BIRD restarted since) is replaced
    /// and the command sent once more.
    pub fn command(&mut self, cmd: &str) -> Result<String, Failure> {
        let r = match self.send(cmd) {
            Err((_, true)) => self.send(cmd),
            r => r,
        };
        r.map_err(|(e, _)| Failure {
            error: format!("BIRD {cmd:?}: {}", e.error),
            answered: e.answered,
        })
    }

    /// One attempt; the error says whether it is worth another on a fresh
    /// connection: a kept one broke (not BIRD refusing the command, which
    /// leaves the connection usable, nor BIRD not answering).
    fn send(&mut self, cmd: &str) -> Result<String, (Failure, bool)> {
        let fresh = self.conn.is_none();
        let c = self.connect().map_err(|e| (e, false))?;
        let r = c
            .get_mut()
            .write_all(format!("{cmd}\n").as_bytes())
            .map_err(|e| io_failure("write", &e))
            .and_then(|_| read_reply(c));
        match r {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(refusal)) => Err((bird_says(refusal), false)),
            Err(e) => {
                self.conn = None;
                let retry = e.answered && !fresh;
                Err((e, retry))
            }
        }
    }

    /// Whether each VIP's static protocol is enabled (`show protocols`).
    pub fn carried(&mut self, vips: &[VipConfig]) -> Result<Vec<bool>, Failure> {
        let text = self.command("show protocols")?;
        let states = protocol_states(&text);
        vips.iter()
            .map(|v| {
                let name = v.protocol_name();
                match states.iter().find(|(n, _)| *n == name) {
                    // `stop` is a protocol on its way down after `disable`.
                    Some((_, state)) => Ok(matches!(*state, "up" | "start")),
                    None => Err(Failure::answered(format!(
                        "BIRD has no protocol {name} for {}: add a static protocol to \
                         bird.conf (docs/examples/anycast/bird.conf)",
                        v.prefix
                    ))),
                }
            })
            .collect()
    }
}

/// `(name, state)` of every line of a `show protocols` reply
/// (`Name Proto Table State Since Info`).
fn protocol_states(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .filter_map(|l| {
            let mut t = l.split_whitespace();
            let name = t.next()?;
            let state = t.nth(2)?;
            Some((name, state))
        })
        .collect()
}

fn io_failure(what: &str, e: &std::io::Error) -> Failure {
    use std::io::ErrorKind::{TimedOut, WouldBlock};
    Failure {
        error: format!("{what}: {e}"),
        answered: !matches!(e.kind(), WouldBlock | TimedOut),
    }
}

/// BIRD's own error reply as a failure (an answer).
fn bird_says(msg: String) -> Failure {
    Failure::answered(format!("BIRD says: {msg}"))
}

/// Reads one BIRD reply: lines `DDDD-text` continue, `DDDD text` ends it.
/// The outer error is the connection failing; the inner one is BIRD's error
/// reply (codes 8xxx and 9xxx), with the connection still usable.
fn read_reply(r: &mut impl BufRead) -> Result<Result<String, String>, Failure> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).map_err(|e| io_failure("read", &e))?;
        if n == 0 {
            return Err(Failure::answered("BIRD closed the control socket"));
        }
        let line = line.trim_end_matches('\n');
        let b = line.as_bytes();
        if b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) {
            let msg = &line[5..];
            text.push_str(msg);
            text.push('\n');
            if b[4] == b' ' {
                return Ok(if matches!(b[0], b'8' | b'9') {
                    Err(msg.to_string())
                } else {
                    Ok(text)
                });
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
            read_reply(&mut ok.as_bytes()).unwrap().unwrap(),
            "BIRD 2.0.12 ready.\n"
        );
        let multi = "1002-first\n more\n0011 anycast_x: enabled\n";
        assert_eq!(
            read_reply(&mut multi.as_bytes()).unwrap().unwrap(),
            "first\nmore\nanycast_x: enabled\n"
        );
        let err = "8003 No protocols match\n";
        assert_eq!(
            read_reply(&mut err.as_bytes()).unwrap().unwrap_err(),
            "No protocols match"
        );
        assert!(read_reply(&mut "".as_bytes()).is_err());
    }

    #[test]
    fn show_protocols_gives_each_protocol_state() {
        let reply = "Name       Proto      Table      State  Since         Info\n\
                     device1    Device     ---        up     02:10:00.000  \n\
                     anycast_dns Static    master4    down   02:10:00.000  \n\
                     up         BGP        ---        up     02:10:01.000  Established\n";
        assert_eq!(
            protocol_states(reply),
            [
                ("Name", "State"),
                ("device1", "up"),
                ("anycast_dns", "down"),
                ("up", "up")
            ]
        );
    }

    #[test]
    fn exabgp_shutdown_notices_are_recognised() {
        assert!(is_shutdown("shutdown 4242 1"));
        assert!(is_shutdown("shutdown"));
        assert!(is_shutdown(
            "{ \"exabgp\": \"4.0.1\", \"type\": \"notification\", \"notification\": \"shutdown\" }"
        ));
        assert!(!is_shutdown("done"));
        assert!(!is_shutdown("shutdownx"));
    }
}
