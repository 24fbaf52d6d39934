//! `[membership]` of a DNS node.

use std::fmt;

use geosteer_etcd::{is_key_segment, unknown_problems, EtcdSettings, UnknownKeys};
use serde::Deserialize;

/// Where registered relays are found. The etcd connection keys sit directly
/// under `[membership]` and are the relay's ([`EtcdSettings`]).
#[derive(Debug, Clone, Deserialize)]
pub struct MembershipConfig {
    /// How to reach etcd, and the deployment's key namespace.
    #[serde(flatten)]
    pub etcd: EtcdSettings,
    /// This node's name in health votes (`[A-Za-z0-9_-]+`, unique in the
    /// deployment); default: the host name.
    #[serde(default)]
    pub node_name: Option<String>,
    /// How many of the DNS nodes voting on a member must see it down before
    /// it leaves answers (default: more than half).
    #[serde(default)]
    pub down_quorum: DownQuorum,
    /// Lease of this node's votes, seconds (2..=300): how long the votes of
    /// a node that died or lost etcd keep counting.
    #[serde(default = "default_vote_ttl")]
    pub vote_ttl_secs: u64,
    /// Keys nothing above took (reported by [`MembershipConfig::problems`]).
    #[serde(flatten)]
    pub unknown: UnknownKeys,
}

impl MembershipConfig {
    /// Problems as (key under `membership.`, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut p = self.etcd.problems();
        p.extend(unknown_problems(&self.unknown));
        if let Some(n) = &self.node_name {
            if !is_key_segment(n) {
                p.push(("node_name".into(), format!("{n:?} must be [A-Za-z0-9_-]+")));
            }
        }
        if let Some(e) = self.down_quorum.problem() {
            p.push(("down_quorum".into(), e));
        }
        if !(2..=300).contains(&self.vote_ttl_secs) {
            p.push(("vote_ttl_secs".into(), "must be 2..=300".into()));
        }
        p
    }

    /// This node's name in votes: `node_name`, else the host name.
    pub fn node(&self) -> Result<String, String> {
        match &self.node_name {
            Some(n) => Ok(n.clone()),
            None => geosteer_etcd::keys::host_label()
                .map_err(|e| format!("membership.node_name unset and {e}")),
        }
    }
}

fn default_vote_ttl() -> u64 {
    10
}

/// How many of the DNS nodes that see a member must call it down.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum DownQuorum {
    /// At least this many nodes (an integer in TOML: `down_quorum = 2`).
    Count(u32),
    /// More than this fraction of the voting nodes (a float in TOML:
    /// `down_quorum = 0.5` is a strict majority; `0.82` is Route 53's rule:
    /// healthy while more than ~18 % of the checkers say healthy).
    Fraction(f64),
}

impl Default for DownQuorum {
    /// A strict majority of the nodes that see the member.
    fn default() -> Self {
        DownQuorum::Fraction(0.5)
    }
}

impl DownQuorum {
    /// Problems with the value, for `membership.down_quorum`.
    pub fn problem(&self) -> Option<String> {
        match *self {
            DownQuorum::Count(0) => Some("a count must be at least 1".into()),
            DownQuorum::Fraction(f) if !(0.0..1.0).contains(&f) => Some(format!(
                "fraction {f} not in 0.0..1.0 (down when more than that share votes down)"
            )),
            _ => None,
        }
    }

    /// Whether `down` of `voters` votes reach the quorum. A count larger
    /// than the number of voters means all of them.
    pub fn reached(&self, down: u32, voters: u32) -> bool {
        if voters == 0 {
            return false;
        }
        match *self {
            DownQuorum::Count(k) => down >= k.min(voters),
            DownQuorum::Fraction(f) => f64::from(down) > f * f64::from(voters),
        }
    }
}

impl fmt::Display for DownQuorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownQuorum::Count(k) => write!(f, "{k} node(s)"),
            DownQuorum::Fraction(x) => write!(f, "more than {:.0} %", x * 100.0),
        }
    }
}
