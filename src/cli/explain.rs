//! `geosteer explain`: the server's own decision for one client address.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::Config;
use crate::dns::explain::{explain, Explanation};
use crate::dns::ServeState;
use crate::health::HealthSnapshot;

#[derive(Debug, Args)]
pub(super) struct ExplainArgs {
    /// TOML configuration file.
    #[arg(long, short)]
    config: PathBuf,
    /// Client (or client subnet) address.
    ip: IpAddr,
    /// Steered name to explain (default: the first configured).
    #[arg(long)]
    name: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(a: ExplainArgs) -> ExitCode {
    let st = match Config::load(&a.config).and_then(|c| ServeState::load(c, 0)) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let idx = match st.steered_index(a.name.as_deref()) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{e} in {}", a.config.display());
            return ExitCode::FAILURE;
        }
    };
    let health = HealthSnapshot::all_up(st.steering.members.len(), 0);
    match explain(&st, &health, a.ip, idx) {
        Ok(x) if a.json => {
            println!("{}", serde_json::to_string_pretty(&x).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(x) => {
            print_text(&x);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn print_text(x: &Explanation) {
    println!("client      {} (steered as {})", x.ip, x.subnet);
    match &x.geoip {
        Some(l) => println!(
            "geoip       country {} continent {} city {} at {}",
            l.country.as_deref().unwrap_or("-"),
            l.continent.as_deref().unwrap_or("-"),
            l.city.as_deref().unwrap_or("-"),
            l.coordinates()
                .map(|(a, b)| format!("{a:.4},{b:.4}"))
                .unwrap_or_else(|| "-".into())
        ),
        None => println!("geoip       not in the database"),
    }
    println!(
        "network     {} (decided by {}); same decision for {}",
        x.network, x.decided_by, x.scope_network
    );
    println!("regions:");
    for r in &x.ranking {
        let d = r
            .distance_km
            .map(|d| format!("{d:>8.0} km"))
            .unwrap_or_else(|| "       - km".into());
        println!(
            "  {:<16}{d}{}",
            r.region,
            if r.by_override { "  (override)" } else { "" }
        );
    }
    println!(
        "answer      {} {} {} -> {} [{}] ttl {}",
        x.name,
        x.rcode,
        x.outcome.map(|o| format!("{o:?}")).unwrap_or_default(),
        x.region.as_deref().unwrap_or("-"),
        x.answer.join(", "),
        x.ttl.map(|t| t.to_string()).unwrap_or_else(|| "-".into())
    );
    println!("members     {}", x.members.join(", "));
    println!("ecs scope   /{}", x.ecs_scope);
}
