//! `[membership]` of a DNS node.

use geosteer_etcd::{unknown_problems, EtcdSettings, UnknownKeys};
use serde::Deserialize;

/// Where registered relays are found. The etcd connection keys sit directly
/// under `[membership]` and are the relay's ([`EtcdSettings`]).
#[derive(Debug, Clone, Deserialize)]
pub struct MembershipConfig {
    /// How to reach etcd, and the deployment's key namespace.
    #[serde(flatten)]
    pub etcd: EtcdSettings,
    /// Keys nothing above took (reported by [`MembershipConfig::problems`]).
    #[serde(flatten)]
    pub unknown: UnknownKeys,
}

impl MembershipConfig {
    /// Problems as (key under `membership.`, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut p = self.etcd.problems();
        p.extend(unknown_problems(&self.unknown));
        p
    }
}
