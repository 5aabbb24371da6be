//! Entry points for the fuzz targets in `fuzz/` (the `fuzzing` feature): the HTTP paths this
//! server owns, driven as a client would, over an in-memory connection.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Auth, Config, http};

/// How long one input may keep the server busy: a streaming answer (SSE, a WebSocket) does
/// not end by itself.
const INPUT_TIME: Duration = Duration::from_millis(20);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start a runtime: {e}"))
    })
}

/// Feeds `bytes` to a fresh server as one HTTP/1.1 connection (with a static token `fuzz`
/// for `Authorization: Bearer fuzz-token-0123456789`), and returns what it answered. Any
/// panic in the server's request handling is a finding.
pub fn http_connection(bytes: &[u8]) -> Vec<u8> {
    runtime().block_on(async {
        let auth = Auth::new(&["fuzz=fuzz-token-0123456789".to_owned()], None)
            .unwrap_or_else(|e| panic!("{e}"));
        let config = Config {
            auth,
            admins: vec!["fuzz".to_owned()],
            ..Config::default()
        };
        let connections = std::sync::Arc::default();
        let store = std::sync::Arc::new(mcp_session::MemoryStore::default());
        let tools = mcp_tools::ToolRegistry::builtin(&config.tools);
        let server = crate::hub(
            &config,
            tools,
            Vec::new(),
            crate::builder::Storage { store, redis: None },
            &connections,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let tracker = TaskTracker::new();
        let local = SocketAddr::from(([127, 0, 0, 1], 8080));
        let state = http::State::new(server.clone(), config, tracker.clone(), local, connections);
        let stopping = CancellationToken::new();
        let (mut client, served) = tokio::io::duplex(64 * 1024);
        let remote = SocketAddr::from(([127, 0, 0, 1], 40000));
        tracker.spawn(http::serve_http(
            served,
            remote,
            state,
            stopping.clone(),
            None,
        ));
        let mut answer = Vec::new();
        let exchange = async {
            client.write_all(bytes).await?;
            client.shutdown().await?;
            client.read_to_end(&mut answer).await
        };
        let _ = tokio::time::timeout(INPUT_TIME, exchange).await;
        drop(client);
        stopping.cancel();
        server.shutdown_token().cancel();
        tracker.close();
        let _ = tokio::time::timeout(INPUT_TIME, tracker.wait()).await;
        answer
    })
}
