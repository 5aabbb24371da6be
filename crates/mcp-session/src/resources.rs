//! Resources: the live server-stats resource, and one resource per tool call of the session
//! (its status, progress, and result once done), with subscriptions.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use mcp_protocol::{
    ErrorObject, ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult, RequestId,
    Resource, ResourceContents, ResourceTemplate, error_codes,
};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::catalog::Catalog;

/// The server's statistics: connections, sessions, running requests, heavy calls, uptime.
pub(crate) const STATS_URI: &str = "mcp://server/stats";
/// Prefix of the per-call resources; the rest is the request id (see [`operation_uri`]).
pub(crate) const OPERATIONS_PREFIX: &str = "mcp://session/operations/";
/// How many subscriptions one session may hold.
const MAX_SUBSCRIPTIONS: usize = 1_000;
/// The longest URI a session may subscribe to, in bytes: with the count, a bound on what
/// its subscriptions hold.
const MAX_URI_BYTES: usize = 1_024;
/// How many finished calls stay readable.
const KEPT_FINISHED: usize = 100;
const JSON: &str = "application/json";

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Running,
    Completed,
    Failed,
    Cancelled,
}

/// One tool call, as its resource shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Operation {
    request_id: RequestId,
    tool: String,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    /// Kept as the JSON text it was sent as: serialized once, never copied as a tree.
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Box<RawValue>>,
}

#[derive(Default)]
struct State {
    operations: BTreeMap<String, Operation>,
    finished: VecDeque<String>,
    subscriptions: HashSet<String>,
}

/// A session's operations and subscriptions, shared with its running calls.
#[derive(Default)]
pub(crate) struct Resources {
    state: Mutex<State>,
}

/// The resource URI of the call with `id`: the id's JSON text, percent-encoded, so that `7`
/// and `"7"` stay apart.
pub(crate) fn operation_uri(id: &RequestId) -> String {
    use std::fmt::Write as _;
    let mut uri = String::with_capacity(OPERATIONS_PREFIX.len() + 24);
    uri.push_str(OPERATIONS_PREFIX);
    match id {
        // Digits and `-` need no escaping: written straight in (every call has a URI).
        RequestId::Number(n) => {
            let _ = write!(uri, "{n}");
        }
        RequestId::String(_) => {
            for byte in id.to_string().bytes() {
                if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                    uri.push(char::from(byte));
                } else {
                    let _ = write!(uri, "%{byte:02X}");
                }
            }
        }
    }
    uri
}

fn not_found(uri: &str) -> ErrorObject {
    ErrorObject::new(
        error_codes::RESOURCE_NOT_FOUND,
        format!("resource not found: {}", mcp_protocol::shorten(uri, 200)),
    )
    .with_data(serde_json::json!({ "uri": mcp_protocol::shorten(uri, 200) }))
}

impl Resources {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a call that started; returns its URI.
    pub(crate) fn start(&self, id: &RequestId, tool: &str) -> String {
        let uri = operation_uri(id);
        self.lock().operations.insert(
            uri.clone(),
            Operation {
                request_id: id.clone(),
                tool: tool.to_owned(),
                status: Status::Running,
                progress: None,
                total: None,
                message: None,
                result: None,
            },
        );
        uri
    }

    /// Records progress; returns whether a subscriber wants to hear of it.
    pub(crate) fn progress(
        &self,
        uri: &str,
        progress: f64,
        total: Option<f64>,
        message: Option<&str>,
    ) -> bool {
        let mut state = self.lock();
        if let Some(op) = state.operations.get_mut(uri) {
            op.progress = Some(progress);
            op.total = total;
            op.message = message.map(str::to_owned);
        }
        state.subscriptions.contains(uri)
    }

    /// Records how a call ended; returns whether a subscriber wants to hear of it. The oldest
    /// finished calls are forgotten beyond the last hundred.
    pub(crate) fn finish(&self, uri: &str, status: Status, result: Option<Box<RawValue>>) -> bool {
        let mut state = self.lock();
        if let Some(op) = state.operations.get_mut(uri) {
            op.status = status;
            op.result = result;
        }
        state.finished.push_back(uri.to_owned());
        while state.finished.len() > KEPT_FINISHED {
            if let Some(old) = state.finished.pop_front() {
                state.operations.remove(&old);
            }
        }
        state.subscriptions.contains(uri)
    }

    pub(crate) fn is_subscribed(&self, uri: &str) -> bool {
        self.lock().subscriptions.contains(uri)
    }

    /// The resources: statistics, this session's calls, and the providers'.
    pub(crate) fn list(&self, catalog: &Catalog) -> ListResourcesResult {
        let state = self.lock();
        let mut resources = vec![Resource {
            uri: STATS_URI.to_owned(),
            name: "server-stats".to_owned(),
            title: Some("Server statistics".to_owned()),
            description: Some(
                "Connections, sessions, running requests, heavy calls running and queued, uptime. Subscribe to hear of changes (at most once a second)."
                    .to_owned(),
            ),
            mime_type: Some(JSON.to_owned()),
        }];
        resources.extend(state.operations.iter().map(|(uri, op)| Resource {
            uri: uri.clone(),
            name: format!("{} {}", op.tool, op.request_id),
            title: None,
            description: Some(format!(
                "Tool call {} of this session: status, progress, result",
                op.request_id
            )),
            mime_type: Some(JSON.to_owned()),
        }));
        resources.extend(catalog.resources());
        ListResourcesResult {
            resources,
            next_cursor: None,
        }
    }

    pub(crate) fn templates(catalog: &Catalog) -> ListResourceTemplatesResult {
        let mut resource_templates = vec![ResourceTemplate {
                uri_template: format!("{OPERATIONS_PREFIX}{{requestId}}"),
                name: "operation".to_owned(),
                description: Some(
                    "A tool call of this session by its request id (the id's JSON text, percent-encoded): status, progress, and the result once done."
                        .to_owned(),
                ),
                mime_type: Some(JSON.to_owned()),
        }];
        resource_templates.extend(catalog.templates());
        ListResourceTemplatesResult {
            resource_templates,
            next_cursor: None,
        }
    }

    /// Reads a resource; `stats` renders the server statistics.
    pub(crate) fn read(
        &self,
        uri: &str,
        catalog: &Catalog,
        stats: impl FnOnce() -> Value,
    ) -> Result<ReadResourceResult, ErrorObject> {
        if let Some(contents) = catalog.read(uri) {
            return Ok(ReadResourceResult {
                contents: vec![contents],
            });
        }
        let text = if uri == STATS_URI {
            stats().to_string()
        } else {
            let state = self.lock();
            let op = state.operations.get(uri).ok_or_else(|| not_found(uri))?;
            serde_json::to_string(op).map_err(ErrorObject::internal)?
        };
        Ok(ReadResourceResult {
            contents: vec![ResourceContents {
                uri: uri.to_owned(),
                mime_type: Some(JSON.to_owned()),
                text: Some(text),
                blob: None,
            }],
        })
    }

    /// Subscribes to a resource that exists (or will: any operation URI of this session).
    pub(crate) fn subscribe(&self, uri: &str, catalog: &Catalog) -> Result<(), ErrorObject> {
        if uri.len() > MAX_URI_BYTES {
            return Err(ErrorObject::invalid_params(format_args!(
                "the URI is {} bytes long; at most {MAX_URI_BYTES}",
                uri.len()
            )));
        }
        if uri != STATS_URI && !uri.starts_with(OPERATIONS_PREFIX) && !catalog.is_resource(uri) {
            return Err(not_found(uri));
        }
        let mut state = self.lock();
        if state.subscriptions.len() >= MAX_SUBSCRIPTIONS && !state.subscriptions.contains(uri) {
            return Err(ErrorObject::new(
                error_codes::LIMIT_EXCEEDED,
                format!(
                    "too many subscriptions: a session may hold {MAX_SUBSCRIPTIONS}; unsubscribe first"
                ),
            ));
        }
        state.subscriptions.insert(uri.to_owned());
        Ok(())
    }

    /// Unsubscribes; unsubscribing from something not subscribed is not an error.
    pub(crate) fn unsubscribe(&self, uri: &str) {
        self.lock().subscriptions.remove(uri);
    }
}
