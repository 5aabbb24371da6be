//! The server as a library: your own tools, served with everything this server does
//! (WebSocket and Streamable HTTP, authentication, resumable sessions, progress and
//! cancellation, the web console, metrics).

use std::future::Future;
use std::sync::Arc;

use mcp_session::{SessionStore, StoreError};
use mcp_tools::{Provider, RegistryError, Tool, ToolRegistry};
use tokio::net::TcpListener;

use crate::Config;

/// A server to build: its configuration, its tools and providers; then [`Server::serve`].
///
/// ```no_run
/// use mcp_server::Server;
/// use mcp_server::tools::{Tool, ToolContext, ToolError};
/// use schemars::JsonSchema;
/// use serde::{Deserialize, Serialize};
///
/// /// The arguments of `greet`.
/// #[derive(Deserialize, JsonSchema)]
/// struct Who {
///     /// Whom to greet.
///     name: String,
/// }
///
/// /// The greeting.
/// #[derive(Serialize, JsonSchema)]
/// struct Greeting {
///     text: String,
/// }
///
/// struct Greet;
///
/// impl Tool for Greet {
///     type Params = Who;
///     type Output = Greeting;
///
///     fn name(&self) -> &str {
///         "greet"
///     }
///
///     fn description(&self) -> &str {
///         "Greets someone by name."
///     }
///
///     async fn call(&self, who: Who, _: ToolContext) -> Result<Greeting, ToolError> {
///         Ok(Greeting { text: format!("Hello, {}!", who.name) })
///     }
/// }
///
/// # async fn run() -> Result<(), mcp_server::Error> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// Server::new()
///     .tool(Greet)
///     .serve(listener, tokio::signal::ctrl_c())
///     .await
/// # }
/// ```
#[must_use = "a server does nothing until `serve` runs it"]
pub struct Server {
    config: Config,
    tools: ToolRegistry,
    providers: Vec<Arc<dyn Provider>>,
    builtin: bool,
    /// The first tool that could not be registered: `serve` reports it.
    refused: Option<RegistryError>,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// A server with no tools, on the default [`Config`] (loopback only, no authentication,
    /// sessions in memory).
    pub fn new() -> Self {
        Self {
            config: Config::default(),
            tools: ToolRegistry::new(),
            providers: Vec::new(),
            builtin: false,
            refused: None,
        }
    }

    /// Every setting: limits, timeouts, authentication, TLS, the data directory.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Offers `tool`, after those added before. Two tools with one name are an error that
    /// [`Server::serve`] reports.
    pub fn tool<T: Tool>(mut self, tool: T) -> Self {
        if let Err(e) = self.tools.register(tool) {
            self.refused.get_or_insert(e);
        }
        self
    }

    /// Offers this server's own tools too (the math tools, `sleep`, `process_batch`, and
    /// `process_images` when the configuration has a data root), before any added here.
    pub fn builtin_tools(mut self) -> Self {
        self.builtin = true;
        self
    }

    /// Adds a provider of resources, prompts or completions.
    pub fn provider(mut self, provider: impl Provider) -> Self {
        self.providers.push(Arc::new(provider));
        self
    }

    /// Serves MCP on `listener` until `shutdown` completes, then shuts down gracefully.
    ///
    /// Shutting down turns readiness off (`/readyz` answers 503, `/healthz` still 200),
    /// refuses new sessions (503) while still answering probes, tells every session's
    /// client (`notifications/message`, level warning), gives running requests
    /// `shutdown_grace` to finish, cancels the rest (their callers get a -32000 error),
    /// closes every socket with 1001 "server shutting down", and returns once all
    /// connections are gone.
    /// `shutdown` is any future: its output is ignored (`tokio::signal::ctrl_c()` will do).
    pub async fn serve<T>(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = T>,
    ) -> Result<(), Error> {
        if let Some(e) = self.refused {
            return Err(Error::Tools(e));
        }
        let mut tools = if self.builtin {
            ToolRegistry::builtin(&self.config.tools)
        } else {
            ToolRegistry::new()
        };
        tools.extend(self.tools)?;
        let shutdown = async {
            shutdown.await;
        };
        crate::run(listener, self.config, tools, self.providers, shutdown).await
    }
}

/// Why a server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two tools have the same name, or a tool's input schema is not an object: fix the
    /// tools given to [`Server::tool`].
    #[error("the tools: {0}")]
    Tools(#[from] RegistryError),
    /// The session store in the data directory could not be opened: check the path, its
    /// permissions, and that no other server uses it.
    #[error("the session store: {0}")]
    Store(#[from] StoreError),
    /// The listener or the data directory failed (the operating system's error).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The key of 2026-07-28 `requestState`s cannot be read or made: give a file of at least
    /// 32 secret bytes, or a data directory the server may write to.
    #[error("the request-state key {}: {reason}", path.display())]
    StateKey {
        /// The key file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The secret of 2026-07-28 `requestState`s: the configured key file, or the data
/// directory's `request-state.key` (made, readable by the owner only, at the first start);
/// `None` without either (the hub then makes a random one).
pub(crate) fn request_state_key(config: &Config) -> Result<Option<Vec<u8>>, Error> {
    const MIN: usize = 32;
    let fail = |path: &std::path::Path, reason: String| Error::StateKey {
        path: path.to_owned(),
        reason,
    };
    let (path, make) = match (&config.request_state_key_file, &config.data_dir) {
        (Some(file), _) => (file.clone(), false),
        (None, Some(dir)) => (dir.join("request-state.key"), true),
        (None, None) => return Ok(None),
    };
    match std::fs::read(&path) {
        Ok(key) if key.len() >= MIN => return Ok(Some(key)),
        Ok(key) => {
            return Err(fail(
                &path,
                format!("it has {} bytes; at least {MIN} are needed", key.len()),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && make => {}
        Err(e) => return Err(fail(&path, e.to_string())),
    }
    let mut key = vec![0u8; MIN];
    getrandom::fill(&mut key).map_err(|e| fail(&path, format!("no randomness: {e}")))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(&path, e.to_string()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&path).and_then(|mut file| {
        std::io::Write::write_all(&mut file, &key)?;
        file.sync_all()
    });
    match written {
        Ok(()) => Ok(Some(key)),
        // Another server on the same directory made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(&path)
            .map(Some)
            .map_err(|e| fail(&path, e.to_string())),
        Err(e) => Err(fail(&path, e.to_string())),
    }
}

/// Where sessions are kept, and the Redis behind it when it is shared (which is also how the
/// instances sharing it tell each other things).
pub(crate) struct Storage {
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) redis: Option<Arc<mcp_store_redis::RedisStore>>,
}

/// Where resumable sessions are kept: Redis (`--store`), the data directory's redb file, or
/// memory.
pub(crate) fn store(config: &Config) -> Result<Storage, Error> {
    if let Some((url, prefix)) = &config.store {
        let redis = Arc::new(mcp_store_redis::RedisStore::open(url, prefix)?);
        return Ok(Storage {
            store: redis.clone(),
            redis: Some(redis),
        });
    }
    let store: Arc<dyn SessionStore> = match &config.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            Arc::new(crate::RedbStore::open(&dir.join("sessions.redb"))?)
        }
        None => Arc::new(mcp_session::MemoryStore::default()),
    };
    Ok(Storage { store, redis: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_state_key_is_made_once_in_the_data_directory_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: Some(dir.path().to_owned()),
            ..Config::default()
        };
        let first = request_state_key(&config).unwrap().unwrap();
        assert_eq!(first.len(), 32);
        let path = dir.path().join("request-state.key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A restart, or another instance on the same directory, reads the same key.
        assert_eq!(request_state_key(&config).unwrap().unwrap(), first);
        // A configured file wins; one too short is refused, naming it.
        let short = dir.path().join("short.key");
        std::fs::write(&short, b"too short").unwrap();
        let config = Config {
            request_state_key_file: Some(short.clone()),
            ..config
        };
        let error = request_state_key(&config).unwrap_err().to_string();
        assert!(
            error.contains("short.key") && error.contains("at least 32"),
            "{error}"
        );
        // Without either, the hub makes its own.
        assert_eq!(request_state_key(&Config::default()).unwrap(), None);
    }
}
