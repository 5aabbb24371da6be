//! JWT access tokens: this server as an OAuth 2.1 resource server.
//!
//! A token is accepted when its signature verifies with a configured key (RS256 or ES256
//! from a JWKS, or HS256 with a shared secret), it has not expired (`exp`) and is already
//! valid (`nbf`), its `iss` is the configured issuer and its `aud` names this server. Its
//! `sub` is the principal; its `scope` (space-separated) or `scp` (a list) claim grants
//! tools and admin (see [`mcp_session::Principal`]).
//!
//! A JWKS from a URL is fetched at start, every [`JWKS_REFRESH`], and again when a token
//! names a key id the set lacks (at most once per [`JWKS_MIN_REFETCH`]), so the
//! authorization server can rotate keys without a restart.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mcp_session::Principal;

use crate::AuthError;
use serde::Deserialize;

/// How often a JWKS URL is fetched again.
pub const JWKS_REFRESH: Duration = Duration::from_secs(600);
/// The shortest time between two fetches caused by unknown key ids.
pub const JWKS_MIN_REFETCH: Duration = Duration::from_secs(30);
/// How much clock skew `exp` and `nbf` tolerate.
const LEEWAY_S: u64 = 30;

/// Where the keys that sign tokens come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A shared secret: HS256.
    Secret(Vec<u8>),
    /// A JWKS document on disk: RS256 and ES256 keys.
    JwksFile(PathBuf),
    /// A JWKS document at a URL (`https://`, or `http://` for loopback tests).
    JwksUrl(String),
}

/// How tokens are verified.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The keys.
    pub keys: KeySource,
    /// The required `iss`, if any.
    pub issuer: Option<String>,
    /// The accepted `aud` values; a token must name one of them.
    pub audiences: Vec<String>,
    /// How many tries of tokens against more than their first key are made per second, all
    /// tokens together ([`EXTRA_TRIES_PER_SECOND`] is the server's).
    pub extra_tries_per_second: u32,
}

/// A verifier of access tokens.
pub struct Jwt {
    config: JwtConfig,
    keys: RwLock<Arc<Vec<Key>>>,
    /// When a token with an unknown key id last caused a fetch, for the refetch limit.
    refetched: Mutex<Option<Instant>>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    /// Tries of a token against a second, third... key (a token without `kid` when several
    /// keys have none): each costs a signature check, so a flood of bogus tokens is bounded.
    extra_tries: governor::DefaultDirectRateLimiter,
}

/// How many tries of tokens against more than their first key are made per second, all
/// tokens together. Past it such a token is refused for now (its first key is still tried).
pub const EXTRA_TRIES_PER_SECOND: u32 = 100;

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("issuer", &self.config.issuer)
            .field("audiences", &self.config.audiences)
            .finish_non_exhaustive()
    }
}

struct Key {
    id: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// The claims this server reads; the library checks `exp`, `nbf`, `iss` and `aud`.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    /// Required, and checked by the library; kept to end connections when it passes. Some
    /// issuers write it with a fraction.
    exp: f64,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<Scp>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Scp {
    List(Vec<String>),
    Text(String),
}

impl Jwt {
    /// A verifier; a secret or JWKS file is read now (a URL is fetched by [`Jwt::refresh`]).
    pub fn new(config: JwtConfig) -> Result<Self, AuthError> {
        Self::build(config).map_err(AuthError::Config)
    }

    fn build(config: JwtConfig) -> Result<Self, String> {
        if config.audiences.is_empty() {
            return Err(
                "JWT verification needs an audience: give --jwt-audience or --public-url"
                    .to_owned(),
            );
        }
        let keys = match &config.keys {
            KeySource::Secret(secret) => {
                if secret.len() < 32 {
                    return Err("the HS256 secret must be at least 32 bytes".to_owned());
                }
                vec![Key {
                    id: None,
                    algorithm: Algorithm::HS256,
                    key: DecodingKey::from_secret(secret),
                }]
            }
            KeySource::JwksFile(path) => {
                let text = std::fs::read(path)
                    .map_err(|e| format!("cannot read the JWKS {}: {e}", path.display()))?;
                serde_json::from_slice(&text)
                    .map_err(|e| format!("not a JWKS: {e}"))
                    .and_then(signing_keys)
                    .map_err(|e| format!("JWKS {}: {e}", path.display()))?
            }
            KeySource::JwksUrl(url) => {
                check_jwks_url(url)?;
                Vec::new()
            }
        };
        let tries = std::num::NonZeroU32::new(config.extra_tries_per_second)
            .unwrap_or(std::num::NonZeroU32::MIN);
        Ok(Self {
            config,
            keys: RwLock::new(Arc::new(keys)),
            refetched: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            extra_tries: governor::RateLimiter::direct(governor::Quota::per_second(tries)),
        })
    }

    /// The configured issuer: the authorization server the metadata names by default.
    pub fn issuer(&self) -> Option<&str> {
        self.config.issuer.as_deref()
    }

    /// Whether the keys come from a URL, to be fetched now and then.
    pub fn is_remote(&self) -> bool {
        matches!(self.config.keys, KeySource::JwksUrl(_))
    }

    /// Fetches the JWKS URL again (nothing to do for other sources). On failure the keys
    /// already known stay in use.
    pub async fn refresh(&self) -> Result<usize, AuthError> {
        let KeySource::JwksUrl(url) = &self.config.keys else {
            return Ok(self.current().len());
        };
        let _one = self.fetching.lock().await;
        let body = crate::fetch::get(url).await.map_err(AuthError::Jwks)?;
        let keys = serde_json::from_slice(&body)
            .map_err(|e| format!("not a JWKS: {e}"))
            .and_then(signing_keys)
            .map_err(|e| AuthError::Jwks(format!("JWKS at {url}: {e}")))?;
        let count = keys.len();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        tracing::info!(%url, keys = count, "JWKS fetched");
        Ok(count)
    }

    fn current(&self) -> Arc<Vec<Key>> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Verifies `token`; the principal it names, or why not (for the 401).
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.check(token).await.map_err(AuthError::InvalidToken)
    }

    async fn check(&self, token: &str) -> Result<Principal, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        let mut keys = self.current();
        let knows = |keys: &[Key]| match &header.kid {
            Some(kid) => keys.iter().any(|k| k.id.as_deref() == Some(kid)),
            None => !keys.is_empty(),
        };
        if !knows(&keys) && self.claim_refetch() {
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "cannot fetch the JWKS");
            }
            keys = self.current();
        }
        let candidates: Vec<&Key> = keys
            .iter()
            .filter(|k| k.algorithm == header.alg)
            .filter(|k| match (&header.kid, &k.id) {
                (Some(kid), Some(id)) => kid == id,
                (Some(_), None) => true,
                (None, _) => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(match &header.kid {
                Some(kid) => format!(
                    "no {:?} key with id `{}` is configured",
                    header.alg,
                    mcp_protocol::shorten(kid, 64)
                ),
                None => format!("no {:?} key is configured", header.alg),
            });
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_S;
        validation.validate_nbf = true;
        validation.set_audience(&self.config.audiences);
        let mut required = vec!["exp", "aud", "sub"];
        if let Some(issuer) = &self.config.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let mut last = String::new();
        for (tried, key) in candidates.into_iter().enumerate() {
            if tried > 0 && self.extra_tries.check().is_err() {
                return Err(format!(
                    "{last}; not tried against the other keys now (more than {} such tries a second): send a token with `kid`, or retry later",
                    self.config.extra_tries_per_second
                ));
            }
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => return principal(data.claims),
                Err(e) => last = describe(&e),
            }
        }
        Err(last)
    }

    /// Whether a token with an unknown key may cause a fetch now; if so, the next may not
    /// for [`JWKS_MIN_REFETCH`], so that made-up key ids cannot make this server hammer the
    /// authorization server.
    fn claim_refetch(&self) -> bool {
        if !self.is_remote() {
            return false;
        }
        let mut last = self
            .refetched
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < JWKS_MIN_REFETCH) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

fn principal(claims: Claims) -> Result<Principal, String> {
    if claims.sub.is_empty() {
        return Err("the token's `sub` is empty".to_owned());
    }
    let mut scopes: Vec<String> = claims
        .scope
        .iter()
        .flat_map(|s| s.split_whitespace())
        .map(str::to_owned)
        .collect();
    match claims.scp {
        Some(Scp::List(list)) => scopes.extend(list),
        Some(Scp::Text(text)) => scopes.extend(text.split_whitespace().map(str::to_owned)),
        None => {}
    }
    let principal = Principal::scoped(&claims.sub, scopes);
    // The library checked `exp`; one too far away to be a time here never expires.
    let expires = Duration::try_from_secs_f64(claims.exp)
        .ok()
        .and_then(|exp| {
            std::time::UNIX_EPOCH.checked_add(exp.saturating_add(Duration::from_secs(LEEWAY_S)))
        });
    Ok(match expires {
        Some(at) => principal.expiring(at),
        None => principal,
    })
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
        ErrorKind::InvalidAudience => "the token is for another audience (aud)".to_owned(),
        ErrorKind::InvalidIssuer => "the token is from another issuer (iss)".to_owned(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
        _ => format!("invalid token: {e}"),
    }
}

/// The RS256 and ES256 (P-256) keys of a JWKS; others (and encryption keys) are skipped.
fn signing_keys(set: JwkSet) -> Result<Vec<Key>, String> {
    let keys: Vec<Key> = set.keys.iter().filter_map(key_of).collect();
    if keys.is_empty() {
        return Err("it holds no RS256 or ES256 (P-256) signing key".to_owned());
    }
    Ok(keys)
}

fn key_of(jwk: &Jwk) -> Option<Key> {
    use jsonwebtoken::jwk::PublicKeyUse;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return None,
    };
    // A key that names another algorithm is not used for this one.
    if let Some(named) = jwk.common.key_algorithm
        && Algorithm::try_from(named).ok() != Some(algorithm)
    {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        id: jwk.common.key_id.clone(),
        algorithm,
        key,
    })
}

/// A JWKS URL is `https://`, or `http://` to a loopback host only: whoever can change the
/// keys on the way decides who gets in.
fn check_jwks_url(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("--jwt-jwks-url `{url}` is not a URL: {e}"))?;
    let loopback = |host: &str| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    match uri.scheme_str() {
        Some("https") if uri.host().is_some() => Ok(()),
        Some("http") if uri.host().is_some_and(loopback) => Ok(()),
        Some("http") => Err(format!(
            "--jwt-jwks-url `{url}`: plain http is allowed only to a loopback host (whoever can change the keys on the way decides who gets in); use https"
        )),
        _ => Err(format!(
            "--jwt-jwks-url must be an https URL (or http to a loopback host), not `{url}`"
        )),
    }
}

#[cfg(test)]
mod url_tests {
    use super::check_jwks_url;

    /// Issue 19, item 10: plain http was accepted for any host.
    #[test]
    fn plain_http_is_for_loopback_only() {
        for ok in [
            "https://auth.example.com/.well-known/jwks.json",
            "http://127.0.0.1:8080/jwks",
            "http://127.9.9.9/jwks",
            "http://localhost/jwks",
            "http://[::1]:9000/jwks",
        ] {
            assert_eq!(check_jwks_url(ok), Ok(()), "{ok}");
        }
        for refused in [
            "http://auth.example.com/jwks",
            "http://10.0.0.1/jwks",
            "http://localhost.evil.com/jwks",
            "http://[::2]/jwks",
            "ftp://localhost/jwks",
            "file:///etc/jwks",
            "jwks.json",
        ] {
            assert!(check_jwks_url(refused).is_err(), "{refused}");
        }
    }
}

#[cfg(test)]
mod throttle_tests {
    use super::*;

    /// Issue 19, item 10: with several keys without `kid`, every bogus token without `kid`
    /// cost a signature check per key. Tries past the first key are now bounded.
    #[tokio::test]
    async fn tokens_without_kid_are_tried_against_more_keys_only_so_often() {
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/e2e/keys/");
        let jwks: serde_json::Value = serde_json::from_slice(
            &std::fs::read(format!("{keys}rs256-test-only.jwks.json")).unwrap(),
        )
        .unwrap();
        let mut key = jwks["keys"][0].clone();
        key.as_object_mut().unwrap().remove("kid");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let three = serde_json::json!({"keys": [key.clone(), key.clone(), key]});
        std::fs::write(&path, three.to_string()).unwrap();
        let jwt = Jwt::new(JwtConfig {
            keys: KeySource::JwksFile(path),
            issuer: None,
            audiences: vec!["mcp".to_owned()],
            // One a second: the first bogus token uses it.
            extra_tries_per_second: 1,
        })
        .unwrap();
        let pem = std::fs::read(format!("{keys}rs256-test-only.pem")).unwrap();
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::RS256),
            &serde_json::json!({"sub": "alice", "aud": "mcp", "exp": exp}),
            &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
        )
        .unwrap();
        // The same token with its signature broken: no key verifies it.
        let bogus = format!("{}AAAA", &token[..token.len() - 4]);
        let (mut throttled, mut last) = (0, String::new());
        for _ in 0..3 {
            last = jwt.verify(&bogus).await.unwrap_err().to_string();
            if last.contains("retry later") {
                throttled += 1;
            }
        }
        assert!(
            throttled >= 2,
            "every bogus token was tried against every key: {last}"
        );
        // A good token needs only its first key: it is not held up.
        assert_eq!(jwt.verify(&token).await.unwrap().name(), "alice");
    }
}
