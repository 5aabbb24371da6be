//! The web console at `GET /`: a page and its scripts and styles, embedded in the binary,
//! served to anyone (they hold no secret; the page asks for the token) under a strict
//! Content-Security-Policy: scripts, styles and connections to this origin only, nothing
//! inline, no framing.

use hyper::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Response, StatusCode};

use mcp_http::Body;
use mcp_http::reply::text;

/// The console's policy: its own scripts, styles and WebSocket, and nothing else.
pub(crate) const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's files: path, content type, content.
const FILES: [(&str, &str, &str); 5] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../console/index.html"),
    ),
    (
        "/console/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/app.js"),
    ),
    (
        "/console/mcp.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/mcp.js"),
    ),
    (
        "/console/forms.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/forms.js"),
    ),
    (
        "/console/style.css",
        "text/css; charset=utf-8",
        include_str!("../console/style.css"),
    ),
];

/// Whether `path` is one of the console's files.
pub(crate) fn serves(path: &str) -> bool {
    FILES.iter().any(|(p, _, _)| *p == path)
}

/// The file at `path` (one [`serves`] accepts).
pub(crate) fn file(method: &Method, path: &str) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    let Some((_, kind, content)) = FILES.iter().find(|(p, _, _)| *p == path) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let mut response = text(StatusCode::OK, *content);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONSOLE_CSP),
    );
    // Embedded in the binary: a new version is a new server, so check each time.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
