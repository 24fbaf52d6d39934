//! The steering core: a pure function from (configuration, health snapshot,
//! client placement) to the members to answer with.
//!
//! No sockets, no clocks, no locks: everything it needs comes in as
//! arguments, so it is unit-tested and benchmarked in isolation and the DNS
//! server, `geosteer explain` and the API all call the very same code.

mod cells;
mod decide;
mod hash;
mod model;
mod rank;

pub use crate::config::AllDownPolicy;
pub use cells::{CellHit, CellMap, Class};
pub use decide::{decide, decide_ranked, Decision, Outcome};
pub use hash::{client_hash, member_seed};
pub use model::{Member, MemberId, Override, Pool, PoolId, Region, RegionId, Steering};
pub use rank::{rank_regions, Placement, RankedRegion};

#[cfg(test)]
mod tests;
