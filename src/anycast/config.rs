//! The anycast agent's TOML configuration, validated with every problem's path.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use crate::config::{ConfigError, ConfigErrors};

/// The whole agent file (`geosteer anycast --config FILE`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnycastConfig {
    /// Which BGP speaker carries the routes.
    pub speaker: SpeakerConfig,
    /// Prometheus metrics and state endpoint (`/metrics`, `/v1/state`) and
    /// the admin switch (`POST /v1/drain`, `/v1/undrain`); none when absent.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// File holding the bearer token the admin switch requires (at least 16
    /// characters). Without it the switch answers only loopback clients.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// While this file exists every VIP is withdrawn (maintenance drain).
    #[serde(default)]
    pub drain_file: Option<PathBuf>,
    /// Flap damping shared by every VIP.
    #[serde(default)]
    pub flap: FlapConfig,
    /// The service addresses.
    #[serde(rename = "vip", default)]
    pub vips: Vec<VipConfig>,
}

/// The speaker the agent drives.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SpeakerConfig {
    /// The agent is an ExaBGP `process`: commands on stdout, acks on stdin.
    Exabgp,
    /// BIRD 2 through its control socket: one static protocol per VIP,
    /// enabled to announce, disabled to withdraw.
    Bird {
        /// BIRD's control socket (`bird -s`).
        socket: PathBuf,
    },
}

/// Hold-down after repeated flaps (same semantics as the DNS health tracker).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlapConfig {
    /// Withdrawals within `window_ms` that count as flapping.
    pub threshold: u32,
    /// The counting window.
    pub window_ms: u64,
    /// First extra hold-down; doubles with every further flap.
    pub holddown_ms: u64,
    /// Cap of the hold-down.
    pub max_holddown_ms: u64,
}

impl Default for FlapConfig {
    fn default() -> Self {
        FlapConfig {
            threshold: 3,
            window_ms: 60_000,
            holddown_ms: 10_000,
            max_holddown_ms: 300_000,
        }
    }
}

/// One service address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipConfig {
    /// The announced prefix: a /32 or /128 (`198.51.100.53/32`).
    pub prefix: IpNet,
    /// The local check that decides announcement.
    pub check: CheckConfig,
    /// Milliseconds between checks.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Per-check timeout (must be below the interval).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Consecutive passes before announcing.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures before withdrawing.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// MULTI_EXIT_DISC to announce with (higher = less preferred).
    #[serde(default)]
    pub med: Option<u32>,
    /// BGP communities, `ASN:VALUE`.
    #[serde(default)]
    pub communities: Vec<String>,
    /// Graceful shift: before withdrawing for a failed check, re-announce
    /// with this worse MED for `shift_ms` so routers move traffic first
    /// (only when the check failure is a drain, not a hard failure).
    #[serde(default)]
    pub drain_med: Option<u32>,
    /// How long the worse MED is announced before the drain withdraws.
    #[serde(default)]
    pub drain_shift_ms: u64,
    /// BIRD: the static protocol that carries this VIP (default `anycast_<addr>`).
    #[serde(default)]
    pub bird_protocol: Option<String>,
}

fn default_interval() -> u64 {
    1000
}
fn default_timeout() -> u64 {
    500
}
fn default_rise() -> u32 {
    3
}
fn default_fall() -> u32 {
    2
}

/// A local health check.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum CheckConfig {
    /// A real DNS query sent to the VIP (port 53 unless `port` is set); passes
    /// on an authoritative NOERROR answer with at least one record.
    Dns {
        /// The name to ask for (a name of the node's zone).
        name: String,
        /// The type to ask for (`A`, `AAAA`, `SOA`, ...).
        #[serde(default = "default_qtype")]
        qtype: String,
        /// The port the DNS node listens on at the VIP.
        #[serde(default = "default_dns_port")]
        port: u16,
    },
    /// A relay: its `/health` reports ok and a STUN Binding to the VIP answers.
    Relay {
        /// The relay's health URL.
        health_url: String,
        /// The STUN port at the VIP.
        #[serde(default = "default_stun_port")]
        stun_port: u16,
    },
}

fn default_qtype() -> String {
    "SOA".into()
}
fn default_dns_port() -> u16 {
    53
}
fn default_stun_port() -> u16 {
    3478
}

impl VipConfig {
    /// The address checks are sent to.
    pub fn addr(&self) -> IpAddr {
        self.prefix.addr()
    }

    /// BIRD static protocol name of this VIP.
    pub fn protocol_name(&self) -> String {
        self.bird_protocol.clone().unwrap_or_else(|| {
            let a = self.addr().to_string().replace(['.', ':'], "_");
            format!("anycast_{a}")
        })
    }
}

impl AnycastConfig {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<AnycastConfig, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::single(ConfigError::file(path, None, format!("cannot read: {e}")))
        })?;
        Self::from_str(&text, path)
    }

    /// Parses and validates text (errors name `path`).
    pub fn from_str(text: &str, path: &Path) -> Result<AnycastConfig, ConfigErrors> {
        let c: AnycastConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| crate::config::line_of(text, s.start));
            ConfigErrors::single(ConfigError::file(path, line, e.message().to_string()))
        })?;
        c.validate()?;
        Ok(c)
    }

    /// Every problem, with its key path.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errs = ConfigErrors::default();
        if self.vips.is_empty() {
            errs.push("vip", "at least one [[vip]] is required");
        }
        if let SpeakerConfig::Bird { socket } = &self.speaker {
            if socket.as_os_str().is_empty() {
                errs.push("speaker.socket", "BIRD control socket path is empty");
            }
        }
        if let Some(t) = &self.admin_token_file {
            if t.as_os_str().is_empty() {
                errs.push("admin_token_file", "path is empty");
            }
        }
        let f = &self.flap;
        if f.threshold == 0 {
            errs.push("flap.threshold", "must be at least 1");
        }
        if f.max_holddown_ms < f.holddown_ms {
            errs.push("flap.max_holddown_ms", "must not be below flap.holddown_ms");
        }
        let mut seen = std::collections::HashSet::new();
        for (i, v) in self.vips.iter().enumerate() {
            let p = |k: &str| format!("vip[{i}].{k}");
            if v.prefix.prefix_len() != v.prefix.max_prefix_len() {
                errs.push(
                    p("prefix"),
                    format!(
                        "{} is not a host route: anycast service addresses are /32 (IPv4) or /128 (IPv6)",
                        v.prefix
                    ),
                );
            }
            if !seen.insert(v.prefix) {
                errs.push(p("prefix"), format!("{} is listed twice", v.prefix));
            }
            if v.interval_ms < 50 {
                errs.push(p("interval_ms"), "must be at least 50");
            }
            if v.timeout_ms == 0 || v.timeout_ms >= v.interval_ms {
                errs.push(
                    p("timeout_ms"),
                    format!("must be between 1 and interval_ms - 1 ({})", v.interval_ms),
                );
            }
            if v.rise == 0 {
                errs.push(p("rise"), "must be at least 1");
            }
            if v.fall == 0 {
                errs.push(p("fall"), "must be at least 1");
            }
            for (j, c) in v.communities.iter().enumerate() {
                if !valid_community(c) {
                    errs.push(
                        format!("vip[{i}].communities[{j}]"),
                        format!("{c:?} is not ASN:VALUE with both parts 0..65535"),
                    );
                }
            }
            if matches!(self.speaker, SpeakerConfig::Bird { .. }) {
                // The agent only enables and disables BIRD's static protocol:
                // route attributes live in bird.conf, not here.
                let proto = v.protocol_name();
                if v.drain_med.is_some() {
                    errs.push(
                        p("drain_med"),
                        "the graceful MED shift needs the ExaBGP speaker; with BIRD set MED in bird.conf",
                    );
                }
                if v.med.is_some() {
                    errs.push(
                        p("med"),
                        format!("with BIRD, set MED in bird.conf: `route {} via \"lo\" {{ bgp_med = N; }}` in protocol static {proto}", v.prefix),
                    );
                }
                if !v.communities.is_empty() {
                    errs.push(
                        p("communities"),
                        format!("with BIRD, set communities in bird.conf: `bgp_community.add((ASN, VALUE));` on the route in protocol static {proto}"),
                    );
                }
            }
            if v.drain_med.is_some() && v.drain_shift_ms == 0 {
                errs.push(
                    p("drain_shift_ms"),
                    "set how long drain_med is announced before withdrawal",
                );
            }
            if let Some(name) = &v.bird_protocol {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    errs.push(p("bird_protocol"), "letters, digits and '_' only");
                }
            }
            match &v.check {
                CheckConfig::Dns { name, qtype, port } => {
                    if hickory_proto::rr::Name::from_ascii(name).is_err() {
                        errs.push(p("check.name"), format!("{name:?} is not a domain name"));
                    }
                    if qtype.parse::<hickory_proto::rr::RecordType>().is_err() {
                        errs.push(p("check.qtype"), format!("{qtype:?} is not a record type"));
                    }
                    if *port == 0 {
                        errs.push(p("check.port"), "must not be 0");
                    }
                }
                CheckConfig::Relay {
                    health_url,
                    stun_port,
                } => {
                    if !(health_url.starts_with("http://") || health_url.starts_with("https://")) {
                        errs.push(
                            p("check.health_url"),
                            format!("{health_url:?} is not an http(s) URL"),
                        );
                    }
                    if *stun_port == 0 {
                        errs.push(p("check.stun_port"), "must not be 0");
                    }
                }
            }
        }
        errs.into_result()
    }
}

fn valid_community(c: &str) -> bool {
    let mut it = c.split(':');
    let ok = |s: Option<&str>| s.is_some_and(|s| s.parse::<u16>().is_ok());
    ok(it.next()) && ok(it.next()) && it.next().is_none()
}

/// Whether a TOML text is an anycast agent file (its `[speaker]` table).
pub fn looks_like_anycast(text: &str) -> bool {
    toml::from_str::<toml::Table>(text)
        .is_ok_and(|t| t.contains_key("speaker") && t.contains_key("vip"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
speaker = { kind = "exabgp" }
metrics_listen = "127.0.0.1:9180"
drain_file = "/run/geosteer/anycast.drain"
[[vip]]
prefix = "198.51.100.53/32"
check = { kind = "dns", name = "turn.example.com", qtype = "A" }
interval_ms = 250
timeout_ms = 200
rise = 2
fall = 2
med = 100
communities = ["64512:100"]
[[vip]]
prefix = "2001:db8::53/128"
check = { kind = "relay", health_url = "http://127.0.0.1:8080/health" }
"#;

    #[test]
    fn a_complete_file_parses_with_defaults() {
        let c = AnycastConfig::from_str(GOOD, Path::new("a.toml")).unwrap();
        assert_eq!(c.vips.len(), 2);
        assert_eq!(c.vips[1].rise, 3);
        assert_eq!(c.vips[1].protocol_name(), "anycast_2001_db8__53");
        assert!(looks_like_anycast(GOOD));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let bad = r#"
speaker = { kind = "bird", socket = "" }
[[vip]]
prefix = "198.51.100.0/24"
check = { kind = "dns", name = "bad name!", qtype = "BOGUS" }
interval_ms = 100
timeout_ms = 100
rise = 0
med = 10
communities = ["70000:1"]
[[vip]]
prefix = "198.51.100.0/24"
check = { kind = "relay", health_url = "ftp://x" }
"#;
        let e = AnycastConfig::from_str(bad, Path::new("a.toml")).unwrap_err();
        let text = e.to_string();
        for want in [
            "speaker.socket",
            "vip[0].prefix: 198.51.100.0/24 is not a host route",
            "vip[0].timeout_ms",
            "vip[0].rise",
            "vip[0].communities[0]",
            "vip[0].med: with BIRD, set MED in bird.conf",
            "vip[0].communities: with BIRD, set communities in bird.conf",
            "vip[0].check.name",
            "vip[0].check.qtype",
            "vip[1].prefix: 198.51.100.0/24 is listed twice",
            "vip[1].check.health_url",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = AnycastConfig::from_str(
            "speaker = { kind = \"exabgp\" }\n[[vip]\n",
            Path::new("a.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("a.toml:2"), "{e}");
    }
}
