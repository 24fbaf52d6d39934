//! Typed configuration: TOML → serde structs → validated [`Config`].
//!
//! Validation never stops at the first problem: every error is collected with
//! the key path (`pools.turn.members[2].addresses[0]`) or file and line where it
//! was found, so an operator fixes a broken config in one pass.

mod error;
mod membership;
mod types;
mod validate;

pub use error::{ConfigError, ConfigErrors};
pub use membership::{DownQuorum, MembershipConfig};
pub use types::*;

use std::path::{Path, PathBuf};

/// A configuration that passed validation, with every relative path resolved
/// against the directory of the config file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The parsed settings.
    pub file: ConfigFile,
    /// Path of the TOML file this came from (for messages and reload).
    pub path: PathBuf,
    /// Directory relative paths are resolved against.
    pub base_dir: PathBuf,
}

impl Config {
    /// Reads and validates the TOML file at `path` (but not the zone files or
    /// GeoIP database it names; see [`crate::steer::Steering::load`]).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::single(ConfigError::file(path, None, format!("cannot read: {e}")))
        })?;
        Self::from_str(&text, path)
    }

    /// Parses and validates TOML text; `path` is used for messages and to
    /// resolve relative paths.
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            ConfigErrors::single(ConfigError::file(path, line, e.message().to_string()))
        })?;
        validate::validate(&file)?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Config {
            file,
            path: path.to_path_buf(),
            base_dir,
        })
    }

    /// Resolves a path from the config against the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// 1-based line number of byte offset `pos` in `text`.
pub(crate) fn line_of(text: &str, pos: usize) -> usize {
    text[..pos.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests;
