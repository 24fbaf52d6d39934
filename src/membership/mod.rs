//! Fleet membership from etcd (over the `geosteer_etcd` client): relays
//! register themselves (see `geosteer_relay::membership`); this node watches
//! the deployment's prefix, validates every key, and publishes the static
//! members plus the accepted registered ones as a new steering snapshot
//! (`registry`, `watch`). It also shares its health verdicts with the other
//! DNS nodes and watches theirs (`votes`; the decision is `health::quorum`).
//!
//! Static stability: when etcd is unreachable the last membership keeps
//! serving (`geosteer_membership_etcd_up 0`); a node started without etcd
//! serves its static members and catches up once etcd answers.

mod registry;
mod votes;
mod watch;

pub use geosteer_etcd::Rejection;
pub use registry::Members;
pub use votes::spawn_votes;
pub use watch::spawn_watch;
