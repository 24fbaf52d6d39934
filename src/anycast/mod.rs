//! The anycast node agent: announces each service address (VIP) through an
//! existing BGP speaker — ExaBGP or BIRD 2 — only while the local service
//! passes its checks.
//!
//! * [`config`]: the agent's TOML file, validated with paths.
//! * [`decide`]: the pure decision (rise/fall, flap hold-down, drain, MED
//!   shift, shutdown) with time injected.
//! * [`check`]: the DNS and relay checks against the VIP.
//! * [`speaker`]: thin ExaBGP (stdio API with acks) and BIRD (control socket) drivers.
//! * [`notify`]: systemd's notify protocol (ready, watchdog keep-alives).
//! * [`agent`]: the loop wiring them, metrics and admin HTTP, signals.

pub mod agent;
pub mod check;
pub mod config;
pub mod decide;
pub mod metrics;
pub mod notify;
pub mod speaker;

pub use config::AnycastConfig;
