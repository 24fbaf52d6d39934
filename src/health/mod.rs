//! Member health: probes, hysteresis, load shedding and operator overrides,
//! published as immutable snapshots for the query path.
//!
//! - [`tracker`]: the pure per-member state machine (rise/fall, hold-down
//!   against flapping, relay status and utilization → shed probability);
//!   time comes in as an argument.
//! - [`probe`]: HTTP (reqwest) and STUN probes.
//! - [`quorum`]: the pure decision across DNS nodes (this node's verdict and
//!   the other nodes' votes from etcd) and the vote book.
//! - [`hub`]: runs a prober per member, applies operator overrides and the
//!   quorum decision, publishes [`HealthSnapshot`]s and persists overrides.

pub mod hub;
pub mod probe;
pub mod quorum;
mod snapshot;
pub mod tracker;

pub use hub::{HealthHub, OperatorAction};
pub use snapshot::{HealthSnapshot, MemberHealth};
