//! Health quorum across DNS nodes: the pure decision and the vote format.
//!
//! Each DNS node publishes its own probe verdict for every member under
//! `/geosteer/<deployment>/votes/<node>/<pool>/<member>` when it changes, on
//! a lease the node keeps alive, so a vote counts exactly while its node is
//! alive and reaches etcd (a dead node's votes expire with its lease). A
//! member is taken out of answers when the down votes of the nodes that
//! vote on it, this one included, reach the configured [`DownQuorum`]; with
//! no vote from another node (no etcd, this node cut off from etcd, no other
//! node has probed the member yet) a node decides alone, as without
//! membership. The I/O shell is `membership::votes`.
//!
//! Everything here is free of I/O and time sources: `now` comes in as an
//! argument, so it is unit-tested without a network.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use geosteer_etcd::{is_key_segment, is_label, Kv, Rejection, WatchEvent};
use serde::{Deserialize, Serialize};

use crate::config::DownQuorum;

/// The value stored under a vote key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vote {
    /// The voting node's probes say the member is up.
    pub up: bool,
    /// When the verdict was last confirmed (unix milliseconds).
    pub at_unix_ms: u64,
}

/// A vote of another DNS node for one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerVote {
    /// The voting DNS node.
    pub node: String,
    /// Its verdict.
    pub up: bool,
    /// How long ago it formed this verdict, ms.
    pub age_ms: u64,
}

/// How a member's effective state was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// No vote from another node: this node's own verdict.
    Alone,
    /// The votes of every node that sees the member, this one included.
    Quorum,
}

/// The decision for one member.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Up for steering (before operator overrides and draining).
    pub up: bool,
    /// Alone or by quorum.
    pub basis: Basis,
    /// Nodes voting (this one included).
    pub voters: u32,
    /// Of which say down.
    pub down_votes: u32,
}

/// The effective state of a member from this node's own verdict and the
/// other nodes' votes (each alive while its node's lease is): down when the
/// down votes, own included, reach `quorum`; alone without other votes.
pub fn decide(
    own_up: bool,
    votes: &[(String, Vote)],
    quorum: DownQuorum,
    now_unix_ms: u64,
) -> (Decision, Vec<PeerVote>) {
    let peers: Vec<PeerVote> = votes
        .iter()
        .map(|(node, v)| PeerVote {
            node: node.clone(),
            up: v.up,
            age_ms: now_unix_ms.saturating_sub(v.at_unix_ms),
        })
        .collect();
    let down = peers.iter().filter(|p| !p.up).count() as u32;
    (tally(own_up, peers.len() as u32, down, quorum), peers)
}

/// [`decide`] from counts: `peers` other nodes vote, `peers_down` of them
/// say down.
pub fn tally(own_up: bool, peers: u32, peers_down: u32, quorum: DownQuorum) -> Decision {
    let own_down = u32::from(!own_up);
    if peers == 0 {
        return Decision {
            up: own_up,
            basis: Basis::Alone,
            voters: 1,
            down_votes: own_down,
        };
    }
    let (voters, down_votes) = (peers + 1, peers_down + own_down);
    Decision {
        up: !quorum.reached(down_votes, voters),
        basis: Basis::Quorum,
        voters,
        down_votes,
    }
}

/// Key of this node's vote for `member` (`pool/name`).
pub fn vote_key(votes_prefix: &str, node: &str, member: &str) -> String {
    format!("{votes_prefix}{node}/{member}")
}

/// Parses one vote key and value: (voting node, `pool/member`, vote).
/// Anything malformed is a [`Rejection`] naming what is wrong.
pub fn parse_vote(
    votes_prefix: &str,
    key: &str,
    value: &[u8],
) -> Result<(String, String, Vote), Rejection> {
    let rej = |reason, message: String| Rejection { reason, message };
    let rest = key
        .strip_prefix(votes_prefix)
        .ok_or_else(|| rej("vote_key", format!("not under {votes_prefix}")))?;
    let mut parts = rest.split('/');
    let (Some(node), Some(pool), Some(member), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(rej(
            "vote_key",
            format!("expected {votes_prefix}<node>/<pool>/<member>"),
        ));
    };
    if !is_key_segment(node) || !is_key_segment(pool) || !is_label(member) {
        return Err(rej(
            "vote_key",
            format!("bad node, pool or member name in {rest:?}"),
        ));
    }
    let v: Vote = serde_json::from_slice(value)
        .map_err(|e| rej("vote_json", format!("not a health vote: {e}")))?;
    if v.at_unix_ms == 0 {
        return Err(rej("vote_json", "at_unix_ms must be set".into()));
    }
    Ok((node.to_string(), format!("{pool}/{member}"), v))
}

/// The other DNS nodes' votes as last read from etcd, validated per key.
/// Fed by a full read or watch events (as [`super::Members`] is); a bad key
/// is logged and counted once and ignored, never poisoning the others.
#[derive(Debug, Default)]
pub struct VoteBook {
    prefix: String,
    own_node: String,
    /// `pool/member` → (node → vote).
    votes: BTreeMap<String, BTreeMap<String, Vote>>,
    /// Keys currently rejected, with why.
    rejected: BTreeMap<String, Rejection>,
    rejected_total: BTreeMap<&'static str, u64>,
    /// Which (member, node) each accepted key holds, for deletes.
    keys: BTreeMap<String, (String, String)>,
}

impl VoteBook {
    /// An empty book for votes under `prefix`; `own_node`'s votes are skipped
    /// (a node's own verdict comes from its probes, not from etcd).
    pub fn new(prefix: &str, own_node: &str) -> VoteBook {
        VoteBook {
            prefix: prefix.to_string(),
            own_node: own_node.to_string(),
            ..VoteBook::default()
        }
    }

    /// Replaces everything with a full read.
    pub fn replace(&mut self, kvs: Vec<Kv>) {
        self.votes.clear();
        self.keys.clear();
        let mut rejected = BTreeMap::new();
        for kv in kvs {
            if let Err(r) = self.put(&kv.key, &kv.value) {
                rejected.insert(kv.key, r);
            }
        }
        for (k, r) in &rejected {
            self.count(k, r);
        }
        self.rejected = rejected;
    }

    /// Applies watch events.
    pub fn apply(&mut self, events: Vec<WatchEvent>) {
        for e in events {
            match e {
                WatchEvent::Put(kv) => {
                    self.remove(&kv.key);
                    match self.put(&kv.key, &kv.value) {
                        Ok(()) => {
                            self.rejected.remove(&kv.key);
                        }
                        Err(r) => {
                            self.count(&kv.key, &r);
                            self.rejected.insert(kv.key, r);
                        }
                    }
                }
                WatchEvent::Delete(k) => {
                    self.remove(&k);
                    self.rejected.remove(&k);
                }
            }
        }
    }

    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), Rejection> {
        let (node, member, v) = parse_vote(&self.prefix, key, value)?;
        if node == self.own_node {
            return Ok(());
        }
        self.votes
            .entry(member.clone())
            .or_default()
            .insert(node.clone(), v);
        self.keys.insert(key.to_string(), (member, node));
        Ok(())
    }

    fn remove(&mut self, key: &str) {
        if let Some((member, node)) = self.keys.remove(key) {
            if let Some(m) = self.votes.get_mut(&member) {
                m.remove(&node);
                if m.is_empty() {
                    self.votes.remove(&member);
                }
            }
        }
    }

    fn count(&mut self, key: &str, r: &Rejection) {
        if self.rejected.get(key) != Some(r) {
            tracing::warn!(key, reason = r.reason, error = %r.message, "etcd health vote rejected");
            *self.rejected_total.entry(r.reason).or_default() += 1;
        }
    }

    /// How many other nodes vote on `member` (`pool/name`), and how many
    /// of them say down (no allocation: this runs for every member on every
    /// health change).
    pub fn tally(&self, member: &str) -> (u32, u32) {
        self.votes.get(member).map_or((0, 0), |m| {
            let down = m.values().filter(|v| !v.up).count();
            (m.len() as u32, down as u32)
        })
    }

    /// The other nodes' votes for `member` (`pool/name`).
    pub fn for_member(&self, member: &str) -> Vec<(String, Vote)> {
        self.votes
            .get(member)
            .map(|m| m.iter().map(|(n, v)| (n.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// Prometheus text: rejected vote keys, by reason.
    pub fn render_metrics(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP geosteer_quorum_votes_invalid Health vote keys currently rejected.\n# TYPE geosteer_quorum_votes_invalid gauge\ngeosteer_quorum_votes_invalid {}", self.rejected.len());
        let _ = writeln!(out, "# HELP geosteer_quorum_votes_rejected_total etcd health vote keys rejected, by reason.\n# TYPE geosteer_quorum_votes_rejected_total counter");
        for (reason, n) in &self.rejected_total {
            let _ = writeln!(
                out,
                "geosteer_quorum_votes_rejected_total{{reason=\"{reason}\"}} {n}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn votes(v: &[(&str, bool, u64)]) -> Vec<(String, Vote)> {
        v.iter()
            .map(|&(n, up, at)| (n.to_string(), Vote { up, at_unix_ms: at }))
            .collect()
    }

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn alone_without_peer_votes() {
        let q = DownQuorum::default();
        let (d, _) = decide(false, &[], q, NOW);
        assert_eq!((d.up, d.basis), (false, Basis::Alone));
        let (d, _) = decide(true, &[], q, NOW);
        assert_eq!((d.up, d.basis, d.voters), (true, Basis::Alone, 1));
        // A vote formed long ago still counts while its node's lease lives;
        // its age is shown.
        let (d, p) = decide(false, &votes(&[("b", true, NOW - 3_600_000)]), q, NOW);
        assert_eq!((d.up, d.basis), (true, Basis::Quorum));
        assert_eq!(p[0].age_ms, 3_600_000);
    }

    #[test]
    fn one_cut_node_does_not_fail_a_member_over() {
        let q = DownQuorum::default();
        // Two nodes: this one sees it down, the other up → stays up.
        let (d, _) = decide(false, &votes(&[("b", true, NOW - 100)]), q, NOW);
        assert_eq!(
            d,
            Decision {
                up: true,
                basis: Basis::Quorum,
                voters: 2,
                down_votes: 1
            }
        );
        // Three nodes, one cut → up; two see it down → down everywhere.
        let three = votes(&[("b", true, NOW), ("c", true, NOW)]);
        assert!(decide(false, &three, q, NOW).0.up);
        let three = votes(&[("b", false, NOW), ("c", true, NOW)]);
        assert!(!decide(false, &three, q, NOW).0.up);
        // ... including on the node whose own path still works.
        assert!(
            !decide(
                true,
                &votes(&[("b", false, NOW), ("c", false, NOW)]),
                q,
                NOW
            )
            .0
            .up
        );
        // Really dead: everyone says down.
        assert!(!decide(false, &votes(&[("b", false, NOW)]), q, NOW).0.up);
    }

    #[test]
    fn quorum_rules() {
        let r53 = DownQuorum::Fraction(0.82);
        // Route 53's rule: healthy while more than ~18 % say healthy.
        assert!(!r53.reached(4, 5));
        assert!(r53.reached(5, 5));
        // 2 of 10 healthy (20 %) keeps it up; 1 of 10 (10 %) does not.
        assert!(!r53.reached(8, 10));
        assert!(r53.reached(9, 10));
        assert!(DownQuorum::Fraction(0.5).reached(2, 3));
        assert!(!DownQuorum::Fraction(0.5).reached(1, 2));
        assert!(DownQuorum::Fraction(0.0).reached(1, 2));
        assert!(DownQuorum::Count(2).reached(2, 3));
        assert!(!DownQuorum::Count(2).reached(1, 3));
        // A count above the voters means all of them.
        assert!(DownQuorum::Count(5).reached(2, 2));
        assert!(!DownQuorum::Count(5).reached(1, 2));
        assert!(!DownQuorum::Count(1).reached(0, 0));
        assert!(DownQuorum::Count(0).problem().is_some());
        assert!(DownQuorum::Fraction(1.0).problem().is_some());
        assert!(DownQuorum::Fraction(-0.1).problem().is_some());
        assert!(DownQuorum::Fraction(0.82).problem().is_none());
    }

    #[test]
    fn quorum_parses_as_count_or_fraction() {
        #[derive(Deserialize)]
        struct T {
            q: DownQuorum,
        }
        let t: T = toml::from_str("q = 2").unwrap();
        assert_eq!(t.q, DownQuorum::Count(2));
        let t: T = toml::from_str("q = 0.82").unwrap();
        assert_eq!(t.q, DownQuorum::Fraction(0.82));
        assert!(toml::from_str::<T>("q = \"most\"").is_err());
    }

    #[test]
    fn bad_votes_are_rejected_with_a_reason() {
        let p = "/geosteer/t/votes/";
        let ok = parse_vote(
            p,
            "/geosteer/t/votes/dns-a/turn/fra1",
            br#"{"up":false,"at_unix_ms":7}"#,
        )
        .unwrap();
        assert_eq!(
            ok,
            (
                "dns-a".into(),
                "turn/fra1".into(),
                Vote {
                    up: false,
                    at_unix_ms: 7
                }
            )
        );
        let reason = |k: &str, v: &str| parse_vote(p, k, v.as_bytes()).unwrap_err().reason;
        let good = r#"{"up":true,"at_unix_ms":7}"#;
        assert_eq!(reason("/geosteer/t/votes/dns-a/turn", good), "vote_key");
        assert_eq!(reason("/geosteer/t/votes/dns-a/turn/x/y", good), "vote_key");
        assert_eq!(reason("/geosteer/t/votes/a b/turn/x", good), "vote_key");
        assert_eq!(reason("/geosteer/t/votes/a/turn/x", "{up"), "vote_json");
        assert_eq!(
            reason(
                "/geosteer/t/votes/a/turn/x",
                r#"{"up":"yes","at_unix_ms":7}"#
            ),
            "vote_json"
        );
        assert_eq!(
            reason(
                "/geosteer/t/votes/a/turn/x",
                r#"{"up":true,"at_unix_ms":7,"x":1}"#
            ),
            "vote_json"
        );
        assert_eq!(
            reason(
                "/geosteer/t/votes/a/turn/x",
                r#"{"up":true,"at_unix_ms":0}"#
            ),
            "vote_json"
        );
        assert_eq!(
            vote_key(p, "dns-a", "turn/fra1"),
            "/geosteer/t/votes/dns-a/turn/fra1"
        );
    }

    #[test]
    fn vote_book_keeps_good_votes_and_counts_bad_ones_once() {
        let p = "/geosteer/t/votes/";
        let kv = |k: &str, v: &str| Kv {
            key: format!("{p}{k}"),
            value: v.as_bytes().to_vec(),
            mod_revision: 1,
        };
        let mut b = VoteBook::new(p, "me");
        b.replace(vec![
            kv("b/turn/fra1", r#"{"up":false,"at_unix_ms":5}"#),
            kv("c/turn/fra1", r#"{"up":true,"at_unix_ms":6}"#),
            kv("me/turn/fra1", r#"{"up":true,"at_unix_ms":6}"#),
            kv("d/turn/fra1", "{oops"),
            kv("d/turn", r#"{"up":true,"at_unix_ms":6}"#),
        ]);
        assert_eq!(
            b.for_member("turn/fra1"),
            votes(&[("b", false, 5), ("c", true, 6)])
        );
        assert_eq!(b.tally("turn/fra1"), (2, 1));
        assert_eq!(b.tally("turn/other"), (0, 0));
        // Re-reading the same bad keys counts nothing twice.
        b.replace(vec![
            kv("b/turn/fra1", r#"{"up":false,"at_unix_ms":5}"#),
            kv("d/turn/fra1", "{oops"),
            kv("d/turn", r#"{"up":true,"at_unix_ms":6}"#),
        ]);
        assert_eq!(b.for_member("turn/fra1"), votes(&[("b", false, 5)]));
        let mut out = String::new();
        b.render_metrics(&mut out);
        assert!(out.contains("geosteer_quorum_votes_invalid 2"), "{out}");
        assert!(out.contains("reason=\"vote_json\"} 1"), "{out}");
        assert!(out.contains("reason=\"vote_key\"} 1"), "{out}");
        // A watch fixes a bad key, turns a good one bad, and expires one.
        b.apply(vec![
            WatchEvent::Put(kv("d/turn/fra1", r#"{"up":false,"at_unix_ms":9}"#)),
            WatchEvent::Put(kv("b/turn/fra1", "[]")),
            WatchEvent::Delete(format!("{p}d/turn")),
        ]);
        assert_eq!(b.for_member("turn/fra1"), votes(&[("d", false, 9)]));
        b.apply(vec![WatchEvent::Delete(format!("{p}d/turn/fra1"))]);
        assert!(b.for_member("turn/fra1").is_empty());
        let mut out = String::new();
        b.render_metrics(&mut out);
        assert!(out.contains("geosteer_quorum_votes_invalid 1"), "{out}");
        assert!(out.contains("reason=\"vote_json\"} 2"), "{out}");
    }
}
