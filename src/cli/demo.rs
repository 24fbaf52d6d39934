//! `geosteer demo`: the bundled three-region demo.
//!
//! The demo config, zone and GeoIP database are compiled into the binary and
//! written to a fresh temporary directory, so the demo runs from anywhere.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::Config;
use crate::dns::ServeState;
use crate::node::Node;

/// The demo's configuration (zones/demo.toml).
pub const DEMO_CONFIG: &str = include_str!("../../zones/demo.toml");
/// The demo zone (zones/example.com.zone).
pub const DEMO_ZONE: &str = include_str!("../../zones/example.com.zone");
/// The demo GeoIP database (geoip/demo.mmdb).
pub const DEMO_MMDB: &[u8] = include_bytes!("../../geoip/demo.mmdb");

#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    /// DNS listen address (UDP and TCP).
    #[arg(long, default_value = "127.0.0.1:5353")]
    listen: SocketAddr,
    /// Use this GeoIP database (e.g. a real GeoLite2-City) instead of the bundled one.
    #[arg(long)]
    geoip: Option<PathBuf>,
}

pub(super) fn run(a: DemoArgs) -> ExitCode {
    super::init_logging(crate::config::LogFormat::Text, "info");
    let dir = std::env::temp_dir().join(format!("geosteer-demo-{}", std::process::id()));
    let written = std::fs::create_dir_all(dir.join("zones"))
        .and_then(|_| std::fs::create_dir_all(dir.join("geoip")))
        .and_then(|_| std::fs::write(dir.join("zones/example.com.zone"), DEMO_ZONE))
        .and_then(|_| std::fs::write(dir.join("geoip/demo.mmdb"), DEMO_MMDB));
    if let Err(e) = written {
        eprintln!("cannot write demo files to {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let mut text = DEMO_CONFIG.replace(
        "listen = [\"127.0.0.1:5353\"]",
        &format!("listen = [\"{}\"]", a.listen),
    );
    if let Some(db) = &a.geoip {
        let abs = std::fs::canonicalize(db).unwrap_or_else(|_| db.clone());
        text = text.replace(
            "database = \"../geoip/demo.mmdb\"",
            &format!("database = {:?}", abs.display().to_string()),
        );
    }
    let cfg_path = dir.join("zones/demo.toml");
    if let Err(e) = std::fs::write(&cfg_path, &text) {
        eprintln!("cannot write {}: {e}", cfg_path.display());
        return ExitCode::FAILURE;
    }
    let st = match Config::load(&cfg_path).and_then(|c| ServeState::load(c, 1)) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("demo configuration rejected:\n{errors}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async {
        let geo = st.geo.describe();
        let node = match Node::start(st).await {
            Ok(n) => n,
            Err(e) => {
                eprintln!("cannot listen on {}: {e} (is another demo running? try --listen 127.0.0.1:5354)", a.listen);
                return ExitCode::FAILURE;
            }
        };
        print_banner(a.listen, &geo, &cfg_path);
        node.run_until_signal().await;
        ExitCode::SUCCESS
    });
    let _ = std::fs::remove_dir_all(&dir);
    code
}

fn print_banner(listen: SocketAddr, geo: &str, cfg: &std::path::Path) {
    let (ip, port) = (listen.ip(), listen.port());
    println!(
        r#"
geosteer demo — steering DNS for zone example.com on {listen} (UDP and TCP)
  regions: us-east (Ashburn) 127.0.1.1 · eu-central (Frankfurt) 127.0.2.1 · ap-southeast (Singapore) 127.0.3.1
  GeoIP:   {geo}
  config:  {cfg}

Try (each client subnet is steered to its nearest region):
  dig @{ip} -p {port} turn.example.com A +subnet=81.2.69.0/24    # London      -> eu-central   127.0.2.1
  dig @{ip} -p {port} turn.example.com A +subnet=8.8.8.0/24      # US          -> us-east      127.0.1.1
  dig @{ip} -p {port} turn.example.com A +subnet=1.0.0.0/24      # Australia   -> ap-southeast 127.0.3.1
  dig @{ip} -p {port} turn.example.com A +subnet=203.0.113.0/24  # override    -> eu-central
  dig @{ip} -p {port} _turn._udp.turn.example.com SRV +subnet=81.2.69.0/24
  dig @{ip} -p {port} turn.example.com A                         # no ECS: located by source (loopback -> default order)
  dig @{ip} -p {port} example.com SOA +norec                     # static zone data
  dig @{ip} -p {port} turn.example.com A +tcp +subnet=8.8.8.0/24

Why an answer: geosteer explain --config {cfg} 81.2.69.7
Ctrl-C stops the demo."#,
        cfg = cfg.display()
    );
}
