//! The `geosteer` binary: check, explain, geoip build (reproducible demo DB).

mod common;

use std::process::Command;

use common::{repo, tmp_dir};

fn geosteer(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_geosteer"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_the_shipped_configs() {
    // answers.toml: a zone with wildcards, CNAME chains, delegations and
    // large RRsets beside a steered name.
    for cfg in [
        "zones/demo.toml",
        "tests/data/test.toml",
        "tests/data/answers.toml",
    ] {
        let (ok, out, err) = geosteer(&["check", "--config", repo(cfg).to_str().unwrap()]);
        assert!(ok, "{cfg}: {err}");
        assert!(out.contains("OK"), "{out}");
    }
}

#[test]
fn check_lists_every_problem_in_config_and_zone_files() {
    let dir = tmp_dir("cli-check");
    std::fs::write(
        dir.join("bad.zone"),
        "$TTL 60\n@ IN SOA ns hm 1 2 3 4 5\n@ IN NS ns\nns IN A 192.0.2.1\nturn IN A 192.0.2.9\nx IN A 300.1.1.1\ny IN MX nope\n",
    )
    .unwrap();
    let cfg = std::fs::read_to_string(repo("zones/demo.toml"))
        .unwrap()
        .replace("example.com.zone", "bad.zone")
        .replace("../geoip/demo.mmdb", "missing.mmdb");
    std::fs::write(dir.join("g.toml"), cfg).unwrap();
    let (ok, _, err) = geosteer(&["check", "--config", dir.join("g.toml").to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("geoip.database:") && err.contains("missing.mmdb"),
        "{err}"
    );
    assert!(err.contains("bad.zone:6:"), "bad A record line: {err}");
    assert!(err.contains("bad.zone:7:"), "bad MX record line: {err}");
    assert!(err.contains("3 problem(s)"), "{err}");
    // Fix the zone's syntax: the steered-name conflict is reported next.
    std::fs::write(
        dir.join("bad.zone"),
        "$TTL 60\n@ IN SOA ns hm 1 2 3 4 5\n@ IN NS ns\nns IN A 192.0.2.1\nturn IN A 192.0.2.9\n",
    )
    .unwrap();
    let (ok, _, err) = geosteer(&["check", "--config", dir.join("g.toml").to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("zones[0].steered[0]: turn.example.com. is steered"),
        "{err}"
    );
}

#[test]
fn explain_uses_the_server_logic() {
    let cfg = repo("zones/demo.toml");
    let (ok, out, err) = geosteer(&[
        "explain",
        "--config",
        cfg.to_str().unwrap(),
        "81.2.69.7",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["geoip"]["country"], "GB");
    assert_eq!(v["region"], "eu-central");
    assert_eq!(v["answer"][0], "127.0.2.1");
    // London's /24 and all the RIPE /8s from 80/8 to 95/8 rank the regions alike.
    assert_eq!(v["ecs_scope"], 4);
    assert_eq!(v["scope_network"], "80.0.0.0/4");
    assert_eq!(v["network"], "81.2.69.0/24");
    assert_eq!(v["subnet"], "81.2.69.0/24");
    assert_eq!(v["ranking"][0]["region"], "eu-central");
    assert_eq!(v["ranking"].as_array().unwrap().len(), 3);
    let (ok, out, _) = geosteer(&["explain", "--config", cfg.to_str().unwrap(), "203.0.113.9"]);
    assert!(ok);
    assert!(
        out.contains("decided by override") && out.contains("127.0.2.1"),
        "{out}"
    );
}

#[test]
fn the_bundled_demo_database_rebuilds_byte_for_byte() {
    let dir = tmp_dir("cli-geoip-build");
    let out = dir.join("demo.mmdb");
    let (ok, _, err) = geosteer(&[
        "geoip",
        "build",
        repo("geoip/demo-networks.txt").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(out).unwrap(),
        std::fs::read(repo("geoip/demo.mmdb")).unwrap()
    );
}
