//! What a POST body is taken for, read without building it.

use hyper::body::Bytes;
use mcp_protocol::RequestId;

use super::{Post, PostError};

fn post(text: &str) -> Post {
    Post::parse(Bytes::from(text.to_owned())).unwrap()
}

#[test]
fn a_request_gives_its_id_and_progress_token_as_the_session_reads_them() {
    let body = r#"{"jsonrpc":"2.0","id":"a\u0062","method":"tools/call","params":{"name":"add","_meta":{"progressToken":7}}}"#;
    let p = post(body);
    let m = &p.messages()[0];
    assert_eq!(m.method.as_deref(), Some("tools/call"));
    // As the session reads it, whatever the client's escapes.
    assert_eq!(
        m.id.as_ref().unwrap(),
        &Some(RequestId::String("ab".to_owned()))
    );
    assert_eq!(m.progress_token, Some(RequestId::Number(7)));
    assert!(!p.is_agent_request());
    // The text goes to the session as it came.
    assert_eq!(p.text(), body);
}

#[test]
fn notifications_responses_and_null_ids_are_no_requests() {
    let p = post(
        r#"[{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}},{"jsonrpc":"2.0","id":4,"result":{}},{"jsonrpc":"2.0","id":null,"method":"ping"},17]"#,
    );
    assert!(p.messages().iter().all(|m| matches!(m.id, Ok(None))));
    assert_eq!(p.messages()[0].cancels, Some(RequestId::Number(3)));
    // Something that is no message at all is the session's to answer.
    assert_eq!(p.messages().len(), 4);
}

#[test]
fn the_seeds_agent_api_is_told_apart() {
    assert!(post(r#"{"agentId":"x","request":{"method":"add"}}"#).is_agent_request());
    assert!(!post(r#"{"jsonrpc":"2.0","agentId":"x","method":"ping","id":1}"#).is_agent_request());
    assert!(!post(r#"[{"agentId":"x"}]"#).is_agent_request());
    // An array is a batch, never read as one message by position.
    let batch = post(r#"["tools/call", 5]"#);
    assert!(
        batch
            .messages()
            .iter()
            .all(|m| m.method.is_none() && matches!(m.id, Ok(None)))
    );
}

#[test]
fn a_body_that_is_not_json_is_refused_with_where() {
    let error = Post::parse(Bytes::from_static(b"{\"id\": 1,")).unwrap_err();
    assert!(matches!(error, PostError::NotJson(_)));
    assert!(error.to_string().contains("line 1"), "{error}");
    assert!(Post::parse(Bytes::from_static(b"\xff\xfe")).is_err());
}

#[test]
fn an_id_that_is_neither_integer_nor_string_is_unroutable_with_the_sessions_error() {
    for body in [
        r#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":[1],"method":"ping"}]"#,
    ] {
        let p = post(body);
        let error = p
            .messages()
            .iter()
            .find_map(|m| m.id.as_ref().err())
            .unwrap_or_else(|| panic!("{body} has no unroutable id"));
        assert_eq!(error.0.code, -32600);
        assert!(
            error.0.message.contains("must be an integer or a string"),
            "{error:?}"
        );
    }
}
