//! How to reach etcd: the settings a relay's and a DNS node's `[membership]`
//! share (flattened into both, so the keys sit directly under
//! `[membership]`), declared and checked once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::client::EtcdOptions;
use crate::keys::is_key_segment;

/// etcd connection settings and the deployment's key namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtcdSettings {
    /// etcd client URLs (`https://10.0.0.1:2379`), tried in turn.
    pub endpoints: Vec<String>,
    /// Deployment name: keys live under `/geosteer/<deployment>/`.
    #[serde(default = "default_deployment")]
    pub deployment: String,
    /// etcd user (auth enabled).
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the etcd password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// CA bundle (PEM) to verify etcd's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (one PEM file) for etcd client-cert auth.
    #[serde(default)]
    pub client_identity_file: Option<PathBuf>,
}

fn default_deployment() -> String {
    "default".into()
}

/// Keys of a `[membership]` table that no field took. serde cannot deny
/// unknown fields next to a flattened struct, so each config collects them
/// here (flattened last) and reports them with [`unknown_problems`].
pub type UnknownKeys = BTreeMap<String, IgnoredAny>;

/// One problem per unknown key, as (key, message).
pub fn unknown_problems(u: &UnknownKeys) -> Vec<(String, String)> {
    u.keys()
        .map(|k| (k.clone(), "unknown key".to_string()))
        .collect()
}

impl EtcdSettings {
    /// Problems as (key under `membership.`, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        if self.endpoints.is_empty() {
            p.push(("endpoints".into(), "needs at least one etcd URL".into()));
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                p.push((
                    format!("endpoints[{i}]"),
                    format!("{e:?} is not an http:// or https:// URL"),
                ));
            }
        }
        if !is_key_segment(&self.deployment) {
            p.push((
                "deployment".into(),
                format!("{:?} must be [A-Za-z0-9_-]+", self.deployment),
            ));
        }
        if self.username.is_some() != self.password_file.is_some() {
            p.push((
                "username".into(),
                "username and password_file go together".into(),
            ));
        }
        p
    }

    /// The client options, reading the password, CA and identity files
    /// (paths relative to the config file go through `resolve`).
    pub fn options(&self, resolve: impl Fn(&Path) -> PathBuf) -> Result<EtcdOptions, String> {
        let read = |p: &Path| {
            let p = resolve(p);
            std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
        };
        let credentials = match (&self.username, &self.password_file) {
            (Some(u), Some(p)) => Some((
                u.clone(),
                String::from_utf8_lossy(&read(p)?).trim().to_string(),
            )),
            _ => None,
        };
        Ok(EtcdOptions {
            endpoints: self.endpoints.clone(),
            credentials,
            ca_pem: self.ca_file.as_deref().map(read).transpose()?,
            identity_pem: self.client_identity_file.as_deref().map(read).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Section {
        #[serde(flatten)]
        etcd: EtcdSettings,
        #[serde(default)]
        pool: Option<String>,
        #[serde(flatten)]
        unknown: UnknownKeys,
    }

    #[test]
    fn flattened_settings_take_their_keys_and_unknown_ones_are_reported() {
        let s: Section = toml::from_str(
            "endpoints = [\"etcd:2379\"]\ndeployment = \"a/b\"\npool = \"p\"\nendpoint = 1\nusername = \"u\"",
        )
        .unwrap();
        assert_eq!(s.pool.as_deref(), Some("p"));
        let p: Vec<String> = s.etcd.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(p, ["endpoints[0]", "deployment", "username"]);
        assert_eq!(
            unknown_problems(&s.unknown),
            [("endpoint".to_string(), "unknown key".to_string())]
        );
    }
}
