//! Static zone data from RFC 1035 master files.
//!
//! [`load`] parses a file record by record (so every bad line is reported
//! with its line number, not just the first) and builds an immutable
//! [`Zone`] with the lookups the answer engine needs: exact name, delegation
//! cuts and empty non-terminals.

mod data;
mod parse;

pub use data::{Lookup, Node, Zone};
pub use parse::{load, parse_str};
