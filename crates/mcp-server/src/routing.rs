//! 2025 Streamable HTTP sessions across instances. Such a session lives in the memory of the
//! instance that made it (its core session, its streams); that instance holds the lease
//! `http:{id}` in the shared store, naming its own address (`--instance-url`), and renews it.
//! Another instance that gets a request of the session forwards it there, and sends the
//! answer back on the client's connection (an SSE stream included).
//!
//! Forward, not move: an HTTP session's requests come one connection at a time, each possibly
//! to another instance behind a round-robin balancer; moving the session to each would cost a
//! hand-over per request and cut the session's open streams. Forwarding costs one more hop
//! for the requests that land elsewhere. When the instance that holds a session dies, the
//! session dies with it (it was in its memory): its lease runs out, and its requests get 404,
//! which tells a 2025 client to start a new session.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mcp_http::Body;
use mcp_http::reply::text;

use crate::http::State;

/// The header a forwarded request carries: the instance it reaches serves it or answers
/// 404; it never forwards it again.
pub(crate) const FORWARDED: &str = "mcp-forwarded";

/// How long a session's route lasts unless renewed (every third of it).
const ROUTE_LEASE: Duration = Duration::from_secs(15);

fn lease(id: &str) -> String {
    format!("http:{id}")
}

/// Whether `request` is for a session of this server's that another instance holds: the
/// address of that instance.
pub(crate) async fn elsewhere(state: &State, request: &Request<Incoming>) -> Option<String> {
    let store = state.server().store();
    if !store.shared() || request.headers().contains_key(FORWARDED) {
        return None;
    }
    let id = request
        .headers()
        .get(mcp_http::SESSION_HEADER)?
        .to_str()
        .ok()?;
    if state.http_sessions().contains(id) {
        return None;
    }
    let holder = store.lease_holder(&lease(id)).await.ok()??;
    (Some(holder.as_str()) != state.url()).then_some(holder)
}

/// Sends `request` to the instance at `to` and its answer back. An instance that does not
/// answer has taken the session with it: 404, as for any session that is gone.
pub(crate) async fn forward(mut request: Request<Incoming>, to: &str) -> Response<Body> {
    let gone = || {
        text(
            StatusCode::NOT_FOUND,
            "this session was held by an instance that is gone; start a new session\n",
        )
    };
    let Some(authority) = to
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
    else {
        tracing::warn!(to, "cannot forward to an instance that is not plain http");
        return gone();
    };
    let Ok(tcp) = tokio::net::TcpStream::connect(authority).await else {
        return gone();
    };
    let _ = tcp.set_nodelay(true);
    let Ok((mut sender, connection)) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await
    else {
        return gone();
    };
    tokio::spawn(connection);
    request
        .headers_mut()
        .insert(FORWARDED, HeaderValue::from_static("1"));
    match sender.send_request(request).await {
        Ok(response) => response.map(|body| Relayed(body).boxed_unsync()),
        Err(e) => {
            tracing::debug!(to, error = %e, "a forwarded request failed");
            gone()
        }
    }
}

/// An answer relayed from another instance: it ends where the other's ends or breaks.
struct Relayed(Incoming);

impl hyper::body::Body for Relayed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match Pin::new(&mut self.get_mut().0).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            // A broken relay ends the answer; the client sees it cut, as it would the other
            // instance's own connection.
            Poll::Ready(Some(Err(_)) | None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.0)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::Body::size_hint(&self.0)
    }
}

/// Takes the route of a new session of this instance's (its lease, naming this instance).
pub(crate) async fn register(state: &State, id: &str) {
    let (Some(url), store) = (state.url(), state.server().store()) else {
        return;
    };
    if !store.shared() {
        return;
    }
    if let Err(e) = store.claim_lease(&lease(id), url, ROUTE_LEASE).await {
        tracing::warn!(session = id, error = %e, "cannot route a new HTTP session to this instance");
    }
}

/// Renews the routes of this instance's HTTP sessions (taking again one that ran out) until
/// the server shuts down.
pub(crate) async fn keep(state: State) {
    let (Some(url), store) = (
        state.url().map(str::to_owned),
        state.server().store().clone(),
    ) else {
        return;
    };
    if !store.shared() {
        return;
    }
    let stop = state.server().shutdown_token().clone();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(ROUTE_LEASE / 3) => {}
        }
        // All in one round trip; a route that ran out (Redis was away) is taken again.
        let ids = state.http_sessions().ids();
        let names: Vec<String> = ids.iter().map(|id| lease(id)).collect();
        let renewed = match store.renew_leases(&names, &url, ROUTE_LEASE).await {
            Ok(renewed) => renewed,
            Err(e) => {
                tracing::debug!(error = %e, "cannot renew the HTTP sessions' routes yet");
                continue;
            }
        };
        for ((id, name), renewed) in ids.iter().zip(&names).zip(renewed) {
            if !renewed && !matches!(store.claim_lease(name, &url, ROUTE_LEASE).await, Ok(true)) {
                tracing::debug!(session = %id, "cannot renew an HTTP session's route yet");
            }
        }
    }
}
