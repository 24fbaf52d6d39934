//! Semantic checks over a parsed [`ConfigFile`], collecting every problem.

use std::collections::HashSet;

use super::{ConfigErrors, ConfigFile};

const CONTINENTS: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

/// Checks everything that can be checked without reading other files.
pub(super) fn validate(c: &ConfigFile) -> Result<(), ConfigErrors> {
    let mut e = ConfigErrors::default();
    server(c, &mut e);
    if c.log.level.trim().is_empty() {
        e.push("log.level", "must not be empty");
    }
    steering(c, &mut e);
    regions(c, &mut e);
    pools(c, &mut e);
    if let Some(m) = &c.membership {
        for (k, msg) in m.problems() {
            e.push(format!("membership.{k}"), msg);
        }
    }
    overrides(c, &mut e);
    zones(c, &mut e);
    health(c, &mut e);
    api(c, &mut e);
    ice(c, &mut e);
    e.into_result()
}

fn server(c: &ConfigFile, e: &mut ConfigErrors) {
    if c.server.listen.is_empty() {
        e.push("server.listen", "needs at least one address");
    }
    let mut seen = HashSet::new();
    for (i, a) in c.server.listen.iter().enumerate() {
        if !seen.insert(a) {
            e.push(
                format!("server.listen[{i}]"),
                format!("{a} is listed twice"),
            );
        }
    }
    if !(512..=4096).contains(&c.server.max_udp_payload) {
        e.push("server.max_udp_payload", "must be within 512..=4096");
    }
    if c.server.udp_workers > 256 {
        e.push("server.udp_workers", "must be at most 256");
    }
    let t = &c.server.tcp;
    if !(1..=1_000_000).contains(&t.max_connections) {
        e.push("server.tcp.max_connections", "must be within 1..=1000000");
    }
    if t.max_connections_per_client == 0 || t.max_connections_per_client > t.max_connections {
        e.push(
            "server.tcp.max_connections_per_client",
            "must be within 1..=max_connections",
        );
    }
    if !(100..=3_600_000).contains(&t.idle_timeout_ms) {
        e.push("server.tcp.idle_timeout_ms", "must be within 100..=3600000");
    }
    if !(10..=60_000).contains(&t.io_timeout_ms) {
        e.push("server.tcp.io_timeout_ms", "must be within 10..=60000");
    }
    for (k, v) in [
        ("secret", &c.server.cookies.secret),
        ("previous_secret", &c.server.cookies.previous_secret),
    ] {
        if let Some(Err(m)) = v.as_deref().map(crate::dns::cookie::parse_secret) {
            e.push(format!("server.cookies.{k}"), m);
        }
    }
    if c.server.cookies.previous_secret.is_some() && c.server.cookies.secret.is_none() {
        e.push("server.cookies.previous_secret", "needs `secret` too");
    }
    let r = &c.server.rrl;
    if !(1..=1_000_000).contains(&r.responses_per_second) {
        e.push(
            "server.rrl.responses_per_second",
            "must be within 1..=1000000",
        );
    }
    if r.slip > 100 {
        e.push("server.rrl.slip", "must be within 0..=100");
    }
    if !(8..=32).contains(&r.ipv4_prefix) {
        e.push("server.rrl.ipv4_prefix", "must be within 8..=32");
    }
    if !(16..=64).contains(&r.ipv6_prefix) {
        e.push("server.rrl.ipv6_prefix", "must be within 16..=64");
    }
    if !(64..=1 << 24).contains(&r.table_size) || !r.table_size.is_power_of_two() {
        e.push(
            "server.rrl.table_size",
            "must be a power of two within 64..=16777216",
        );
    }
}

fn steering(c: &ConfigFile, e: &mut ConfigErrors) {
    let s = &c.steering;
    for (i, r) in s.default_regions.iter().enumerate() {
        if !c.regions.contains_key(r) {
            e.push(
                format!("steering.default_regions[{i}]"),
                format!("unknown region {r:?}"),
            );
        }
    }
    check_count("steering.answer_count", s.answer_count, e);
    check_ttl("steering.ttl", s.ttl, e);
    if !(1..=32).contains(&s.ecs_max_prefix_v4) {
        e.push("steering.ecs_max_prefix_v4", "must be within 1..=32");
    }
    if !(1..=128).contains(&s.ecs_max_prefix_v6) {
        e.push("steering.ecs_max_prefix_v6", "must be within 1..=128");
    }
}

fn check_count(path: &str, n: usize, e: &mut ConfigErrors) {
    if !(1..=8).contains(&n) {
        e.push(path, "must be within 1..=8");
    }
}

fn check_ttl(path: &str, ttl: u32, e: &mut ConfigErrors) {
    if ttl > 86_400 {
        e.push(path, "must be at most 86400 seconds");
    }
}

fn regions(c: &ConfigFile, e: &mut ConfigErrors) {
    if c.regions.is_empty() {
        e.push("regions", "needs at least one region");
    }
    for (name, r) in &c.regions {
        let p = format!("regions.{name}");
        if !is_label(name) {
            e.push(&p, "name must be a DNS label (letters, digits, '-')");
        }
        if !(-90.0..=90.0).contains(&r.latitude) {
            e.push(format!("{p}.latitude"), "must be within -90..=90");
        }
        if !(-180.0..=180.0).contains(&r.longitude) {
            e.push(format!("{p}.longitude"), "must be within -180..=180");
        }
    }
}

fn pools(c: &ConfigFile, e: &mut ConfigErrors) {
    for (pname, pool) in &c.pools {
        let pp = format!("pools.{pname}");
        if pool.members.is_empty() && c.membership.is_none() {
            e.push(format!("{pp}.members"), "needs at least one member");
        }
        let mut names = HashSet::new();
        for (i, m) in pool.members.iter().enumerate() {
            let mp = format!("{pp}.members[{i}]");
            if !is_label(&m.name) {
                e.push(
                    format!("{mp}.name"),
                    "must be a DNS label (letters, digits, '-')",
                );
            } else if !names.insert(m.name.to_ascii_lowercase()) {
                e.push(
                    format!("{mp}.name"),
                    format!("{:?} is used twice in the pool", m.name),
                );
            }
            if !c.regions.contains_key(&m.region) {
                e.push(
                    format!("{mp}.region"),
                    format!("unknown region {:?}", m.region),
                );
            }
            if m.addresses.is_empty() {
                e.push(format!("{mp}.addresses"), "needs at least one address");
            }
            for (j, a) in m.addresses.iter().enumerate() {
                if a.is_unspecified() || a.is_multicast() {
                    e.push(
                        format!("{mp}.addresses[{j}]"),
                        format!("{a} is not a usable unicast address"),
                    );
                }
            }
            if !(1..=65_535).contains(&m.weight) {
                e.push(format!("{mp}.weight"), "must be within 1..=65535");
            }
            if let Some(u) = &m.health_url {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    e.push(
                        format!("{mp}.health_url"),
                        "must be an http:// or https:// URL",
                    );
                }
            }
        }
    }
}

fn overrides(c: &ConfigFile, e: &mut ConfigErrors) {
    for (i, o) in c.overrides.iter().enumerate() {
        let p = format!("overrides[{i}]");
        let set = [o.cidr.is_some(), o.country.is_some(), o.continent.is_some()];
        if set.iter().filter(|&&b| b).count() != 1 {
            e.push(&p, "needs exactly one of cidr, country, continent");
        }
        if let Some(cidr) = o.cidr {
            if cidr.trunc() != cidr {
                e.push(
                    format!("{p}.cidr"),
                    format!("{cidr} has host bits set (did you mean {}?)", cidr.trunc()),
                );
            }
        }
        if let Some(cc) = &o.country {
            if cc.len() != 2 || !cc.bytes().all(|b| b.is_ascii_uppercase()) {
                e.push(
                    format!("{p}.country"),
                    "must be an ISO 3166-1 alpha-2 code like \"DE\"",
                );
            }
        }
        if let Some(ct) = &o.continent {
            if !CONTINENTS.contains(&ct.as_str()) {
                e.push(
                    format!("{p}.continent"),
                    "must be one of AF AN AS EU NA OC SA",
                );
            }
        }
        if o.regions.is_empty() {
            e.push(format!("{p}.regions"), "needs at least one region");
        }
        for (j, r) in o.regions.iter().enumerate() {
            if !c.regions.contains_key(r) {
                e.push(format!("{p}.regions[{j}]"), format!("unknown region {r:?}"));
            }
        }
    }
}

fn zones(c: &ConfigFile, e: &mut ConfigErrors) {
    if c.zones.is_empty() {
        e.push("zones", "needs at least one zone");
    }
    let mut origins = HashSet::new();
    for (i, z) in c.zones.iter().enumerate() {
        let zp = format!("zones[{i}]");
        let origin = z.origin.trim_end_matches('.').to_ascii_lowercase();
        if origin.is_empty() || !origin.split('.').all(is_label) {
            e.push(
                format!("{zp}.origin"),
                format!("{:?} is not a valid domain name", z.origin),
            );
        } else if !origins.insert(origin) {
            e.push(
                format!("{zp}.origin"),
                format!("zone {:?} is configured twice", z.origin),
            );
        }
        let mut names = HashSet::new();
        for (j, s) in z.steered.iter().enumerate() {
            let sp = format!("{zp}.steered[{j}]");
            if s.name != "@" && !s.name.split('.').all(is_label) {
                e.push(
                    format!("{sp}.name"),
                    "must be a relative name like \"turn\" or \"@\"",
                );
            } else if !names.insert(s.name.to_ascii_lowercase()) {
                e.push(
                    format!("{sp}.name"),
                    format!("{:?} is steered twice", s.name),
                );
            }
            if !c.pools.contains_key(&s.pool) {
                e.push(format!("{sp}.pool"), format!("unknown pool {:?}", s.pool));
            }
            if let Some(ttl) = s.ttl {
                check_ttl(&format!("{sp}.ttl"), ttl, e);
            }
            if let Some(n) = s.answer_count {
                check_count(&format!("{sp}.answer_count"), n, e);
            }
            for (k, srv) in s.srv.iter().enumerate() {
                let labels: Vec<&str> = srv.service.split('.').collect();
                let ok = labels.len() == 2
                    && labels
                        .iter()
                        .all(|l| l.len() > 1 && l.starts_with('_') && is_label(&l[1..]));
                if !ok {
                    e.push(
                        format!("{sp}.srv[{k}].service"),
                        "must look like \"_turn._udp\"",
                    );
                }
                if srv.port == 0 {
                    e.push(format!("{sp}.srv[{k}].port"), "must be > 0");
                }
            }
        }
    }
}

/// A DNS label of letters, digits and inner hyphens (RFC 1123).
pub(crate) fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn probe_timing(
    path: &str,
    interval: u64,
    timeout: u64,
    rise: u32,
    fall: u32,
    e: &mut ConfigErrors,
) {
    if !(250..=60_000).contains(&interval) {
        e.push(format!("{path}.interval_ms"), "must be within 250..=60000");
    }
    if timeout == 0 || timeout > interval {
        e.push(
            format!("{path}.timeout_ms"),
            format!("must be within 1..={interval} (the interval)"),
        );
    }
    if !(1..=100).contains(&rise) {
        e.push(format!("{path}.rise"), "must be within 1..=100");
    }
    if !(1..=100).contains(&fall) {
        e.push(format!("{path}.fall"), "must be within 1..=100");
    }
}

fn health(c: &ConfigFile, e: &mut ConfigErrors) {
    let h = &c.health;
    probe_timing("health", h.interval_ms, h.timeout_ms, h.rise, h.fall, e);
    if !(0.0..=1.0).contains(&h.low_watermark) {
        e.push("health.low_watermark", "must be within 0..=1");
    }
    if !(0.0..=1.0).contains(&h.high_watermark) || h.high_watermark < h.low_watermark {
        e.push("health.high_watermark", "must be within low_watermark..=1");
    }
    if h.startup_wait_ms > 60_000 {
        e.push("health.startup_wait_ms", "must be at most 60000");
    }
    if h.stun_port == 0 {
        e.push("health.stun_port", "must be > 0");
    }
    if h.max_holddown_ms < h.holddown_ms {
        e.push("health.max_holddown_ms", "must be at least holddown_ms");
    }
    check_ttl("steering.degraded_ttl", c.steering.degraded_ttl, e);
    for (name, p) in &c.pools {
        let o = &p.health;
        if o.interval_ms.is_some() || o.timeout_ms.is_some() || o.rise.is_some() || o.fall.is_some()
        {
            let interval = o.interval_ms.unwrap_or(h.interval_ms);
            probe_timing(
                &format!("pools.{name}.health"),
                interval,
                o.timeout_ms.unwrap_or(h.timeout_ms.min(interval)),
                o.rise.unwrap_or(h.rise),
                o.fall.unwrap_or(h.fall),
                e,
            );
        }
    }
}

fn api(c: &ConfigFile, e: &mut ConfigErrors) {
    let a = &c.api;
    if a.token.is_some() && a.token_file.is_some() {
        e.push("api", "set token or token_file, not both");
    }
    if let Some(t) = &a.token {
        if t.len() < 16 {
            e.push("api.token", "must be at least 16 characters");
        }
    }
    if let Some(t) = &a.read_token {
        if t.len() < 16 {
            e.push("api.read_token", "must be at least 16 characters");
        }
    }
}

fn ice(c: &ConfigFile, e: &mut ConfigErrors) {
    let Some(i) = &c.ice else { return };
    match (i.api_keys.is_empty(), &i.api_keys_file) {
        (true, None) => e.push("ice.api_keys", "needs at least one key (or api_keys_file)"),
        (false, Some(_)) => e.push("ice", "set api_keys or api_keys_file, not both"),
        _ => {}
    }
    for (n, k) in i.api_keys.iter().enumerate() {
        if k.len() < 16 {
            e.push(
                format!("ice.api_keys[{n}]"),
                "must be at least 16 characters",
            );
        }
    }
    match (i.secrets.is_empty(), &i.secrets_file) {
        (true, None) => e.push(
            "ice",
            "needs secrets or secrets_file (the relays' TURN REST shared secrets)",
        ),
        (false, Some(_)) => e.push("ice", "set secrets or secrets_file, not both"),
        _ => {}
    }
    if i.default_ttl == 0 || i.default_ttl > i.max_ttl {
        e.push("ice.default_ttl", "must be within 1..=max_ttl");
    }
    if i.port == 0 {
        e.push("ice.port", "must be > 0");
    }
    if c.api.listen.is_none() {
        e.push(
            "ice",
            "needs api.listen (the ICE-servers API is served there)",
        );
    }
    if let Some(h) = &i.hostname {
        if !h.trim_end_matches('.').split('.').all(is_label) {
            e.push("ice.hostname", format!("{h:?} is not a valid hostname"));
        }
    } else if c.zones.iter().all(|z| z.steered.is_empty()) {
        e.push("ice.hostname", "needed when no steered name is configured");
    }
}
