//! The anycast node agent: announces each service address (VIP) through an
//! existing BGP speaker — ExaBGP or BIRD 2 — only while the local service
//! passes its checks.
//!
//! * [`config`]: the agent's TOML file, validated with paths.
//! * [`decide`]: the pure decision (rise/fall, flap hold-down, drain, MED
//!   shift, shutdown) with time injected.
//! * [`plan`]: the pure bookkeeping between decisions and the speaker (what
//!   to send when, retry backoff, stale checks, a speaker gone silent).
//! * [`check`]: the DNS and relay checks against the VIP.
//! * [`speaker`]: thin ExaBGP (stdio API with acks) and BIRD (control
//!   socket) drivers, run on their own thread.
//! * [`notify`]: systemd's notify protocol (ready, watchdog keep-alives).
//! * [`http`]: metrics, state and the guarded admin switch.
//! * [`agent`]: the loop wiring them, signals.

pub mod agent;
pub mod check;
pub mod config;
pub mod decide;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod speaker;

pub use config::AnycastConfig;
