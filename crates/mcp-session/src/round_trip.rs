//! Multi-round-trip requests (SEP-2322): how a modern request gets what a tool asks of its
//! client.
//!
//! A modern request cannot wait for the client. A tool call's requests to the client go to a
//! [`RoundTrip`]: one the client already answered (in this retry's `inputResponses`, or in
//! an earlier round's, carried in `requestState`) is answered at once; the first that is not
//! stops the call, and the client gets every request asked so far as one input-required
//! result. It answers them by retrying its request with `inputResponses` and the
//! `requestState` it was given; the call then runs again from the start.
//!
//! `requestState` is the server's, passing through the client: a MAC (HMAC-SHA256 under the
//! server's key) makes it tamper-proof, and it is bound to the principal, the method and
//! its target (tool or prompt name, resource URI, arguments), and expires, so that a state
//! cannot be replayed by someone else, on another request, or later.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_protocol::modern::{self, RequestMeta};
use mcp_protocol::{ErrorObject, methods};
use ring::{digest, hmac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Notify;

/// The server's key for `requestState`.
pub(crate) struct StateKey(hmac::Key);

impl StateKey {
    /// The key of `secret` (32 bytes or more, from the server's key file), or a random one
    /// when there is none (states then do not outlive the process).
    pub(crate) fn new(secret: Option<&[u8]>) -> Self {
        let random;
        let secret = match secret {
            Some(secret) => secret,
            None => {
                let mut bytes = [0u8; 32];
                if let Err(e) = getrandom::fill(&mut bytes) {
                    tracing::error!(error = %e, "no randomness for the request-state key");
                }
                random = bytes;
                &random
            }
        };
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }
}

/// What `requestState` carries.
#[derive(Serialize, Deserialize)]
struct State {
    /// The principal it was given to.
    p: String,
    /// The method and the digest of its target.
    m: String,
    d: String,
    /// When it expires, in milliseconds since the epoch.
    x: u64,
    /// The answers of the earlier rounds.
    r: Map<String, Value>,
}

/// The largest `requestState` this server makes or reads: the answers it carries are
/// bounded by it.
const MAX_STATE: usize = 256 * 1024;

/// What a modern request brings to a round: the answers it has.
#[derive(Debug)]
pub(crate) struct Round {
    answers: Map<String, Value>,
    /// Its method and target, which a state must match.
    method: String,
    digest: String,
}

impl Round {
    /// Takes `inputResponses` and `requestState` out of a request's `params` and reads
    /// them: -32602 when they are malformed, or the state is not one this server gave this
    /// principal for this request, or it expired.
    pub(crate) fn read(
        key: &StateKey,
        principal: &str,
        method: &str,
        params: &mut Option<Value>,
    ) -> Result<Self, ErrorObject> {
        let invalid = |detail: &str| ErrorObject::invalid_params(detail);
        let object = params.as_mut().and_then(Value::as_object_mut);
        let (responses, state) = match object {
            Some(p) => (p.remove("inputResponses"), p.remove("requestState")),
            None => (None, None),
        };
        let digest = target_digest(method, params.as_ref());
        let mut answers = match state {
            None | Some(Value::Null) => Map::new(),
            Some(Value::String(text)) => open(key, &text, principal, method, &digest)?,
            Some(_) => return Err(invalid("`requestState` must be the string the server gave")),
        };
        match responses {
            None | Some(Value::Null) => {}
            Some(Value::Object(responses)) => {
                for (k, v) in responses {
                    if !v.is_object() {
                        return Err(invalid(&format!(
                            "`inputResponses.{}` must be the result object of its input request",
                            mcp_protocol::shorten(&k, 60)
                        )));
                    }
                    answers.insert(k, v);
                }
            }
            Some(_) => {
                return Err(invalid(
                    "`inputResponses` must be an object of results, by the keys of `inputRequests`",
                ));
            }
        }
        Ok(Self {
            answers,
            method: method.to_owned(),
            digest,
        })
    }
}

/// The digest of what a state is bound to: the method, and its params but `_meta`.
fn target_digest(method: &str, params: Option<&Value>) -> String {
    let mut params = params.cloned().unwrap_or(Value::Null);
    if let Some(p) = params.as_object_mut() {
        p.remove("_meta");
    }
    // Object keys are sorted (serde_json's map), so the text is canonical.
    let text = format!("{method}\n{params}");
    let d = digest::digest(&digest::SHA256, text.as_bytes());
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seals a state: `{payload}.{mac}`, both Base64url.
fn seal(key: &StateKey, state: &State) -> Result<String, ErrorObject> {
    let payload = serde_json::to_vec(state).map_err(ErrorObject::internal)?;
    let payload = URL_SAFE_NO_PAD.encode(payload);
    let tag = hmac::sign(&key.0, payload.as_bytes());
    let text = format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    if text.len() > MAX_STATE {
        return Err(ErrorObject::invalid_params(format_args!(
            "the answers of this request's rounds exceed {MAX_STATE} bytes: start it again"
        )));
    }
    Ok(text)
}

/// Opens a state this server sealed, for `principal`'s request `method` on `digest`.
fn open(
    key: &StateKey,
    text: &str,
    principal: &str,
    method: &str,
    digest: &str,
) -> Result<Map<String, Value>, ErrorObject> {
    let invalid = |why: &str| {
        ErrorObject::invalid_params(format_args!(
            "`requestState` is not valid: {why}; send the request again without it"
        ))
    };
    if text.len() > MAX_STATE {
        return Err(invalid("it is larger than any this server gives"));
    }
    let (payload, tag) = text
        .split_once('.')
        .ok_or_else(|| invalid("it is malformed"))?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| invalid("it is malformed"))?;
    hmac::verify(&key.0, payload.as_bytes(), &tag)
        .map_err(|_| invalid("it was not made by this server, or it was changed"))?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| invalid("it is malformed"))?;
    let state: State = serde_json::from_slice(&payload).map_err(|_| invalid("it is malformed"))?;
    if state.p != principal {
        return Err(invalid("it was given to another principal"));
    }
    if state.m != method || state.d != digest {
        return Err(invalid("it was given for another request"));
    }
    if state.x <= now_ms() {
        return Err(invalid("it expired"));
    }
    Ok(state.r)
}

/// What a call asked of its client in one round.
#[derive(Default)]
struct Asked {
    /// The requests not answered yet, by key.
    requests: Map<String, Value>,
    /// A capability it asked for that the client did not declare.
    missing: Option<String>,
}

/// A modern call's way to its client (the [`mcp_tools::ClientSink`] of a modern request).
pub(crate) struct RoundTrip {
    meta: Arc<RequestMeta>,
    round: Round,
    asked: Mutex<Asked>,
    /// Fires once the call asked for something it cannot have in this round.
    stop: Notify,
}

impl RoundTrip {
    pub(crate) fn new(meta: Arc<RequestMeta>, round: Round) -> Arc<Self> {
        Arc::new(Self {
            meta,
            round,
            asked: Mutex::default(),
            stop: Notify::new(),
        })
    }

    /// Completes once the call must stop: it asked for what this round does not have.
    pub(crate) async fn stopped(&self) {
        self.stop.notified().await;
    }

    /// Every answer the client gave so far (this retry's and the earlier rounds').
    pub(crate) fn answers(&self) -> Map<String, Value> {
        self.round.answers.clone()
    }

    /// The capability the call asked for that the client did not declare, if it did.
    pub(crate) fn missing(&self) -> Option<String> {
        let asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
        asked.missing.clone()
    }

    /// What the client is told when the call stopped: -32021 for a capability it lacks,
    /// otherwise the input-required result (its requests, and the state of the round).
    pub(crate) fn input_required(
        &self,
        key: &StateKey,
        principal: &str,
        ttl: Duration,
    ) -> Result<Value, ErrorObject> {
        let asked = std::mem::take(&mut *self.asked.lock().unwrap_or_else(PoisonError::into_inner));
        if let Some(capability) = asked.missing {
            return Err(modern::missing_capability(&capability));
        }
        let state = State {
            p: principal.to_owned(),
            m: self.round.method.clone(),
            d: self.round.digest.clone(),
            x: now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
            r: self.round.answers.clone(),
        };
        let mut result = Map::new();
        result.insert("resultType".to_owned(), Value::from("input_required"));
        result.insert("inputRequests".to_owned(), Value::Object(asked.requests));
        result.insert("requestState".to_owned(), Value::from(seal(key, &state)?));
        Ok(Value::Object(result))
    }
}

impl mcp_tools::ClientSink for RoundTrip {
    fn supports(&self, capability: &str) -> bool {
        self.meta.declares(capability)
    }

    fn unsupported(&self, capability: &str) {
        let mut asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
        asked.missing.get_or_insert_with(|| capability.to_owned());
        drop(asked);
        self.stop.notify_one();
    }

    fn request(
        &self,
        key: &str,
        method: &str,
        params: Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, String>> + Send>> {
        if let Some(answer) = self.round.answers.get(key) {
            let answer = answer.clone();
            return Box::pin(async move { Ok(answer) });
        }
        let request = serde_json::json!({"method": method, "params": params});
        let mut asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
        asked.requests.insert(key.to_owned(), request);
        drop(asked);
        // The call stops here; what else it asks before it is stopped goes out with this.
        self.stop.notify_one();
        Box::pin(std::future::pending())
    }
}

/// Whether `method` may answer with an input-required result (SEP-2322): only these.
pub(crate) fn may_require_input(method: &str) -> bool {
    matches!(
        method,
        methods::TOOLS_CALL | methods::PROMPTS_GET | methods::RESOURCES_READ
    )
}

#[cfg(test)]
mod tests;
