//! The HTTP side of the handshake: the subprotocol chosen, and a token never repeated.

use hyper::Request;
use hyper::header::{
    CONNECTION, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use mcp_ws::{UpgradeError, WsConfig};

fn upgrade(protocols: &str) -> Request<()> {
    Request::get("/mcp")
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "Upgrade")
        .header(SEC_WEBSOCKET_VERSION, "13")
        .header(SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
        .header(SEC_WEBSOCKET_PROTOCOL, protocols)
        .body(())
        .unwrap()
}

#[test]
fn mcp_is_selected_and_the_token_is_read_from_its_subprotocol() {
    let mut request = upgrade("mcp, mcp.auth.s3cret-token");
    assert_eq!(
        mcp_ws::subprotocol_token(request.headers()),
        Some("s3cret-token")
    );
    let (response, _) = mcp_ws::accept(&mut request, &WsConfig::default()).unwrap();
    assert_eq!(response.headers()[SEC_WEBSOCKET_PROTOCOL], "mcp");
}

#[test]
fn a_refused_upgrade_never_repeats_the_token() {
    let mut request = upgrade("graphql-ws, mcp.auth.s3cret-token");
    let error =
        mcp_ws::accept(&mut request, &WsConfig::default()).expect_err("no `mcp` offered: refused");
    assert!(matches!(error, UpgradeError::UnsupportedSubprotocol { .. }));
    let text = error.to_string();
    assert!(
        !text.contains("s3cret"),
        "the refusal repeats the token: {text}"
    );
    assert!(text.contains("graphql-ws, mcp.auth.<token>"), "{text}");
}
