//! The I/O shell of the health quorum: this node's verdicts written to etcd
//! when they change, on a lease it keeps alive (so they count exactly while
//! it lives and reaches etcd), and the other nodes' votes watched into the
//! health hub, which decides (`health::quorum`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use geosteer_etcd::Etcd;
use tokio::time::Instant;

use crate::health::hub::VoteIdentity;
use crate::health::quorum::{vote_key, Vote};
use crate::health::HealthHub;

/// Starts publishing this node's votes and watching the others'; stops (and
/// revokes the vote lease, so the votes vanish at once) when `stop` turns true.
pub fn spawn_votes(etcd: Etcd, hub: Arc<HealthHub>, stop: tokio::sync::watch::Receiver<bool>) {
    let Some(id) = hub.vote_identity() else {
        return;
    };
    tokio::spawn(publish(etcd.clone(), id.clone(), hub.clone(), stop.clone()));
    tokio::spawn(watch(etcd, id.prefix, hub, stop));
}

async fn publish(
    etcd: Etcd,
    id: VoteIdentity,
    hub: Arc<HealthHub>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut rx = hub.verdicts();
    let mut lease = 0i64;
    let mut written: BTreeMap<String, Vote> = BTreeMap::new();
    let keep_every = Duration::from_millis(id.ttl_secs * 1000 / 3);
    let run = async {
        let mut next_keep = Instant::now() + keep_every;
        loop {
            if lease == 0 {
                match etcd.grant(id.ttl_secs).await {
                    Ok(l) => {
                        lease = l;
                        written.clear();
                        next_keep = Instant::now() + keep_every;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "vote lease grant failed");
                        hub.set_vote_lease(false);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let want = rx.borrow_and_update().clone();
            let synced = sync(&etcd, &id, lease, &want, &mut written).await;
            match &synced {
                // Only a call that reached etcd says the link works.
                Ok(true) => hub.set_vote_lease(true),
                Ok(false) => {}
                Err(e) if e.contains("lease not found") => {
                    lease = 0;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "writing health votes failed");
                    hub.set_vote_lease(false);
                }
            }
            // Retry a failed write soon; otherwise wait for a change or the
            // next keepalive.
            let wake = if synced.is_ok() {
                next_keep
            } else {
                next_keep.min(Instant::now() + Duration::from_secs(1))
            };
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() < next_keep {
                        continue;
                    }
                    match etcd.keepalive(lease).await {
                        Ok(t) if t > 0 => {
                            next_keep = Instant::now() + keep_every;
                            if synced.is_ok() {
                                hub.set_vote_lease(true);
                            }
                        }
                        Ok(_) => {
                            tracing::warn!("vote lease expired; voting again");
                            lease = 0;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "vote lease keepalive failed");
                            hub.set_vote_lease(false);
                            next_keep = Instant::now() + Duration::from_secs(1);
                        }
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = run => {}
        _ = stop.wait_for(|s| *s) => {}
    }
    if lease != 0 {
        let _ = etcd.revoke(lease).await;
    }
}

/// Writes the verdicts that differ from what etcd holds and deletes the
/// votes of members gone; true when it wrote anything.
async fn sync(
    etcd: &Etcd,
    id: &VoteIdentity,
    lease: i64,
    want: &BTreeMap<String, Vote>,
    written: &mut BTreeMap<String, Vote>,
) -> Result<bool, String> {
    let mut wrote = false;
    for (member, v) in want {
        if written.get(member) != Some(v) {
            let body = serde_json::to_vec(v).map_err(|e| e.to_string())?;
            etcd.put(&vote_key(&id.prefix, &id.node, member), &body, lease)
                .await?;
            written.insert(member.clone(), *v);
            wrote = true;
        }
    }
    let gone: Vec<String> = written
        .keys()
        .filter(|m| !want.contains_key(*m))
        .cloned()
        .collect();
    for member in gone {
        etcd.delete(&vote_key(&id.prefix, &id.node, &member))
            .await?;
        written.remove(&member);
        wrote = true;
    }
    Ok(wrote)
}

async fn watch(
    etcd: Etcd,
    prefix: String,
    hub: Arc<HealthHub>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // The link is lost only when etcd cannot be read (or the vote lease
    // cannot be kept: a silent partition hangs the stream, not the lease).
    let run = etcd.follow_prefix(
        &prefix,
        |kvs| hub.votes_replace(kvs),
        |events| hub.votes_apply(events),
        |e| {
            tracing::debug!(error = %e, "reading votes failed");
            hub.set_vote_watch(false);
        },
    );
    tokio::select! {
        _ = run => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}
