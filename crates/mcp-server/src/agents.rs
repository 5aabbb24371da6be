//! The math-mcp seed's HTTP API, with its shapes kept so its example code works as written:
//! `POST /agent` creates an agent (a durable session), `GET /agent/{id}` shows its state and
//! history, `DELETE /agent/{id}` ends it, and `POST /mcp` with `{"agentId", "request":
//! {"method", "params"}}` calls a tool for an agent and records the call in its history.
//!
//! This is a translation at the edge: the seed's request becomes a `tools/call` (or
//! `tools/list`), and the tool's `structuredContent` is the seed's answer.

use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use mcp_protocol::methods;
use mcp_protocol::{ErrorObject, error_codes};
use mcp_session::store::now_ms;
use mcp_session::{HistoryEntry, Hub, Principal, SessionId, SessionRecord, StoreError, Update};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use mcp_http::Body;
use mcp_http::reply::text;

use crate::body::json_body;

/// The largest request body the agent API reads.
const MAX_BODY: usize = 1024 * 1024;
/// The longest agent name, in bytes: it is kept with the agent and shown back.
const MAX_NAME_BYTES: usize = 256;

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = text(status, value.to_string());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({ "error": message.into() }))
}

/// A call refused or stopped: by the principal's scopes (403) or limits (429, with
/// `Retry-After`), by a shutdown (503), or failed inside the server (500).
fn refused_call(refused: &ErrorObject) -> Response<Body> {
    match refused.code {
        error_codes::LIMIT_EXCEEDED => {}
        error_codes::FORBIDDEN => return error(StatusCode::FORBIDDEN, refused.message.clone()),
        // The server stopped the call (a shutdown); a task underneath resumes after it.
        error_codes::SERVER_SHUTTING_DOWN => {
            return error(StatusCode::SERVICE_UNAVAILABLE, refused.message.clone());
        }
        // The call failed inside the server (a task that failed, the task store).
        _ => return error(StatusCode::INTERNAL_SERVER_ERROR, refused.message.clone()),
    }
    let retry_ms = refused
        .data
        .as_ref()
        .and_then(|d| d.get("retryAfterMs"))
        .and_then(Value::as_u64)
        .unwrap_or(1000);
    let mut response = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({ "error": refused.message, "retryAfterMs": retry_ms }),
    );
    response.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        HeaderValue::from(retry_ms.div_ceil(1000)),
    );
    response
}

fn store_error(e: &StoreError) -> Response<Body> {
    match e {
        StoreError::NotFound(_) => error(StatusCode::NOT_FOUND, "no such agent"),
        other => {
            tracing::error!(error = %other, "session store failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the session store failed; retry later",
            )
        }
    }
}

/// Reads a JSON body of at most `MAX_BODY` bytes, refusing in the API's error shape.
async fn read_json(
    request: Request<Incoming>,
    timeout: std::time::Duration,
) -> Result<Value, Response<Body>> {
    json_body(request, MAX_BODY, timeout)
        .await
        .map_err(|e| error(e.status, e.message))
}

#[derive(Deserialize)]
struct Create {
    #[serde(default)]
    name: Option<String>,
}

/// `POST /agent` and `/agent/{id}` (GET, DELETE).
///
/// An agent belongs to the principal that created it; to anyone else it does not exist (404).
pub(crate) async fn route(
    request: Request<Incoming>,
    server: &Hub,
    principal: &Principal,
    config: &crate::Config,
) -> Response<Body> {
    if let Err(refused) = server.check_rate(principal) {
        return refused_call(&refused);
    }
    let principal = principal.name();
    let path = request.uri().path().to_owned();
    let rest = path.strip_prefix("/agent").unwrap_or_default();
    match (request.method().clone(), rest) {
        (Method::POST, "" | "/") => create(request, server, principal, config).await,
        (method, id) if id.len() > 1 && !id[1..].contains('/') => {
            if !matches!(method, Method::GET | Method::DELETE) {
                return error(StatusCode::METHOD_NOT_ALLOWED, "use GET or DELETE");
            }
            let record = match owned(&id[1..], server, principal).await {
                Ok(record) => record,
                Err(response) => return response,
            };
            if method == Method::GET {
                show(record, server).await
            } else {
                delete(&record.id, server).await
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "not found: use POST /agent, GET or DELETE /agent/{agentId}",
        ),
    }
}

async fn create(
    request: Request<Incoming>,
    server: &Hub,
    principal: &str,
    config: &crate::Config,
) -> Response<Body> {
    let body = match read_json(request, config.body_timeout).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let create: Create = match mcp_protocol::decode_value(body) {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"name\": string}}: {e}"),
            );
        }
    };
    if let Some(name) = &create.name
        && name.len() > MAX_NAME_BYTES
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "the name is {} bytes long; at most {MAX_NAME_BYTES}",
                name.len()
            ),
        );
    }
    // Within the principal's storage limits: 429 with `Retry-After` over one.
    if let Err(refused) = server.may_store(principal, true).await {
        return refused_call(&refused);
    }
    let id = match SessionId::random() {
        Ok(id) => id,
        Err(e) => return store_error(&e),
    };
    let record = SessionRecord::new(id.clone(), principal, create.name, now_ms());
    if let Err(e) = server.store().create(&record).await {
        return store_error(&e);
    }
    tracing::info!(agent = %id, "agent created");
    json_response(StatusCode::CREATED, &json!({ "agentId": id }))
}

/// An agent (a stored session) as the seeds show it, with its running calls; a long
/// tool's call shows how far its task got (`status`, `progress`, `total`, `checkpoint`).
async fn show(record: SessionRecord, server: &Hub) -> Response<Body> {
    let last_result = record.history.last().map(|h| h.result.clone());
    let mut operations = Vec::with_capacity(record.operations.len());
    for op in &record.operations {
        let mut shown = serde_json::to_value(op).unwrap_or(Value::Null);
        let task = match &op.task {
            Some(task) => server.store().load_task(task).await.ok().flatten(),
            None => None,
        };
        if let (Value::Object(shown), Some(task)) = (&mut shown, task) {
            shown.insert("status".to_owned(), json!(task.status));
            shown.insert("progress".to_owned(), json!(task.progress));
            shown.insert("total".to_owned(), json!(task.total));
            shown.insert("checkpoint".to_owned(), json!(task.checkpoint));
        }
        operations.push(shown);
    }
    json_response(
        StatusCode::OK,
        &json!({
            "agentId": record.id,
            "name": record.name,
            "createdAt": record.created_ms,
            "lastActiveAt": record.last_active_ms,
            "history": record.history,
            "lastResult": last_result,
            "operations": operations,
        }),
    )
}

async fn delete(id: &SessionId, server: &Hub) -> Response<Body> {
    match server.store().delete(id).await {
        Ok(()) => {
            server.end_deleted(id).await;
            let mut response = text(StatusCode::NO_CONTENT, "");
            response.headers_mut().remove(CONTENT_TYPE);
            response
        }
        Err(e) => store_error(&e),
    }
}

/// The agent id of a `/agent/{id}/websocket` path.
pub(crate) fn websocket_agent(path: &str) -> Option<&str> {
    path.strip_prefix("/agent/")?
        .strip_suffix("/websocket")
        .filter(|id| !id.contains('/'))
}

/// The record of the agent `agent` names, if `principal` owns it; otherwise 404, the same
/// as for an agent that does not exist.
async fn owned(
    agent: &str,
    server: &Hub,
    principal: &str,
) -> Result<SessionRecord, Response<Body>> {
    let Some(id) = SessionId::parse(agent) else {
        return Err(error(StatusCode::NOT_FOUND, "no such agent"));
    };
    match server.store().load(&id).await {
        Ok(Some(record)) if record.owner == principal => Ok(record),
        Ok(_) => Err(error(StatusCode::NOT_FOUND, "no such agent")),
        Err(e) => Err(store_error(&e)),
    }
}

/// The id of the agent `agent` names, if `principal` owns it; otherwise 404.
pub(crate) async fn existing(
    agent: &str,
    server: &Hub,
    principal: &str,
) -> Result<SessionId, Response<Body>> {
    owned(agent, server, principal).await.map(|r| r.id)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Call {
    agent_id: String,
    request: SeedRequest,
}

#[derive(Deserialize)]
struct SeedRequest {
    method: String,
    #[serde(default)]
    params: Option<Map<String, Value>>,
}

/// `POST /mcp` with the seed's body: runs the tool for the agent, records the call in its
/// history (committed before the answer), and answers the tool's structured result.
pub(crate) async fn call(body: &str, server: &Hub, principal: &Principal) -> Response<Body> {
    let call: Call = match mcp_protocol::decode_str(body) {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected {{\"agentId\": string, \"request\": {{\"method\": string, \"params\": object}}}}: {e}"
                ),
            );
        }
    };
    let id = match existing(&call.agent_id, server, principal.name()).await {
        Ok(id) => id,
        Err(response) => return response,
    };
    let params = call.request.params.unwrap_or_default();
    let (tool, arguments) = match call.request.method.as_str() {
        methods::TOOLS_LIST => {
            return json_response(StatusCode::OK, &json!({ "tools": server.tools(principal) }));
        }
        // The MCP form, `{"method": "tools/call", "params": {"name", "arguments"}}`.
        methods::TOOLS_CALL => match (params.get("name"), params.get("arguments")) {
            (Some(Value::String(name)), None) => (name.clone(), Map::new()),
            (Some(Value::String(name)), Some(Value::Object(arguments))) => {
                (name.clone(), arguments.clone())
            }
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "tools/call needs params {\"name\": string, \"arguments\": object}",
                );
            }
        },
        // The seed's form: the tool's name is the method.
        tool => (tool.to_owned(), params),
    };
    // The call is kept in the agent's history: within the principal's storage limit.
    if let Err(refused) = server.may_store(principal.name(), false).await {
        return refused_call(&refused);
    }
    let result = match server.call_tool(principal, &tool, arguments.clone()).await {
        Ok(result) => result,
        Err(refused) => return refused_call(&refused),
    };
    let Some(result) = result else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "unknown method `{}`: use a tool name (see tools/list) or tools/list",
                mcp_protocol::shorten(&tool, 100)
            ),
        );
    };
    let result_value = serde_json::to_value(&result).unwrap_or(Value::Null);
    let now = now_ms();
    let update = Update {
        last_active_ms: Some(now),
        history: vec![HistoryEntry {
            tool,
            arguments: Value::Object(arguments),
            result: result_value,
            at_ms: now,
        }],
        ..Update::default()
    };
    // Committed before the answer: a result the client saw is in the history.
    if let Err(e) = server.store().update(&id, &update).await {
        return store_error(&e);
    }
    if result.is_error == Some(true) {
        let message = result
            .content
            .iter()
            .filter_map(mcp_protocol::Content::as_text)
            .collect::<Vec<_>>()
            .join("\n");
        return error(StatusCode::UNPROCESSABLE_ENTITY, message);
    }
    json_response(
        StatusCode::OK,
        &result.structured_content.unwrap_or(Value::Null),
    )
}
