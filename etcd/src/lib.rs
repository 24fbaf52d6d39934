//! geosteer's etcd side, shared by the DNS node (`geosteer`) and the relay
//! (`geosteer-relay`): the client, the connection settings both configs
//! carry under `[membership]`, and the fleet's key schema.
//!
//! Relays register `/geosteer/<deployment>/members/<pool>/<name>` on a lease
//! they keep alive; DNS nodes watch that prefix and publish their health
//! votes under `/geosteer/<deployment>/votes/`.

mod client;
pub mod keys;
mod settings;

pub use client::{prefix_end, Etcd, EtcdOptions, Kv, WatchEvent};
pub use keys::{is_key_segment, is_label, members_prefix, votes_prefix, Registration, Rejection};
pub use settings::{unknown_problems, EtcdSettings, UnknownKeys};
