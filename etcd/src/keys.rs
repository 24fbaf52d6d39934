//! The fleet's key schema in etcd: where members register and DNS nodes
//! vote, what a member's value holds, and the name rules both sides check.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// `[A-Za-z0-9_-]+`: safe inside an etcd key path.
pub fn is_key_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A DNS label (letters, digits, hyphen; not at the ends).
pub fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The value stored under a member key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Region name (must exist in the DNS nodes' config).
    pub region: String,
    /// Addresses handed out.
    pub addresses: Vec<IpAddr>,
    /// Health endpoint to probe.
    #[serde(default)]
    pub health_url: Option<String>,
    /// Relative weight in the region.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Advertised session capacity.
    #[serde(default)]
    pub capacity: Option<u64>,
}

/// Key prefix of a deployment's members: `/geosteer/<deployment>/members/`.
pub fn members_prefix(deployment: &str) -> String {
    format!("/geosteer/{deployment}/members/")
}

/// Key prefix of a deployment's health votes: `/geosteer/<deployment>/votes/`.
pub fn votes_prefix(deployment: &str) -> String {
    format!("/geosteer/{deployment}/votes/")
}

fn default_weight() -> u32 {
    100
}

/// Why a key read from etcd was not taken (a member registration or a
/// health vote): logged once per key and counted by reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Metric label, e.g. `json`, `region`, `vote_key`.
    pub reason: &'static str,
    /// What is wrong, for the log.
    pub message: String,
}

/// This machine's host name as a DNS label (the part before the first dot,
/// lower case): the default member or node name.
pub fn host_label() -> Result<String, String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_err(|e| format!("no host name: {e}"))?;
    let h = h
        .trim()
        .split('.')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if is_label(&h) {
        Ok(h)
    } else {
        Err(format!("host name {h:?} is not a DNS label"))
    }
}
