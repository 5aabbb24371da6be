//! HTTP routing: `/healthz`, and `/mcp`, where a WebSocket upgrade starts a session.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{
    ACCEPT, AUTHORIZATION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, HeaderMap, HeaderValue,
    ORIGIN, UPGRADE, WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use mcp_session::{Hub, Principal};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::connections::{Connections, HeldPlace};
use crate::{Config, admin, agents, console, dialects};
use mcp_http::{HttpSessions, Post};

/// The path of the broadcast endpoint.
const BROADCAST_PATH: &str = "/admin/broadcast";

/// The path of the MCP endpoint.
pub(crate) const MCP_PATH: &str = "/mcp";

/// What every HTTP connection shares.
#[derive(Clone)]
pub(crate) struct State(Arc<StateInner>);

struct StateInner {
    server: Hub,
    /// The open WebSocket connections.
    connections: Arc<Connections>,
    config: Config,
    tracker: TaskTracker,
    /// False once shutdown begins: `/readyz` answers 503 and new sessions are refused.
    ready: AtomicBool,
    /// The Streamable HTTP sessions.
    http_sessions: Arc<HttpSessions>,
    /// Origins a browser may call from (lowercase `scheme://host[:port]`).
    allowed_origins: Vec<String>,
    /// Whether the server listens on loopback only: then the Host must be a loopback name.
    loopback: bool,
    /// How other instances reach this one (`--instance-url`, or the address it listens on
    /// when that is not a wildcard).
    url: Option<String>,
}

impl State {
    pub(crate) fn new(
        server: Hub,
        config: Config,
        tracker: TaskTracker,
        local: SocketAddr,
        connections: Arc<Connections>,
    ) -> Self {
        let port = local.port();
        let mut allowed_origins: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .flat_map(|host| ["http", "https"].map(|scheme| format!("{scheme}://{host}:{port}")))
            .collect();
        allowed_origins.extend(
            config
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase()),
        );
        let url = config.instance_url.clone().or_else(|| {
            let scheme = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            (!local.ip().is_unspecified()).then(|| format!("{scheme}://{local}"))
        });
        Self(Arc::new(StateInner {
            server,
            connections,
            config,
            http_sessions: Arc::new(HttpSessions::new(tracker.clone())),
            tracker,
            ready: AtomicBool::new(true),
            url,
            allowed_origins,
            loopback: local.ip().is_loopback(),
        }))
    }

    pub(crate) fn server(&self) -> &Hub {
        &self.0.server
    }

    pub(crate) fn http_sessions(&self) -> &HttpSessions {
        &self.0.http_sessions
    }

    /// How other instances reach this one, when known.
    pub(crate) fn url(&self) -> Option<&str> {
        self.0.url.as_deref()
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::SeqCst);
    }

    fn is_ready(&self) -> bool {
        self.0.ready.load(Ordering::SeqCst)
    }

    /// The principal a request authenticates as, by its bearer token (from `Authorization`,
    /// or for a WebSocket upgrade the `mcp.auth.<token>` subprotocol), or anonymous when no
    /// token is configured. Otherwise why not, for a 401.
    async fn authenticate(&self, headers: &HeaderMap, upgrade: bool) -> Result<Principal, Refusal> {
        let auth = &self.0.config.auth;
        if !auth.is_enabled() {
            return Ok(Principal::anonymous());
        }
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(mcp_auth::bearer);
        let offered = upgrade
            .then(|| mcp_ws::subprotocol_token(headers))
            .flatten();
        match bearer.or(offered) {
            Some(token) => auth
                .authenticate(token)
                .await
                .map_err(|e| Refusal::Invalid(e.to_string())),
            None => Err(Refusal::Missing),
        }
    }

    /// Whether `principal` (from `remote`) may call the admin endpoints: with tokens, an
    /// `--admin` principal or a JWT with the `mcp:admin` scope; without, a client on
    /// loopback.
    fn admin(&self, principal: &Principal, remote: SocketAddr) -> Result<(), &'static str> {
        let config = &self.0.config;
        if config.auth.is_enabled() {
            if principal.has_admin_scope() || config.admins.iter().any(|a| a == principal.name()) {
                return Ok(());
            }
            return Err(
                "admin endpoints need an admin token: one whose name is given with --admin, or a JWT with the scope `mcp:admin`",
            );
        }
        if remote.ip().is_loopback() {
            Ok(())
        } else {
            Err("admin endpoints answer only on loopback when no tokens are configured")
        }
    }

    /// Refuses a request from a foreign origin, or (on a loopback listener) for a Host that
    /// is not a loopback name: the defences against DNS rebinding.
    fn check_origin(&self, headers: &HeaderMap) -> Result<(), String> {
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or_default().to_ascii_lowercase();
            if !self.0.allowed_origins.contains(&origin) {
                return Err(format!(
                    "origin `{}` is not allowed: start the server with --allowed-origin to allow it",
                    mcp_protocol::shorten(&origin, 80)
                ));
            }
        }
        if self.0.loopback
            && let Some(host) = headers.get(HOST)
        {
            let host = host.to_str().unwrap_or_default().to_ascii_lowercase();
            let name = match host.strip_prefix('[') {
                Some(v6) => v6.split(']').next().map(|h| format!("[{h}]")),
                None => host.split(':').next().map(str::to_owned),
            }
            .unwrap_or_default();
            let configured = self.0.allowed_origins.iter().any(|o| {
                o.split_once("://")
                    .is_some_and(|(_, rest)| rest == host || rest.split(':').next() == Some(&name))
            });
            if !["localhost", "127.0.0.1", "[::1]"].contains(&name.as_str()) && !configured {
                return Err(format!(
                    "host `{}` is not this server's: it listens on loopback (DNS rebinding protection)",
                    mcp_protocol::shorten(&host, 80)
                ));
            }
        }
        Ok(())
    }
}

/// The Content-Security-Policy of every response that sets none of its own: nothing may be
/// loaded, run or framed.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// How long a client gets to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one accepted TCP connection: over TLS when configured (after the handshake),
/// plain otherwise.
pub(crate) async fn serve_tcp(
    stream: TcpStream,
    remote: SocketAddr,
    state: State,
    stopping: CancellationToken,
) {
    // Every connection counts, from its accept: an idle or trickling one holds a place too.
    let max = state.0.config.max_connections;
    let Some(place) = state.0.connections.try_place(max) else {
        tracing::info!(%remote, max, "connection refused: too many connections");
        // Answered only while few refusals are under way: a flood of connections over the
        // limit is closed at once rather than held for its answer.
        if state.0.config.tls.is_none()
            && let Some(_refusing) = state.0.connections.try_refusal()
        {
            refuse_connection(stream, max).await;
        }
        return;
    };
    let place = Some(HeldPlace::new(place));
    let Some(tls) = state.0.config.tls.clone() else {
        return serve_http(stream, remote, state, stopping, place).await;
    };
    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream));
    let stream = tokio::select! {
        () = stopping.cancelled() => return,
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(%remote, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%remote, "TLS handshake timed out");
                return;
            }
        },
    };
    serve_http(stream, remote, state, stopping, place).await;
}

/// Answers a connection over the limit with 503 at once, without reading its request, then
/// closes it; its request is read and dropped first (a second at most), so that the close
/// does not reset the connection before the client has read the answer.
async fn refuse_connection(mut stream: TcpStream, max: usize) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let body =
        format!("too many connections: the limit is {max} (--max-connections); retry later\n");
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Retry-After: 5\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let refuse = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), refuse).await;
}

use mcp_http::Body;
use mcp_http::reply::text;

use crate::body::{BodyError, read_body};

/// Serves one connection's HTTP requests (plain TCP, TLS, or in memory for the fuzz target)
/// until it closes or the server stops.
pub(crate) async fn serve_http<S>(
    stream: S,
    remote: SocketAddr,
    state: State,
    stopping: CancellationToken,
    place: Option<HeldPlace>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |mut request: Request<Incoming>| {
        let state = state.clone();
        if let Some(place) = &place {
            request.extensions_mut().insert(place.clone());
        }
        async move {
            let mut response = route(request, remote, &state).await;
            // No response is to be sniffed into another type than it says, nor rendered
            // with anything it could load or be framed by.
            let headers = response.headers_mut();
            headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            headers
                .entry(CONTENT_SECURITY_POLICY)
                .or_insert(HeaderValue::from_static(API_CSP));
            Ok::<_, Infallible>(response)
        }
    });
    // The timer enables hyper's header read timeout, which ends connections that trickle
    // their request headers (slowloris).
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopping.cancelled() => {
            // Finish the request in progress, if any, then close.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "HTTP connection ended with an error");
    }
}

async fn route(request: Request<Incoming>, remote: SocketAddr, state: &State) -> Response<Body> {
    if let Err(why) = state.check_origin(request.headers()) {
        tracing::info!(%remote, reason = %why, "request refused");
        return text(StatusCode::FORBIDDEN, format!("{why}\n"));
    }
    let path = request.uri().path();
    let upgrade = mcp_ws::is_upgrade_request(&request);
    if path == METADATA_PATH || path.strip_prefix(METADATA_PATH) == Some(MCP_PATH) {
        // Open to all: it tells clients where to get a token.
        return protected_resource_metadata(&request, state);
    }
    if !upgrade && console::serves(path) {
        // Open to all: static files; the page asks for the token.
        return console::file(request.method(), path);
    }
    if matches!(path, "/healthz" | "/readyz") {
        // Probes stay open: they say nothing about sessions.
        return serve(request, remote, state, Principal::anonymous(), &mut None).await;
    }
    let principal = match state.authenticate(request.headers(), upgrade).await {
        Ok(principal) => principal,
        Err(refusal) => return unauthorized(&refusal, &request, remote, state),
    };
    // The connection counts against its principal while it carries the principal's request
    // and response (an SSE stream included), or as its WebSocket.
    let mut hold = match state.0.server.hold_connection(&principal) {
        Ok(hold) => Some(hold),
        Err(limited) => {
            tracing::info!(%remote, reason = %limited.message, "request refused");
            return mcp_http::limited_response(&limited);
        }
    };
    let response = serve(request, remote, state, principal, &mut hold).await;
    match hold {
        Some(hold) => response.map(|body| mcp_http::reply::holding(body, hold)),
        // A WebSocket took it.
        None => response,
    }
}

/// Serves an authenticated request; an upgrade takes `hold` (its connection's count under
/// its principal's limit) for the WebSocket's life.
async fn serve(
    mut request: Request<Incoming>,
    remote: SocketAddr,
    state: &State,
    principal: Principal,
    hold: &mut Option<mcp_session::ConnectionHold>,
) -> Response<Body> {
    let path = request.uri().path();
    let upgrade = mcp_ws::is_upgrade_request(&request);
    // A 2025 HTTP session another instance holds: served there.
    if !upgrade
        && path == MCP_PATH
        && let Some(to) = crate::routing::elsewhere(state, &request).await
    {
        return crate::routing::forward(request, &to).await;
    }
    let path = request.uri().path();
    if upgrade && let Some(agent) = agents::websocket_agent(path) {
        let agent = agent.to_owned();
        return agent_websocket(&agent, &mut request, remote, state, principal, hold).await;
    }
    match (path, upgrade) {
        (MCP_PATH, true) => match query_param(request.uri(), "dialect").as_deref() {
            None | Some("mcp") => {
                upgrade_to_session(&mut request, remote, state, None, principal, hold)
            }
            Some("tutorial") => upgrade_to_session(
                &mut request,
                remote,
                state,
                Some(dialects::tutorial()),
                principal,
                hold,
            ),
            Some(other) => text(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown dialect `{}`: use `tutorial`, or none for standard MCP\n",
                    mcp_protocol::shorten(other, 40)
                ),
            ),
        },
        (MCP_PATH, false) if request.method() == Method::POST => {
            mcp_post(request, state, &principal).await
        }
        (MCP_PATH, false)
            if request.method() == Method::GET
                && request
                    .headers()
                    .get(ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| mcp_http::accepts(a, "text/event-stream")) =>
        {
            mcp_http::get(request.headers(), &state.0.http_sessions, &principal)
        }
        (MCP_PATH, false) if request.method() == Method::DELETE => {
            mcp_http::delete(request.headers(), &state.0.http_sessions, &principal)
        }
        (path, false) if path == "/agent" || path.starts_with("/agent/") => {
            agents::route(request, &state.0.server, &principal, &state.0.config).await
        }
        (MCP_PATH, false) => {
            let mut response = text(
                StatusCode::UPGRADE_REQUIRED,
                "this endpoint speaks MCP over WebSocket: connect with `Upgrade: websocket` (subprotocol `mcp`)\n",
            );
            response
                .headers_mut()
                .insert(UPGRADE, HeaderValue::from_static("websocket"));
            response
        }
        ("/healthz", false)
            if request.method() == Method::GET || request.method() == Method::HEAD =>
        {
            text(StatusCode::OK, "ok\n")
        }
        ("/metrics", false) if request.method() == Method::GET => {
            if state.0.config.metrics_admin_only
                && let Err(why) = state.admin(&principal, remote)
            {
                return text(
                    StatusCode::FORBIDDEN,
                    format!("{why} (--metrics-admin-only)\n"),
                );
            }
            let mut response = text(StatusCode::OK, state.0.server.render_metrics());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        ("/readyz", false)
            if request.method() == Method::GET || request.method() == Method::HEAD =>
        {
            if !state.is_ready() {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
            } else if let Err(why) = state.0.server.store().health() {
                // Sessions that cannot be written cannot be served: send clients elsewhere
                // until the store works again.
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the session store fails: {}\n",
                        mcp_protocol::shorten(&why, 300)
                    ),
                )
            } else {
                text(StatusCode::OK, "ready\n")
            }
        }
        ("/healthz" | "/readyz" | "/metrics", false) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
        }
        (BROADCAST_PATH, false) => {
            let admin = state.admin(&principal, remote);
            admin::broadcast(request, admin, &state.0.server, state.0.config.body_timeout).await
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Where the protected-resource metadata (RFC 9728) is served; also with `/mcp` appended,
/// the resource's own path.
const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// Why a request is not authenticated.
enum Refusal {
    /// No token was presented.
    Missing,
    /// The token is not valid: why.
    Invalid(String),
}

/// The address clients use to reach this server: `--public-url`, or the scheme and Host the
/// request came with.
fn public_base(request: &Request<Incoming>, state: &State) -> String {
    if let Some(url) = &state.0.config.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let scheme = if state.0.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    // It is quoted in a challenge: nothing may end the quotes.
    let host: String = host.chars().filter(|c| !matches!(c, '"' | '\\')).collect();
    format!("{scheme}://{host}")
}

/// 401, with a `WWW-Authenticate` challenge that says why and, when JWTs are accepted, where
/// the protected-resource metadata is.
fn unauthorized(
    refusal: &Refusal,
    request: &Request<Incoming>,
    remote: SocketAddr,
    state: &State,
) -> Response<Body> {
    let why = match refusal {
        Refusal::Missing => "authentication required: send `Authorization: Bearer <token>` (browsers: the WebSocket subprotocol `mcp.auth.<token>` beside `mcp`)".to_owned(),
        Refusal::Invalid(why) => why.clone(),
    };
    tracing::info!(%remote, reason = %why, "request refused: not authenticated");
    let mut challenge = "Bearer realm=\"mcp\"".to_owned();
    if state.0.config.auth.jwt().is_some() {
        challenge.push_str(&format!(
            ", resource_metadata=\"{}{METADATA_PATH}{MCP_PATH}\"",
            public_base(request, state)
        ));
    }
    if let Refusal::Invalid(why) = refusal {
        // RFC 6750: quoted-string, so no quotes or backslashes inside.
        let description: String = why
            .chars()
            .filter(|c| !matches!(c, '"' | '\\') && (' '..='~').contains(c))
            .collect();
        challenge.push_str(&format!(
            ", error=\"invalid_token\", error_description=\"{description}\""
        ));
    }
    let mut response = text(StatusCode::UNAUTHORIZED, format!("{why}\n"));
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

/// `GET /.well-known/oauth-protected-resource[/mcp]`: who issues tokens for this server and
/// which scopes it knows (RFC 9728). 404 when JWTs are not accepted.
fn protected_resource_metadata(request: &Request<Incoming>, state: &State) -> Response<Body> {
    let config = &state.0.config;
    let Some(jwt) = config.auth.jwt() else {
        return text(
            StatusCode::NOT_FOUND,
            "no authorization server is configured: this server takes static tokens only\n",
        );
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    let servers: Vec<&str> = if config.authorization_servers.is_empty() {
        jwt.issuer().into_iter().collect()
    } else {
        config
            .authorization_servers
            .iter()
            .map(String::as_str)
            .collect()
    };
    let document = serde_json::json!({
        "resource": format!("{}{MCP_PATH}", public_base(request, state)),
        "authorization_servers": servers,
        "scopes_supported": [mcp_session::SCOPE_TOOLS, mcp_session::SCOPE_ADMIN],
        "bearer_methods_supported": ["header"],
        "resource_name": config.session.server_info.name,
    });
    let mut response = text(StatusCode::OK, document.to_string());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `POST /mcp`: Streamable HTTP, or the math-mcp seed's `{"agentId", "request"}` body (told
/// apart by its `agentId` and the absence of `jsonrpc`).
async fn mcp_post(
    request: Request<Incoming>,
    state: &State,
    principal: &Principal,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let limit = state.0.config.ws.max_message_size;
    let post = match read_body(&parts.headers, body, limit, state.0.config.body_timeout)
        .await
        .and_then(|bytes| {
            Post::parse(bytes).map_err(|e| BodyError {
                status: StatusCode::BAD_REQUEST,
                message: e.to_string(),
            })
        }) {
        Ok(post) => post,
        Err(e) => return text(e.status, format!("{}\n", e.message)),
    };
    if post.is_agent_request() && !parts.headers.contains_key(mcp_http::SESSION_HEADER) {
        return agents::call(post.text(), &state.0.server, principal).await;
    }
    let response = mcp_http::post(
        &parts.headers,
        post,
        &state.0.server,
        &state.0.http_sessions,
        state.0.config.ws.stall_timeout,
        principal,
    )
    .await;
    // A new session: routed here for the other instances.
    if !parts.headers.contains_key(mcp_http::SESSION_HEADER)
        && let Some(id) = response.headers().get(mcp_http::SESSION_HEADER)
        && let Ok(id) = id.to_str()
    {
        crate::routing::register(state, id).await;
    }
    response
}

/// The value of the query parameter `name`, taken as it is (the values read here need no
/// decoding).
fn query_param(uri: &hyper::Uri, name: &str) -> Option<String> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// `GET /agent/{id}/websocket`: the agent's session over the seed's envelopes, resumed after
/// `?lastSeq=N`, or after what was delivered when absent.
async fn agent_websocket(
    agent: &str,
    request: &mut Request<Incoming>,
    remote: SocketAddr,
    state: &State,
    principal: Principal,
    hold: &mut Option<mcp_session::ConnectionHold>,
) -> Response<Body> {
    let last_seq = match query_param(request.uri(), "lastSeq") {
        None => None,
        Some(seq) => match seq.parse::<u64>() {
            Ok(seq) => Some(seq),
            Err(_) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "lastSeq must be a non-negative integer: the `seq` of the last envelope received\n",
                );
            }
        },
    };
    let agent = match agents::existing(agent, &state.0.server, principal.name()).await {
        Ok(id) => id,
        Err(response) => return response,
    };
    let dialect = dialects::envelope(agent.to_string(), last_seq);
    upgrade_to_session(request, remote, state, Some(dialect), principal, hold)
}

fn upgrade_to_session(
    request: &mut Request<Incoming>,
    remote: SocketAddr,
    state: &State,
    dialect: Option<Box<dyn mcp_ws::Translate>>,
    principal: Principal,
    hold: &mut Option<mcp_session::ConnectionHold>,
) -> Response<Body> {
    // Upgrades are requests of their principal: rate-limited, and counted against its
    // sessions (429 over either, before anything is reserved).
    if let Err(limited) = state.0.server.check_rate(&principal) {
        tracing::info!(%remote, reason = %limited.message, "upgrade refused");
        return mcp_http::limited_response(&limited);
    }
    // The connection's own place, which it keeps as a WebSocket (in memory, for the fuzz
    // target, there is none: one is taken).
    let held = request.extensions().get::<HeldPlace>().cloned();
    let place = match &held {
        Some(held) => held.take(),
        None => state
            .0
            .connections
            .try_place(state.0.config.max_connections),
    };
    // Reserved only with a connection's place: a refused upgrade holds neither.
    let slot = place
        .as_ref()
        .map(|_| state.0.server.reserve_session_for(&principal));
    if let Some(Err(mcp_session::SessionRefusal::Principal(limited))) = &slot {
        if let (Some(held), Some(place)) = (&held, place) {
            held.give_back(place);
        }
        tracing::info!(%remote, reason = %limited.message, "upgrade refused");
        return mcp_http::limited_response(limited);
    }
    let slot = slot.and_then(Result::ok);
    let refusal = if !state.is_ready() {
        Some("the server is shutting down\n".to_owned())
    } else if place.is_none() {
        Some(format!(
            "too many connections: the limit is {} (--max-connections); retry later\n",
            state.0.config.max_connections
        ))
    } else if slot.is_none() {
        Some(format!(
            "too many sessions: the limit is {} (--max-sessions); retry later\n",
            state.0.config.session.max_sessions
        ))
    } else {
        None
    };
    // A refused upgrade's connection goes on serving HTTP, in its place.
    let place = match (&refusal, place, &held) {
        (Some(_), Some(place), Some(held)) => {
            held.give_back(place);
            None
        }
        (_, place, _) => place,
    };
    let (None, Some(place), Some(slot)) = (&refusal, place, slot) else {
        let why = refusal.unwrap_or_default();
        tracing::info!(%remote, reason = why.trim_end(), "upgrade refused");
        let mut response = text(StatusCode::SERVICE_UNAVAILABLE, why);
        response
            .headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    };
    match mcp_ws::accept(request, &state.0.config.ws) {
        Ok((response, websocket)) => {
            let connection = mcp_ws::serve_connection(
                websocket,
                mcp_ws::Connection {
                    session: slot,
                    config: state.0.config.ws.clone(),
                    remote,
                    place: Box::new((place.websocket(), hold.take())),
                    dialect,
                    principal,
                    observer: state.0.connections.clone(),
                    tracker: state.0.tracker.clone(),
                },
            );
            state.0.tracker.spawn(connection.in_current_span());
            response.map(BodyExt::boxed_unsync)
        }
        Err(e) => {
            tracing::debug!(%remote, error = %e, "upgrade refused");
            text(StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
    }
}
