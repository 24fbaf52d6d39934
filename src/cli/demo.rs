//! `geosteer demo`: the bundled three-region demo — three relays on loopback,
//! health probing, the steering DNS and the admin API.
//!
//! The demo config, zone and GeoIP database are compiled into the binary and
//! written to a fresh temporary directory, so the demo runs from anywhere.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use geosteer_relay::{RelayConfig, RelayHandle};

use crate::config::Config;
use crate::dns::ServeState;
use crate::node::Node;

/// The demo's configuration (zones/demo.toml).
pub const DEMO_CONFIG: &str = include_str!("../../zones/demo.toml");
/// The demo zone (zones/example.com.zone).
pub const DEMO_ZONE: &str = include_str!("../../zones/example.com.zone");
/// The demo GeoIP database (geoip/demo.mmdb).
pub const DEMO_MMDB: &[u8] = include_bytes!("../../geoip/demo.mmdb");

/// The demo relays: region, address.
pub const DEMO_RELAYS: [(&str, &str); 3] = [
    ("us-east", "127.0.1.1"),
    ("eu-central", "127.0.2.1"),
    ("ap-southeast", "127.0.3.1"),
];

#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    /// DNS listen address (UDP and TCP).
    #[arg(long, default_value = "127.0.0.1:5353")]
    listen: SocketAddr,
    /// Admin API listen address.
    #[arg(long, default_value = "127.0.0.1:8053")]
    api: SocketAddr,
    /// Use this GeoIP database (e.g. a real GeoLite2-City) instead of the bundled one.
    #[arg(long)]
    geoip: Option<PathBuf>,
    /// TURN REST shared secret of the relays (default: random, printed).
    #[arg(long)]
    secret: Option<String>,
}

/// TURN over TLS port of the demo relays.
pub const DEMO_TLS_PORT: u16 = 5349;
/// The demo relays' one port for TURN and TURNS (443 in production, which
/// needs privileges the demo does not ask for).
pub const DEMO_AUTO_PORT: u16 = 8443;

/// A demo relay's configuration: STUN/TURN on `ip`:3478 (UDP and TCP), TURN
/// over TLS on `ip`:5349, TURN and TURNS on one port `ip`:8443, health and
/// metrics on `ip`:8080, loopback peers allowed (demo only). `tls` is the
/// (certificate, key) pair.
pub fn relay_config(
    region: &str,
    ip: &str,
    secret: &str,
    admin_token: &str,
    (cert, key): (&Path, &Path),
) -> Result<RelayConfig, String> {
    let text = format!(
        r#"
region = "{region}"
realm = "geosteer.demo"
[listen]
udp = ["{ip}:3478"]
tcp = ["{ip}:3478"]
tls = ["{ip}:{DEMO_TLS_PORT}"]
auto = ["{ip}:{DEMO_AUTO_PORT}"]
tls_cert = {cert:?}
tls_key = {key:?}
http = "{ip}:8080"
[relay]
ips = ["{ip}"]
[auth]
secrets = ["{secret}"]
[peer_policy]
allow_loopback_peers = true
[operations]
admin_token = "{admin_token}"
drain_timeout = 3600
"#
    );
    toml::from_str(&text).map_err(|e| format!("demo relay config: {e}"))
}

/// A self-signed certificate for the demo relays (their addresses and
/// `turn.example.com`), written to `dir`; returns (certificate, key).
pub fn demo_certificate(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let mut names = vec!["turn.example.com".to_string(), "localhost".to_string()];
    names.extend(DEMO_RELAYS.iter().map(|(_, ip)| ip.to_string()));
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot generate the demo certificate: {e}"))?;
    let (cert, key) = (dir.join("relay-cert.pem"), dir.join("relay-key.pem"));
    std::fs::write(&cert, ck.cert.pem())
        .and_then(|_| std::fs::write(&key, ck.signing_key.serialize_pem()))
        .map_err(|e| {
            format!(
                "cannot write the demo certificate to {}: {e}",
                dir.display()
            )
        })?;
    Ok((cert, key))
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

pub(super) fn run(a: DemoArgs) -> ExitCode {
    super::init_logging(crate::config::LogFormat::Text, "info");
    let dir = std::env::temp_dir().join(format!("geosteer-demo-{}", std::process::id()));
    match run_in(&a, &dir) {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&dir);
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_in(a: &DemoArgs, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir.join("zones"))
        .and_then(|_| std::fs::create_dir_all(dir.join("geoip")))
        .and_then(|_| std::fs::write(dir.join("zones/example.com.zone"), DEMO_ZONE))
        .and_then(|_| std::fs::write(dir.join("geoip/demo.mmdb"), DEMO_MMDB))
        .map_err(|e| format!("cannot write demo files to {}: {e}", dir.display()))?;
    let token = random_hex(16);
    let mut text = DEMO_CONFIG
        .replace(
            "listen = [\"127.0.0.1:5353\"]",
            &format!("listen = [\"{}\"]", a.listen),
        )
        .replace(
            "listen = \"127.0.0.1:8053\"",
            &format!("listen = \"{}\"\ntoken = \"{token}\"", a.api),
        );
    if let Some(db) = &a.geoip {
        let abs = std::fs::canonicalize(db).map_err(|e| format!("{}: {e}", db.display()))?;
        text = text.replace(
            "database = \"../geoip/demo.mmdb\"",
            &format!("database = {:?}", abs.display().to_string()),
        );
    }
    let secret = a.secret.clone().unwrap_or_else(|| random_hex(16));
    let api_key = random_hex(16);
    text.push_str(&format!(
        "\n[ice]\napi_keys = [\"{api_key}\"]\nsecrets = [\"{secret}\"]\n# The demo relays are IP addresses on this machine.\nmode = \"direct\"\ntls_port = {DEMO_TLS_PORT}\n"
    ));
    let cfg_path = dir.join("zones/demo.toml");
    std::fs::write(&cfg_path, &text)
        .map_err(|e| format!("cannot write {}: {e}", cfg_path.display()))?;
    let st = Config::load(&cfg_path)
        .and_then(|c| ServeState::load(c, 1))
        .map_err(|e| format!("configuration rejected:\n{e}"))?;

    let (cert, key) = demo_certificate(dir)?;
    let mut relays: Vec<RelayHandle> = Vec::new();
    for (region, ip) in DEMO_RELAYS {
        let cfg = relay_config(region, ip, &secret, &token, (&cert, &key))?;
        let h = geosteer_relay::start(cfg).map_err(|e| {
            format!("relay {region} on {ip}: {e} (is another TURN server, e.g. coturn, listening on 0.0.0.0:3478 or :5349?)")
        })?;
        relays.push(h);
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    let result = rt.block_on(async {
        let geo = st.geo.describe();
        let node = Node::start(st)
            .await
            .map_err(|e| format!("cannot listen on {} / {}: {e} (is another demo running? try --listen 127.0.0.1:5354 --api 127.0.0.1:8054)", a.listen, a.api))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let (user, pass) = geosteer_relay::auth::mint(secret.as_bytes(), 86_400, Some("demo"), now);
        print_banner(
            a,
            Banner { geo: &geo, cfg: &cfg_path, cert: &cert, secret: &secret, user: &user, pass: &pass, token: &token, api_key: &api_key },
        );
        node.run_until_signal().await;
        Ok::<(), String>(())
    });
    for r in relays {
        r.stop();
    }
    result
}

/// What the banner shows besides the arguments.
struct Banner<'a> {
    geo: &'a str,
    cfg: &'a Path,
    cert: &'a Path,
    secret: &'a str,
    user: &'a str,
    pass: &'a str,
    token: &'a str,
    api_key: &'a str,
}

fn print_banner(a: &DemoArgs, b: Banner<'_>) {
    let Banner {
        geo,
        cfg,
        cert,
        secret,
        user,
        pass,
        token,
        api_key,
    } = b;
    let (ip, port) = (a.listen.ip(), a.listen.port());
    let api = a.api;
    println!(
        r#"
geosteer demo — steering DNS for zone example.com on {listen} (UDP and TCP), admin API on http://{api}
  relays (STUN/TURN UDP+TCP :3478, TURNS :5349, TURN+TURNS on one port :8443,
          health http://<ip>:8080/health; self-signed certificate {cert}):
    us-east (Ashburn) 127.0.1.1 · eu-central (Frankfurt) 127.0.2.1 · ap-southeast (Singapore) 127.0.3.1
  GeoIP:   {geo}
  config:  {cfg}

Try (each client subnet is steered to its nearest healthy region):
  dig @{ip} -p {port} turn.example.com A +subnet=81.2.69.0/24    # London      -> eu-central   127.0.2.1
  dig @{ip} -p {port} turn.example.com A +subnet=8.8.8.0/24      # US          -> us-east      127.0.1.1
  dig @{ip} -p {port} turn.example.com A +subnet=1.0.0.0/24      # Australia   -> ap-southeast 127.0.3.1
  dig @{ip} -p {port} turn.example.com A +subnet=203.0.113.0/24  # override    -> eu-central
  dig @{ip} -p {port} _turn._udp.turn.example.com SRV +subnet=81.2.69.0/24
  dig @{ip} -p {port} turn.example.com A +tcp +subnet=8.8.8.0/24
  dig @{ip} -p {port} example.com SOA +norec                     # static zone data

Failover: drain eu-central, then ask again for London (answers come from the next region, TTL shortened):
  curl -s -X POST -H 'Authorization: Bearer {token}' http://{api}/v1/regions/eu-central/drain
  dig @{ip} -p {port} turn.example.com A +subnet=81.2.69.0/24
  curl -s -X POST -H 'Authorization: Bearer {token}' http://{api}/v1/regions/eu-central/release
  (or drain the relay itself: curl -s -X POST -H 'Authorization: Bearer {token}' http://127.0.2.1:8080/admin/drain)
Status page: http://{api}/     ICE servers for a WebRTC app (TURN REST credentials, 1 h):
  curl -s -X POST -H 'Authorization: Bearer {api_key}' -d '{{"ttl":3600,"client_ip":"81.2.69.7"}}' http://{api}/v1/ice-servers
State and metrics:
  curl -s http://{api}/v1/state     curl -s http://{api}/metrics     curl -s 'http://{api}/v1/explain?ip=81.2.69.7'

TURN (shared secret {secret}):
  username {user}
  password {pass}
  turnutils_uclient -u '{user}' -w '{pass}' -y -n 10 127.0.2.1
  turnutils_uclient -u '{user}' -w '{pass}' -y -n 10 -t -S -p 5349 127.0.2.1     # TURNS
  turnutils_uclient -u '{user}' -w '{pass}' -y -n 10 -t -S -p 8443 127.0.2.1     # TURNS on the one port
  turnutils_uclient -u '{user}' -w '{pass}' -y -n 10 -t -p 8443 127.0.2.1        # TURN/TCP on the same port
  openssl s_client -connect 127.0.2.1:8443 -alpn stun.turn </dev/null | grep ALPN
ICE server for a browser (trust {cert} first):
  {{"urls": "turns:127.0.2.1:5349?transport=tcp", "username": "{user}", "credential": "{pass}"}}

Ctrl-C stops the demo."#,
        listen = a.listen,
        cfg = cfg.display(),
        cert = cert.display()
    );
}
