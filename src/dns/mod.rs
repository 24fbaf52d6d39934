//! The authoritative DNS server.
//!
//! Data flow: packet → [`wire::parse_query`] → [`client::Client`] (ECS or
//! source; decision cell from the GeoIP tree walk) → [`cache`] lookup keyed by
//! (name, type, EDNS shape, cell[, subnet hash]) → on a miss
//! [`engine::respond`] (zone data or [`crate::steer::decide`]) and
//! [`encode::encode`] → [`encode::finish`] (id, case, ECS scope, TC) → send.
//! UDP runs on dedicated threads with batched system calls ([`udp`]); TCP is
//! served by hickory-server through [`tcp::Handler`].

pub mod cache;
pub mod client;
pub mod cookie;
pub mod encode;
pub mod engine;
pub mod explain;
pub mod handler;
pub mod harness;
pub mod metrics;
pub mod rrl;
pub mod server;
pub mod state;
pub mod tcp;
#[cfg(test)]
pub(crate) mod testkit;
pub mod udp;
pub mod wire;

pub use handler::{Shared, Transport};
pub use server::DnsServer;
pub use state::ServeState;
