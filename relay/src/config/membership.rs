//! `[membership]` of a relay: how and as what it registers in etcd.

use std::net::IpAddr;

use geosteer_etcd::{is_key_segment, is_label, unknown_problems, EtcdSettings, UnknownKeys};
use serde::{Deserialize, Serialize};

/// `[membership]`: where and how to register. The etcd connection keys
/// (`endpoints`, `deployment`, `username`, `password_file`, `ca_file`,
/// `client_identity_file`) are [`EtcdSettings`], the same as a DNS node's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MembershipConfig {
    /// How to reach etcd, and the deployment's key namespace.
    #[serde(flatten)]
    pub etcd: EtcdSettings,
    /// Pool the relay joins.
    #[serde(default = "default_pool")]
    pub pool: String,
    /// Member name (a DNS label, unique in the pool); default: the host name.
    #[serde(default)]
    pub name: Option<String>,
    /// Addresses DNS hands out; default: `relay.external_ip`/`external_ipv6`,
    /// else `relay.ips`.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// Health URL DNS nodes probe; default: `http://<first address>:<listen.http port>/health`.
    #[serde(default)]
    pub health_url: Option<String>,
    /// Relative weight in the region.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Session capacity advertised (informational; load comes from `/health`).
    #[serde(default)]
    pub capacity: Option<u64>,
    /// Lease TTL, seconds (2..=300): how long a crashed relay stays registered.
    #[serde(default = "default_ttl")]
    pub lease_ttl_secs: u64,
    /// Keys nothing above took (reported by [`MembershipConfig::problems`]).
    #[serde(flatten, skip_serializing)]
    pub unknown: UnknownKeys,
}

fn default_pool() -> String {
    "turn".into()
}
fn default_weight() -> u32 {
    100
}
fn default_ttl() -> u64 {
    10
}

impl MembershipConfig {
    /// Problems as (key under `membership.`, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut p = self.etcd.problems();
        p.extend(unknown_problems(&self.unknown));
        if !is_key_segment(&self.pool) {
            p.push((
                "pool".into(),
                format!("{:?} must be [A-Za-z0-9_-]+", self.pool),
            ));
        }
        if let Some(n) = &self.name {
            if !is_label(n) {
                p.push(("name".into(), format!("{n:?} is not a DNS label")));
            }
        }
        if !(2..=300).contains(&self.lease_ttl_secs) {
            p.push(("lease_ttl_secs".into(), "must be 2..=300".into()));
        }
        if self.weight == 0 || self.weight > 65535 {
            p.push(("weight".into(), "must be 1..=65535".into()));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_fields_including_unknown_ones() {
        let m: MembershipConfig = toml::from_str(
            "endpoints = [\"etcd:2379\"]\ndeployment = \"a/b\"\nlease_ttl_secs = 1\nlease_ttl = 5",
        )
        .unwrap();
        let p: Vec<String> = m.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            p,
            ["endpoints[0]", "deployment", "lease_ttl", "lease_ttl_secs"]
        );
    }

    #[test]
    fn registration_value_rejects_unknown_fields() {
        let r: geosteer_etcd::Registration =
            serde_json::from_str(r#"{"region":"eu","addresses":["198.18.0.1"],"weight":5}"#)
                .unwrap();
        assert_eq!(r.weight, 5);
        assert!(serde_json::from_str::<geosteer_etcd::Registration>(
            r#"{"region":"eu","addresses":[],"x":1}"#
        )
        .is_err());
    }
}
