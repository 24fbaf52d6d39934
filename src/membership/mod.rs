//! Fleet membership from etcd: relays register themselves (see
//! `geosteer_relay::membership`, over the `geosteer_etcd` client); this node watches the deployment's prefix,
//! validates every key, and publishes the static members plus the accepted
//! registered ones as a new steering snapshot — the same path a reload takes.
//!
//! Static stability: when etcd is unreachable the last membership keeps
//! serving (`geosteer_membership_etcd_up 0`); a node started without etcd
//! serves its static members and catches up once etcd answers.

pub mod quorum;
mod registry;
mod watch;

pub use registry::{Members, Rejection};
pub use watch::spawn_watch;
