//! The hub's side of the health quorum across DNS nodes: the other nodes'
//! votes (fed by `membership::votes` from etcd), whether this node is linked
//! to etcd, and this node's own verdicts for the vote publisher.

use std::collections::{BTreeMap, HashSet};

use geosteer_etcd::{Kv, WatchEvent};

use super::{lock, HealthHub, Inner};
use crate::config::DownQuorum;
use crate::health::quorum::{self, Decision, PeerVote, Vote, VoteBook};
use crate::health::tracker::State;

/// The quorum state of a hub whose node has `[membership]`.
pub(super) struct Quorum {
    pub(super) node: String,
    pub(super) prefix: String,
    pub(super) vote_ttl_secs: u64,
    pub(super) book: VoteBook,
    pub(super) rule: DownQuorum,
    /// This node's vote lease is alive (its votes count elsewhere).
    pub(super) lease_ok: bool,
    /// The votes watch is in sync.
    pub(super) watch_ok: bool,
    /// Members (`pool/member`) whose decision differs from this node's own
    /// verdict; kept across reloads and membership changes.
    pub(super) overruled: HashSet<String>,
    pub(super) disagreements_total: u64,
    pub(super) unlinked_total: u64,
}

impl Quorum {
    /// Other nodes' votes are used only while this node reaches etcd: cut
    /// off, it cannot see votes change or expire, so it decides alone.
    pub(super) fn linked(&self) -> bool {
        self.lease_ok && self.watch_ok
    }
}

/// Where and as whom this node votes.
#[derive(Debug, Clone)]
pub struct VoteIdentity {
    /// Key prefix of the deployment's votes.
    pub prefix: String,
    /// This node's name.
    pub node: String,
    /// Lease TTL of its votes, seconds.
    pub ttl_secs: u64,
}

/// The quorum view of one member, for `/v1/state` and explain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QuorumView {
    /// The decision (before operator overrides and draining).
    #[serde(flatten)]
    pub decision: Decision,
    /// The other nodes' votes.
    pub votes: Vec<PeerVote>,
    /// Whether this node reaches etcd (otherwise it decides alone).
    pub linked: bool,
}

pub(super) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether member `idx` is up: this node's own verdict, combined with the
/// other nodes' votes while linked.
pub(super) fn up(i: &Inner, idx: usize) -> bool {
    let key = &i.keys[idx];
    let own_up = i.trackers[key].state() == State::Up;
    match &i.quorum {
        Some(q) if q.linked() => {
            let (peers, down) = q.book.tally(key);
            quorum::tally(own_up, peers, down, q.rule).up
        }
        _ => own_up,
    }
}

/// How [`up`] was reached for member `idx`, with the votes seen (`None`
/// without `[membership]`).
pub(super) fn view(i: &Inner, idx: usize, now_ms: u64) -> Option<QuorumView> {
    let q = i.quorum.as_ref()?;
    let key = &i.keys[idx];
    let own_up = i.trackers[key].state() == State::Up;
    let votes = if q.linked() {
        q.book.for_member(key)
    } else {
        Vec::new()
    };
    let (decision, votes) = quorum::decide(own_up, &votes, q.rule, now_ms);
    Some(QuorumView {
        decision,
        votes,
        linked: q.linked(),
    })
}

/// This node's verdicts to publish: every member with a probe result.
pub(super) fn own_verdicts(i: &Inner) -> BTreeMap<String, Vote> {
    i.keys
        .iter()
        .filter_map(|k| {
            let t = &i.trackers[k];
            t.probed().then(|| {
                (
                    k.clone(),
                    Vote {
                        up: t.state() == State::Up,
                        at_unix_ms: i.verdict_at.get(k).copied().unwrap_or(1),
                    },
                )
            })
        })
        .collect()
}

impl HealthHub {
    /// Where and as whom this node votes (`None` without `[membership]`).
    pub fn vote_identity(&self) -> Option<VoteIdentity> {
        lock(&self.inner).quorum.as_ref().map(|q| VoteIdentity {
            prefix: q.prefix.clone(),
            node: q.node.clone(),
            ttl_secs: q.vote_ttl_secs,
        })
    }

    /// This node's verdicts by `pool/member`, updated when one changes.
    pub fn verdicts(&self) -> tokio::sync::watch::Receiver<BTreeMap<String, Vote>> {
        self.verdicts.subscribe()
    }

    pub(super) fn send_verdicts(&self, i: &Inner) {
        let v = own_verdicts(i);
        self.verdicts.send_if_modified(|cur| {
            if *cur == v {
                false
            } else {
                *cur = v;
                true
            }
        });
    }

    /// Replaces the other nodes' votes with a full read.
    pub fn votes_replace(&self, kvs: Vec<Kv>) {
        self.with_quorum(|q| {
            q.book.replace(kvs);
            q.watch_ok = true;
        });
    }

    /// Applies vote watch events.
    pub fn votes_apply(&self, events: Vec<WatchEvent>) {
        self.with_quorum(|q| q.book.apply(events));
    }

    /// Whether this node's vote lease is alive.
    pub fn set_vote_lease(&self, ok: bool) {
        self.with_quorum(|q| q.lease_ok = ok);
    }

    /// Whether the votes watch is in sync.
    pub fn set_vote_watch(&self, ok: bool) {
        self.with_quorum(|q| q.watch_ok = ok);
    }

    fn with_quorum(&self, f: impl FnOnce(&mut Quorum)) {
        {
            let mut i = lock(&self.inner);
            let Some(q) = i.quorum.as_mut() else { return };
            let was = q.linked();
            f(q);
            let now = q.linked();
            if was != now {
                if now {
                    tracing::info!(
                        "etcd reachable: health decided with the other DNS nodes' votes"
                    );
                } else {
                    q.unlinked_total += 1;
                    tracing::warn!(
                        "cut off from etcd: health decided on this node's own probes until it is back"
                    );
                }
            }
        }
        self.publish();
    }
}
