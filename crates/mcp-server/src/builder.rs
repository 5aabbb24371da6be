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
}

/// Where resumable sessions are kept: the data directory's redb file, or memory.
pub(crate) fn store(config: &Config) -> Result<Arc<dyn SessionStore>, Error> {
    Ok(match &config.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            Arc::new(crate::RedbStore::open(&dir.join("sessions.redb"))?)
        }
        None => Arc::new(mcp_session::MemoryStore::default()),
    })
}
