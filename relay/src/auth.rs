//! Long-term credentials, coturn-compatible TURN REST credentials and
//! stateless nonces.
//!
//! REST usernames are `expiry-unix-time[:user]` and the password is
//! `base64(HMAC-SHA1(secret, username))`. Several secrets may be configured at
//! once (rotation); an expired username is refused.
//!
//! Nonces carry their issue time and an HMAC over that time and the client IP,
//! so any relay holding the same nonce key can check them without per-client
//! state.

use std::collections::BTreeMap;
use std::net::IpAddr;

use data_encoding::{BASE64, HEXLOWER};
use ring::hmac;
use stun_types::message::{IntegrityAlgorithm, LongTermKeyCredentials, Message};

const NONCE_PREFIX: &str = "gsn1";
const NONCE_TAG_LEN: usize = 12;

/// Why a request could not be authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No static user and not a REST username.
    UnknownUser,
    /// REST username whose expiry time has passed.
    Expired,
    /// MESSAGE-INTEGRITY did not match any candidate password.
    BadIntegrity,
}

/// Result of checking a NONCE attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Issued by a relay with our key, for this client, and still fresh.
    Valid,
    /// Authentic but older than the nonce lifetime (reply 438).
    Stale,
    /// Not one of ours (reply 438 too, with a fresh nonce).
    Invalid,
}

/// A successful authentication.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The password that produced a valid MESSAGE-INTEGRITY.
    pub password: String,
    /// The integrity algorithm the client used.
    pub algorithm: IntegrityAlgorithm,
}

/// Credential and nonce checker.
pub struct Authenticator {
    realm: String,
    users: BTreeMap<String, String>,
    secrets: Vec<hmac::Key>,
    nonce_key: hmac::Key,
    nonce_ttl: u64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("realm", &self.realm)
            .field("users", &self.users.len())
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

/// Computes the TURN REST password for `username` under `secret`.
pub fn rest_password(secret: &[u8], username: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    BASE64.encode(hmac::sign(&key, username.as_bytes()).as_ref())
}

/// Mints a TURN REST username/password valid for `ttl` seconds from `now_unix`.
pub fn mint(secret: &[u8], ttl: u64, user: Option<&str>, now_unix: u64) -> (String, String) {
    let expiry = now_unix.saturating_add(ttl);
    let username = match user {
        Some(u) if !u.is_empty() => format!("{expiry}:{u}"),
        _ => expiry.to_string(),
    };
    let password = rest_password(secret, &username);
    (username, password)
}

/// Parses the expiry time of a REST username (`expiry[:user]`).
pub fn rest_expiry(username: &str) -> Option<u64> {
    let head = username.split(':').next()?;
    if head.is_empty() || head.len() > 20 || !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    head.parse().ok()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator {
    /// Creates an authenticator. `nonce_key` of `None` picks a random key.
    pub fn new(
        realm: &str,
        users: BTreeMap<String, String>,
        secrets: &[String],
        nonce_key: Option<&[u8]>,
        nonce_ttl: u64,
    ) -> Self {
        let nonce_key = match nonce_key {
            Some(k) => hmac::Key::new(hmac::HMAC_SHA256, k),
            None => {
                let rng = ring::rand::SystemRandom::new();
                hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("system RNG unavailable")
            }
        };
        Self {
            realm: realm.to_string(),
            users,
            secrets: secrets
                .iter()
                .map(|s| hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes()))
                .collect(),
            nonce_key,
            nonce_ttl,
        }
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    fn nonce_tag(&self, issued: u64, client: IpAddr) -> [u8; NONCE_TAG_LEN] {
        let mut ctx = hmac::Context::with_key(&self.nonce_key);
        ctx.update(&issued.to_be_bytes());
        match client {
            IpAddr::V4(a) => ctx.update(&a.octets()),
            IpAddr::V6(a) => ctx.update(&a.octets()),
        }
        let tag = ctx.sign();
        let mut out = [0u8; NONCE_TAG_LEN];
        out.copy_from_slice(&tag.as_ref()[..NONCE_TAG_LEN]);
        out
    }

    /// Issues a nonce for `client` at `now_unix`.
    pub fn make_nonce(&self, client: IpAddr, now_unix: u64) -> String {
        let tag = self.nonce_tag(now_unix, client);
        format!("{NONCE_PREFIX}{now_unix:016x}{}", HEXLOWER.encode(&tag))
    }

    /// Checks a nonce presented by `client`.
    pub fn check_nonce(&self, nonce: &str, client: IpAddr, now_unix: u64) -> NonceCheck {
        let Some(rest) = nonce.strip_prefix(NONCE_PREFIX) else {
            return NonceCheck::Invalid;
        };
        if rest.len() != 16 + 2 * NONCE_TAG_LEN || !rest.is_ascii() {
            return NonceCheck::Invalid;
        }
        let (ts, tag) = rest.split_at(16);
        let Ok(issued) = u64::from_str_radix(ts, 16) else {
            return NonceCheck::Invalid;
        };
        let Ok(tag) = HEXLOWER.decode(tag.as_bytes()) else {
            return NonceCheck::Invalid;
        };
        if !ct_eq(&tag, &self.nonce_tag(issued, client)) {
            return NonceCheck::Invalid;
        }
        // A nonce from the future (clock skew in the fleet) is tolerated a little.
        if issued > now_unix.saturating_add(60) {
            return NonceCheck::Invalid;
        }
        if now_unix.saturating_sub(issued) >= self.nonce_ttl {
            return NonceCheck::Stale;
        }
        NonceCheck::Valid
    }

    /// Returns the candidate passwords for `username`.
    pub fn passwords(&self, username: &str, now_unix: u64) -> Result<Vec<String>, AuthFailure> {
        if let Some(pw) = self.users.get(username) {
            return Ok(vec![pw.clone()]);
        }
        self.rest_passwords(username, now_unix)
    }

    fn rest_passwords(&self, username: &str, now_unix: u64) -> Result<Vec<String>, AuthFailure> {
        if self.secrets.is_empty() {
            return Err(AuthFailure::UnknownUser);
        }
        let expiry = rest_expiry(username).ok_or(AuthFailure::UnknownUser)?;
        if expiry <= now_unix {
            return Err(AuthFailure::Expired);
        }
        Ok(self
            .secrets
            .iter()
            .map(|k| BASE64.encode(hmac::sign(k, username.as_bytes()).as_ref()))
            .collect())
    }

    /// The name quotas count `username` under: a static user as is, a TURN
    /// REST username `expiry:user` by its user part (every minted credential
    /// of one user has another expiry), a bare `expiry` as is.
    pub fn quota_user<'a>(&self, username: &'a str) -> &'a str {
        if self.users.contains_key(username) || rest_expiry(username).is_none() {
            return username;
        }
        match username.split_once(':') {
            Some((_, user)) if !user.is_empty() => user,
            _ => username,
        }
    }

    /// Whether `username` (already authenticated once) is still acceptable,
    /// i.e. a static user or a REST username that has not expired.
    pub fn still_valid(&self, username: &str, now_unix: u64) -> bool {
        if self.users.contains_key(username) {
            return true;
        }
        matches!(rest_expiry(username), Some(e) if e > now_unix)
    }

    /// Checks MESSAGE-INTEGRITY of `msg` for `username`.
    pub fn verify(
        &self,
        msg: &Message<'_>,
        username: &str,
        now_unix: u64,
    ) -> Result<Verified, AuthFailure> {
        for password in self.passwords(username, now_unix)? {
            if let Some(v) = self.verify_with(msg, username, &password) {
                return Ok(v);
            }
        }
        Err(AuthFailure::BadIntegrity)
    }

    /// Checks MESSAGE-INTEGRITY of `msg` against one known password.
    pub fn verify_with(
        &self,
        msg: &Message<'_>,
        username: &str,
        password: &str,
    ) -> Option<Verified> {
        let creds = LongTermKeyCredentials::new(
            username.to_string(),
            password.to_string(),
            self.realm.clone(),
        )
        .into();
        msg.validate_integrity(&creds)
            .ok()
            .map(|algorithm| Verified {
                password: password.to_string(),
                algorithm,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun_types::attribute::{Nonce, Realm, Username};
    use stun_types::message::{MessageWrite, MessageWriteExt, MessageWriteVec};

    fn signed(username: &str, password: &str, realm: &str) -> Vec<u8> {
        let mut m = Message::builder_request(turn_types::message::ALLOCATE, MessageWriteVec::new());
        m.add_attribute(&Username::new(username).unwrap()).unwrap();
        m.add_attribute(&Realm::new(realm).unwrap()).unwrap();
        m.add_attribute(&Nonce::new("n").unwrap()).unwrap();
        let creds =
            LongTermKeyCredentials::new(username.into(), password.into(), realm.into()).into();
        m.add_message_integrity(&creds, IntegrityAlgorithm::Sha1)
            .unwrap();
        m.finish()
    }

    fn auth(secrets: &[&str]) -> Authenticator {
        let mut users = BTreeMap::new();
        users.insert("alice".to_string(), "wonderland".to_string());
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        Authenticator::new(
            "example.org",
            users,
            &secrets,
            Some(b"0123456789abcdef0123"),
            600,
        )
    }

    #[test]
    fn rest_password_matches_coturn_formula() {
        // Vector computed with: printf %s 1700000000:bob | openssl dgst -sha1 -hmac secret-one -binary | base64
        assert_eq!(
            rest_password(b"secret-one", "1700000000:bob"),
            "u2nQagRGHMfaN4HZ6T0nZGqSl04="
        );
        let (u, p) = mint(b"secret-one", 3600, Some("bob"), 1_700_000_000);
        assert_eq!(u, "1700003600:bob");
        assert_eq!(p, rest_password(b"secret-one", &u));
        let (u, _) = mint(b"s", 10, None, 5);
        assert_eq!(u, "15");
    }

    #[test]
    fn static_user_verifies_and_wrong_password_fails() {
        let a = auth(&[]);
        let data = signed("alice", "wonderland", "example.org");
        let msg = Message::from_bytes(&data).unwrap();
        assert!(a.verify(&msg, "alice", 0).is_ok());
        let data = signed("alice", "nope", "example.org");
        let msg = Message::from_bytes(&data).unwrap();
        assert_eq!(
            a.verify(&msg, "alice", 0).unwrap_err(),
            AuthFailure::BadIntegrity
        );
        assert_eq!(
            a.verify(&msg, "mallory", 0).unwrap_err(),
            AuthFailure::UnknownUser
        );
    }

    #[test]
    fn rest_credentials_with_rotation_and_expiry() {
        let now = 1_700_000_000;
        let a = auth(&["old-secret-123", "new-secret-456"]);
        for secret in ["old-secret-123", "new-secret-456"] {
            let (u, p) = mint(secret.as_bytes(), 60, Some("bob"), now);
            let data = signed(&u, &p, "example.org");
            let msg = Message::from_bytes(&data).unwrap();
            assert!(a.verify(&msg, &u, now).is_ok(), "{secret}");
            assert!(a.still_valid(&u, now + 59));
            assert!(!a.still_valid(&u, now + 60));
            assert_eq!(
                a.verify(&msg, &u, now + 60).unwrap_err(),
                AuthFailure::Expired
            );
        }
        // A secret that was rotated out no longer works.
        let (u, p) = mint(b"retired-secret", 60, Some("bob"), now);
        let data = signed(&u, &p, "example.org");
        let msg = Message::from_bytes(&data).unwrap();
        assert_eq!(
            a.verify(&msg, &u, now).unwrap_err(),
            AuthFailure::BadIntegrity
        );
        // Non-numeric usernames are not REST usernames.
        assert_eq!(
            a.passwords("bob", now).unwrap_err(),
            AuthFailure::UnknownUser
        );
        assert_eq!(
            a.passwords("12x:bob", now).unwrap_err(),
            AuthFailure::UnknownUser
        );
        // Without secrets REST usernames are unknown.
        assert_eq!(
            auth(&[]).passwords("9999999999:bob", now).unwrap_err(),
            AuthFailure::UnknownUser
        );
    }

    #[test]
    fn quota_user_is_the_user_part_of_rest_usernames() {
        let mut users = BTreeMap::new();
        users.insert("1:static".to_string(), "pw".to_string());
        let a = Authenticator::new("r", users, &["s".into()], Some(b"k"), 600);
        assert_eq!(a.quota_user("1700000000:bob"), "bob");
        assert_eq!(a.quota_user("1700000000:bob:x"), "bob:x");
        assert_eq!(a.quota_user("1700000000"), "1700000000");
        assert_eq!(a.quota_user("1700000000:"), "1700000000:");
        assert_eq!(a.quota_user("1:static"), "1:static");
        assert_eq!(a.quota_user("alice"), "alice");
    }

    #[test]
    fn nonces_are_stateless_bound_to_ip_and_expire() {
        let a = auth(&[]);
        let fleet_peer = auth(&["x-secret-xyz"]);
        let other_key = Authenticator::new(
            "example.org",
            BTreeMap::new(),
            &[],
            Some(b"another-key-0123456"),
            600,
        );
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let n = a.make_nonce(ip, 1000);
        assert_eq!(a.check_nonce(&n, ip, 1000), NonceCheck::Valid);
        assert_eq!(fleet_peer.check_nonce(&n, ip, 1599), NonceCheck::Valid);
        assert_eq!(a.check_nonce(&n, ip, 1600), NonceCheck::Stale);
        assert_eq!(other_key.check_nonce(&n, ip, 1000), NonceCheck::Invalid);
        assert_eq!(
            a.check_nonce(&n, "192.0.2.2".parse().unwrap(), 1000),
            NonceCheck::Invalid
        );
        let mut forged = n.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            a.check_nonce(std::str::from_utf8(&forged).unwrap(), ip, 1000),
            NonceCheck::Invalid
        );
        for junk in [
            "",
            "gsn1",
            "gsn1zzzzzzzzzzzzzzzz000000000000000000000000",
            "é",
        ] {
            assert_eq!(a.check_nonce(junk, ip, 1000), NonceCheck::Invalid);
        }
    }
}
