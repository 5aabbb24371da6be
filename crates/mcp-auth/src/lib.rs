//! Authentication for MCP servers: who is calling.
//!
//! A bearer token is either a static token, kept only as its SHA-256 digest and compared in
//! constant time ([`Auth`]), or a JWT access token verified by a [`Jwt`] (RS256 and ES256
//! keys from a JWKS file or URL, or an HS256 secret), whose subject and scopes become the
//! [`Principal`](mcp_session::Principal). Where the token comes from (an `Authorization`
//! header, a WebSocket subprotocol) is the transport's business.

#![warn(missing_docs)]

mod fetch;
pub mod jwt;
mod tokens;

pub use jwt::{EXTRA_TRIES_PER_SECOND, Jwt, JwtConfig, KeySource};
pub use mcp_session::ANONYMOUS;
pub use tokens::{Auth, digest};

/// Why authentication failed, or could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The configuration is wrong (a malformed token entry, an unreadable tokens file or
    /// JWKS, a missing audience): fix it before starting. The text names the culprit.
    #[error("{0}")]
    Config(String),
    /// The presented token is not valid (unknown, expired, not yet valid, for another
    /// audience or issuer, badly signed): the client should get a new one. The text says
    /// which, and is safe to show the client.
    #[error("{0}")]
    InvalidToken(String),
    /// The JWKS could not be fetched or read; the keys known before stay in use. Retry later.
    #[error("{0}")]
    Jwks(String),
}

/// The token of an `Authorization: Bearer <token>` header value, if it is one.
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
