//! The MCP server as a library: [`Server`] serves your own tools (and this server's, with
//! [`Server::builtin_tools`]) over WebSocket and Streamable HTTP, with authentication,
//! resumable sessions, progress and cancellation, the web console and metrics, on a bound
//! listener until a shutdown future completes.
//!
//! Tests serve on a listener on port 0; the binary in `main.rs` adds the command line,
//! logging and signal handling. A tool implements [`tools::Tool`]; see [`Server`] for a
//! complete example.

#![warn(missing_docs)]

mod admin;
mod agents;
mod body;
mod builder;
mod config;
mod connections;
mod console;
mod dialects;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod http;
pub mod logging;
mod routing;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use mcp_session::Hub;
use mcp_tools::ToolRegistry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use builder::{Error, Server};
pub use config::{Cli, Config};
pub use mcp_auth::{Auth, jwt};
/// The MCP wire types (results, content, resources, prompts).
pub use mcp_protocol as protocol;
pub use mcp_store_redb::RedbStore;
/// Everything a tool or a provider of resources, prompts and completions is made of.
pub use mcp_tools as tools;
pub use tls::{Tls, TlsError};

/// The hub of `config`: `tools`, `providers`, and the conformance fixtures when asked for;
/// it shows the count of open `connections` in its statistics and their metrics in its
/// registry.
pub(crate) fn hub(
    config: &Config,
    mut tools: ToolRegistry,
    providers: Vec<std::sync::Arc<dyn mcp_tools::Provider>>,
    storage: builder::Storage,
    connections: &std::sync::Arc<connections::Connections>,
) -> Result<Hub, mcp_tools::RegistryError> {
    let open = std::sync::Arc::clone(connections);
    let mut builder = Hub::builder(config.session.clone())
        .store(storage.store)
        .stat(
            "connections",
            std::sync::Arc::new(move || open.count().into()),
        );
    if let Some(redis) = &storage.redis {
        builder = builder.bus(redis.clone());
    }
    for provider in providers {
        builder = builder.provider(provider);
    }
    if config.conformance_fixtures {
        mcp_tools::fixtures::register(&mut tools)?;
        builder = builder.provider(std::sync::Arc::new(mcp_tools::fixtures::Fixtures));
    }
    if config.has_upstreams() {
        builder = builder.tools_may_change();
    }
    let hub = builder.tools(tools).build();
    hub.register_metrics(|registry| connections.register(registry));
    if let Some(redis) = &storage.redis {
        hub.register_metrics(|registry| redis.register_metrics(registry));
    }
    Ok(hub)
}

/// Serves this server's own tools on `listener` with `config` until `shutdown` completes:
/// what the binary runs. See [`Server::serve`] for the shutdown.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    Server::new()
        .config(config)
        .builtin_tools()
        .serve(listener, shutdown)
        .await
}

/// Runs the server (see [`Server::serve`]).
pub(crate) async fn run(
    listener: TcpListener,
    config: Config,
    tools: ToolRegistry,
    providers: Vec<std::sync::Arc<dyn mcp_tools::Provider>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let storage = builder::store(&config)?;
    let mut config = config;
    config.session.request_state_key = builder::request_state_key(&config)?;
    let connections = std::sync::Arc::default();
    let server = hub(&config, tools, providers, storage, &connections)?;
    // Tasks that were running when the server stopped: resumed, or failed as interrupted.
    match server.recover_tasks().await {
        Ok(0) => {}
        Ok(resumed) => tracing::info!(resumed, "tasks resumed after a restart"),
        Err(e) => tracing::error!(error = %e, "cannot read the stored tasks; they are not resumed"),
    }
    let sweeper = expire_idle_sessions(server.clone(), config.session_ttl);
    // Task leases: renewed, and the tasks of instances that died taken up (a shared store).
    tokio::spawn(server.clone().keep_task_leases());
    // What the other instances sharing the store say: cancellations, task changes, broadcasts.
    tokio::spawn(server.clone().follow_bus());
    // Other servers' tools, served here: connected in the background (a server starts
    // whether or not they are there yet), the file's read again at SIGHUP.
    let gateway = config.has_upstreams().then(|| {
        let gateway = mcp_gateway::Gateway::new(server.clone());
        let flags = config.upstreams.clone();
        let upstreams = match &config.upstreams_file {
            Some(file) => config::all_upstreams(&flags, file).unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot use the upstreams file; serving the flags' upstreams");
                flags.clone()
            }),
            None => flags.clone(),
        };
        for upstream in upstreams {
            gateway.keep(upstream);
        }
        if let Some(file) = config.upstreams_file.clone() {
            tokio::spawn(reload_upstreams(std::sync::Arc::clone(&gateway), file, flags));
        }
        gateway
    });
    // If this future is dropped rather than shut down, everything it started still stops:
    // blocking workers watch the cancellation tree, and would otherwise run on.
    let _stop_all_on_drop = server.shutdown_token().clone().drop_guard();
    // hyper forgets a connection once it is upgraded to a WebSocket, so every connection task,
    // upgraded or not, is tracked here to be waited for at shutdown.
    let tracker = TaskTracker::new();
    let stopping = CancellationToken::new();
    let state = http::State::new(
        server.clone(),
        config.clone(),
        tracker.clone(),
        listener.local_addr()?,
        connections,
    );
    // The routes of this instance's 2025 HTTP sessions, for the other instances.
    tracker.spawn({
        let (stopping, routes) = (stopping.clone(), routing::keep(state.clone()));
        async move {
            tokio::select! {
                () = stopping.cancelled() => {}
                () = routes => {}
            }
        }
    });
    tracker.spawn({
        let stopping = stopping.clone();
        async move {
            tokio::select! {
                () = stopping.cancelled() => {}
                () = sweeper => {}
            }
        }
    });
    // Keys from a JWKS URL: fetched before the first request is taken (for at most the
    // fetch's time limit), then now and then, and when a token names an unknown key.
    if let Some(jwt) = config.auth.jwt().filter(|jwt| jwt.is_remote()).cloned() {
        if let Err(e) = jwt.refresh().await {
            tracing::error!(error = %e, "cannot fetch the JWKS; JWTs are refused until it can be fetched");
        }
        let stopping = stopping.clone();
        tracker.spawn(async move {
            let first = tokio::time::Instant::now() + mcp_auth::jwt::JWKS_REFRESH;
            let mut ticks = tokio::time::interval_at(first, mcp_auth::jwt::JWKS_REFRESH);
            loop {
                tokio::select! {
                    () = stopping.cancelled() => return,
                    _ = ticks.tick() => {
                        if let Err(e) = jwt.refresh().await {
                            tracing::warn!(error = %e, "cannot fetch the JWKS; keeping the keys known");
                        }
                    }
                }
            }
        });
    }
    // The statistics resource's subscribers hear of changes at most once per interval.
    tracker.spawn({
        let server = server.clone();
        let stopping = stopping.clone();
        let interval = config.stats_interval.max(Duration::from_millis(10));
        async move {
            let mut ticks = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    () = stopping.cancelled() => return,
                    _ = ticks.tick() => server.refresh_stats(),
                }
            }
        }
    });
    let accept = |stream: std::io::Result<(tokio::net::TcpStream, SocketAddr)>| match stream {
        Ok((stream, remote)) => {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
            tracker.spawn(http::serve_tcp(
                stream,
                remote,
                state.clone(),
                stopping.clone(),
            ));
            None
        }
        // Typically out of file descriptors: pause rather than spin, and carry on.
        Err(e) => {
            tracing::error!(error = %e, "accept failed");
            Some(Duration::from_millis(100))
        }
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                if let Some(pause) = accept(accepted) {
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
    let grace = config.shutdown_grace;
    tracing::info!(
        grace_s = grace.as_secs(),
        "shutting down: draining sessions"
    );
    state.set_ready(false);
    server.begin_shutdown(grace);
    // Sessions need the grace period, then `stop_grace` for stopped calls to wind down, then
    // the close handshake.
    let drained =
        grace + config.session.stop_grace + config.ws.close_timeout + Duration::from_secs(1);
    let sessions_gone = server.all_sessions_ended();
    // Probes are still answered (readiness 503) while the sessions drain.
    let mut sessions_gone = std::pin::pin!(tokio::time::timeout(drained, sessions_gone));
    loop {
        tokio::select! {
            _ = &mut sessions_gone => break,
            accepted = listener.accept() => {
                if let Some(pause) = accept(accepted) {
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
    drop(listener);
    stopping.cancel();
    if let Some(gateway) = gateway {
        // Stdio upstreams are asked to exit, as the specification orders it.
        gateway.shutdown().await;
    }
    // Whatever is left is stopped now.
    server.shutdown_token().cancel();
    tracker.close();
    if tokio::time::timeout(
        config.ws.close_timeout + Duration::from_secs(1),
        tracker.wait(),
    )
    .await
    .is_err()
    {
        tracing::warn!(
            remaining = tracker.len(),
            "connections still open after shutdown; leaving them"
        );
    }
    tracing::info!("shut down");
    Ok(())
}

/// SIGHUP, for what is reloaded at it; `None`, logged with what is `lost`, when it cannot
/// be listened for.
#[cfg(unix)]
pub fn hangups(lost: &str) -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .inspect_err(|e| tracing::error!(error = %e, "cannot listen for SIGHUP; {lost}"))
        .ok()
}

/// At every SIGHUP, reads the upstreams file again and applies it beside the `--upstream`
/// flags' (`flags`): added, removed and changed upstreams take effect, the others run on.
/// A file that cannot be read or used changes nothing.
async fn reload_upstreams(
    gateway: std::sync::Arc<mcp_gateway::Gateway>,
    file: std::path::PathBuf,
    flags: Vec<mcp_gateway::config::Upstream>,
) {
    #[cfg(unix)]
    {
        let Some(mut hangups) = hangups("the upstreams file will not be read again") else {
            return;
        };
        while hangups.recv().await.is_some() {
            match config::all_upstreams(&flags, &file) {
                Ok(wanted) => {
                    tracing::info!(
                        upstreams = wanted.len(),
                        "SIGHUP: upstreams file read again"
                    );
                    gateway.apply(wanted).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: cannot use the upstreams file; the upstreams are unchanged")
                }
            }
        }
    }
    #[cfg(not(unix))]
    drop((gateway, file, flags));
}

/// Removes sessions (agents) idle for longer than `ttl`, with their data, and tasks past
/// their own time to live, checking a few times per `ttl` (at least once a minute).
/// Marks every stored session running here as used now.
async fn touch(server: &Hub) {
    let update = mcp_session::Update {
        last_active_ms: Some(mcp_session::store::now_ms()),
        ..mcp_session::Update::default()
    };
    for id in server.live_sessions() {
        if let Err(e) = server.store().update(&id, &update).await {
            tracing::debug!(session = %id, error = %e, "cannot mark a live session used");
        }
    }
}

async fn expire_idle_sessions(server: Hub, ttl: Duration) {
    let every = (ttl / 4).clamp(Duration::from_millis(10), Duration::from_secs(60));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut touched = tokio::time::Instant::now();
    loop {
        ticks.tick().await;
        // Other instances sweep the same store, and know nothing of the sessions running
        // here: each is marked used every quarter of the time, so none looks idle to them.
        if server.store().shared() && touched.elapsed() >= ttl / 4 {
            touched = tokio::time::Instant::now();
            touch(&server).await;
        }
        let cutoff = mcp_session::store::now_ms().saturating_sub(ttl.as_millis() as u64);
        let idle = match server.store().idle_since(cutoff).await {
            Ok(idle) => idle,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list idle sessions; will retry");
                continue;
            }
        };
        if let Err(e) = server.expire_tasks().await {
            tracing::warn!(error = %e, "cannot expire old tasks; will retry");
        }
        // A session running here is in use, however long ago it last wrote.
        for id in idle.into_iter().filter(|id| !server.is_live(id)) {
            match server.store().delete(&id).await {
                Ok(()) => tracing::info!(session = %id, ttl_s = ttl.as_secs(), "session expired"),
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "cannot remove an expired session")
                }
            }
        }
    }
}

/// The address the server will listen on when none is configured.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
