//! The request router: a table from method to handler that needs no session.
//!
//! A handler gets the hub and a [`RequestContext`] (the revision the request speaks, its
//! principal, the resources of its scope) and answers at once, or, for `tools/call`, says
//! which tool to run. Running it ([`Router::start_call`]) takes a [`CallScope`]: the
//! request's cancellation token and the sinks its progress, log messages, checkpoints and
//! requests to the client go through, which the caller makes for its era (a 2025 session
//! makes them from its outbound log). So one implementation of every method and tool serves
//! every era; what differs is only where the output goes.

use std::pin::Pin;
use std::time::Duration;

use mcp_protocol::{
    CallToolParams, CallToolResult, CompleteParams, ErrorObject, GetPromptParams,
    ListPromptsResult, ListToolsResult, PaginatedParams, ProgressToken, ProtocolVersion, RequestId,
    ResourceParams, decode_params, error_codes, methods,
};
use mcp_tools::{Checkpoint, Logger, Progress, ToolContext};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::calls::{CallReply, Reply};
use crate::catalog::Catalog;
use crate::limits::CallSlot;
use crate::principal::{SCOPE_TOOL_PREFIX, SCOPE_TOOLS};
use crate::resources::Resources;
use crate::{Hub, Principal};

/// What a handler knows of the request besides its params.
pub(crate) struct RequestContext<'a> {
    /// The revision the request speaks: what its answer may contain.
    pub(crate) version: ProtocolVersion,
    /// Who sent it: its scopes decide which tools it sees and calls.
    pub(crate) principal: &'a Principal,
    /// The resources of the request's scope: its calls, and what its client subscribed to.
    pub(crate) resources: &'a Resources,
    /// How many requests of its scope are running already (a limit applies).
    pub(crate) running: usize,
    /// The way to the request's client, made when a handler needs it (a prompt that asks).
    pub(crate) client: &'a (dyn Fn() -> mcp_tools::Client + Sync),
}

/// What a handler decided.
pub(crate) enum Route {
    /// The answer, ready now.
    Answer(Value),
    /// A tool to run, admitted: start it with [`Router::start_call`].
    Call(ToolCall),
    /// The answer, once this is done: it may ask the client first (a prompt being rendered).
    Pending(Pin<Box<dyn Future<Output = Result<Value, ErrorObject>> + Send>>),
}

/// A tool call that passed its checks and holds its place under the principal's limit.
pub(crate) struct ToolCall {
    pub(crate) name: String,
    pub(crate) arguments: Map<String, Value>,
    pub(crate) progress_token: Option<ProgressToken>,
    pub(crate) slot: Option<CallSlot>,
}

/// Where a running tool call's effects go, made by the caller for its era.
pub(crate) struct CallScope {
    /// The call's own token: cancelling it asks the tool to stop.
    pub(crate) cancel: CancellationToken,
    pub(crate) progress: Progress,
    pub(crate) checkpoint: Checkpoint,
    pub(crate) log: Logger,
    pub(crate) client: mcp_tools::Client,
    /// Where a tool that asks first becomes a task (open, but in a modern request that may
    /// become one).
    pub(crate) task: mcp_tools::TaskGate,
    /// The fairness keys of the heavy-call scheduler: the principal's name, and the
    /// session's number.
    pub(crate) principal: std::sync::Arc<str>,
    pub(crate) session: u64,
    /// How long the call may run; `None`: the configured `call_timeout` (a task may run
    /// until it expires).
    pub(crate) time_limit: Option<std::time::Duration>,
    /// How the tool names the call in what it says (`batch {label}`); `None`: the request id.
    pub(crate) label: Option<String>,
}

type Handler = fn(&Hub, &RequestContext<'_>, Option<Value>) -> Result<Route, ErrorObject>;

/// The methods every era serves, by name.
///
/// A short list searched in order, the most frequent first, rather than a hash map: with a
/// handful of methods, comparing `tools/call` once costs less than hashing it.
pub(crate) struct Router {
    handlers: Vec<(&'static str, Handler)>,
}

impl Router {
    /// The table for what `catalog` offers: prompts and completion only when a provider does.
    pub(crate) fn new(catalog: &Catalog) -> Self {
        let mut handlers: Vec<(&'static str, Handler)> = vec![
            (methods::TOOLS_CALL, call_tool),
            (methods::TOOLS_LIST, list_tools),
            (methods::RESOURCES_READ, read_resource),
            (methods::RESOURCES_LIST, list_resources),
            (methods::RESOURCES_TEMPLATES_LIST, list_templates),
        ];
        if catalog.offers_prompts() {
            handlers.push((methods::PROMPTS_LIST, list_prompts));
            handlers.push((methods::PROMPTS_GET, get_prompt));
        }
        if catalog.offers_completions() {
            handlers.push((methods::COMPLETION_COMPLETE, complete));
        }
        Self { handlers }
    }

    /// Handles request `method`; -32601 when no handler serves it.
    pub(crate) fn route(
        &self,
        hub: &Hub,
        method: &str,
        ctx: &RequestContext<'_>,
        params: Option<Value>,
    ) -> Result<Route, ErrorObject> {
        match self.handlers.iter().find(|(name, _)| *name == method) {
            Some((_, handler)) => handler(hub, ctx, params),
            None => Err(ErrorObject::method_not_found(method)),
        }
    }

    /// Starts an admitted tool call under the hub's time limit; the unknown-tool error when
    /// there is no such tool. The future owns everything it needs, so it can be spawned.
    pub(crate) fn start_call(
        hub: &Hub,
        id: &RequestId,
        version: ProtocolVersion,
        call: ToolCall,
        scope: CallScope,
    ) -> Result<Pin<Box<impl Future<Output = Reply> + Send + 'static>>, ErrorObject> {
        let ToolCall {
            name,
            arguments,
            slot,
            ..
        } = call;
        let config = &hub.inner.config;
        let ctx = ToolContext {
            cancel: scope.cancel.clone(),
            progress: scope.progress,
            scheduler: hub.inner.scheduler.clone(),
            principal: scope.principal,
            session: scope.session,
            call_label: scope.label.clone().unwrap_or_else(|| id.to_string()),
            log: scope.log,
            checkpoint: scope.checkpoint,
            client: scope.client,
            task: scope.task,
        };
        let Some(run) = hub.inner.catalog.tools().call(&name, arguments, ctx) else {
            return Err(unknown_tool(&name));
        };
        let (time_limit, grace) = (
            scope.time_limit.unwrap_or(config.call_timeout),
            config.stop_grace,
        );
        // Debug, like tower-http's request spans: formatting an info span's fields for every
        // call was 7% of a small call's cost. The session's span carries the context of
        // what is logged at info.
        let span = tracing::debug_span!("request", %id, method = methods::TOOLS_CALL, tool = %name);
        Ok(Box::pin(
            async move {
                // The call counts against its principal until it ends.
                let _slot = slot;
                let started = std::time::Instant::now();
                let mut result = with_time_limit(run, scope.cancel, time_limit, grace).await;
                if !version.has_structured_output() {
                    result.structured_content = None;
                }
                let is_error = result.is_error.unwrap_or(false);
                tracing::debug!(
                    elapsed_ms = started.elapsed().as_millis(),
                    is_error,
                    "tool finished"
                );
                serde_json::value::to_raw_value(&result)
                    .map(|body| CallReply { body, is_error })
                    .map_err(ErrorObject::internal)
            }
            .instrument(span),
        ))
    }
}

/// A call polled once.
pub(crate) enum Polled<F> {
    /// It is done.
    Ready(Reply),
    /// It goes on.
    Pending(F),
}

/// Polls a call once, where it arrived: a tool that is done at once (arithmetic) needs no
/// task, no scheduling and no wake-up of anyone. A panic is caught as a task's would be.
/// One that is not done is handed back, to go on as a task that polls it with its own waker.
pub(crate) fn poll_once<F: Future<Output = Reply> + Unpin>(mut run: F) -> Polled<F> {
    let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        std::pin::Pin::new(&mut run)
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }));
    match first {
        Ok(std::task::Poll::Pending) => Polled::Pending(run),
        Ok(std::task::Poll::Ready(reply)) => Polled::Ready(reply),
        Err(_) => {
            tracing::error!("the handler panicked");
            Polled::Ready(Err(ErrorObject::internal("the handler panicked")))
        }
    }
}

fn list_tools(
    hub: &Hub,
    ctx: &RequestContext<'_>,
    params: Option<Value>,
) -> Result<Route, ErrorObject> {
    let params: PaginatedParams = decode_params(params)?;
    let registry = hub.inner.catalog.tools();
    let page = registry
        .page(params.cursor.as_deref(), hub.inner.config.page_size)
        .map_err(ErrorObject::invalid_params)?;
    let version = ctx.version;
    let tools = page
        .tools
        .iter()
        .filter(|tool| ctx.principal.may_call(&tool.name))
        .cloned()
        .map(|mut tool| {
            // Fields a revision does not know are left out rather than sent to clients
            // that may validate strictly.
            if !version.has_structured_output() {
                tool.output_schema = None;
                tool.title = None;
            }
            if version < ProtocolVersion::V2025_03_26 {
                tool.annotations = None;
            }
            // Tasks are the 2026-07-28 extension's: a 2025 session's `execution` would mean
            // the tasks of 2025-11-25, which this server does not serve.
            if !version.is_modern() {
                tool.execution = None;
            }
            tool
        })
        .collect();
    answer(ListToolsResult {
        tools,
        next_cursor: page.next_cursor,
    })
}

fn call_tool(
    hub: &Hub,
    ctx: &RequestContext<'_>,
    params: Option<Value>,
) -> Result<Route, ErrorObject> {
    // Arguments that are an object are taken out before the params are read: they are
    // the tool's to check, and reading them here would copy them. Anything else stays,
    // for the params' reading to refuse in serde's words (or to take as none: null).
    let mut params = params;
    let arguments = match params.as_mut().and_then(Value::as_object_mut) {
        Some(p) if p.get("arguments").is_some_and(Value::is_object) => p.remove("arguments"),
        _ => None,
    };
    let mut params: CallToolParams = decode_params(params)?;
    if let Some(Value::Object(arguments)) = arguments {
        params.arguments = Some(arguments);
    }
    let limit = hub.inner.config.max_inflight_per_session;
    if ctx.running >= limit {
        return Err(ErrorObject::new(
            error_codes::LIMIT_EXCEEDED,
            format!("too many requests in flight: this session has {limit} running, the limit (--max-inflight); retry when one finishes"),
        )
        .with_data(serde_json::json!({"limit": "max_inflight_per_session", "value": limit})));
    }
    if !ctx.principal.may_call(&params.name) {
        return Err(forbidden_tool(&params.name));
    }
    let slot = hub.inner.limits.begin_call(ctx.principal)?;
    if hub.inner.catalog.tools().get(&params.name).is_none() {
        return Err(unknown_tool(&params.name));
    }
    Ok(Route::Call(ToolCall {
        name: params.name,
        arguments: params.arguments.unwrap_or_default(),
        progress_token: params.meta.and_then(|m| m.progress_token),
        slot: Some(slot),
    }))
}

fn list_resources(
    hub: &Hub,
    ctx: &RequestContext<'_>,
    params: Option<Value>,
) -> Result<Route, ErrorObject> {
    let _: PaginatedParams = decode_params(params)?;
    answer(ctx.resources.list(&hub.inner.catalog))
}

fn list_templates(
    hub: &Hub,
    _: &RequestContext<'_>,
    params: Option<Value>,
) -> Result<Route, ErrorObject> {
    let _: PaginatedParams = decode_params(params)?;
    answer(Resources::templates(&hub.inner.catalog))
}

fn read_resource(
    hub: &Hub,
    ctx: &RequestContext<'_>,
    params: Option<Value>,
) -> Result<Route, ErrorObject> {
    let p: ResourceParams = decode_params(params)?;
    answer(
        ctx.resources
            .read(&p.uri, &hub.inner.catalog, || hub.stats())?,
    )
}

fn list_prompts(
    hub: &Hub,
    _: &RequestContext<'_>,
    params: Option<Value>,
) -> Result<Route, ErrorObject> {
    let _: PaginatedParams = decode_params(params)?;
    answer(ListPromptsResult {
        prompts: hub.inner.catalog.prompts(),
        next_cursor: None,
    })
}

fn get_prompt(
    hub: &Hub,
    ctx: &RequestContext<'_>,
    params: Option<Value>,
) -> Result<Route, ErrorObject> {
    let p: GetPromptParams = decode_params(params)?;
    let rendering = hub.inner.catalog.render_prompt(p, &(ctx.client)())?;
    Ok(Route::Pending(Box::pin(async move {
        to_value(rendering.await?)
    })))
}

fn complete(
    hub: &Hub,
    _: &RequestContext<'_>,
    params: Option<Value>,
) -> Result<Route, ErrorObject> {
    let p: CompleteParams = decode_params(params)?;
    answer(hub.inner.catalog.complete(&p))
}

fn answer(value: impl Serialize) -> Result<Route, ErrorObject> {
    to_value(value).map(Route::Answer)
}

pub(crate) fn to_value(value: impl Serialize) -> Result<Value, ErrorObject> {
    serde_json::to_value(value).map_err(ErrorObject::internal)
}

fn unknown_tool(name: &str) -> ErrorObject {
    ErrorObject::invalid_params(format_args!("unknown tool: `{name}`"))
        .with_data(serde_json::json!({ "name": name }))
}

/// The error of a call the principal's token does not grant.
pub(crate) fn forbidden_tool(tool: &str) -> ErrorObject {
    ErrorObject::new(
        error_codes::FORBIDDEN,
        format!(
            "the access token does not grant calling `{}`: it needs the scope `{SCOPE_TOOLS}` or `{SCOPE_TOOL_PREFIX}{}`",
            mcp_protocol::shorten(tool, 100),
            mcp_protocol::shorten(tool, 100)
        ),
    )
    .with_data(serde_json::json!({ "scope": format!("{SCOPE_TOOL_PREFIX}{tool}") }))
}

/// Runs a tool call under its time limit. When the limit passes, the call's token is
/// cancelled and the tool gets `grace` to stop and say how far it got; its answer is then
/// returned as an error result that names the limit.
pub(crate) async fn with_time_limit(
    call: impl Future<Output = CallToolResult>,
    token: CancellationToken,
    limit: Duration,
    grace: Duration,
) -> CallToolResult {
    tokio::pin!(call);
    tokio::select! {
        // The call first: a result that came in time is kept, and a call done at once
        // never arms the timer.
        biased;
        result = &mut call => result,
        () = tokio::time::sleep(limit) => {
            tracing::warn!(limit_ms = limit.as_millis(), "tool call exceeded its time limit");
            token.cancel();
            let note = format!("the call exceeded its time limit of {} and was stopped", show(limit));
            match tokio::time::timeout(grace, call).await {
                Ok(mut result) => {
                    result.content.insert(0, mcp_protocol::Content::text(note));
                    result.is_error = Some(true);
                    result
                }
                Err(_) => CallToolResult::error(format!("{note}; it did not wind down within {}", show(grace))),
            }
        }
    }
}

/// A duration for people: `600 s`, `1.5 s`, `250 ms`.
pub(crate) fn show(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{} s", d.as_secs())
    } else if d.as_secs() > 0 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}
