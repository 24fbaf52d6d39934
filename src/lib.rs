//! geosteer: a self-hosted global TURN service.
//!
//! Rooms: [`config`] (typed, validated settings), [`zone`] (static zone data),
//! [`geo`] (client location), [`steer`] (the pure steering decision),
//! [`health`] (member health snapshots), [`dns`] (the authoritative server).

pub mod anycast;
pub mod api;
pub mod cli;
pub mod config;
pub mod dns;
pub mod geo;
pub mod health;
pub mod membership;
pub mod node;
pub mod steer;
pub mod zone;
