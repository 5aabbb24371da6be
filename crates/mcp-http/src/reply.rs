//! The responses every HTTP endpoint of the server shares: the body type, plain text, JSON,
//! and content negotiation. They live here, below the server's router and this transport,
//! so that neither reaches into the other.

use std::convert::Infallible;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

/// How often an idle SSE stream gets a comment, so proxies do not cut it.
pub(crate) const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// Response bodies: whole (most) or streamed (SSE).
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// `body`, holding `guard` until it is done or dropped (a count of what its connection
/// holds, say); its length and end are told as `body`'s, so a whole body keeps its
/// `Content-Length`.
pub fn holding(body: Body, guard: impl Send + Unpin + 'static) -> Body {
    Holding {
        body,
        _guard: guard,
    }
    .boxed_unsync()
}

struct Holding<G> {
    body: Body,
    _guard: G,
}

impl<G: Unpin> hyper::body::Body for Holding<G> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        // `Body` is `Unpin`, and so is the guard.
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    with_type(status, body, "text/plain; charset=utf-8")
}

/// A JSON response of text already written.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    with_type(status, body, "application/json")
}

fn with_type(status: StatusCode, body: impl Into<Bytes>, kind: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed_unsync());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    response
}

/// Whether `accept` allows `wanted` (`type/subtype`), wildcards included.
pub fn accepts(accept: &str, wanted: &str) -> bool {
    let (kind, _) = wanted.split_once('/').unwrap_or((wanted, ""));
    accept.split(',').any(|item| {
        let media = item.split(';').next().unwrap_or_default().trim();
        media.eq_ignore_ascii_case(wanted) || media == "*/*" || media == format!("{kind}/*")
    })
}
