//! `geosteer explain`: the server's own decision for one client address,
//! computed from a configuration (every member taken as up), or asked of a
//! running node (`--api`), which adds each member's health: this node's
//! probe verdict, the other DNS nodes' votes and the decision.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use crate::config::Config;
use crate::dns::explain::explain;
use crate::dns::ServeState;
use crate::health::HealthSnapshot;

#[derive(Debug, Args)]
pub(super) struct ExplainArgs {
    /// TOML configuration file (decides offline, every member up).
    #[arg(long, short, required_unless_present = "api")]
    config: Option<PathBuf>,
    /// Ask a running node's admin API instead (`http://127.0.0.1:8053`).
    #[arg(long, conflicts_with = "config")]
    api: Option<String>,
    /// Bearer token for the API (`api.read_token` or `api.token`), if reads need one.
    #[arg(long, requires = "api")]
    token: Option<String>,
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
    let v = match (&a.config, &a.api) {
        (Some(c), _) => offline(c, a.ip, a.name.as_deref()),
        (None, Some(api)) => ask(api, a.token.as_deref(), a.ip, a.name.as_deref()),
        (None, None) => Err("--config or --api is needed".into()),
    };
    match v {
        Ok(v) if a.json => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(v) => {
            print_text(&v);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn offline(config: &std::path::Path, ip: IpAddr, name: Option<&str>) -> Result<Value, String> {
    let st = Config::load(config)
        .and_then(|c| ServeState::load(c, 0))
        .map_err(|e| e.to_string())?;
    let idx = st
        .steered_index(name)
        .map_err(|e| format!("{e} in {}", config.display()))?;
    let health = HealthSnapshot::all_up(st.steering.members.len(), 0);
    let x = explain(&st, &health, ip, idx)?;
    serde_json::to_value(x).map_err(|e| e.to_string())
}

fn ask(api: &str, token: Option<&str>, ip: IpAddr, name: Option<&str>) -> Result<Value, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let url = format!("{}/v1/explain", api.trim_end_matches('/'));
    let _ = rustls::crypto::ring::default_provider().install_default();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        // An address and a DNS name need no escaping beyond what is refused.
        if name.is_some_and(|n| {
            !n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        }) {
            return Err(format!("--name {name:?} is not a DNS name"));
        }
        let q = match name {
            Some(n) => format!("{url}?ip={ip}&name={n}"),
            None => format!("{url}?ip={ip}"),
        };
        let mut req = client.get(&q);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = r.status();
        let v: Value = r.json().await.map_err(|e| format!("{url}: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "{url}: {status}: {}",
                v["error"].as_str().unwrap_or("")
            ));
        }
        Ok(v)
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

fn print_text(x: &Value) {
    println!(
        "client      {} (steered as {})",
        s(&x["ip"]),
        s(&x["subnet"])
    );
    let g = &x["geoip"];
    if g.is_null() {
        println!("geoip       not in the database");
    } else {
        let at = match (g["latitude"].as_f64(), g["longitude"].as_f64()) {
            (Some(a), Some(b)) => format!("{a:.4},{b:.4}"),
            _ => "-".into(),
        };
        println!(
            "geoip       country {} continent {} city {} at {at}",
            s(&g["country"]),
            s(&g["continent"]),
            s(&g["city"])
        );
    }
    println!(
        "network     {} (decided by {}); same decision for {}",
        s(&x["network"]),
        s(&x["decided_by"]),
        s(&x["scope_network"])
    );
    println!("regions:");
    for r in x["ranking"].as_array().into_iter().flatten() {
        let d = r["distance_km"]
            .as_f64()
            .map(|d| format!("{d:>8.0} km"))
            .unwrap_or_else(|| "       - km".into());
        println!(
            "  {:<16}{d}{}",
            s(&r["region"]),
            if r["by_override"] == true {
                "  (override)"
            } else {
                ""
            }
        );
    }
    let list = |v: &Value| -> String {
        v.as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "answer      {} {} {} -> {} [{}] ttl {}",
        s(&x["name"]),
        s(&x["rcode"]),
        s(&x["outcome"]),
        s(&x["region"]),
        list(&x["answer"]),
        s(&x["ttl"])
    );
    println!("members     {}", list(&x["members"]));
    println!("ecs scope   /{}", s(&x["ecs_scope"]));
    if let Some(h) = x["health"].as_array() {
        println!("health (this node's verdict; other nodes' votes; decision):");
        for m in h {
            let q = &m["quorum"];
            let votes: Vec<String> = q["votes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    format!(
                        "{} {} ({} s ago)",
                        s(&v["node"]),
                        if v["up"] == true { "up" } else { "down" },
                        v["age_ms"].as_u64().unwrap_or(0) / 1000
                    )
                })
                .collect();
            let basis = if q.is_null() {
                "alone (no membership)".to_string()
            } else if q["linked"] == false {
                "alone (cut off from etcd)".to_string()
            } else {
                format!(
                    "{}: {} of {} say down",
                    s(&q["basis"]),
                    s(&q["down_votes"]),
                    s(&q["voters"])
                )
            };
            println!(
                "  {:<24} own {:<8} votes [{}] -> {} ({basis})",
                s(&m["member"]),
                s(&m["verdict"]),
                votes.join(", "),
                s(&m["state"])
            );
        }
    }
}
