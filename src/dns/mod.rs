//! The authoritative DNS server.
//!
//! Data flow: packet → [`wire::parse_query`] → the name table; a name that
//! owns no data gets NXDOMAIN, NODATA or REFUSED from [`negative`] without
//! the engine; otherwise [`client::Client`] (ECS or source; decision cell
//! from the compiled placement classes) → [`cache`] lookup keyed by (name,
//! type, EDNS shape, cell[, subnet hash]) → on a miss [`engine::respond`]
//! (zone data or [`crate::steer::decide`]) and [`encode::encode`] →
//! [`encode::finish`] (id, case, ECS scope, TC) → send. UDP runs on
//! dedicated threads with batched system calls ([`udp`]); TCP on its own
//! tokio runtime ([`tcp`]); both call [`Shared::handle`].

pub mod cache;
pub mod client;
pub mod cookie;
pub mod encode;
pub mod engine;
pub mod explain;
pub mod handler;
pub mod harness;
pub mod metrics;
pub mod negative;
pub mod rrl;
pub mod server;
pub mod state;
pub mod tcp;
#[cfg(test)]
pub(crate) mod testkit;
pub mod udp;
pub mod wire;
pub mod zone_index;

pub use handler::{Shared, Transport};
pub use server::DnsServer;
pub use state::ServeState;
