//! The watch loop: read the prefix, watch from the next revision, publish
//! on change; on any failure keep the last membership and start over.

use std::sync::Arc;

use geosteer_etcd::Etcd;

use super::Members;
use crate::dns::Shared;
use crate::health::HealthHub;

/// Starts watching; stops when `stop` turns true.
pub fn spawn_watch(
    etcd: Etcd,
    members: Arc<Members>,
    shared: Arc<Shared>,
    hub: Arc<HealthHub>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let run = etcd.follow_prefix(
            members.prefix(),
            |kvs| {
                if !members.etcd_up() {
                    tracing::info!(keys = kvs.len(), "etcd reachable; membership in sync");
                }
                members.set_etcd_up(true);
                if members.replace(kvs) {
                    members.publish(&shared, &hub);
                }
            },
            |events| {
                members.set_etcd_up(true);
                if members.apply(events) {
                    members.publish(&shared, &hub);
                }
            },
            |e| {
                if members.etcd_up() {
                    tracing::warn!(error = %e, "etcd unreachable; serving the last membership seen");
                }
                members.set_etcd_up(false);
            },
        );
        tokio::select! {
            _ = run => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    });
}
