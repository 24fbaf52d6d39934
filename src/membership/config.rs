//! `[membership]` of a DNS node.

use std::path::PathBuf;

use serde::Deserialize;

/// Where registered relays are found.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipConfig {
    /// etcd client URLs (`http://10.0.0.1:2379`), tried in turn.
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
    /// CA bundle (PEM) for etcd's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (one PEM file).
    #[serde(default)]
    pub client_identity_file: Option<PathBuf>,
}

fn default_deployment() -> String {
    "default".into()
}

impl MembershipConfig {
    /// Problems as (key under `membership.`, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        geosteer_relay::membership::connection_problems(
            &self.endpoints,
            &self.deployment,
            self.username.is_some(),
            self.password_file.is_some(),
        )
    }
}
