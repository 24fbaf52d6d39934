//! Configuration errors that name where the problem is.

use std::fmt;
use std::path::Path;

/// One problem in the configuration or in a file it references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where: a key path (`pools.turn.members[1].region`) or `file:line`.
    pub location: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ConfigError {
    /// An error at a key path inside the TOML document.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            location: path.into(),
            message: message.into(),
        }
    }

    /// An error in a file, optionally at a line.
    pub fn file(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        let location = match line {
            Some(l) => format!("{}:{l}", file.display()),
            None => file.display().to_string(),
        };
        Self {
            location,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every problem found, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// A list with one error.
    pub fn single(e: ConfigError) -> Self {
        Self(vec![e])
    }

    /// Adds an error at a key path.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::at(path, message));
    }

    /// `Ok(())` when empty, else `Err(self)`.
    pub fn into_result(self) -> Result<(), ConfigErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
