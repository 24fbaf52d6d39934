//! `[listen]`: the UDP, TCP, TLS and auto listeners, the certificate and the
//! HTTP endpoint. A stream listener (tcp, tls, auto) is an address, or a
//! table that also says whether connections start with a PROXY protocol
//! header and from which networks such headers are believed:
//!
//! ```toml
//! [listen]
//! tcp = ["0.0.0.0:3478"]
//! auto = [{ address = "0.0.0.0:443", proxy_protocol = "v2", trusted_proxies = ["10.0.0.0/8"] }]
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::{err, ConfigError};

/// Listener addresses.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// UDP STUN/TURN listeners (default `0.0.0.0:3478`).
    #[serde(default = "default_udp")]
    pub udp: Vec<SocketAddr>,
    /// TCP STUN/TURN listeners (default `0.0.0.0:3478`).
    #[serde(default = "default_tcp")]
    pub tcp: Vec<StreamListener>,
    /// TLS listeners (e.g. `0.0.0.0:5349`); need `tls_cert` and `tls_key`.
    #[serde(default)]
    pub tls: Vec<StreamListener>,
    /// Listeners serving TURN over TLS and plain TURN over TCP on one port
    /// (e.g. `0.0.0.0:443`), told apart by the connection's first byte: a
    /// TLS record starts with 0x16, a STUN message with two zero bits. Need
    /// `tls_cert` and `tls_key`.
    #[serde(default)]
    pub auto: Vec<StreamListener>,
    /// PEM certificate chain for TLS.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// HTTP listener for `/livez`, `/readyz`, `/health`, `/metrics`, `/admin/*`.
    #[serde(default = "default_http")]
    pub http: SocketAddr,
}

fn default_udp() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([0, 0, 0, 0], 3478))]
}
fn default_tcp() -> Vec<StreamListener> {
    default_udp()
        .into_iter()
        .map(StreamListener::from)
        .collect()
}
fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9641))
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            udp: default_udp(),
            tcp: default_tcp(),
            tls: Vec::new(),
            auto: Vec::new(),
            tls_cert: None,
            tls_key: None,
            http: default_http(),
        }
    }
}

/// What a stream listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain TURN over TCP (RFC 8656 framing).
    Tcp,
    /// TURN over TLS.
    Tls,
    /// Either, told apart by the first byte.
    Auto,
}

/// Whether connections to a stream listener start with a PROXY protocol
/// header (HAProxy's `send-proxy` / `send-proxy-v2`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// No header: the connection's own source is the client.
    #[default]
    Off,
    /// The text header (`PROXY TCP4 ...\r\n`).
    V1,
    /// The binary header.
    V2,
}

/// A TCP, TLS or auto listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamListener {
    /// Address to bind.
    pub address: SocketAddr,
    /// PROXY protocol header expected on every connection (default off).
    pub proxy_protocol: ProxyProtocol,
    /// Sources allowed to send the header (required with a header): a
    /// connection from anywhere else is closed.
    pub trusted_proxies: Vec<IpNet>,
}

impl From<SocketAddr> for StreamListener {
    fn from(address: SocketAddr) -> Self {
        Self {
            address,
            proxy_protocol: ProxyProtocol::Off,
            trusted_proxies: Vec::new(),
        }
    }
}

impl std::str::FromStr for StreamListener {
    type Err = String;

    /// The address form: `"0.0.0.0:443"`.
    fn from_str(v: &str) -> Result<Self, String> {
        v.parse::<SocketAddr>()
            .map(StreamListener::from)
            .map_err(|e| format!("{v:?}: {e}"))
    }
}

impl StreamListener {
    /// Whether `ip` may send this listener a PROXY header.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }
}

/// The table form of a stream listener.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamTable {
    address: SocketAddr,
    #[serde(default)]
    proxy_protocol: ProxyProtocol,
    #[serde(default)]
    trusted_proxies: Vec<IpNet>,
}

impl<'de> Deserialize<'de> for StreamListener {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StreamListener;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "an address such as \"0.0.0.0:443\", or a table with address, \
                     proxy_protocol and trusted_proxies",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let t = StreamTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(StreamListener {
                    address: t.address,
                    proxy_protocol: t.proxy_protocol,
                    trusted_proxies: t.trusted_proxies,
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl ListenConfig {
    /// Every stream listener with its mode: tcp, then tls, then auto.
    pub fn streams(&self) -> impl Iterator<Item = (&StreamListener, Mode)> + Clone {
        let tcp = self.tcp.iter().map(|l| (l, Mode::Tcp));
        let tls = self.tls.iter().map(|l| (l, Mode::Tls));
        let auto = self.auto.iter().map(|l| (l, Mode::Auto));
        tcp.chain(tls).chain(auto)
    }

    pub(super) fn validate(&self, e: &mut Vec<ConfigError>) {
        if self.udp.is_empty() && self.tcp.is_empty() && self.tls.is_empty() && self.auto.is_empty()
        {
            err(
                e,
                "listen",
                "at least one udp, tcp, tls or auto listener is required",
            );
        }
        if !self.tls.is_empty() || !self.auto.is_empty() {
            for (key, p) in [
                ("listen.tls_cert", &self.tls_cert),
                ("listen.tls_key", &self.tls_key),
            ] {
                match p {
                    None => err(e, key, "required when listen.tls or listen.auto is set"),
                    Some(p) if !p.is_file() => {
                        err(e, key, format!("{} is not a readable file", p.display()))
                    }
                    Some(_) => {}
                }
            }
        }
        for (kind, list) in [("tcp", &self.tcp), ("tls", &self.tls), ("auto", &self.auto)] {
            for (i, l) in list.iter().enumerate() {
                let key = format!("listen.{kind}[{i}]");
                match l.proxy_protocol {
                    ProxyProtocol::Off if !l.trusted_proxies.is_empty() => err(
                        e,
                        &format!("{key}.trusted_proxies"),
                        "set without proxy_protocol (v1 or v2)",
                    ),
                    ProxyProtocol::V1 | ProxyProtocol::V2 if l.trusted_proxies.is_empty() => err(
                        e,
                        &format!("{key}.trusted_proxies"),
                        "required with proxy_protocol: the networks of the balancers \
                         allowed to state client addresses",
                    ),
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct L {
        listen: ListenConfig,
    }

    #[test]
    fn address_or_table() {
        let l: L = toml::from_str(
            r#"
[listen]
tcp = ["127.0.0.1:3478", { address = "127.0.0.1:3479", proxy_protocol = "v2", trusted_proxies = ["10.0.0.0/8"] }]
"#,
        )
        .unwrap();
        let t = &l.listen.tcp;
        assert_eq!(
            t[0],
            StreamListener::from("127.0.0.1:3478".parse::<SocketAddr>().unwrap())
        );
        assert_eq!(t[1].proxy_protocol, ProxyProtocol::V2);
        assert!(t[1].trusts("10.1.2.3".parse().unwrap()));
        assert!(!t[1].trusts("192.0.2.1".parse().unwrap()));
        let mut e = Vec::new();
        l.listen.validate(&mut e);
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn bad_listeners_are_named() {
        let bad = toml::from_str::<L>("[listen]\ntcp = [\"127.0.0.1\"]\n")
            .err()
            .unwrap();
        assert!(bad.to_string().contains("\"127.0.0.1\""), "{bad}");
        let bad = toml::from_str::<L>(
            "[listen]\ntcp = [{ address = \"127.0.0.1:1\", proxy = \"v2\" }]\n",
        )
        .err()
        .unwrap();
        assert!(bad.to_string().contains("unknown field `proxy`"), "{bad}");
        let bad = toml::from_str::<L>(
            "[listen]\ntcp = [{ address = \"127.0.0.1:1\", proxy_protocol = \"v3\" }]\n",
        )
        .err()
        .unwrap();
        assert!(bad.to_string().contains("v3"), "{bad}");
        let l: L = toml::from_str(
            "[listen]\ntcp = [{ address = \"127.0.0.1:1\", proxy_protocol = \"v1\" }]\n\
             auto = [{ address = \"127.0.0.1:2\", trusted_proxies = [\"10.0.0.0/8\"] }]\n",
        )
        .unwrap();
        let mut e = Vec::new();
        l.listen.validate(&mut e);
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "listen.tls_cert",
                "listen.tls_key",
                "listen.tcp[0].trusted_proxies",
                "listen.auto[0].trusted_proxies"
            ]
        );
    }
}
