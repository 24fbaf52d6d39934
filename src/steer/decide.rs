//! The decision: which region and which members answer a client.

use serde::Serialize;

use super::hash::{mix, rendezvous_score, unit};
use super::model::{MemberId, PoolId, RegionId, Steering};
use super::rank::{rank_regions, Placement, RankedRegion};
use crate::config::AllDownPolicy;
use crate::health::HealthSnapshot;

/// How the answer came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The best-ranked region had usable members.
    Nearest,
    /// A later region in the ranking answered (the better ones had none usable).
    Failover,
    /// No primary member was usable; backup members answered.
    Backup,
    /// Nothing usable; answered as if all were healthy (fail-open policy).
    AllDownFailOpen,
    /// Nothing usable; backups answered regardless of health (backup-only policy).
    AllDownBackup,
    /// Nothing usable; SERVFAIL (servfail policy, or backup-only without backups).
    AllDownServfail,
}

/// The result of [`decide`].
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// How it was reached.
    pub outcome: Outcome,
    /// The region whose members answer (none for SERVFAIL).
    pub region: Option<RegionId>,
    /// Members to answer with, best first (at most the requested count).
    pub members: Vec<MemberId>,
    /// The choice depended on the client hash (more candidates than answer
    /// slots, or shedding): the answer is specific to the client's subnet.
    pub hashed: bool,
    /// Every region, best first.
    pub ranking: Vec<RankedRegion>,
}

/// Chooses the members of `pool` for a client.
///
/// Walks the ranked regions and takes the first with usable members (not down,
/// not shed for this client); within it, weighted rendezvous hashing on
/// `client` picks `count` members, so a client keeps its relay while it is
/// healthy and a member's loss moves only its own clients. Then backups, then
/// the all-down policy.
pub fn decide(
    s: &Steering,
    health: &HealthSnapshot,
    pool: PoolId,
    placement: Placement<'_>,
    client: u64,
    count: usize,
) -> Decision {
    decide_ranked(s, health, pool, rank_regions(s, placement), client, count)
}

/// [`decide`] with the ranking already computed (the server takes it from
/// its compiled [`super::CellMap`]).
pub fn decide_ranked(
    s: &Steering,
    health: &HealthSnapshot,
    pool: PoolId,
    ranking: Vec<RankedRegion>,
    client: u64,
    count: usize,
) -> Decision {
    let p = &s.pools[pool as usize];
    let usable = |m: MemberId| {
        let h = health.get(m);
        h.usable
            && (h.shed <= 0.0 || unit(mix(s.members[m as usize].seed ^ !client)) >= h.shed as f64)
    };
    for (i, rr) in ranking.iter().enumerate() {
        let candidates = &p.by_region[rr.region as usize];
        let (members, hashed) = pick(
            s,
            candidates.iter().copied().filter(|&m| usable(m)),
            client,
            count,
        );
        if members.is_empty() {
            continue;
        }
        let shedding = candidates.iter().any(|&m| health.get(m).shed > 0.0);
        return Decision {
            outcome: if i == 0 {
                Outcome::Nearest
            } else {
                Outcome::Failover
            },
            region: Some(rr.region),
            members,
            hashed: hashed || shedding,
            ranking,
        };
    }
    if let Some(d) = pick_backup(
        s,
        p.backups.iter().copied().filter(|&m| usable(m)),
        &ranking,
        client,
        count,
    ) {
        return Decision {
            outcome: Outcome::Backup,
            ranking,
            ..d
        };
    }
    match s.all_down {
        AllDownPolicy::FailOpen => {
            // Down members may still serve (the probes may be what is
            // broken); registered members never seen up are left out.
            for rr in &ranking {
                let (members, hashed) = pick(
                    s,
                    p.by_region[rr.region as usize]
                        .iter()
                        .copied()
                        .filter(|&m| health.get(m).fail_open),
                    client,
                    count,
                );
                if !members.is_empty() {
                    return Decision {
                        outcome: Outcome::AllDownFailOpen,
                        region: Some(rr.region),
                        members,
                        hashed,
                        ranking,
                    };
                }
            }
        }
        AllDownPolicy::BackupOnly => {
            if let Some(d) = pick_backup(s, p.backups.iter().copied(), &ranking, client, count) {
                return Decision {
                    outcome: Outcome::AllDownBackup,
                    ranking,
                    ..d
                };
            }
        }
        AllDownPolicy::Servfail => {}
    }
    Decision {
        outcome: Outcome::AllDownServfail,
        region: None,
        members: Vec::new(),
        hashed: false,
        ranking,
    }
}

/// The `count` best members by weighted rendezvous score; `hashed` when
/// there were more candidates than slots.
fn pick(
    s: &Steering,
    candidates: impl Iterator<Item = MemberId>,
    client: u64,
    count: usize,
) -> (Vec<MemberId>, bool) {
    let mut scored: Vec<(f64, MemberId)> = candidates
        .map(|m| {
            let mm = &s.members[m as usize];
            (rendezvous_score(mm.seed, client, mm.weight), m)
        })
        .collect();
    let hashed = scored.len() > count;
    scored.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.1.cmp(&b.1))
    });
    (
        scored.into_iter().take(count).map(|(_, m)| m).collect(),
        hashed,
    )
}

/// Backups of the best-ranked region that has any, never mixing regions.
fn pick_backup(
    s: &Steering,
    candidates: impl Iterator<Item = MemberId>,
    ranking: &[RankedRegion],
    client: u64,
    count: usize,
) -> Option<Decision> {
    let all: Vec<MemberId> = candidates.collect();
    let region: RegionId = ranking
        .iter()
        .map(|r| r.region)
        .find(|r| all.iter().any(|&m| s.members[m as usize].region == *r))?;
    let (members, hashed) = pick(
        s,
        all.into_iter()
            .filter(|&m| s.members[m as usize].region == region),
        client,
        count,
    );
    Some(Decision {
        outcome: Outcome::Backup,
        region: Some(region),
        members,
        hashed,
        ranking: Vec::new(),
    })
}
