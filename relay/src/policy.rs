//! Peer address policy: which peers a client may reach through the relay.
//!
//! Addresses are first normalised: IPv4-mapped (`::ffff:a.b.c.d`),
//! IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`)
//! forms are decoded to the IPv4 address they reach, and that address is checked
//! too. This closes the loopback bypasses of CVE-2020-26262 (`0.0.0.0`, `::`,
//! `::1`) and CVE-2026-27624 (`::ffff:127.0.0.1`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::config::PeerPolicyConfig;

/// Why a peer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Matched the configured deny list.
    DenyList,
    /// Loopback while `allow_loopback_peers` is off.
    Loopback,
    /// A special-purpose range (private, link-local, multicast, …).
    SpecialPurpose,
    /// Unspecified address (`0.0.0.0/8`, `::`): always refused.
    Unspecified,
}

/// Compiled peer policy.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    allow_loopback: bool,
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

/// Decodes IPv6 forms that embed an IPv4 destination.
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if ip.is_loopback() || ip.is_unspecified() {
        return None;
    }
    let s = ip.segments();
    let o = ip.octets();
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // ::ffff:0:a.b.c.d (SIIT translated).
    if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // 64:ff9b::/96 well-known NAT64 prefix.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // 2002:AABB:CCDD::/48 6to4.
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

fn v4_class(ip: Ipv4Addr) -> Option<Denied> {
    let o = ip.octets();
    let n = u32::from(ip);
    let in_net = |base: [u8; 4], len: u32| {
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        n & mask == u32::from(Ipv4Addr::from(base)) & mask
    };
    if o[0] == 0 {
        return Some(Denied::Unspecified);
    }
    if o[0] == 127 {
        return Some(Denied::Loopback);
    }
    let special = [
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // CGNAT
        ([169, 254, 0, 0], 16),  // link-local
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // TEST-NET-1
        ([192, 31, 196, 0], 24), // AS112
        ([192, 52, 193, 0], 24), // AMT
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([192, 175, 48, 0], 24), // AS112 direct delegation
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // TEST-NET-2
        ([203, 0, 113, 0], 24),  // TEST-NET-3
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved + broadcast
    ];
    special
        .iter()
        .any(|(b, l)| in_net(*b, *l))
        .then_some(Denied::SpecialPurpose)
}

fn v6_class(ip: Ipv6Addr) -> Option<Denied> {
    if ip.is_unspecified() {
        return Some(Denied::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Denied::Loopback);
    }
    let s = ip.segments();
    let special = [
        (0x0000, 8, [0u16; 2]), // ::/8 reserved (mapped/compatible handled by decoding)
        (0x0064, 16, [0xff9b, 0x0001]), // 64:ff9b:1::/48 local-use NAT64
        (0x0100, 16, [0, 0]),   // 100::/64 discard
        (0x2001, 16, [0, 0]), // 2001::/23 IETF protocol assignments (Teredo, ORCHID, benchmarking)
        (0x2001, 16, [0x0db8, 0]), // 2001:db8::/32 documentation
        (0x3fff, 16, [0, 0]), // 3fff::/20 documentation
        (0x5f00, 16, [0, 0]), // 5f00::/16 SRv6 SIDs
        (0xfc00, 7, [0, 0]),  // ULA
        (0xfe80, 10, [0, 0]), // link-local
        (0xfec0, 10, [0, 0]), // site-local (deprecated)
        (0xff00, 8, [0, 0]),  // multicast
    ];
    for (first, bits, rest) in special {
        let hit = match (first, bits) {
            (0x0064, _) => s[0] == 0x64 && s[1] == rest[0] && s[2] == rest[1],
            (0x0100, _) => s[0] == 0x100 && s[1..4] == [0, 0, 0],
            (0x2001, _) if rest[0] == 0x0db8 => s[0] == 0x2001 && s[1] == 0x0db8,
            (0x2001, _) => s[0] == 0x2001 && s[1] < 0x0200,
            (0x3fff, _) => s[0] == 0x3fff && s[1] < 0x1000,
            _ => {
                let mask = u16::MAX << (16 - bits);
                s[0] & mask == first & mask
            }
        };
        if hit {
            return Some(Denied::SpecialPurpose);
        }
    }
    None
}

impl PeerPolicy {
    /// Builds the policy from configuration.
    pub fn new(cfg: &PeerPolicyConfig) -> Self {
        Self {
            allow_loopback: cfg.allow_loopback_peers,
            allow: cfg.allow.iter().map(|n| n.trunc()).collect(),
            deny: cfg.deny.iter().map(|n| n.trunc()).collect(),
        }
    }

    /// Checks a peer address. `Ok(())` means the client may reach it.
    pub fn check(&self, ip: IpAddr) -> Result<(), Denied> {
        let decoded: Option<IpAddr> = match ip {
            IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let forms = [Some(ip), decoded];
        let forms = forms.iter().flatten();
        if forms
            .clone()
            .any(|a| self.deny.iter().any(|n| n.contains(a)))
        {
            return Err(Denied::DenyList);
        }
        // The most restrictive classification over all forms wins.
        let mut verdict: Option<Denied> = None;
        for a in forms.clone() {
            let c = match a {
                IpAddr::V4(v4) => v4_class(*v4),
                // For forms that embed an IPv4 address the decoded address decides.
                IpAddr::V6(_) if decoded.is_some() => None,
                IpAddr::V6(v6) => v6_class(*v6),
            };
            verdict = match (verdict, c) {
                (Some(Denied::Unspecified), _) | (_, Some(Denied::Unspecified)) => {
                    Some(Denied::Unspecified)
                }
                (Some(Denied::SpecialPurpose), _) | (_, Some(Denied::SpecialPurpose)) => {
                    Some(Denied::SpecialPurpose)
                }
                (a, b) => a.or(b),
            };
        }
        match verdict {
            None => Ok(()),
            Some(Denied::Unspecified) => Err(Denied::Unspecified),
            Some(Denied::Loopback) if self.allow_loopback => Ok(()),
            Some(d) => {
                if forms
                    .clone()
                    .any(|a| self.allow.iter().any(|n| n.contains(a)))
                {
                    Ok(())
                } else {
                    Err(d)
                }
            }
        }
    }
}

/// The relay's own service endpoints (listener and HTTP ports on its own
/// addresses), refused as peers so a client cannot loop traffic into the
/// relay's listeners or reach its admin/metrics API through a relay socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnAddrs {
    ports: Vec<u16>,
    ips: Vec<IpAddr>,
}

impl OwnAddrs {
    /// The listener and HTTP endpoints of `cfg`: their ports on every address
    /// the relay is known by (listener and relay addresses, advertised
    /// external addresses, loopback and unspecified).
    pub fn from_config(cfg: &crate::config::RelayConfig) -> Self {
        let l = &cfg.listen;
        let listeners = l
            .udp
            .iter()
            .copied()
            .chain(l.streams().map(|(s, _)| s.address));
        let mut ports: Vec<u16> = listeners.clone().map(|a| a.port()).collect();
        ports.push(l.http.port());
        let mut ips: Vec<IpAddr> = listeners.map(|a| a.ip()).collect();
        ips.push(l.http.ip());
        ips.extend(cfg.relay.ips.iter().copied());
        ips.extend(cfg.relay.external_ip);
        ips.extend(cfg.relay.external_ipv6);
        ips.extend(cfg.relay_ipv4());
        ips.extend(cfg.relay_ipv6());
        Self::new(ports, ips)
    }

    /// Endpoints from explicit lists (loopback and unspecified are added).
    pub fn new(mut ports: Vec<u16>, mut ips: Vec<IpAddr>) -> Self {
        ips.extend([
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]);
        ips.retain(|ip| !ip.is_unspecified());
        ips.sort();
        ips.dedup();
        ports.sort();
        ports.dedup();
        Self { ports, ips }
    }

    /// Whether `peer` is one of the relay's own service endpoints (in any
    /// IPv4-embedding IPv6 form too).
    #[inline]
    pub fn contains(&self, peer: std::net::SocketAddr) -> bool {
        if !self.ports.contains(&peer.port()) {
            return false;
        }
        let ip = peer.ip();
        let decoded = match ip {
            IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        [Some(ip), decoded]
            .into_iter()
            .flatten()
            .any(|a| a.is_unspecified() || a.is_loopback() || self.ips.contains(&a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_listener_and_http_ports_are_own_endpoints() {
        let mut cfg: crate::config::RelayConfig = crate::config::RelayConfig::from_toml(
            "region = \"x\"\n[relay]\nips = [\"192.0.2.5\"]\nexternal_ip = \"198.51.100.5\"\n",
        )
        .unwrap();
        cfg.listen.tls = vec!["0.0.0.0:5349".parse().unwrap()];
        let own = OwnAddrs::from_config(&cfg);
        for a in [
            "192.0.2.5:3478",
            "198.51.100.5:3478",
            "198.51.100.5:5349",
            "127.0.0.1:9641",
            "[::ffff:127.0.0.1]:3478",
            "[::ffff:198.51.100.5]:5349",
            "0.0.0.0:3478",
            "[::1]:9641",
        ] {
            assert!(own.contains(a.parse().unwrap()), "{a}");
        }
        for a in ["198.51.100.5:3479", "8.8.8.8:3478", "192.0.2.5:50000"] {
            assert!(!own.contains(a.parse().unwrap()), "{a}");
        }
    }

    fn policy(allow_loopback: bool, allow: &[&str], deny: &[&str]) -> PeerPolicy {
        PeerPolicy::new(&PeerPolicyConfig {
            allow_loopback_peers: allow_loopback,
            allow: allow.iter().map(|s| s.parse().unwrap()).collect(),
            deny: deny.iter().map(|s| s.parse().unwrap()).collect(),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn public_addresses_are_allowed() {
        let p = policy(false, &[], &[]);
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "2a00:1450::1",
            "64:ff9b::808:808",
        ] {
            assert_eq!(p.check(ip(a)), Ok(()), "{a}");
        }
    }

    #[test]
    fn loopback_and_all_bypass_forms_are_denied() {
        let p = policy(false, &[], &[]);
        for a in [
            "127.0.0.1",
            "127.255.255.254",
            "::1",
            "::ffff:127.0.0.1",   // CVE-2026-27624
            "::ffff:7f00:1",      // same, hex form
            "::127.0.0.1",        // IPv4-compatible
            "::ffff:0:127.0.0.1", // SIIT
            "64:ff9b::7f00:1",    // NAT64 of loopback
            "2002:7f00:1::1",     // 6to4 of loopback
        ] {
            assert!(p.check(ip(a)).is_err(), "{a} must be denied");
        }
        // CVE-2020-26262: unspecified addresses reach loopback on Linux.
        for a in ["0.0.0.0", "0.1.2.3", "::", "::ffff:0.0.0.0"] {
            assert_eq!(p.check(ip(a)), Err(Denied::Unspecified), "{a}");
        }
    }

    #[test]
    fn special_purpose_ranges_are_denied() {
        let p = policy(false, &[], &[]);
        for a in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "198.19.255.255",
            "192.0.0.8",
            "192.88.99.1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",         // Teredo
            "2001:2::1",       // benchmarking
            "2001:10::1",      // ORCHID
            "100::1",          // discard
            "64:ff9b:1::1",    // local-use NAT64
            "3fff::1",         // documentation (RFC 9637)
            "::ffff:10.0.0.1", // mapped private
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe", // NAT64 of metadata service
            "2002:c0a8:101::1",   // 6to4 of 192.168.1.1
            "2002:a00:1::",       // 6to4 of 10.0.0.1
            "::ffff:224.0.0.1",
        ] {
            assert!(p.check(ip(a)).is_err(), "{a} must be denied");
        }
        // Neighbours just outside the ranges stay allowed.
        for a in [
            "172.32.0.1",
            "100.128.0.1",
            "198.20.0.1",
            "11.0.0.1",
            "2002:808:808::1",
        ] {
            assert_eq!(p.check(ip(a)), Ok(()), "{a}");
        }
    }

    #[test]
    fn allow_loopback_only_opens_loopback() {
        let p = policy(true, &[], &[]);
        assert_eq!(p.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(p.check(ip("::1")), Ok(()));
        assert_eq!(p.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert!(p.check(ip("0.0.0.0")).is_err());
        assert!(p.check(ip("::")).is_err());
        assert!(p.check(ip("10.0.0.1")).is_err());
    }

    #[test]
    fn allow_and_deny_lists() {
        let p = policy(
            false,
            &["10.20.0.0/16"],
            &["8.8.4.0/24", "::ffff:1.1.1.1/128"],
        );
        assert_eq!(p.check(ip("10.20.3.4")), Ok(()));
        assert_eq!(p.check(ip("::ffff:10.20.3.4")), Ok(()));
        assert!(p.check(ip("10.21.3.4")).is_err());
        assert_eq!(p.check(ip("8.8.4.4")), Err(Denied::DenyList));
        // The deny list also applies to every encoded form of a denied address.
        assert_eq!(p.check(ip("::ffff:8.8.4.4")), Err(Denied::DenyList));
        assert_eq!(p.check(ip("64:ff9b::808:404")), Err(Denied::DenyList));
        assert_eq!(p.check(ip("2002:808:404::1")), Err(Denied::DenyList));
        assert_eq!(p.check(ip("1.1.1.1")), Ok(()));
        assert_eq!(p.check(ip("::ffff:1.1.1.1")), Err(Denied::DenyList));
        // Deny wins over allow.
        let p = policy(false, &["10.0.0.0/8"], &["10.9.0.0/16"]);
        assert_eq!(p.check(ip("10.9.1.1")), Err(Denied::DenyList));
        // Allow never opens the unspecified address.
        let p = policy(false, &["0.0.0.0/0"], &[]);
        assert!(p.check(ip("0.0.0.0")).is_err());
        assert_eq!(p.check(ip("192.168.1.1")), Ok(()));
    }
}
