//! The TOML schema. Field docs double as the configuration reference.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Listener and performance settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The GeoIP database.
    pub geoip: GeoipConfig,
    /// Defaults for steering.
    #[serde(default)]
    pub steering: SteeringConfig,
    /// Regions by name.
    pub regions: BTreeMap<String, RegionConfig>,
    /// Pools of relay members by name.
    pub pools: BTreeMap<String, PoolConfig>,
    /// Location overrides, checked before distance.
    #[serde(default)]
    pub overrides: Vec<OverrideConfig>,
    /// Authoritative zones.
    pub zones: Vec<ZoneConfig>,
    /// Health probing of pool members.
    #[serde(default)]
    pub health: HealthConfig,
    /// Registered members from etcd, added to the static ones.
    #[serde(default)]
    pub membership: Option<super::MembershipConfig>,
    /// The admin HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
    /// The ICE-servers API (WebRTC `iceServers` with TURN REST credentials).
    #[serde(default)]
    pub ice: Option<IceConfig>,
}

/// `POST /v1/ice-servers` on the API listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceConfig {
    /// Bearer API keys accepted (several, for rotation).
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// File with one API key per line (alternative to `api_keys`; re-read on
    /// reload, so a rotated key needs no restart).
    #[serde(default)]
    pub api_keys_file: Option<PathBuf>,
    /// TURN REST shared secrets of the relays; the first signs credentials.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// File with one secret per line (alternative to `secrets`).
    #[serde(default)]
    pub secrets_file: Option<PathBuf>,
    /// Credential lifetime when the request gives none, seconds.
    #[serde(default = "default_ice_ttl")]
    pub default_ttl: u64,
    /// Longest credential lifetime a request may ask for, seconds.
    #[serde(default = "default_ice_max_ttl")]
    pub max_ttl: u64,
    /// `hostname`: URLs name the steered hostname (DNS decides);
    /// `direct`: URLs carry the addresses steering picks for the client.
    #[serde(default)]
    pub mode: IceMode,
    /// Hostname for `hostname` mode (default: the first steered name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// STUN/TURN port (UDP and TCP).
    #[serde(default = "default_turn_port")]
    pub port: u16,
    /// TURN over TLS port; 0 leaves `turns:` URLs out.
    #[serde(default = "default_turns_port")]
    pub tls_port: u16,
}

fn default_ice_ttl() -> u64 {
    86_400
}
fn default_ice_max_ttl() -> u64 {
    172_800
}
fn default_turn_port() -> u16 {
    3478
}
fn default_turns_port() -> u16 {
    5349
}

/// How ICE-server URLs name the relays.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IceMode {
    /// The steered hostname.
    #[default]
    Hostname,
    /// Relay addresses chosen for the client.
    Direct,
}

/// Health probing defaults (a pool's `health` table overrides them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Probe interval, milliseconds (250..=60000).
    pub interval_ms: u64,
    /// Probe timeout, milliseconds (at most the interval).
    pub timeout_ms: u64,
    /// Consecutive successes to come up.
    pub rise: u32,
    /// Consecutive failures to go down.
    pub fall: u32,
    /// State of a member before its first probe result.
    pub initial: InitialState,
    /// How long start-up waits for the first probe round before answering.
    pub startup_wait_ms: u64,
    /// Utilization where shedding starts (probability rises linearly to the high watermark).
    pub low_watermark: f64,
    /// Utilization at and above which a member is shed entirely.
    pub high_watermark: f64,
    /// Also send a STUN Binding request over UDP to each member's first address.
    pub stun: bool,
    /// Port of that STUN probe.
    pub stun_port: u16,
    /// Down-transitions within `flap_window_secs` that count as flapping.
    pub flap_threshold: u32,
    /// Window for counting flaps, seconds.
    pub flap_window_secs: u64,
    /// Extra hold-down of a flapping member, doubled per further flap, milliseconds.
    pub holddown_ms: u64,
    /// Cap of the hold-down, milliseconds.
    pub max_holddown_ms: u64,
    /// Accept invalid TLS certificates on https:// probes (lab use only).
    pub tls_insecure: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval_ms: 1000,
            timeout_ms: 800,
            rise: 2,
            fall: 2,
            initial: InitialState::Up,
            startup_wait_ms: 3000,
            low_watermark: 0.6,
            high_watermark: 0.8,
            stun: false,
            stun_port: 3478,
            flap_threshold: 3,
            flap_window_secs: 60,
            holddown_ms: 5000,
            max_holddown_ms: 300_000,
            tls_insecure: false,
        }
    }
}

/// Per-pool overrides of the probe timing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolHealthConfig {
    /// Probe interval, milliseconds.
    pub interval_ms: Option<u64>,
    /// Probe timeout, milliseconds.
    pub timeout_ms: Option<u64>,
    /// Consecutive successes to come up.
    pub rise: Option<u32>,
    /// Consecutive failures to go down.
    pub fall: Option<u32>,
    /// STUN probe on or off.
    pub stun: Option<bool>,
}

/// State before the first probe result.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialState {
    /// Steer to it until probes say otherwise.
    Up,
    /// Do not steer to it until it passes `rise` probes.
    Down,
}

/// The admin HTTP API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address; the API is off when absent.
    pub listen: Option<SocketAddr>,
    /// Bearer token for changes (POST); reads need none.
    pub token: Option<String>,
    /// File holding the token (alternative to `token`).
    pub token_file: Option<PathBuf>,
    /// Where operator overrides (drain, force up/down) are persisted.
    pub state_file: Option<PathBuf>,
    /// Bearer token required for reads (`/metrics`, `/v1/state`,
    /// `/v1/explain`, the status page); the change token is accepted too.
    /// Reads are open when absent. `/healthz` stays open (liveness).
    pub read_token: Option<String>,
}

/// DNS listener settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Addresses to serve DNS on, UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// UDP worker threads per address (each with its own SO_REUSEPORT socket); 0 = one per CPU.
    pub udp_workers: usize,
    /// Largest UDP response we send, whatever the client's EDNS buffer (RFC 9715 advice: 1232).
    pub max_udp_payload: u16,
    /// DNS over TCP: connection limits and timeouts.
    pub tcp: TcpConfig,
    /// Maximum number of cached pre-encoded answers.
    pub cache_entries: u64,
    /// Response rate limiting of UDP answers (on by default).
    pub rrl: RrlConfig,
    /// DNS Cookies, RFC 7873 / RFC 9018 (on by default).
    pub cookies: CookiesConfig,
}

/// `[server.tcp]`: DNS over TCP. Defaults in Knot DNS's range (idle
/// 10 s, I/O 500 ms). Past a connection limit the oldest idle connection
/// (of that client, or of all) is closed to make room; a new connection is
/// refused only when every slot is busy mid-query.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpConfig {
    /// Open connections in all (1..=1000000).
    pub max_connections: usize,
    /// Open connections per client address; IPv6 clients are counted per /64.
    pub max_connections_per_client: usize,
    /// A connection waiting for its next query is closed after this long, ms.
    pub idle_timeout_ms: u64,
    /// Once a query's first byte has arrived, the rest of it must arrive, and
    /// its answer be written, within this long, ms.
    pub io_timeout_ms: u64,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            max_connections: 1000,
            max_connections_per_client: 100,
            idle_timeout_ms: 10_000,
            io_timeout_ms: 500,
        }
    }
}

/// `[server.cookies]`: DNS Cookies. UDP answers to queries with a valid
/// server cookie are exempt from rate limiting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CookiesConfig {
    /// Cookies on.
    pub enabled: bool,
    /// 32 hex digits shared by every node of the deployment. When absent a
    /// random secret is drawn at start (a warning says that nodes of one
    /// deployment must share it: a cookie from one node is then invalid at another).
    pub secret: Option<String>,
    /// The secret before a rotation, still accepted (set it on every node,
    /// then move `secret`; drop this an hour after the last node switched).
    pub previous_secret: Option<String>,
}

impl Default for CookiesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            secret: None,
            previous_secret: None,
        }
    }
}

/// `[server.rrl]`: response rate limiting per client prefix (UDP only; TCP
/// answers are never limited).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RrlConfig {
    /// Limiting on (the default: a node started unchanged is no amplifier).
    pub enabled: bool,
    /// Answers per second per client prefix, per UDP worker (1..=1000000).
    pub responses_per_second: u32,
    /// Every `slip`-th limited answer is sent truncated (TC=1) so real
    /// resolvers retry over TCP; the others are dropped. 0 drops all, 1 truncates all.
    pub slip: u32,
    /// IPv4 prefix length that shares a bucket (8..=32).
    pub ipv4_prefix: u8,
    /// IPv6 prefix length that shares a bucket (16..=64).
    pub ipv6_prefix: u8,
    /// Count what would be limited (metrics) but send every answer.
    pub dry_run: bool,
    /// Client networks never limited (e.g. monitoring, the operator's resolvers).
    pub allow: Vec<IpNet>,
    /// Buckets per UDP worker (power of two, 64..=16777216), allocated at start.
    pub table_size: usize,
}

impl Default for RrlConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            responses_per_second: 200,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            dry_run: false,
            allow: Vec::new(),
            table_size: 65_536,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 5353))],
            udp_workers: 0,
            max_udp_payload: 1232,
            tcp: TcpConfig::default(),
            cache_entries: 200_000,
            rrl: RrlConfig::default(),
            cookies: CookiesConfig::default(),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `geosteer=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the MaxMind-format database lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoipConfig {
    /// Path to a `.mmdb` file (City or Country layout), relative to the config file.
    pub database: PathBuf,
}

/// Steering defaults; each steered name may override answer count and TTL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SteeringConfig {
    /// Region order for clients the database cannot place (private, unknown).
    /// Regions not listed follow in configuration order.
    pub default_regions: Vec<String>,
    /// Addresses per answer, all from one region.
    pub answer_count: usize,
    /// TTL of steered answers, seconds.
    pub ttl: u32,
    /// Privacy cap on the IPv4 ECS source prefix we use (RFC 7871 §11.1 advises 24).
    pub ecs_max_prefix_v4: u8,
    /// Privacy cap on the IPv6 ECS source prefix we use (RFC 7871 §11.1 advises 56).
    pub ecs_max_prefix_v6: u8,
    /// What to answer when no member of a pool is usable.
    pub all_down: AllDownPolicy,
    /// TTL (upper bound) of answers from a degraded region: one with a member
    /// down or shedding, or a failover answer.
    pub degraded_ttl: u32,
}

impl Default for SteeringConfig {
    fn default() -> Self {
        Self {
            default_regions: Vec::new(),
            answer_count: 2,
            ttl: 30,
            ecs_max_prefix_v4: 24,
            ecs_max_prefix_v6: 56,
            all_down: AllDownPolicy::FailOpen,
            degraded_ttl: 10,
        }
    }
}

/// A region: where its relays are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// Latitude in degrees, −90..90.
    pub latitude: f64,
    /// Longitude in degrees, −180..180.
    pub longitude: f64,
    /// Free text shown in `explain` and the API.
    #[serde(default)]
    pub description: String,
    /// Whether its relays serve TURN over TLS on `[ice] tls_port` (default
    /// true): the ICE-servers API lists `turns:` URLs only for such regions.
    #[serde(default = "default_true")]
    pub tls: bool,
}

fn default_true() -> bool {
    true
}

/// A pool: the members a steered name answers with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The relays.
    pub members: Vec<MemberConfig>,
    /// Probe timing for this pool's members.
    #[serde(default)]
    pub health: PoolHealthConfig,
}

/// One relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// A DNS label, unique in the pool; also the SRV target `<name>.<steered name>`.
    pub name: String,
    /// Region name.
    pub region: String,
    /// IPv4 and/or IPv6 addresses handed out.
    pub addresses: Vec<IpAddr>,
    /// Relative weight within the region (1..=65535).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Only used when no primary member anywhere is usable.
    #[serde(default)]
    pub backup: bool,
    /// Health endpoint (used by the health prober).
    #[serde(default)]
    pub health_url: Option<String>,
    /// Came from etcd registration, not the file (starts down until probed).
    #[serde(skip)]
    pub registered: bool,
}

fn default_weight() -> u32 {
    100
}

/// A location override: clients matching `cidr`, `country` or `continent`
/// (exactly one) are steered by `regions` in that order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideConfig {
    /// Client network.
    #[serde(default)]
    pub cidr: Option<IpNet>,
    /// ISO 3166-1 alpha-2 country code.
    #[serde(default)]
    pub country: Option<String>,
    /// Continent code: AF AN AS EU NA OC SA.
    #[serde(default)]
    pub continent: Option<String>,
    /// Preferred regions, first is best; others follow by distance.
    pub regions: Vec<String>,
}

/// One authoritative zone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// The zone apex, e.g. `example.com`.
    pub origin: String,
    /// RFC 1035 master file with the static records, relative to the config file.
    pub file: PathBuf,
    /// Names in this zone answered by steering.
    #[serde(default)]
    pub steered: Vec<SteeredConfig>,
}

/// A steered name: `turn.<zone>` (or `@` for the apex) with its SRV names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteeredConfig {
    /// Relative name (`turn`) or `@` for the zone apex.
    pub name: String,
    /// Pool to answer from.
    pub pool: String,
    /// TTL, seconds (default `steering.ttl`).
    #[serde(default)]
    pub ttl: Option<u32>,
    /// Addresses per answer (default `steering.answer_count`).
    #[serde(default)]
    pub answer_count: Option<usize>,
    /// SRV services under the name; default `_turn._udp` 3478, `_turn._tcp` 3478, `_turns._tcp` 5349.
    #[serde(default = "default_srv")]
    pub srv: Vec<SrvConfig>,
}

/// An SRV service label pair and port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrvConfig {
    /// `_service._proto`, e.g. `_turn._udp`.
    pub service: String,
    /// Port the relays listen on for it.
    pub port: u16,
}

fn default_srv() -> Vec<SrvConfig> {
    [
        ("_turn._udp", 3478),
        ("_turn._tcp", 3478),
        ("_turns._tcp", 5349),
    ]
    .into_iter()
    .map(|(s, p)| SrvConfig {
        service: s.into(),
        port: p,
    })
    .collect()
}

/// What to answer when no member of a pool is usable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllDownPolicy {
    /// Answer as if every member were healthy (Route 53, gdnsd behaviour).
    #[default]
    FailOpen,
    /// Answer SERVFAIL.
    Servfail,
    /// Answer with the backup members even if they are down.
    BackupOnly,
}
