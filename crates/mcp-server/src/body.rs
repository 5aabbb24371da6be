//! Request bodies: JSON of at most a given size, read once into a buffer; what every JSON
//! endpoint of the server shares, below the router so that neither reaches into the other.

use http_body_util::BodyExt as _;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderMap};
use hyper::{Request, StatusCode};
use std::time::Duration;

/// Why a JSON request body was refused.
pub(crate) struct BodyError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

/// Reads a request body that must be `application/json`, at most `limit` bytes, and all
/// there within `timeout`; the error says which rule it broke (415, 413, 408 or 400). Each
/// endpoint renders it its own way.
pub(crate) async fn json_body(
    request: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<serde_json::Value, BodyError> {
    let (parts, body) = request.into_parts();
    read_json(&parts.headers, body, limit, timeout).await
}

/// [`json_body`] for a request already taken apart.
pub(crate) async fn read_json(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<serde_json::Value, BodyError> {
    let body = read_body(headers, body, limit, timeout).await?;
    if mcp_protocol::nests_deeper(&body, mcp_protocol::MAX_DEPTH) {
        return Err(BodyError {
            status: StatusCode::BAD_REQUEST,
            message: format!(
                "the body's arrays and objects nest deeper than {} levels",
                mcp_protocol::MAX_DEPTH
            ),
        });
    }
    serde_json::from_slice(&body).map_err(|e| BodyError {
        status: StatusCode::BAD_REQUEST,
        message: format!("the body is not JSON: {e}"),
    })
}

/// A request body that must be `application/json`, at most `limit` bytes and all there
/// within `timeout` (a body that trickles in holds a connection and a buffer), as bytes.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let refuse = |status, message: String| BodyError { status, message };
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send Content-Type: application/json".to_owned(),
        ));
    }
    let collect = http_body_util::Limited::new(body, limit).collect();
    let body = tokio::time::timeout(timeout, collect)
        .await
        .map_err(|_| {
            refuse(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s (--body-timeout)",
                    timeout.as_secs_f64()
                ),
            )
        })?
        .map_err(|e| {
            refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("cannot read the body (at most {limit} bytes): {e}"),
            )
        })?
        .to_bytes();
    Ok(body)
}
