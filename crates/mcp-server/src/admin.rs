//! Admin endpoints. Until authentication exists they answer only to loopback clients.

use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use mcp_protocol::LoggingLevel;
use mcp_session::Hub;
use serde::Deserialize;

use mcp_http::Body;
use mcp_http::reply::text;

use crate::body::json_body;

/// The largest request body an admin endpoint reads.
const MAX_BODY: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Broadcast {
    message: String,
    #[serde(default = "default_level")]
    level: LoggingLevel,
}

fn default_level() -> LoggingLevel {
    LoggingLevel::Warning
}

/// `POST /admin/broadcast` `{"message": "...", "level": "warning"}`: sends
/// `notifications/message` to every session whose client wants that level; answers
/// `{"delivered": N, "sessions": M}`.
///
/// Only an admin may call it: with tokens configured, a principal named by `--admin`;
/// without, a client on loopback.
pub(crate) async fn broadcast(
    request: Request<Incoming>,
    admin: Result<(), &'static str>,
    server: &Hub,
    body_timeout: std::time::Duration,
) -> Response<Body> {
    if let Err(why) = admin {
        return text(StatusCode::FORBIDDEN, format!("{why}\n"));
    }
    if request.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
    }
    let body = match json_body(request, MAX_BODY, body_timeout).await {
        Ok(body) => body,
        Err(e) => return text(e.status, format!("{}\n", e.message)),
    };
    let broadcast: Broadcast = match mcp_protocol::decode_value(body) {
        Ok(b) => b,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected {{\"message\": string, \"level\": debug|info|notice|warning|error|critical|alert|emergency}}: {e}\n"
                ),
            );
        }
    };
    let delivered = server.broadcast(broadcast.level, &broadcast.message);
    let answer = serde_json::json!({"delivered": delivered, "sessions": server.sessions()});
    let mut response = text(StatusCode::OK, answer.to_string());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
