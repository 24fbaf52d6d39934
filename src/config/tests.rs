//! Validation reports every problem with its key path.

use std::path::Path;

use super::Config;

const GOOD: &str = r#"
[geoip]
database = "db.mmdb"
[regions.eu]
latitude = 50.1
longitude = 8.7
[pools.turn]
members = [{ name = "a", region = "eu", addresses = ["192.0.2.1"] }]
[[zones]]
origin = "example.com"
file = "example.com.zone"
[[zones.steered]]
name = "turn"
pool = "turn"
"#;

fn errors(text: &str) -> Vec<String> {
    match Config::from_str(text, Path::new("/etc/geosteer/g.toml")) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn a_good_config_loads_with_defaults_and_resolves_paths() {
    let c = Config::from_str(GOOD, Path::new("/etc/geosteer/g.toml")).unwrap();
    assert_eq!(c.file.steering.answer_count, 2);
    assert_eq!(c.file.steering.ttl, 30);
    assert_eq!(c.file.zones[0].steered[0].srv.len(), 3);
    assert_eq!(
        c.resolve(Path::new("db.mmdb")),
        Path::new("/etc/geosteer/db.mmdb")
    );
    assert_eq!(c.resolve(Path::new("/x/y")), Path::new("/x/y"));
}

#[test]
fn every_problem_is_listed_with_its_path() {
    let bad = r#"
[server]
listen = []
max_udp_payload = 100
[geoip]
database = "db.mmdb"
[steering]
default_regions = ["mars"]
answer_count = 0
[regions.eu]
latitude = 91.0
longitude = 8.7
[regions."bad name"]
latitude = 0.0
longitude = 0.0
[pools.turn]
members = [
  { name = "a", region = "eu", addresses = ["192.0.2.1"] },
  { name = "a", region = "nowhere", addresses = [] },
  { name = "-x", region = "eu", addresses = ["0.0.0.0"], weight = 0 },
]
[[overrides]]
cidr = "198.51.100.7/24"
country = "de"
regions = ["moon"]
[[zones]]
origin = "example..com"
file = "z"
[[zones.steered]]
name = "turn"
pool = "nope"
srv = [{ service = "turn.udp", port = 0 }]
"#;
    let e = errors(bad);
    for want in [
        "server.listen: needs at least one address",
        "server.max_udp_payload: must be within 512..=4096",
        "steering.default_regions[0]: unknown region \"mars\"",
        "steering.answer_count: must be within 1..=8",
        "regions.eu.latitude: must be within -90..=90",
        "regions.bad name: name must be a DNS label",
        "pools.turn.members[1].name: \"a\" is used twice in the pool",
        "pools.turn.members[1].region: unknown region \"nowhere\"",
        "pools.turn.members[1].addresses: needs at least one address",
        "pools.turn.members[2].name: must be a DNS label",
        "pools.turn.members[2].addresses[0]: 0.0.0.0 is not a usable unicast address",
        "pools.turn.members[2].weight: must be within 1..=65535",
        "overrides[0]: needs exactly one of cidr, country, continent",
        "overrides[0].cidr: 198.51.100.7/24 has host bits set",
        "overrides[0].country: must be an ISO 3166-1 alpha-2 code",
        "overrides[0].regions[0]: unknown region \"moon\"",
        "zones[0].origin: \"example..com\" is not a valid domain name",
        "zones[0].steered[0].pool: unknown pool \"nope\"",
        "zones[0].steered[0].srv[0].service: must look like \"_turn._udp\"",
        "zones[0].steered[0].srv[0].port: must be > 0",
    ] {
        assert!(
            e.iter().any(|x| x.starts_with(want)),
            "missing {want:?} in\n{}",
            e.join("\n")
        );
    }
    assert_eq!(e.len(), 20, "{}", e.join("\n"));
}

#[test]
fn syntax_errors_and_unknown_keys_name_file_and_line() {
    let e = errors("[geoip]\ndatabase = \"x\"\n[regions.eu]\nlatitude = 1.0\nlongitud = 2.0\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("/etc/geosteer/g.toml:5: unknown field `longitud`"),
        "{e:?}"
    );
    let e = errors("[geoip\n");
    assert!(e[0].starts_with("/etc/geosteer/g.toml:1:"), "{e:?}");
}

#[test]
fn membership_keys_are_checked_including_misspelt_ones() {
    let text = format!(
        "{GOOD}[membership]\nendpoints = [\"http://127.0.0.1:2379\"]\ndeployment = \"x/y\"\nca-file = \"ca.pem\"\n"
    );
    let e = errors(&text);
    assert!(
        e.iter().any(|e| e.contains("membership.deployment")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("membership.ca-file") && e.contains("unknown key")),
        "{e:?}"
    );
}
