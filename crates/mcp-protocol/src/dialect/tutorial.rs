//! The real-time tutorial's JSON-RPC extras, on `/mcp?dialect=tutorial`.
//!
//! The client speaks standard MCP JSON-RPC, and gets these on top:
//! - on open, `{"method": "connected", "params": {"connectionId"}}`;
//! - for a `tools/call` made without a `progressToken`, `{"method": "progress", "params":
//!   {"requestId", "progress", "total", "percentage", "message", "eta", "rate"}}` (`eta` in
//!   seconds and `rate` in units per second, from the time since the call started;
//!   `percentage`, `eta` and `rate` are null when they cannot be known);
//! - `{"method": "cancel", "params": {"requestId"}}` (with or without an id) cancels a
//!   running request: the `cancel` request is answered `{"cancelled": true}`, and the
//!   cancelled request gets a final result saying so (`isError`, text "Operation was
//!   cancelled by the client."), after which nothing more comes for it. For a request that
//!   is not running, the answer is `{"cancelled": false, "reason"}`;
//! - `{"method": "ping"}` without an id is answered `{"method": "pong"}`; a `pong` from the
//!   client is taken as a sign of life; a `ping` with an id is MCP's own and answered `{}`;
//! - log messages and broadcasts (`notifications/message`) arrive as `{"method":
//!   "notification", "params": {"type", "level", "message", "data"?}}`, `type` being the
//!   logger (`"system"` when there is none).
//!
//! Everything else passes through untouched, so a standard client on this dialect works.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::SystemTime;

use serde_json::{Value, json};

use super::{CANCELLED_MEMORY, Translated, is_response, millis};
use crate::methods;

/// The prefix of the progress tokens this dialect adds; the rest is the request's id as JSON.
const TOKEN_PREFIX: &str = "tutorial-progress:";

/// The tutorial dialect of one connection.
#[derive(Debug)]
pub struct Tutorial {
    connection: String,
    /// The ids (as JSON text) of the client's requests not answered yet.
    pending: HashSet<String>,
    /// When each call with a progress token of ours started (ms), by token.
    started: HashMap<String, u64>,
    /// Ids (as JSON text) of cancelled requests, oldest first.
    cancelled: VecDeque<String>,
}

impl Tutorial {
    /// The dialect for a connection named `connection` (sent in `connected`).
    pub fn new(connection: impl Into<String>) -> Self {
        Self {
            connection: connection.into(),
            pending: HashSet::new(),
            started: HashMap::new(),
            cancelled: VecDeque::new(),
        }
    }

    pub(super) fn open(&mut self, _now: SystemTime) -> Translated {
        let mut out = Translated::default();
        out.client(&json!({
            "jsonrpc": "2.0",
            "method": "connected",
            "params": {"connectionId": self.connection},
        }));
        out
    }

    pub(super) fn on_client(&mut self, text: &str, now: SystemTime) -> Translated {
        let mut out = Translated::default();
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(batch)) => {
                let mut forwarded = Vec::with_capacity(batch.len());
                for mut message in batch {
                    if self.client_message(&mut message, now, &mut out) {
                        forwarded.push(message);
                    }
                }
                if !forwarded.is_empty() {
                    out.session(&Value::Array(forwarded));
                }
            }
            Ok(mut message) => {
                if self.client_message(&mut message, now, &mut out) {
                    out.session(&message);
                }
            }
            // The session answers what it cannot parse, in the standard way.
            Err(_) => out.to_session.push(text.to_owned()),
        }
        out
    }

    /// Handles one message of the client; true when it goes on to the session.
    fn client_message(
        &mut self,
        message: &mut Value,
        now: SystemTime,
        out: &mut Translated,
    ) -> bool {
        let id = message.get("id").filter(|id| !id.is_null()).cloned();
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match (method.as_deref(), &id) {
            (Some("ping"), None) => {
                out.client(&json!({"jsonrpc": "2.0", "method": "pong"}));
                false
            }
            (Some("pong"), None) => false,
            (Some("cancel"), _) => {
                self.cancel(id.as_ref(), message.get("params"), out);
                false
            }
            (Some(method), Some(id)) => {
                self.pending.insert(id.to_string());
                if method == methods::TOOLS_CALL
                    && let Some(params) = message.get_mut("params").and_then(Value::as_object_mut)
                {
                    let meta = params.entry("_meta").or_insert_with(|| json!({}));
                    if let Some(meta) = meta.as_object_mut()
                        && !meta.contains_key("progressToken")
                    {
                        let token = format!("{TOKEN_PREFIX}{id}");
                        meta.insert("progressToken".to_owned(), Value::from(token.clone()));
                        self.started.insert(token, millis(now));
                    }
                }
                true
            }
            _ => true,
        }
    }

    fn cancel(&mut self, id: Option<&Value>, params: Option<&Value>, out: &mut Translated) {
        let target = params
            .and_then(|p| p.get("requestId"))
            .filter(|r| !r.is_null());
        let Some(target) = target else {
            if let Some(id) = id {
                out.client(&json!({
                    "jsonrpc": "2.0",
                    "id": id,
                    "error": {"code": crate::error_codes::INVALID_PARAMS, "message": "cancel needs params.requestId"},
                }));
            }
            return;
        };
        let key = target.to_string();
        if !self.pending.remove(&key) {
            if let Some(id) = id {
                out.client(&json!({
                    "jsonrpc": "2.0",
                    "id": id,
                    "result": {"cancelled": false, "reason": "no such request is running (it finished, or was never sent)"},
                }));
            }
            return;
        }
        out.session(&json!({
            "jsonrpc": "2.0",
            "method": methods::CANCELLED,
            "params": {"requestId": target, "reason": "cancelled by the client"},
        }));
        self.started.remove(&format!("{TOKEN_PREFIX}{key}"));
        self.cancelled.push_back(key);
        if self.cancelled.len() > CANCELLED_MEMORY {
            self.cancelled.pop_front();
        }
        if let Some(id) = id {
            out.client(&json!({"jsonrpc": "2.0", "id": id, "result": {"cancelled": true}}));
        }
        out.client(&json!({
            "jsonrpc": "2.0",
            "id": target,
            "result": {
                "content": [{"type": "text", "text": "Operation was cancelled by the client."}],
                "isError": true,
            },
        }));
    }

    pub(super) fn on_session(&mut self, text: &str, now: SystemTime) -> Translated {
        let mut out = Translated::default();
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(batch)) => {
                let kept: Vec<Value> = batch
                    .into_iter()
                    .filter_map(|m| self.session_message(m, now))
                    .collect();
                if !kept.is_empty() {
                    out.client(&Value::Array(kept));
                }
            }
            Ok(message) => {
                if let Some(message) = self.session_message(message, now) {
                    out.client(&message);
                }
            }
            Err(_) => out.to_client.push(text.to_owned()),
        }
        out
    }

    /// One message of the session as the client gets it, or `None` to drop it.
    fn session_message(&mut self, message: Value, now: SystemTime) -> Option<Value> {
        if is_response(&message) {
            let key = message.get("id").map(Value::to_string).unwrap_or_default();
            if let Some(index) = self.cancelled.iter().position(|c| *c == key) {
                // Answered before the cancel arrived; the client has its final result.
                self.cancelled.remove(index);
                return None;
            }
            self.pending.remove(&key);
            self.started.remove(&format!("{TOKEN_PREFIX}{key}"));
            return Some(message);
        }
        match message.get("method").and_then(Value::as_str) {
            Some(methods::PROGRESS) => self.progress(message, now),
            Some(methods::MESSAGE) if message.get("id").is_none() => {
                let params = message.get("params").cloned().unwrap_or(Value::Null);
                let data = params.get("data").cloned().unwrap_or(Value::Null);
                let text = match &data {
                    Value::String(s) => s.clone(),
                    other => other
                        .get("message")
                        .and_then(Value::as_str)
                        .map_or_else(|| other.to_string(), str::to_owned),
                };
                let mut out = json!({
                    "type": params.get("logger").and_then(Value::as_str).unwrap_or("system"),
                    "level": params.get("level").cloned().unwrap_or(Value::Null),
                    "message": text,
                });
                if !data.is_string() {
                    out["data"] = data;
                }
                Some(json!({"jsonrpc": "2.0", "method": "notification", "params": out}))
            }
            _ => Some(message),
        }
    }

    fn progress(&mut self, message: Value, now: SystemTime) -> Option<Value> {
        let params = message.get("params")?;
        let Some(token) = params
            .get("progressToken")
            .and_then(Value::as_str)
            .filter(|t| t.starts_with(TOKEN_PREFIX))
        else {
            return Some(message);
        };
        let key = &token[TOKEN_PREFIX.len()..];
        if self.cancelled.iter().any(|c| c == key) {
            return None;
        }
        let request_id: Value = serde_json::from_str(key).ok()?;
        let progress = params
            .get("progress")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        let total = params.get("total").and_then(Value::as_f64);
        let percentage = total
            .filter(|t| *t > 0.0)
            .map(|t| (progress / t * 100.0).round() as i64);
        // Known only for calls that started on this connection.
        let elapsed_s = self
            .started
            .get(token)
            .map(|start| millis(now).saturating_sub(*start) as f64 / 1000.0)
            .filter(|s| *s > 0.0);
        let rate = elapsed_s.filter(|_| progress > 0.0).map(|s| progress / s);
        let eta = match (rate, total) {
            (Some(rate), Some(total)) => Some(((total - progress).max(0.0) / rate).round() as u64),
            _ => None,
        };
        Some(json!({
            "jsonrpc": "2.0",
            "method": "progress",
            "params": {
                "requestId": request_id,
                "progress": params.get("progress").cloned().unwrap_or(Value::Null),
                "total": params.get("total").cloned().unwrap_or(Value::Null),
                "percentage": percentage,
                "message": params.get("message").cloned().unwrap_or(Value::Null),
                "eta": eta,
                "rate": rate.map(|r| (r * 10.0).round() / 10.0),
            },
        }))
    }
}
