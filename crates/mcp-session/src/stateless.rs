//! Modern requests (2026-07-28): served one by one, with no session.
//!
//! A modern request says in its own `_meta` which revision it speaks and what its client can
//! do ([`RequestMeta`]); nothing is remembered between requests. [`Hub::serve_stateless`]
//! reads one, checks it (and the headers the HTTP binding mirrors from it), and answers it
//! through the same router, tools and providers as a 2025 session: a result gets
//! `resultType`, the server's identity and, for what may be cached, `ttlMs` and
//! `cacheScope`. A tool call that does not finish at once runs on with a log of its own,
//! which carries its progress and the log messages it was asked for, then its response.

use std::pin::Pin;
use std::sync::Arc;

use mcp_protocol::modern::{self, Cache, DiscoverResult, RequestMeta};
use mcp_protocol::{
    ErrorObject, Incoming, LoggingLevel, Message, ProtocolVersion, Request, RequestId, Response,
    error_codes, methods,
};
use mcp_tools::TaskSupport;
use serde_json::{Map, Value};
use tokio_util::sync::DropGuard;

use crate::calls::{CallReply, Reply};
use crate::hub::notice_text;
use crate::metrics::Outcome;
use crate::outbound::{self, Answered, OutboundQueue, Regarding, WeakQueue};
use crate::round_trip::{self, Round, RoundTrip};
use crate::router::{self, CallScope, Polled, RequestContext, Route, Router, ToolCall};
use crate::sinks::ProgressNotifier;
use crate::{Hub, OutboundReceiver, Principal};

/// What the HTTP binding mirrors from a request's body into its headers, to be checked
/// against it: `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name`, as received (`None`
/// when absent).
#[derive(Debug, Clone, Default)]
pub struct Mirrored {
    /// `MCP-Protocol-Version`.
    pub protocol_version: Option<String>,
    /// `Mcp-Method`.
    pub method: Option<String>,
    /// `Mcp-Name`, still encoded when it is (`=?base64?...?=`).
    pub name: Option<String>,
    /// Every `Mcp-Param-{Name}` header (SEP-2243): its name after the prefix, lowercased,
    /// and its value, still encoded; `None` for a value that is not visible ASCII.
    pub params: Vec<(String, Option<String>)>,
}

/// What became of a modern request.
pub enum Stateless {
    /// Refused before it ran: its JSON-RPC error, and whether the method is one this server
    /// does not serve (HTTP says 404 then, and 400 otherwise).
    Refused {
        /// The error response.
        text: String,
        /// The method is unknown, or one the revision removed.
        not_found: bool,
    },
    /// Its response, ready now.
    Answer(String),
    /// A notification: nothing to answer.
    Accepted,
    /// A call that goes on: read [`StatelessCall::output`] to its end.
    Running(StatelessCall),
}

/// A modern tool call that did not finish at once.
pub struct StatelessCall {
    /// Its progress and log messages, then its response, last; then the end.
    pub output: OutboundReceiver,
    /// Runs the call: the transport spawns it where it tracks its tasks.
    pub run: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Cancels the call when dropped: keep it while someone waits for the answer.
    pub cancel: DropGuard,
}

/// How long list results stay fresh for a client's cache: they change only with a new
/// configuration.
const LIST_TTL_MS: u64 = 300_000;

impl Hub {
    /// Serves one modern request (`text`) for `principal`; `mirrored` holds the HTTP
    /// headers to check against it, `None` on a transport that mirrors nothing.
    pub fn serve_stateless(
        &self,
        text: &str,
        mirrored: Option<&Mirrored>,
        principal: &Principal,
    ) -> Stateless {
        let request = match mcp_protocol::parse(text) {
            Err(error) => return refused(None, error, false),
            Ok(Incoming::Batch(_)) => {
                let error = ErrorObject::invalid_request(
                    "a modern request is one JSON-RPC message: batches ended with 2025-03-26",
                );
                return refused(None, error, false);
            }
            Ok(Incoming::Single(Err(invalid))) => return refused(invalid.id, invalid.error, false),
            // Modern Streamable HTTP defines no client notifications, and nothing is waiting
            // for a response: accepted and ignored.
            Ok(Incoming::Single(Ok(Message::Notification(_) | Message::Response(_)))) => {
                return Stateless::Accepted;
            }
            Ok(Incoming::Single(Ok(Message::Request(request)))) => request,
        };
        let id = request.id.clone();
        let meta = match self.admit_stateless(&request, mirrored) {
            Ok(meta) => meta,
            Err((error, not_found)) => return refused(Some(id), error, not_found),
        };
        tracing::debug!(%id, method = %request.method, "stateless request");
        let Request { id, method, params } = request;
        let started = tokio::time::Instant::now();
        let served = self.route_stateless(&id, &method, params, meta, principal);
        let metrics = &self.inner.metrics;
        // A call that runs on is counted when it ends.
        if !matches!(served, Ok(Served::Running(_))) {
            let outcome = match &served {
                Ok(_) => Outcome::ok,
                Err(_) => Outcome::error,
            };
            metrics.count_request(&method, outcome);
            metrics.observe_latency(&method, started.elapsed().as_secs_f64());
        }
        match served {
            Err(error) if error.code == error_codes::METHOD_NOT_FOUND => {
                refused(Some(id), error, true)
            }
            // The revision's own refusals are HTTP 400 too.
            Err(error) if error.code == modern::codes::MISSING_REQUIRED_CLIENT_CAPABILITY => {
                refused(Some(id), error, false)
            }
            Err(error) => Stateless::Answer(error_text(id, error)),
            Ok(Served::Answer(result)) => Stateless::Answer(response_text(id, result)),
            Ok(Served::Running(call)) => Stateless::Running(call),
        }
    }

    /// Checks a modern request before it runs: the mirrored headers, its `_meta`, and that
    /// its method is one the revision has. The error, and whether it is a method not found.
    fn admit_stateless(
        &self,
        request: &Request,
        mirrored: Option<&Mirrored>,
    ) -> Result<RequestMeta, (ErrorObject, bool)> {
        let params = request.params.as_ref();
        if let Some(mirrored) = mirrored {
            check_headers(request, mirrored).map_err(|e| (e, false))?;
            self.check_param_headers(request, mirrored)
                .map_err(|e| (e, false))?;
        }
        admit(&request.method, params).map_err(|e| {
            let not_found = e.code == error_codes::METHOD_NOT_FOUND;
            (e, not_found)
        })
    }

    /// Checks a tool call's `Mcp-Param-*` headers (SEP-2243) against its arguments: every
    /// parameter the tool's input schema annotates with `x-mcp-header` and the call gives a
    /// value must come with its header, saying the same (-32020 otherwise).
    fn check_param_headers(
        &self,
        request: &Request,
        mirrored: &Mirrored,
    ) -> Result<(), ErrorObject> {
        if request.method != methods::TOOLS_CALL {
            return Ok(());
        }
        let params = request.params.as_ref();
        let registry = self.inner.catalog.tools();
        let Some(tool) = params
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .and_then(|name| registry.get(name))
        else {
            return Ok(());
        };
        let arguments = params.and_then(|p| p.get("arguments"));
        for (path, header) in modern::header_params(&tool.input_schema) {
            let value = arguments
                .and_then(|arguments| path.iter().try_fold(arguments, |v, key| v.get(key)))
                .filter(|v| !v.is_null());
            let sent = mirrored
                .params
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&header));
            let name = format!("Mcp-Param-{header}");
            match (value, sent) {
                (None, None) => {}
                (None, Some(_)) => {
                    return Err(modern::header_mismatch(format_args!(
                        "{name} is sent, but the call gives `{}` no value",
                        path.join(".")
                    )));
                }
                (Some(_), None) => {
                    return Err(modern::header_mismatch(format_args!(
                        "{name} is required: the call gives `{}` a value",
                        path.join(".")
                    )));
                }
                (Some(_), Some((_, None))) => {
                    return Err(modern::header_mismatch(format_args!(
                        "{name} has characters a header may not carry: encode it as =?base64?...?="
                    )));
                }
                (Some(value), Some((_, Some(sent)))) => {
                    let decoded = modern::decode_header_value(sent).ok_or_else(|| {
                        modern::header_mismatch(format_args!(
                            "{name} is not valid: its =?base64?...?= value does not decode"
                        ))
                    })?;
                    if !modern::header_matches(&decoded, value) {
                        return Err(modern::header_mismatch(format_args!(
                            "{name} `{}` does not match `arguments.{}`",
                            mcp_protocol::shorten(&decoded, 60),
                            path.join(".")
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Answers an admitted modern request on HTTP, or starts its call on an output of its
    /// own.
    fn route_stateless(
        &self,
        id: &RequestId,
        method: &str,
        params: Option<Value>,
        meta: RequestMeta,
        principal: &Principal,
    ) -> Result<Served, ErrorObject> {
        let inner = &self.inner;
        let token = inner.shutdown.child_token();
        let (queue, output) =
            outbound::channel(inner.config.outbound_capacity, inner.metrics.clone());
        let out = ModernOutput {
            queue: &queue,
            cancel: &token,
            running: 0,
            session: 0,
        };
        let run = match self.serve_modern(id, method, params, meta, principal, out)? {
            Modern::Answer(result) => return Ok(Served::Answer(result)),
            Modern::Call(run) => run,
        };
        inner.metrics.request_started();
        match router::poll_once(run) {
            Polled::Ready(reply) => {
                inner.metrics.request_finished();
                Ok(Served::Answer(self.finish_call(reply)?))
            }
            Polled::Pending(run) => {
                let hub = self.clone();
                let id = id.clone();
                let method = method.to_owned();
                let started = tokio::time::Instant::now();
                let run = Box::pin(async move {
                    let reply = run.await;
                    let metrics = &hub.inner.metrics;
                    metrics.request_finished();
                    let outcome = match &reply {
                        Ok(reply) if reply.is_error => Outcome::tool_error,
                        Ok(_) => Outcome::ok,
                        Err(_) => Outcome::error,
                    };
                    metrics.count_request(&method, outcome);
                    metrics.observe_latency(&method, started.elapsed().as_secs_f64());
                    let text = match hub.finish_call(reply) {
                        Ok(result) => response_text(id.clone(), result),
                        Err(error) => error_text(id.clone(), error),
                    };
                    // Nobody reads a call whose client went away: its answer goes nowhere.
                    let _ = queue.push(text, Regarding::Answer(Answered::to(id))).await;
                    queue.end();
                });
                Ok(Served::Running(StatelessCall {
                    output,
                    run,
                    cancel: token.drop_guard(),
                }))
            }
        }
    }

    /// Serves an admitted modern request, whatever carries it: answers it, or makes the call
    /// that will (a tool call, a listen stream) with its output going to `out`. The call's
    /// reply is a modern result already ([`Hub::finish_call`] completes it).
    pub(crate) fn serve_modern(
        &self,
        id: &RequestId,
        method: &str,
        mut params: Option<Value>,
        meta: RequestMeta,
        principal: &Principal,
        out: ModernOutput<'_>,
    ) -> Result<Modern, ErrorObject> {
        let inner = &self.inner;
        let round = match round_trip::may_require_input(method) {
            true => Some(Round::read(
                &inner.state_key,
                principal.name(),
                method,
                &mut params,
            )?),
            false => None,
        };
        if method == methods::SERVER_DISCOVER {
            return Ok(Modern::Answer(self.complete(self.discover(), cache(true))));
        }
        inner.limits.check_rate(principal)?;
        if method == methods::SUBSCRIPTIONS_LISTEN {
            let listen = self.listen(
                id,
                params,
                &meta,
                principal,
                out.queue.clone(),
                out.cancel.clone(),
            )?;
            return Ok(Modern::Call(Box::pin(listen)));
        }
        if let Some(tasks_method) = TasksMethod::of(method) {
            // The extension's methods exist for the clients that declare it.
            if !meta.declares(modern::TASKS_EXTENSION) {
                return Err(modern::missing_extension(modern::TASKS_EXTENSION));
            }
            let (hub, principal) = (self.clone(), principal.clone());
            return Ok(Modern::Call(Box::pin(async move {
                match tasks_method {
                    TasksMethod::Get => hub.task_get(&principal, params).await,
                    TasksMethod::Update => hub.task_update(&principal, params).await,
                    TasksMethod::Cancel => hub.task_cancel(&principal, params).await,
                }
            })));
        }
        let meta = Arc::new(meta);
        let round_trip = round.map(|round| RoundTrip::new(Arc::clone(&meta), round));
        let client = || match &round_trip {
            Some(rt) => mcp_tools::Client::new(Arc::clone(rt) as Arc<dyn mcp_tools::ClientSink>),
            None => mcp_tools::Client::none(),
        };
        let ctx = RequestContext {
            version: meta.version,
            principal,
            resources: &inner.stateless_resources,
            running: out.running,
            client: &client,
        };
        let routed = inner
            .router
            .route(self, method, &ctx, params)
            .map_err(modern_error)?;
        let call = match routed {
            Route::Answer(value) => {
                let cacheable = match method {
                    // Filtered by the caller's scopes: the same for the same token only.
                    methods::TOOLS_LIST => cache(principal.scopes().is_none()),
                    methods::PROMPTS_LIST
                    | methods::RESOURCES_LIST
                    | methods::RESOURCES_TEMPLATES_LIST => cache(true),
                    // The statistics change all the time; others' contents may too.
                    methods::RESOURCES_READ => Some(Cache {
                        ttl_ms: 0,
                        public: false,
                    }),
                    _ => None,
                };
                return Ok(Modern::Answer(self.complete(value, cacheable)));
            }
            Route::Pending(answer) => {
                // Answered once done; what it asks of the client makes rounds, like a call's.
                let run = async move { CallReply::from_value(&answer.await?) };
                return Ok(Modern::Call(
                    self.until_input_required(run, round_trip, principal),
                ));
            }
            Route::Call(call) => call,
        };
        // A task, when the tool may be one and the client takes tasks.
        let takes_tasks = meta.declares(modern::TASKS_EXTENSION);
        let detaches = match inner.catalog.tools().task_support(&call.name) {
            TaskSupport::Required if !takes_tasks => {
                return Err(modern::missing_extension(modern::TASKS_EXTENSION));
            }
            TaskSupport::Optional | TaskSupport::Required if takes_tasks => {
                if !inner.catalog.tools().detaches_itself(&call.name) {
                    let answers = round_trip.map(|rt| rt.answers()).unwrap_or_default();
                    let (hub, principal) = (self.clone(), principal.clone());
                    let meta = (*meta).clone();
                    return Ok(Modern::Call(Box::pin(async move {
                        hub.create_task(&principal, call, meta, answers).await
                    })));
                }
                // It asks its client first, in rounds, and becomes a task where it says.
                Some((
                    Arc::new(tokio::sync::Notify::new()),
                    ToolCall {
                        name: call.name.clone(),
                        arguments: call.arguments.clone(),
                        progress_token: None,
                        slot: None,
                    },
                ))
            }
            _ => None,
        };
        let token = out.cancel;
        let client = client();
        let scope = CallScope {
            cancel: token.clone(),
            progress: mcp_tools::Progress::new(
                Arc::new(ProgressNotifier::stateless(
                    call.progress_token.clone(),
                    out.queue.clone(),
                    token.clone(),
                )),
                inner.config.progress_interval,
            ),
            checkpoint: mcp_tools::Checkpoint::none(),
            log: mcp_tools::Logger::new(
                Arc::new(RequestLog {
                    queue: out.queue.downgrade(),
                    level: meta.log_level,
                }),
                call.name.clone(),
            ),
            client,
            task: match &detaches {
                Some((signal, _)) => mcp_tools::TaskGate::signalling(Arc::clone(signal)),
                None => mcp_tools::TaskGate::open(),
            },
            principal: Arc::clone(principal.key()),
            session: out.session,
            time_limit: None,
            label: None,
        };
        let run = Router::start_call(self, id, meta.version, call, scope)?;
        let Some((signal, task_call)) = detaches else {
            return Ok(Modern::Call(
                self.until_input_required(run, round_trip, principal),
            ));
        };
        let answers = round_trip.as_ref().map(Arc::clone);
        let run = self.until_input_required(run, round_trip, principal);
        let (hub, principal) = (self.clone(), principal.clone());
        let meta = (*meta).clone();
        Ok(Modern::Call(Box::pin(async move {
            tokio::select! {
                biased;
                reply = run => reply,
                // Everything it asked is answered: the task runs it again with the answers.
                () = signal.notified() => {
                    let answers = answers.map(|rt| rt.answers()).unwrap_or_default();
                    hub.create_task(&principal, task_call, meta, answers).await
                }
            }
        })))
    }

    /// Runs a call until it ends, or until it asks its client for something this round does
    /// not have: it stops there, and its reply is the input-required result (or -32021).
    fn until_input_required(
        &self,
        run: impl Future<Output = Reply> + Send + 'static,
        round_trip: Option<Arc<RoundTrip>>,
        principal: &Principal,
    ) -> Pin<Box<impl Future<Output = Reply> + Send + 'static>> {
        let hub = self.clone();
        let principal = principal.name().to_owned();
        Box::pin(async move {
            let Some(rt) = round_trip else {
                return run.await;
            };
            tokio::select! {
                // The call first: what it asks in one poll goes out together.
                biased;
                // A call that asked for a capability the client lacks is refused (-32021),
                // however the tool took the refusal.
                reply = run => match rt.missing() {
                    Some(capability) => Err(mcp_protocol::modern::missing_capability(&capability)),
                    None => reply,
                },
                () = rt.stopped() => {
                    let inner = &hub.inner;
                    let result = rt.input_required(&inner.state_key, &principal, inner.config.request_state_ttl)?;
                    CallReply::from_value(&result)
                }
            }
        })
    }

    /// A call's reply as a modern result.
    pub(crate) fn finish_call(&self, reply: Reply) -> Result<Value, ErrorObject> {
        let reply = reply.map_err(modern_error)?;
        let value = serde_json::from_str(reply.body.get()).map_err(ErrorObject::internal)?;
        Ok(self.complete(value, None))
    }

    /// `result` as a complete modern result (one that says it is not complete, an
    /// input-required result, only names the server).
    fn complete(&self, result: Value, cache: Option<Cache>) -> Value {
        let mut map = match result {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let server = &self.inner.config.server_info;
        match map.contains_key("resultType") {
            true => modern::stamp_server(&mut map, server),
            false => modern::complete(&mut map, server, cache),
        }
        Value::Object(map)
    }

    /// What `server/discover` says.
    fn discover(&self) -> Value {
        let legacy = self.initialize_result(ProtocolVersion::LATEST_LEGACY);
        // `resources.subscribe`: a modern client subscribes with `subscriptions/listen`.
        let mut capabilities = legacy.capabilities;
        capabilities.extensions = Some(serde_json::Map::from_iter([(
            modern::TASKS_EXTENSION.to_owned(),
            serde_json::json!({}),
        )]));
        router::to_value(DiscoverResult {
            supported_versions: ProtocolVersion::SUPPORTED
                .map(|v| v.as_str().to_owned())
                .to_vec(),
            capabilities,
            instructions: legacy.instructions,
        })
        .unwrap_or_default()
    }
}

/// The tasks extension's methods.
#[derive(Clone, Copy)]
enum TasksMethod {
    Get,
    Update,
    Cancel,
}

impl TasksMethod {
    fn of(method: &str) -> Option<Self> {
        match method {
            methods::TASKS_GET => Some(Self::Get),
            methods::TASKS_UPDATE => Some(Self::Update),
            methods::TASKS_CANCEL => Some(Self::Cancel),
            _ => None,
        }
    }
}

/// Admits a modern request, whatever carries it: its `_meta` (-32602, -32022), then its
/// method (-32601 for one the revision removed).
pub(crate) fn admit(method: &str, params: Option<&Value>) -> Result<RequestMeta, ErrorObject> {
    let meta = RequestMeta::read(params)?;
    if modern::is_removed(method) {
        return Err(
            ErrorObject::method_not_found(method).with_data(serde_json::json!({
                "method": method,
                "removedIn": ProtocolVersion::LATEST_MODERN.as_str(),
            })),
        );
    }
    Ok(meta)
}

/// What a routed modern request became, on HTTP.
enum Served {
    Answer(Value),
    Running(StatelessCall),
}

/// Where a modern call's output goes: an outbound log (the request's own on HTTP, the
/// session's on WebSocket), the call's cancellation, and what limits it.
pub(crate) struct ModernOutput<'a> {
    pub(crate) queue: &'a OutboundQueue,
    pub(crate) cancel: &'a tokio_util::sync::CancellationToken,
    /// How many requests of its scope run already.
    pub(crate) running: usize,
    /// The fairness key of the heavy-call scheduler.
    pub(crate) session: u64,
}

/// A modern request served: its result, or the call that will give it.
pub(crate) enum Modern {
    Answer(Value),
    Call(Pin<Box<dyn Future<Output = Reply> + Send>>),
}

fn cache(public: bool) -> Option<Cache> {
    Some(Cache {
        ttl_ms: LIST_TTL_MS,
        public,
    })
}

/// An error as the modern revision numbers it: a resource that is not there is -32602
/// (SEP-2164), no longer -32002.
fn modern_error(mut error: ErrorObject) -> ErrorObject {
    if error.code == error_codes::RESOURCE_NOT_FOUND {
        error.code = error_codes::INVALID_PARAMS;
    }
    error
}

fn refused(id: Option<RequestId>, error: ErrorObject, not_found: bool) -> Stateless {
    Stateless::Refused {
        text: Message::Response(Response::error(id, error)).to_text(),
        not_found,
    }
}

fn response_text(id: RequestId, result: Value) -> String {
    Message::Response(Response::ok(id, result)).to_text()
}

fn error_text(id: RequestId, error: ErrorObject) -> String {
    Message::Response(Response::error(Some(id), error)).to_text()
}

/// Checks the headers the HTTP binding mirrors against the body: -32020 when one that is
/// required is missing or says otherwise.
fn check_headers(request: &Request, mirrored: &Mirrored) -> Result<(), ErrorObject> {
    let body_version = request
        .params
        .as_ref()
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(modern::PROTOCOL_VERSION))
        .and_then(Value::as_str);
    match (mirrored.protocol_version.as_deref(), body_version) {
        (None, _) => {
            return Err(modern::header_mismatch(format_args!(
                "the MCP-Protocol-Version header is required: a {} request names its revision there and in `_meta`; a 2025 client starts with `initialize`, then sends the Mcp-Session-Id it answers with",
                ProtocolVersion::LATEST_MODERN
            )));
        }
        (Some(header), Some(body)) if header != body => {
            return Err(modern::header_mismatch(format_args!(
                "MCP-Protocol-Version `{}` does not match `_meta.{}` `{}`",
                mcp_protocol::shorten(header, 40),
                modern::PROTOCOL_VERSION,
                mcp_protocol::shorten(body, 40)
            )));
        }
        // Without one in the body, `_meta` is what is wrong: said by its own check.
        _ => {}
    }
    match mirrored.method.as_deref() {
        None => return Err(modern::header_mismatch("the Mcp-Method header is required")),
        Some(method) if method != request.method => {
            return Err(modern::header_mismatch(format_args!(
                "Mcp-Method `{}` does not match the body's method `{}`",
                mcp_protocol::shorten(method, 60),
                mcp_protocol::shorten(&request.method, 60)
            )));
        }
        Some(_) => {}
    }
    let source = match request.method.as_str() {
        methods::TOOLS_CALL | methods::PROMPTS_GET => "name",
        methods::RESOURCES_READ => "uri",
        // The tasks extension: the task's id, so that a load balancer can route on it.
        methods::TASKS_GET | methods::TASKS_UPDATE | methods::TASKS_CANCEL => "taskId",
        _ => return Ok(()),
    };
    let body = request
        .params
        .as_ref()
        .and_then(|p| p.get(source))
        .and_then(Value::as_str);
    let Some(header) = mirrored.name.as_deref() else {
        return Err(modern::header_mismatch(format_args!(
            "the Mcp-Name header is required for {}",
            request.method
        )));
    };
    let decoded = modern::decode_header_value(header).ok_or_else(|| {
        modern::header_mismatch("Mcp-Name is not valid: its =?base64?...?= value does not decode")
    })?;
    if Some(decoded.as_str()) != body {
        return Err(modern::header_mismatch(format_args!(
            "Mcp-Name `{}` does not match `params.{source}` `{}`",
            mcp_protocol::shorten(&decoded, 100),
            mcp_protocol::shorten(body.unwrap_or(""), 100)
        )));
    }
    Ok(())
}

/// A modern request's log messages: queued on its own output at or above the level its
/// `_meta` asked for, and none when it asked for none.
struct RequestLog {
    queue: WeakQueue,
    level: Option<LoggingLevel>,
}

impl mcp_tools::LogSink for RequestLog {
    fn log(&self, level: LoggingLevel, logger: &str, data: Value) {
        if self.level.is_none_or(|wanted| level < wanted) {
            return;
        }
        let (Some(queue), Some(text)) = (self.queue.upgrade(), notice_text(level, logger, data))
        else {
            return;
        };
        let _ = queue.try_push_notice(text);
    }
}
