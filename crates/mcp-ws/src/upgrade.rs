//! The HTTP side of the handshake: checking the upgrade request and choosing the subprotocol.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use hyper::{Request, Response};
use hyper_tungstenite::HyperWebsocket;

use crate::WsConfig;

/// The subprotocol MCP clients offer and the server selects. Browsers and the TypeScript SDK
/// drop a connection whose handshake does not select it when they offered it.
pub const SUBPROTOCOL: &str = "mcp";

/// Why an upgrade request was refused. Each is answered with 400 Bad Request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The client offered subprotocols, none of them `mcp`: it expects another protocol on
    /// this socket. The client should offer `mcp`, or none.
    #[error("none of the offered WebSocket subprotocols ({offered}) is supported; offer `mcp`")]
    UnsupportedSubprotocol {
        /// The `Sec-WebSocket-Protocol` values the client sent.
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
/// The `mcp` subprotocol is selected when offered; a client offering none is accepted too.
pub fn accept<B>(
    request: &mut Request<B>,
    config: &WsConfig,
) -> Result<(Response<Full<Bytes>>, HyperWebsocket), UpgradeError> {
    let offered: Vec<String> = request
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let select_mcp = offered.iter().any(|p| p == SUBPROTOCOL);
    if !offered.is_empty() && !select_mcp {
        return Err(UpgradeError::UnsupportedSubprotocol {
            offered: offered.join(", "),
        });
    }
    let (mut response, websocket) =
        hyper_tungstenite::upgrade(request, Some(config.tungstenite()))?;
    if select_mcp {
        response.headers_mut().insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    Ok((response, websocket))
}
