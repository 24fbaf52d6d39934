//! Relay configuration: a TOML file deserialised into [`RelayConfig`] and
//! checked by [`RelayConfig::validate`], which reports every problem with the
//! key path it concerns (e.g. `limits.max_bps: must be > 0`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

mod listen;
mod membership;
pub use listen::{ListenConfig, Mode, ProxyProtocol, StreamListener};
pub use membership::MembershipConfig;

/// One configuration problem, tied to the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `limits.max_bps`.
    pub path: String,
    /// Human readable description of the problem.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Complete relay configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Region name reported in `/health` (e.g. `eu-west`).
    pub region: String,
    /// STUN realm used for long-term credentials.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// SOFTWARE attribute value; empty disables the attribute.
    #[serde(default = "default_software")]
    pub software: String,
    /// Listening sockets.
    #[serde(default)]
    pub listen: ListenConfig,
    /// Relay (allocation) addresses and ports.
    #[serde(default)]
    pub relay: RelayAddrConfig,
    /// Credentials and nonces.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Allocation, permission and channel lifetimes.
    #[serde(default)]
    pub lifetimes: LifetimeConfig,
    /// Which peer addresses clients may reach through the relay.
    #[serde(default)]
    pub peer_policy: PeerPolicyConfig,
    /// Quotas and rate limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Health, metrics, drain and admin.
    #[serde(default)]
    pub operations: OperationsConfig,
    /// Self-registration in etcd (fleet membership); absent: not registered.
    #[serde(default)]
    pub membership: Option<MembershipConfig>,
}

fn default_realm() -> String {
    "geosteer".into()
}
fn default_software() -> String {
    concat!("geosteer-relay/", env!("CARGO_PKG_VERSION")).into()
}

/// Where relayed-transport sockets live and what address is advertised.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayAddrConfig {
    /// Local addresses relay sockets bind to: at most one IPv4 and one IPv6.
    /// When empty, the first concrete (non-wildcard) UDP listener address is used.
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    /// Advertised IPv4 address (1:1 NAT); defaults to the IPv4 relay address.
    #[serde(default)]
    pub external_ip: Option<IpAddr>,
    /// Advertised IPv6 address; defaults to the IPv6 relay address.
    #[serde(default)]
    pub external_ipv6: Option<IpAddr>,
    /// Lowest relay port (inclusive).
    #[serde(default = "default_port_min")]
    pub port_min: u16,
    /// Highest relay port (inclusive).
    #[serde(default = "default_port_max")]
    pub port_max: u16,
    /// Event loops (one thread each, shared-nothing): each binds its own
    /// UDP listeners with `SO_REUSEPORT` and owns the allocations it creates.
    /// Default: the CPUs this process may run on (affinity mask and cgroup
    /// quota). Changing it needs a restart.
    #[serde(default)]
    pub loops: Option<usize>,
    /// Threads of the accept stage, which owns the TCP, TLS and auto
    /// listeners, reads a connection until its protocol is known and its TLS
    /// handshake done, and only then hands it to an event loop (default 1:
    /// handshakes never take CPU from more than one core). Needs a restart.
    #[serde(default = "default_handshake_threads")]
    pub handshake_threads: usize,
}

fn default_handshake_threads() -> usize {
    1
}

/// Most event loops a relay runs.
pub const MAX_LOOPS: usize = 1024;

fn default_port_min() -> u16 {
    49152
}
fn default_port_max() -> u16 {
    65535
}

impl Default for RelayAddrConfig {
    fn default() -> Self {
        Self {
            ips: Vec::new(),
            external_ip: None,
            external_ipv6: None,
            port_min: default_port_min(),
            port_max: default_port_max(),
            loops: None,
            handshake_threads: default_handshake_threads(),
        }
    }
}

/// Credentials.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Static long-term users: name → password.
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    /// TURN REST shared secrets (coturn `static-auth-secret`); all are accepted,
    /// which allows rotation.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Key for stateless nonces. Relays of one fleet should share it so that
    /// they accept each other's nonces. When absent a random key is used.
    #[serde(default)]
    pub nonce_key: Option<String>,
    /// Nonce validity in seconds (default 600); older nonces get 438.
    #[serde(default = "default_nonce_ttl")]
    pub nonce_ttl: u64,
}

fn default_nonce_ttl() -> u64 {
    600
}

/// Lifetimes in seconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifetimeConfig {
    /// Allocation lifetime when the client asks for less or nothing (600).
    #[serde(default = "default_alloc")]
    pub default: u32,
    /// Cap for requested allocation lifetimes (3600).
    #[serde(default = "default_max_alloc")]
    pub max: u32,
    /// Permission lifetime (300).
    #[serde(default = "default_perm")]
    pub permission: u32,
    /// Channel binding lifetime (600).
    #[serde(default = "default_alloc")]
    pub channel: u32,
}

fn default_alloc() -> u32 {
    600
}
fn default_max_alloc() -> u32 {
    3600
}
fn default_perm() -> u32 {
    300
}

impl Default for LifetimeConfig {
    fn default() -> Self {
        Self {
            default: default_alloc(),
            max: default_max_alloc(),
            permission: default_perm(),
            channel: default_alloc(),
        }
    }
}

/// Peer address policy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerPolicyConfig {
    /// Allow loopback peers (127.0.0.0/8, ::1 and their mapped forms). Tests only.
    #[serde(default)]
    pub allow_loopback_peers: bool,
    /// Networks allowed even if they fall in a built-in special-purpose range.
    #[serde(default)]
    pub allow: Vec<IpNet>,
    /// Networks always denied (checked first).
    #[serde(default)]
    pub deny: Vec<IpNet>,
}

/// Quotas and rate limits. `0` means "unlimited" where noted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Allocations per user (0 = unlimited); exceeding gives 486. For TURN
    /// REST usernames (`expiry:user`) the user part counts, so freshly minted
    /// credentials of one user share the quota. Reserved EVEN-PORT ports count.
    #[serde(default = "default_per_user")]
    pub allocations_per_user: u32,
    /// Allocations per client IP (0 = unlimited); exceeding gives 486.
    #[serde(default = "default_per_ip")]
    pub allocations_per_ip: u32,
    /// Total allocations (capacity, > 0); exceeding gives 508 (or 300).
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// Bits per second per allocation, both directions together (> 0).
    #[serde(default = "default_max_bps")]
    pub max_bps: u64,
    /// Total relayed bits per second (> 0).
    #[serde(default = "default_total_bps")]
    pub total_bps: u64,
    /// 401/438 replies per second per source IPv4 address or IPv6 /64, with a
    /// burst of twice that (0 = unlimited). The default lets a carrier-grade
    /// NAT address start hundreds of allocations per second.
    #[serde(default = "default_unauth")]
    pub unauthorized_per_ip: u32,
    /// Binding responses per second per UDP source IPv4 address or IPv6 /64,
    /// burst twice that (0 = unlimited).
    #[serde(default = "default_bindings")]
    pub bindings_per_ip: u32,
    /// Permissions per allocation; exceeding gives 508.
    #[serde(default = "default_perms")]
    pub permissions_per_allocation: u32,
    /// Channels per allocation; exceeding gives 508.
    #[serde(default = "default_perms")]
    pub channels_per_allocation: u32,
    /// Open TCP/TLS connections in all, handshaking or established (> 0).
    /// A connection over the limit is closed at once. Default: twice
    /// `capacity`, at least 1024.
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// Open TCP/TLS connections per client IP address (0 = unlimited).
    #[serde(default = "default_conns_per_ip")]
    pub connections_per_ip: u32,
    /// Milliseconds a new connection has to show its protocol and finish
    /// its TLS handshake before it is closed (> 0).
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_ms: u64,
}

fn default_conns_per_ip() -> u32 {
    200
}
fn default_handshake_timeout() -> u64 {
    10_000
}

impl LimitsConfig {
    /// `max_connections`, or its default: twice the capacity, at least 1024.
    pub fn max_connections(&self) -> u32 {
        self.max_connections
            .unwrap_or_else(|| self.capacity.saturating_mul(2).max(1024))
    }
}

fn default_capacity() -> u32 {
    10_000
}
fn default_max_bps() -> u64 {
    20_000_000
}
fn default_total_bps() -> u64 {
    10_000_000_000
}
fn default_unauth() -> u32 {
    500
}
fn default_bindings() -> u32 {
    500
}
fn default_per_user() -> u32 {
    50
}
fn default_per_ip() -> u32 {
    200
}
fn default_perms() -> u32 {
    64
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            allocations_per_user: default_per_user(),
            allocations_per_ip: default_per_ip(),
            capacity: default_capacity(),
            max_bps: default_max_bps(),
            total_bps: default_total_bps(),
            unauthorized_per_ip: default_unauth(),
            bindings_per_ip: default_bindings(),
            permissions_per_allocation: default_perms(),
            channels_per_allocation: default_perms(),
            max_connections: None,
            connections_per_ip: default_conns_per_ip(),
            handshake_timeout_ms: default_handshake_timeout(),
        }
    }
}

/// Operations: drain, overload and admin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationsConfig {
    /// Seconds to keep relaying existing allocations after a drain starts.
    #[serde(default = "default_drain")]
    pub drain_timeout: u64,
    /// Utilization (0..1) at or above which `/health` reports `overloaded`.
    #[serde(default = "default_watermark")]
    pub high_watermark: f64,
    /// Sibling relay sent as ALTERNATE-SERVER (300) when draining or full.
    #[serde(default)]
    pub alternate_server: Option<SocketAddr>,
    /// Bearer token for `POST /admin/drain`; the endpoint is disabled without it.
    #[serde(default)]
    pub admin_token: Option<String>,
}

fn default_drain() -> u64 {
    3600
}
fn default_watermark() -> f64 {
    0.9
}

impl Default for OperationsConfig {
    fn default() -> Self {
        Self {
            drain_timeout: default_drain(),
            high_watermark: default_watermark(),
            alternate_server: None,
            admin_token: None,
        }
    }
}

pub(crate) fn err(errors: &mut Vec<ConfigError>, path: &str, message: impl Into<String>) {
    errors.push(ConfigError {
        path: path.into(),
        message: message.into(),
    });
}

impl RelayConfig {
    /// Parses TOML text. Syntax and type errors come back as one [`ConfigError`].
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError {
            path: e
                .span()
                .map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
                    format!("line {line}, column {col}")
                })
                .unwrap_or_else(|| "<toml>".into()),
            message: e.message().to_string(),
        })
    }

    /// Reads and parses a TOML file (not validated).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_toml(&text)
    }

    /// Relay bind address for IPv4 allocations, if any.
    pub fn relay_ipv4(&self) -> Option<IpAddr> {
        self.relay_ips().into_iter().find(|ip| ip.is_ipv4())
    }

    /// Relay bind address for IPv6 allocations, if any.
    pub fn relay_ipv6(&self) -> Option<IpAddr> {
        self.relay_ips().into_iter().find(|ip| ip.is_ipv6())
    }

    fn relay_ips(&self) -> Vec<IpAddr> {
        if !self.relay.ips.is_empty() {
            return self.relay.ips.clone();
        }
        self.listen
            .udp
            .iter()
            .copied()
            .chain(self.listen.streams().map(|(l, _)| l.address))
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified())
            .take(1)
            .collect()
    }

    /// Checks every setting and returns all problems found.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut e = Vec::new();
        if let Some(m) = &self.membership {
            for (k, msg) in m.problems() {
                err(&mut e, &format!("membership.{k}"), &msg);
            }
        }
        if self.region.trim().is_empty() {
            err(&mut e, "region", "must not be empty");
        }
        if self.realm.is_empty() || self.realm.len() > 127 {
            err(&mut e, "realm", "must be 1..=127 characters");
        }
        if self.software.len() > 127 {
            err(&mut e, "software", "must be at most 127 characters");
        }
        self.listen.validate(&mut e);
        let r = &self.relay;
        if r.ips.iter().filter(|i| i.is_ipv4()).count() > 1 {
            err(&mut e, "relay.ips", "at most one IPv4 address");
        }
        if r.ips.iter().filter(|i| i.is_ipv6()).count() > 1 {
            err(&mut e, "relay.ips", "at most one IPv6 address");
        }
        if r.ips.iter().any(|i| i.is_unspecified()) {
            err(
                &mut e,
                "relay.ips",
                "must be concrete addresses, not 0.0.0.0 or ::",
            );
        }
        if self.relay_ips().is_empty() {
            err(
                &mut e,
                "relay.ips",
                "required when all listeners bind a wildcard address",
            );
        }
        if let Some(ip) = r.external_ip {
            if !ip.is_ipv4() || ip.is_unspecified() {
                err(
                    &mut e,
                    "relay.external_ip",
                    "must be a concrete IPv4 address",
                );
            }
            if self.relay_ipv4().is_none() {
                err(&mut e, "relay.external_ip", "needs an IPv4 relay address");
            }
        }
        if let Some(ip) = r.external_ipv6 {
            if !ip.is_ipv6() || ip.is_unspecified() {
                err(
                    &mut e,
                    "relay.external_ipv6",
                    "must be a concrete IPv6 address",
                );
            }
            if self.relay_ipv6().is_none() {
                err(&mut e, "relay.external_ipv6", "needs an IPv6 relay address");
            }
        }
        if r.port_min == 0 {
            err(&mut e, "relay.port_min", "must be > 0");
        }
        if let Some(n) = r.loops {
            if n == 0 || n > MAX_LOOPS {
                err(
                    &mut e,
                    "relay.loops",
                    format!("must be 1..={MAX_LOOPS}, not {n}"),
                );
            }
        }
        if r.handshake_threads == 0 || r.handshake_threads > MAX_LOOPS {
            err(
                &mut e,
                "relay.handshake_threads",
                format!("must be 1..={MAX_LOOPS}, not {}", r.handshake_threads),
            );
        }
        if r.port_min > r.port_max {
            err(&mut e, "relay.port_max", "must be >= relay.port_min");
        }
        let a = &self.auth;
        if a.users.is_empty() && a.secrets.is_empty() {
            err(
                &mut e,
                "auth",
                "configure at least one of auth.users or auth.secrets",
            );
        }
        for (name, pw) in &a.users {
            let key = format!("auth.users.{name}");
            if name.is_empty() || name.len() > 508 {
                err(&mut e, &key, "user name must be 1..=508 bytes");
            }
            if pw.is_empty() {
                err(&mut e, &key, "password must not be empty");
            }
        }
        for (i, s) in a.secrets.iter().enumerate() {
            if s.len() < 8 {
                err(
                    &mut e,
                    &format!("auth.secrets[{i}]"),
                    "must be at least 8 bytes",
                );
            }
        }
        if let Some(k) = &a.nonce_key {
            if k.len() < 16 {
                err(&mut e, "auth.nonce_key", "must be at least 16 bytes");
            }
        }
        if a.nonce_ttl == 0 {
            err(&mut e, "auth.nonce_ttl", "must be > 0");
        }
        let t = &self.lifetimes;
        if t.default == 0 {
            err(&mut e, "lifetimes.default", "must be > 0");
        }
        if t.max == 0 {
            err(&mut e, "lifetimes.max", "must be > 0");
        }
        if t.permission == 0 {
            err(&mut e, "lifetimes.permission", "must be > 0");
        }
        if t.channel == 0 {
            err(&mut e, "lifetimes.channel", "must be > 0");
        }
        let lim = &self.limits;
        if lim.capacity == 0 {
            err(&mut e, "limits.capacity", "must be > 0");
        }
        if lim.max_bps == 0 {
            err(&mut e, "limits.max_bps", "must be > 0");
        }
        if lim.total_bps == 0 {
            err(&mut e, "limits.total_bps", "must be > 0");
        }
        if lim.permissions_per_allocation == 0 {
            err(&mut e, "limits.permissions_per_allocation", "must be > 0");
        }
        if lim.channels_per_allocation == 0 || lim.channels_per_allocation > 4096 {
            err(&mut e, "limits.channels_per_allocation", "must be 1..=4096");
        }
        if lim.max_connections == Some(0) {
            err(&mut e, "limits.max_connections", "must be > 0");
        }
        if lim.handshake_timeout_ms == 0 {
            err(&mut e, "limits.handshake_timeout_ms", "must be > 0");
        }
        let o = &self.operations;
        if !(o.high_watermark > 0.0 && o.high_watermark <= 1.0) {
            err(&mut e, "operations.high_watermark", "must be in (0, 1]");
        }
        if let Some(t) = &o.admin_token {
            if t.len() < 16 {
                err(
                    &mut e,
                    "operations.admin_token",
                    "must be at least 16 bytes",
                );
            }
        }
        if let Some(a) = o.alternate_server {
            if a.ip().is_unspecified() || a.port() == 0 {
                err(
                    &mut e,
                    "operations.alternate_server",
                    "must be a concrete address and port",
                );
            }
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(e)
        }
    }
}

impl RelayConfig {
    /// How many event loops run: `relay.loops`, else the CPUs this process
    /// may run on (`std::thread::available_parallelism`: the affinity mask
    /// and the cgroup CPU quota).
    pub fn loops(&self) -> usize {
        self.relay.loops.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .clamp(1, MAX_LOOPS)
        })
    }

    /// Keys a reload cannot change (they need new sockets, or a restart of
    /// membership): one error per changed key. Everything else reloads.
    pub fn reload_conflicts(&self, new: &RelayConfig) -> Vec<ConfigError> {
        fn same<T: Serialize>(a: &T, b: &T) -> bool {
            serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
        }
        let mut e = Vec::new();
        let mut check = |path: &str, equal: bool| {
            if !equal {
                err(&mut e, path, "changing it needs a restart; reload rejected");
            }
        };
        check("region", self.region == new.region);
        check("realm", self.realm == new.realm);
        check("listen.udp", self.listen.udp == new.listen.udp);
        check("listen.tcp", self.listen.tcp == new.listen.tcp);
        check("listen.tls", self.listen.tls == new.listen.tls);
        check("listen.auto", self.listen.auto == new.listen.auto);
        check("listen.http", self.listen.http == new.listen.http);
        check("relay", same(&self.relay, &new.relay));
        check("membership", same(&self.membership, &new.membership));
        check(
            "operations.drain_timeout",
            self.operations.drain_timeout == new.operations.drain_timeout,
        );
        e
    }

    /// Top-level sections (and TLS files) that differ, for the reload report.
    pub fn reload_changes(&self, new: &RelayConfig) -> Vec<&'static str> {
        fn same<T: Serialize>(a: &T, b: &T) -> bool {
            serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
        }
        let mut out = Vec::new();
        if !same(&self.auth.users, &new.auth.users) {
            out.push("auth.users");
        }
        if self.auth.secrets != new.auth.secrets {
            out.push("auth.secrets");
        }
        if self.auth.nonce_key != new.auth.nonce_key || self.auth.nonce_ttl != new.auth.nonce_ttl {
            out.push("auth.nonce");
        }
        if !same(&self.limits, &new.limits) {
            out.push("limits");
        }
        if !same(&self.peer_policy, &new.peer_policy) {
            out.push("peer_policy");
        }
        if !same(&self.lifetimes, &new.lifetimes) {
            out.push("lifetimes");
        }
        if !same(&self.operations, &new.operations) {
            out.push("operations");
        }
        if self.software != new.software {
            out.push("software");
        }
        if self.listen.tls_cert != new.listen.tls_cert || self.listen.tls_key != new.listen.tls_key
        {
            out.push("listen.tls_cert");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
region = "eu-west"
[listen]
udp = ["127.0.0.1:3478"]
[auth]
secrets = ["0123456789abcdef"]
"#;

    #[test]
    fn minimal_config_is_valid_with_defaults() {
        let c = RelayConfig::from_toml(GOOD).unwrap();
        c.validate().unwrap();
        assert_eq!(c.lifetimes.default, 600);
        assert_eq!(c.lifetimes.permission, 300);
        assert!(!c.peer_policy.allow_loopback_peers);
        assert_eq!(c.relay_ipv4(), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(c.listen.tcp, vec!["0.0.0.0:3478".parse().unwrap()]);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = r#"
region = ""
[listen]
udp = ["0.0.0.0:3478"]
tcp = []
tls = ["0.0.0.0:5349"]
[relay]
port_min = 5000
port_max = 4000
[limits]
max_bps = 0
capacity = 0
[operations]
high_watermark = 1.5
"#;
        let c = RelayConfig::from_toml(text).unwrap();
        let errs = c.validate().unwrap_err();
        let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
        for p in [
            "region",
            "listen.tls_cert",
            "listen.tls_key",
            "relay.ips",
            "relay.port_max",
            "auth",
            "limits.max_bps",
            "limits.capacity",
            "operations.high_watermark",
        ] {
            assert!(paths.contains(&p), "missing {p} in {errs:?}");
        }
        assert!(errs
            .iter()
            .any(|e| e.to_string() == "limits.max_bps: must be > 0"));
    }

    #[test]
    fn unknown_keys_and_bad_types_are_errors() {
        let e = RelayConfig::from_toml("region = \"x\"\nbogus = 1").unwrap_err();
        assert!(e.path.starts_with("line 2"), "{e}");
        assert!(e.message.contains("bogus"), "{e}");
        assert!(RelayConfig::from_toml("region = 5").is_err());
        assert!(RelayConfig::from_toml("region = \"x\"\n[limits]\ncapacity = -1").is_err());
    }
}
