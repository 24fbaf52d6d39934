//! The watch loop: read the prefix, watch from the next revision, publish
//! on change; on any failure keep the last membership and start over.

use std::sync::Arc;
use std::time::Duration;

use geosteer_etcd::Etcd;

use super::Members;
use crate::config::{Config, MembershipConfig};
use crate::dns::Shared;
use crate::health::HealthHub;

/// Starts watching; stops when `stop` turns true.
pub fn spawn_watch(
    cfg: &MembershipConfig,
    base: &Config,
    members: Arc<Members>,
    shared: Arc<Shared>,
    hub: Arc<HealthHub>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let etcd = Etcd::new(cfg.etcd.options(|p| base.resolve(p))?)?;
    tokio::spawn(async move {
        let run = async {
            let mut backoff = Duration::from_millis(250);
            loop {
                match etcd.range_prefix(members.prefix()).await {
                    Ok((rev, kvs)) => {
                        if !members_up(&members) {
                            tracing::info!(keys = kvs.len(), "etcd reachable; membership in sync");
                        }
                        members.set_etcd_up(true);
                        backoff = Duration::from_millis(250);
                        if members.replace(kvs) {
                            members.publish(&shared, &hub);
                        }
                        let r = etcd
                            .watch_prefix(members.prefix(), rev + 1, |_, events| {
                                members.set_etcd_up(true);
                                if members.apply(events) {
                                    members.publish(&shared, &hub);
                                }
                            })
                            .await;
                        if let Err(e) = r {
                            tracing::warn!(error = %e, "etcd watch ended; re-reading");
                        }
                    }
                    Err(e) => {
                        if members_up(&members) {
                            tracing::warn!(error = %e, "etcd unreachable; serving the last membership seen");
                        }
                        members.set_etcd_up(false);
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        };
        tokio::select! {
            _ = run => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    });
    Ok(())
}

fn members_up(m: &Members) -> bool {
    m.etcd_up()
}
