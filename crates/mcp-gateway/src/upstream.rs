//! One upstream at run time: its connection (an `mcp_client::Client`, which restarts a
//! stdio program or reconnects to a remote server with backoff), the tools it lists, and
//! the calls it serves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::future::BoxFuture;
use mcp_client::{CallEvent, Client, Error, Options, Status};
use mcp_protocol::{CallToolResult, ClientCapabilities, ErrorObject, Tool};
use mcp_tools::{ProgressUpdate, ToolContext};
use serde_json::{Map, Value, json};

use crate::config::{Target, Upstream};

/// What a running upstream has counted, for /metrics and /readyz.
#[derive(Debug, Default)]
pub struct Counters {
    /// Calls forwarded.
    pub calls: AtomicU64,
    /// Calls that ended in an error (a protocol error, or the upstream failing mid-call;
    /// not a tool's own `isError` result).
    pub errors: AtomicU64,
}

/// A connected upstream.
pub struct Link {
    /// Its configuration.
    pub config: Upstream,
    client: Client,
    bridge: Arc<Bridge>,
    /// Its counters.
    pub counters: Counters,
}

impl Link {
    /// Connects to (or starts) the upstream and learns its era and tools.
    pub async fn connect(config: Upstream) -> Result<Arc<Self>, Error> {
        let bridge = Arc::new(Bridge::default());
        let mut options = match &config.target {
            Target::Stdio(command) => Options::stdio(command.clone()),
            Target::Remote { url, token_file } => {
                let mut options = Options::new(url.clone());
                if let Some(file) = token_file {
                    let token = std::fs::read_to_string(file).map_err(|e| {
                        Error::Connect(format!("the token file {}: {e}", file.display()))
                    })?;
                    options.token = Some(token.trim().to_owned());
                }
                options
            }
        };
        options.client_info.name = "mcp-gateway".to_owned();
        options.handler = Some(Arc::clone(&bridge) as Arc<dyn mcp_client::Handler>);
        let client = Client::connect(options).await?;
        Ok(Arc::new(Self {
            config,
            client,
            bridge,
            counters: Counters::default(),
        }))
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The connection's state.
    pub fn status(&self) -> Status {
        self.client.status().borrow().clone()
    }

    /// The client, to follow its notifications and status.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The tools the upstream lists now.
    pub async fn list_tools(&self) -> Result<Vec<Tool>, Error> {
        self.client.list_tools().await
    }

    /// Calls the upstream's tool `tool` for a call made here: its progress reported through
    /// `ctx.progress`, its requests to the client answered by `ctx.client`, and cancelled
    /// there when `ctx.cancel` fires. Every failure is a result with `isError`, saying which
    /// upstream failed and how.
    pub async fn call(
        &self,
        tool: &str,
        arguments: Map<String, Value>,
        mut ctx: ToolContext,
    ) -> CallToolResult {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        if let Status::Reconnecting { reason, .. } | Status::Closed(reason) = self.status() {
            // A dead upstream answers at once: nothing waits for it to come back.
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            return CallToolResult::error(format!(
                "the upstream `{}` is down ({reason}); try again later",
                self.name()
            ));
        }
        let _asking = self.bridge.enter(ctx.client.clone());
        let mut call = match self.client.call(tool, arguments).await {
            Ok(call) => call,
            Err(e) => return self.failed(&e),
        };
        loop {
            tokio::select! {
                event = call.next() => match event {
                    CallEvent::Progress(p) => {
                        ctx.progress.report(ProgressUpdate {
                            progress: p.progress,
                            total: p.total,
                            message: p.message,
                        });
                    }
                    CallEvent::Done(Ok(result)) => return result,
                    CallEvent::Done(Err(e)) => return self.failed(&e),
                },
                () = ctx.cancel.cancelled() => {
                    // Dropping the call sends `notifications/cancelled` upstream.
                    drop(call);
                    return CallToolResult::error(format!(
                        "cancelled; the upstream `{}` was told",
                        self.name()
                    ));
                }
            }
        }
    }

    fn failed(&self, error: &Error) -> CallToolResult {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        let name = self.name();
        CallToolResult::error(match error {
            Error::Rpc(e) => format!("the upstream `{name}` refused the call: {e}"),
            Error::Interrupted(why) => format!(
                "the upstream `{name}` failed during the call ({why}); the call may or may not have run"
            ),
            other => format!("the upstream `{name}` failed: {other}"),
        })
    }

    /// Stops the upstream: a stdio program is asked to exit (its input closed, then
    /// SIGTERM, then SIGKILL).
    pub async fn close(&self) {
        self.client.close().await;
    }
}

/// Answers what an upstream asks its client (sampling, elicitation, roots) by asking the
/// client of the call it serves. Over one connection the upstream's requests do not say
/// which call they belong to, so they are passed on only while one call is in flight;
/// with several, the upstream is told why not. Roots asked outside any call are none.
#[derive(Default)]
struct Bridge {
    asking: Mutex<Vec<(u64, mcp_tools::Client)>>,
    next: AtomicU64,
}

/// A call in flight, whose client answers the upstream's requests while it lasts.
struct Asking<'a> {
    bridge: &'a Bridge,
    id: u64,
}

impl Bridge {
    fn enter(&self, client: mcp_tools::Client) -> Asking<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().push((id, client));
        Asking { bridge: self, id }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, mcp_tools::Client)>> {
        self.asking.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        self.bridge.lock().retain(|(id, _)| *id != self.id);
    }
}

impl mcp_client::Handler for Bridge {
    fn capabilities(&self) -> ClientCapabilities {
        ClientCapabilities {
            sampling: Some(json!({})),
            elicitation: Some(json!({})),
            roots: Some(json!({})),
            ..ClientCapabilities::default()
        }
    }

    fn handle(
        &self,
        method: &str,
        params: Option<Value>,
    ) -> BoxFuture<'static, Result<Value, ErrorObject>> {
        let capability = match method {
            "sampling/createMessage" => "sampling",
            "elicitation/create" => "elicitation",
            "roots/list" => "roots",
            other => {
                let error = ErrorObject::method_not_found(other);
                return Box::pin(async move { Err(error) });
            }
        };
        let asking = self.lock();
        if asking.is_empty() && capability == "roots" {
            // Asked outside any call (stdio servers ask right after `initialize`): the
            // gateway itself has no roots.
            return Box::pin(async { Ok(json!({"roots": []})) });
        }
        let client = match asking.as_slice() {
            [(_, client)] => Ok(client.clone()),
            [] => Err(ErrorObject::internal(format!(
                "{method}: no call is in flight through the gateway to ask its client"
            ))),
            many => Err(ErrorObject::internal(format!(
                "{method}: {} calls are in flight on this connection and the request does not say which one asks; configure the upstream with a pool (one call per process) to bridge such requests",
                many.len()
            ))),
        };
        drop(asking);
        let method = method.to_owned();
        Box::pin(async move {
            client?
                .request(capability, &method, params.unwrap_or(Value::Null))
                .await
                .map_err(|e| ErrorObject::internal(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use mcp_client::Handler as _;

    use super::*;

    #[tokio::test]
    async fn requests_are_passed_on_only_when_it_is_known_whose_they_are() {
        let bridge = Bridge::default();
        // Outside any call: no roots, and nobody to ask for the rest.
        assert_eq!(
            bridge.handle("roots/list", None).await,
            Ok(json!({"roots": []}))
        );
        let error = bridge
            .handle("sampling/createMessage", Some(json!({})))
            .await
            .unwrap_err();
        assert!(error.message.contains("no call is in flight"), "{error}");
        // One call: its client is asked (this one has none, and says so).
        let one = bridge.enter(mcp_tools::Client::none());
        let error = bridge.handle("roots/list", None).await.unwrap_err();
        assert!(error.message.contains("no client to ask"), "{error}");
        // Two: whose is it?
        let two = bridge.enter(mcp_tools::Client::none());
        let error = bridge.handle("elicitation/create", None).await.unwrap_err();
        assert!(error.message.contains("2 calls are in flight"), "{error}");
        drop((one, two));
        assert_eq!(
            bridge.handle("roots/list", None).await,
            Ok(json!({"roots": []}))
        );
        let error = bridge.handle("tools/call", None).await.unwrap_err();
        assert_eq!(error.code, -32601);
    }
}
