//! Static bearer tokens, and the [`Auth`] that accepts them or, when configured, a JWT
//! access token (see [`crate::jwt`]).
//!
//! A token is given as `NAME=TOKEN` on the command line, or as `NAME SHA256HEX` in a tokens
//! file (so the file holds no secret). Only SHA-256 digests are kept; a presented token is
//! hashed and compared with every digest in constant time, so neither timing nor the order of
//! the tokens says anything about them.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use mcp_session::Principal;

use sha2::{Digest as _, Sha256};

use crate::AuthError;
use crate::jwt::Jwt;

/// The configured tokens; none means authentication is off.
#[derive(Clone, Default)]
pub struct Auth {
    tokens: Vec<(String, [u8; 32])>,
    jwt: Option<Arc<Jwt>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.tokens.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Auth")
            .field("token_names", &names)
            .field("jwt", &self.jwt)
            .finish()
    }
}

/// The SHA-256 digest of a token, as the tokens file holds it.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    /// Tokens from `NAME=TOKEN` pairs and a tokens file of `NAME SHA256HEX` lines (blank
    /// lines and `#` comments allowed). Fails on a malformed entry, naming it.
    pub fn new(pairs: &[String], file: Option<&Path>) -> Result<Self, AuthError> {
        let mut tokens = Vec::new();
        for pair in pairs {
            let (name, token) = pair
                .split_once('=')
                .filter(|(n, t)| !n.is_empty() && !t.is_empty())
                .ok_or_else(|| {
                    AuthError::Config(
                        "--auth-token takes NAME=TOKEN, with a name and a token".to_owned(),
                    )
                })?;
            tokens.push((name.to_owned(), digest(token)));
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| AuthError::Config(format!("cannot read {}: {e}", path.display())))?;
            for (number, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let parsed = line
                    .split_once(char::is_whitespace)
                    .and_then(|(name, hex)| Some((name, parse_hex(hex.trim())?)));
                let Some((name, hash)) = parsed else {
                    return Err(AuthError::Config(format!(
                        "{} line {}: expected `NAME SHA256HEX` (64 hex digits)",
                        path.display(),
                        number + 1
                    )));
                };
                tokens.push((name.to_owned(), hash));
            }
        }
        Ok(Self { tokens, jwt: None })
    }

    /// Accepts JWT access tokens too, verified by `jwt`.
    pub fn with_jwt(mut self, jwt: Jwt) -> Self {
        self.jwt = Some(Arc::new(jwt));
        self
    }

    /// The JWT verifier, when JWTs are accepted.
    pub fn jwt(&self) -> Option<&Arc<Jwt>> {
        self.jwt.as_ref()
    }

    /// Whether any token (static or JWT) is required.
    pub fn is_enabled(&self) -> bool {
        !self.tokens.is_empty() || self.jwt.is_some()
    }

    /// The principal `presented` authenticates: a static token's name (unrestricted), or a
    /// valid JWT's subject with its scopes. Otherwise why not.
    pub async fn authenticate(&self, presented: &str) -> Result<Principal, AuthError> {
        if let Some(name) = self.principal(presented) {
            return Ok(Principal::unrestricted(name));
        }
        match &self.jwt {
            // A JWT is three base64url parts; anything else is no JWT at all.
            Some(jwt) if presented.split('.').count() == 3 => jwt.verify(presented).await,
            _ => Err(AuthError::InvalidToken("invalid token".to_owned())),
        }
    }

    /// The name of the token `presented` is, if any.
    pub fn principal(&self, presented: &str) -> Option<&str> {
        let hash = digest(presented);
        // Every entry is compared, all the way, whatever matches.
        let mut found = None;
        for (name, expected) in &self.tokens {
            let diff = hash
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 && found.is_none() {
                found = Some(name.as_str());
            }
        }
        found
    }
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_pairs_and_a_file_of_digests() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        let hex: String = digest("s3cret-bob")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(&file, format!("# team\n\nbob {hex}\n")).unwrap();
        let auth = Auth::new(&["alice=s3cret-alice".to_owned()], Some(&file)).unwrap();
        assert!(auth.is_enabled());
        assert_eq!(auth.principal("s3cret-alice"), Some("alice"));
        assert_eq!(auth.principal("s3cret-bob"), Some("bob"));
        assert_eq!(auth.principal("s3cret"), None);
        assert_eq!(auth.principal(""), None);
        assert!(!format!("{auth:?}").contains("s3cret"));
        assert!(!Auth::default().is_enabled());
    }

    #[test]
    fn malformed_entries_are_refused_with_their_place() {
        assert!(Auth::new(&["alice".to_owned()], None).is_err());
        assert!(Auth::new(&["=token".to_owned()], None).is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "bob nothex\n").unwrap();
        let error = Auth::new(&[], Some(&file)).unwrap_err();
        assert!(error.to_string().contains("line 1"), "{error}");
    }
}
