//! The [`Tool`] trait, and the type-erased form the registry stores.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use mcp_protocol::{CallToolResult, Content, ToolAnnotations};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::ToolContext;

/// A tool the server offers through `tools/list` and `tools/call`.
///
/// The input schema is derived from [`Tool::Params`] and the output schema from
/// [`Tool::Output`], so a tool cannot advertise arguments it does not read.
pub trait Tool: Send + Sync + 'static {
    /// The arguments, deserialized from `tools/call`'s `arguments`.
    type Params: DeserializeOwned + JsonSchema + Send + 'static;
    /// The result, serialized as `structuredContent`.
    type Output: Serialize + JsonSchema + Send + 'static;

    /// The unique name clients call the tool by.
    fn name(&self) -> &str;

    /// What the tool does, written for the model that decides when to call it.
    fn description(&self) -> &str;

    /// A human-readable name.
    fn title(&self) -> Option<&str> {
        None
    }

    /// Behaviour hints for clients.
    fn annotations(&self) -> ToolAnnotations {
        ToolAnnotations::default()
    }

    /// Whether an interrupted call (the server restarted) may be started again with the
    /// state it saved through `ctx.checkpoint`, and finish as if it had not been
    /// interrupted. Other interrupted calls are answered with an error.
    fn resumable(&self) -> bool {
        false
    }

    /// Whether a call may run as a task (the 2026-07-28 tasks extension): the caller gets
    /// the task's id at once and polls it. Long-running tools say so; see [`TaskSupport`].
    fn task_support(&self) -> TaskSupport {
        TaskSupport::Forbidden
    }

    /// Whether the tool asks its client what it needs before it becomes a task (with
    /// multi-round-trip requests, as SEP-2663 wants such input resolved), and then calls
    /// `ctx.task.detach()`: the call becomes a task there. Otherwise a call that may be a
    /// task becomes one before the tool starts.
    fn detaches_itself(&self) -> bool {
        false
    }

    /// Runs the tool.
    ///
    /// Long-running tools watch `ctx.cancel` and stop within one unit of work when it fires,
    /// and report through `ctx.progress`. The session polls the future once where the request
    /// arrives, on its own task, and answers a call that is done at once right there; so a
    /// tool never blocks in a poll: CPU-heavy or blocking work goes to a blocking thread (as
    /// `process_batch` and `process_images` do).
    fn call(
        &self,
        params: Self::Params,
        ctx: ToolContext,
    ) -> impl Future<Output = Result<Self::Output, ToolError>> + Send;

    /// The text content of a successful result. The default is the output as JSON, which
    /// is what the specification asks of tools that return structured content.
    fn render(&self, output: &Self::Output) -> String {
        serde_json::to_string(output).unwrap_or_else(|e| format!("unrenderable output: {e}"))
    }

    /// Whether the output is structured: announced as `outputSchema` and sent as
    /// `structuredContent`. A tool whose output is only content (images, embedded
    /// resources) says no.
    fn structured(&self) -> bool {
        true
    }

    /// The content items of a result: by default the rendered text.
    fn content(&self, output: &Self::Output) -> Vec<Content> {
        vec![Content::text(self.render(output))]
    }

    /// An input schema written by hand, for a tool whose params type cannot say everything
    /// (a `$schema`, `$defs`); by default the schema derived from the params type.
    fn input_schema(&self) -> Option<Value> {
        None
    }
}

/// Whether a tool's calls may run as tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskSupport {
    /// Never: the caller waits for the result.
    #[default]
    Forbidden,
    /// When the caller takes tasks (it declares the tasks extension); otherwise it waits.
    Optional,
    /// Only as a task: a caller that does not take tasks is refused (-32021).
    Required,
}

/// Why a tool call did not produce an output. Each becomes a result with `isError: true`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The arguments do not match the input schema, or are out of the accepted range.
    /// The caller should fix the arguments and call again.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The tool ran and failed (division by zero, a missing file, ...). The message says why
    /// and is meant for the model and the user.
    #[error("{0}")]
    Failed(String),
    /// The tool stopped early because it was cancelled, and says how far it got (items done,
    /// outputs kept). Seen by the caller when a time limit or shutdown stopped the call.
    #[error("{0}")]
    Stopped(String),
    /// The call was cancelled. The session sends no response for a cancelled request, so this
    /// result is only seen when the cancellation came from elsewhere (a time limit, shutdown).
    #[error("cancelled")]
    Cancelled,
}

/// The annotations of a tool that only computes: it changes nothing, gives the same answer for
/// the same arguments, and talks to nothing outside the server.
pub(crate) fn self_contained() -> ToolAnnotations {
    ToolAnnotations {
        read_only_hint: Some(true),
        idempotent_hint: Some(true),
        open_world_hint: Some(false),
    }
}

/// A boxed future that owns what it needs.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A tool known only at run time, such as another server's tool that a gateway offers: its
/// descriptor is data given at registration ([`crate::ToolRegistry::register_dynamic`]), its
/// arguments reach it as they came, and it returns the whole result.
pub trait DynamicTool: Send + Sync + 'static {
    /// Runs the tool; the same contract as [`Tool::call`] (watch `ctx.cancel`, report
    /// through `ctx.progress`, never block in a poll).
    fn call(&self, arguments: Map<String, Value>, ctx: ToolContext) -> BoxFuture<CallToolResult>;

    /// Whether a call may run as a task; see [`Tool::task_support`].
    fn task_support(&self) -> TaskSupport {
        TaskSupport::Forbidden
    }
}

/// Adapts a [`DynamicTool`] to [`ErasedTool`].
pub(crate) struct Dynamic(pub(crate) Arc<dyn DynamicTool>);

impl ErasedTool for Dynamic {
    fn resumable(&self) -> bool {
        false
    }

    fn task_support(&self) -> TaskSupport {
        self.0.task_support()
    }

    fn detaches_itself(&self) -> bool {
        false
    }

    fn call_json(
        self: Arc<Self>,
        arguments: Map<String, Value>,
        ctx: ToolContext,
    ) -> BoxFuture<CallToolResult> {
        self.0.call(arguments, ctx)
    }
}

/// The object-safe form of [`Tool`] that the registry stores.
pub(crate) trait ErasedTool: Send + Sync {
    fn resumable(&self) -> bool;
    fn task_support(&self) -> TaskSupport;
    fn detaches_itself(&self) -> bool;

    fn call_json(
        self: Arc<Self>,
        arguments: Map<String, Value>,
        ctx: ToolContext,
    ) -> BoxFuture<CallToolResult>;
}

/// Adapts a [`Tool`] to [`ErasedTool`].
pub(crate) struct Erased<T>(pub(crate) T);

impl<T: Tool> ErasedTool for Erased<T> {
    fn resumable(&self) -> bool {
        self.0.resumable()
    }

    fn task_support(&self) -> TaskSupport {
        self.0.task_support()
    }

    fn detaches_itself(&self) -> bool {
        self.0.detaches_itself()
    }

    fn call_json(
        self: Arc<Self>,
        arguments: Map<String, Value>,
        ctx: ToolContext,
    ) -> BoxFuture<CallToolResult> {
        Box::pin(async move {
            let tool = &self.0;
            let params: T::Params = match mcp_protocol::decode_value(Value::Object(arguments)) {
                Ok(p) => p,
                Err(e) => {
                    return CallToolResult::error(format!(
                        "invalid arguments for tool `{}`: {e}",
                        tool.name()
                    ));
                }
            };
            match tool.call(params, ctx).await {
                Ok(output) if !tool.structured() => CallToolResult {
                    content: tool.content(&output),
                    structured_content: None,
                    is_error: None,
                },
                Ok(output) => {
                    let content = tool.content(&output);
                    match serde_json::to_value(&output) {
                        Ok(structured) => CallToolResult {
                            content,
                            structured_content: Some(structured),
                            is_error: None,
                        },
                        Err(e) => CallToolResult::error(format!(
                            "tool `{}` produced an output that is not JSON: {e}",
                            tool.name()
                        )),
                    }
                }
                Err(ToolError::InvalidArguments(msg)) => CallToolResult::error(format!(
                    "invalid arguments for tool `{}`: {msg}",
                    tool.name()
                )),
                Err(e) => CallToolResult::error(e.to_string()),
            }
        })
    }
}
