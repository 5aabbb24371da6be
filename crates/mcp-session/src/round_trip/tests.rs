//! Rounds of a modern request: what a call asks is collected, what was answered is given,
//! and a `requestState` opens only for the principal and request it was made for.

use std::sync::Arc;
use std::time::Duration;

use mcp_protocol::modern::RequestMeta;
use mcp_tools::ClientSink as _;
use serde_json::{Value, json};

use super::*;

fn meta(capabilities: Value) -> Arc<RequestMeta> {
    let params = json!({"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities,
    }});
    Arc::new(RequestMeta::read(Some(&params)).unwrap())
}

fn call(extra: Value) -> Option<Value> {
    let mut params = json!({"name": "t", "arguments": {"a": 1}, "_meta": {"progressToken": 1}});
    if let (Some(p), Value::Object(extra)) = (params.as_object_mut(), extra) {
        p.extend(extra);
    }
    Some(params)
}

const TTL: Duration = Duration::from_secs(60);

/// A first round that asked `asked`: its input-required result.
async fn first_round(key: &StateKey, principal: &str) -> Value {
    let round = Round::read(key, principal, "tools/call", &mut call(json!({}))).unwrap();
    let rt = RoundTrip::new(meta(json!({"elicitation": {}})), round);
    let asked = rt.request("name", "elicitation/create", json!({"message": "?"}));
    tokio::pin!(asked);
    assert!(
        futures_poll(&mut asked).is_none(),
        "an unanswered request waits"
    );
    rt.stopped().await;
    rt.input_required(key, principal, TTL).unwrap()
}

fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    match std::pin::Pin::new(f).poll(&mut std::task::Context::from_waker(waker)) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

#[tokio::test]
async fn what_a_call_asks_becomes_an_input_required_result_and_its_answer_comes_back() {
    let key = StateKey::new(Some(b"0123456789abcdef0123456789abcdef"));
    let result = first_round(&key, "alice").await;
    assert_eq!(result["resultType"], "input_required");
    assert_eq!(
        result["inputRequests"],
        json!({"name": {"method": "elicitation/create", "params": {"message": "?"}}})
    );
    let state = result["requestState"].as_str().unwrap().to_owned();
    // The retry brings the answer and the state: the same request is answered at once.
    let mut params = call(json!({
        "inputResponses": {"name": {"action": "accept", "content": {"n": "x"}}},
        "requestState": state,
    }));
    let round = Round::read(&key, "alice", "tools/call", &mut params).unwrap();
    assert!(
        params.as_ref().unwrap().get("requestState").is_none(),
        "taken out of the params"
    );
    let rt = RoundTrip::new(meta(json!({"elicitation": {}})), round);
    let mut answer = rt.request("name", "elicitation/create", json!({"message": "?"}));
    assert_eq!(
        futures_poll(&mut answer),
        Some(Ok(json!({"action": "accept", "content": {"n": "x"}})))
    );
    // A second round carries the first round's answers on in its state.
    let mut next = rt.request("next", "elicitation/create", json!({}));
    assert!(futures_poll(&mut next).is_none());
    let second = rt.input_required(&key, "alice", TTL).unwrap();
    let mut params = call(json!({"requestState": second["requestState"]}));
    let round = Round::read(&key, "alice", "tools/call", &mut params).unwrap();
    assert!(round.answers.contains_key("name"));
}

#[tokio::test]
async fn a_state_opens_only_unchanged_for_its_principal_and_request_before_it_expires() {
    let key = StateKey::new(Some(b"0123456789abcdef0123456789abcdef"));
    let result = first_round(&key, "alice").await;
    let state = result["requestState"].as_str().unwrap();
    let read = |principal: &str, params: Value, state: &str| {
        let mut params = call(params);
        params.as_mut().unwrap()["requestState"] = Value::from(state);
        Round::read(&key, principal, "tools/call", &mut params).map(|_| ())
    };
    assert!(read("alice", json!({}), state).is_ok());
    // Another principal, other arguments, a changed state, another server's key.
    let refused = [
        read("mallory", json!({}), state),
        read("alice", json!({"arguments": {"a": 2}}), state),
        read("alice", json!({}), &state.replacen('.', "x.", 1)),
        read("alice", json!({}), "not a state"),
    ];
    for error in refused {
        let error = error.unwrap_err();
        assert_eq!(error.code, -32602);
        assert!(error.message.contains("requestState"), "{}", error.message);
    }
    let other = StateKey::new(None);
    let mut params = call(json!({"requestState": state}));
    assert!(Round::read(&other, "alice", "tools/call", &mut params).is_err());
    // An expired one.
    let round = Round::read(&key, "alice", "tools/call", &mut call(json!({}))).unwrap();
    let rt = RoundTrip::new(meta(json!({})), round);
    let expired = rt.input_required(&key, "alice", Duration::ZERO).unwrap();
    let error = read(
        "alice",
        json!({}),
        expired["requestState"].as_str().unwrap(),
    )
    .unwrap_err();
    assert!(error.message.contains("expired"), "{}", error.message);
}

#[tokio::test]
async fn malformed_responses_are_invalid_params_and_an_undeclared_capability_is_32021() {
    let key = StateKey::new(None);
    for bad in [
        json!({"inputResponses": [1]}),
        json!({"inputResponses": {"k": 3}}),
        json!({"requestState": 5}),
    ] {
        let error = Round::read(&key, "a", "tools/call", &mut call(bad.clone())).unwrap_err();
        assert_eq!(error.code, -32602, "{bad}");
    }
    let round = Round::read(&key, "a", "tools/call", &mut call(json!({}))).unwrap();
    let rt = RoundTrip::new(meta(json!({})), round);
    assert!(!rt.supports("sampling"));
    rt.unsupported("sampling");
    rt.stopped().await;
    let error = rt.input_required(&key, "a", TTL).unwrap_err();
    assert_eq!(error.code, -32021);
    assert_eq!(
        error.data.unwrap()["requiredCapabilities"],
        json!({"sampling": {}})
    );
}
