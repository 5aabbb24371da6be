//! The HTTP side of the handshake: checking the upgrade request and choosing the subprotocol.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use hyper::{Request, Response};
use hyper_tungstenite::HyperWebsocket;

use crate::WsConfig;

/// The subprotocol MCP clients offer and the server selects. Browsers and the TypeScript SDK
/// drop a connection whose handshake does not select it when they offered it.
pub const SUBPROTOCOL: &str = "mcp";

/// The subprotocol of a client that speaks MCP 2026-07-28 (as SEP-1288 proposes: the
/// revision in the name). Selected over `mcp` when offered; the era is still decided per
/// request, by the request's `_meta`, so either carries both eras.
pub const MODERN_SUBPROTOCOL: &str = "mcp.version.2026-07-28";

/// The prefix of the subprotocol that carries a bearer token, for browsers, which cannot set
/// headers on a WebSocket (SEP-1288): `mcp.auth.<token>`. It is never selected, echoed nor
/// logged.
pub const TOKEN_SUBPROTOCOL_PREFIX: &str = "mcp.auth.";

/// The subprotocols a handshake offers, in order.
pub fn offered_subprotocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// The bearer token an upgrade offers as the `mcp.auth.<token>` subprotocol, if any.
pub fn subprotocol_token(headers: &HeaderMap) -> Option<&str> {
    offered_subprotocols(headers).find_map(|p| p.strip_prefix(TOKEN_SUBPROTOCOL_PREFIX))
}

/// Why an upgrade request was refused. Each is answered with 400 Bad Request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The client offered subprotocols, none of them `mcp` or `mcp.version.2026-07-28`: it
    /// expects another protocol on this socket. The client should offer one of those, or
    /// none.
    #[error(
        "none of the offered WebSocket subprotocols ({offered}) is supported; offer `mcp` or `mcp.version.2026-07-28`"
    )]
    UnsupportedSubprotocol {
        /// The `Sec-WebSocket-Protocol` values the client sent, a token subprotocol written
        /// `mcp.auth.<token>`: the token itself is never repeated.
        offered: String,
    },
    /// The request is not a valid WebSocket handshake (missing key, wrong version).
    #[error("invalid WebSocket handshake: {0}")]
    Handshake(#[from] hyper_tungstenite::tungstenite::error::ProtocolError),
}

/// Whether `request` asks to upgrade to WebSocket.
pub fn is_upgrade_request<B>(request: &Request<B>) -> bool {
    hyper_tungstenite::is_upgrade_request(request)
}

/// Accepts a WebSocket upgrade: returns the 101 response to send and the future connection,
/// which [`crate::serve_connection`] turns into a session once the response has gone out.
///
/// `mcp.version.2026-07-28` is selected when offered, else `mcp`; a client offering none
/// is accepted too.
pub fn accept<B>(
    request: &mut Request<B>,
    config: &WsConfig,
) -> Result<(Response<Full<Bytes>>, HyperWebsocket), UpgradeError> {
    let offered: Vec<&str> = offered_subprotocols(request.headers()).collect();
    let selected = [MODERN_SUBPROTOCOL, SUBPROTOCOL]
        .into_iter()
        .find(|p| offered.contains(p));
    if !offered.is_empty() && selected.is_none() {
        let shown: Vec<&str> = offered
            .iter()
            .map(|p| match p.starts_with(TOKEN_SUBPROTOCOL_PREFIX) {
                true => "mcp.auth.<token>",
                false => p,
            })
            .collect();
        return Err(UpgradeError::UnsupportedSubprotocol {
            offered: shown.join(", "),
        });
    }
    let (mut response, websocket) =
        hyper_tungstenite::upgrade(request, Some(config.tungstenite()))?;
    if let Some(selected) = selected {
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(selected));
    }
    Ok((response, websocket))
}
