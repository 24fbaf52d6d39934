//! geosteer regional STUN/TURN relay.
//!
//! Layout (sans-IO core, thin IO shells):
//! - [`proto`]: TURN/STUN state machine (`handle(input, now)` → outputs via [`proto::Io`]).
//! - [`auth`]: long-term and TURN REST credentials, stateless nonces.
//! - [`policy`]: peer address rules.
//! - [`limits`]: quotas, token buckets, 401 rate limit.
//! - [`io`]: UDP/TCP/TLS socket event loops (one thread each, `SO_REUSEPORT`, epoll via mio, recvmmsg/sendmmsg).
//! - [`http`]: `/livez`, `/readyz`, `/health`, `/metrics`, `POST /admin/drain`.
//! - [`config`]: TOML configuration and validation.
//! - [`control`]: drain/stop flags and per-loop reports.
//! - [`reload`]: the reloadable configuration snapshot and its reloader.
//! - [`server`]: wiring, [`server::start`] and [`server::run`].

pub mod auth;
pub mod config;
pub mod control;
pub mod edge;
pub mod http;
pub mod io;
pub mod limits;
pub mod membership;
pub mod policy;
pub mod proto;
pub mod reload;
pub mod server;
pub mod stats;

pub use config::{ConfigError, RelayConfig};
pub use server::{run, start, RelayHandle};
