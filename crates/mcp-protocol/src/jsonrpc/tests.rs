//! Classification and round-trip tests for the JSON-RPC envelope.

use expect_test::{Expect, expect};
use serde_json::json;

use super::*;

/// Parses `text` and shows the outcome in one line: the message's kind, or the error.
fn check(text: &str, expect: Expect) {
    let shown = match parse(text) {
        Err(e) => format!("parse error {}: {}", e.code, e.message),
        Ok(Incoming::Single(m)) => show(m),
        Ok(Incoming::Batch(ms)) => format!(
            "batch [{}]",
            ms.into_iter().map(show).collect::<Vec<_>>().join("; ")
        ),
    };
    expect.assert_eq(&shown);
}

fn show(m: Result<Message, InvalidMessage>) -> String {
    match m {
        Ok(Message::Request(r)) => format!("request id={} method={}", r.id, r.method),
        Ok(Message::Notification(n)) => format!("notification method={}", n.method),
        Ok(Message::Response(r)) => format!(
            "response id={} {}",
            r.id.map_or("null".to_owned(), |id| id.to_string()),
            match r.result {
                Ok(v) => format!("ok {v}"),
                Err(e) => format!("err {}", e.code),
            }
        ),
        Err(e) => format!(
            "invalid id={} {}: {}",
            e.id.map_or("null".to_owned(), |id| id.to_string()),
            e.error.code,
            e.error.message
        ),
    }
}

#[test]
fn ids_keep_their_type() {
    check(
        r#"{"jsonrpc":"2.0","id":92,"method":"ping"}"#,
        expect!["request id=92 method=ping"],
    );
    check(
        r#"{"jsonrpc":"2.0","id":"92","method":"ping"}"#,
        expect![[r#"request id="92" method=ping"#]],
    );
    assert_ne!(RequestId::from(92), RequestId::from("92"));
    for id in [json!(92), json!("92"), json!(-1), json!("")] {
        let msg = Message::from_value(json!({"jsonrpc":"2.0","id":id,"method":"m"})).unwrap();
        let back: serde_json::Value = serde_json::from_str(&msg.to_text()).unwrap();
        assert_eq!(back["id"], id);
    }
}

#[test]
fn invalid_ids() {
    check(
        r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
        expect![
            "invalid id=null -32600: invalid request: `id` must be an integer or a string of at most 256 bytes, got 1.5"
        ],
    );
    check(
        r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
        expect!["invalid id=null -32600: invalid request: a request `id` must not be null"],
    );
    check(
        r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
        expect![
            "invalid id=null -32600: invalid request: `id` must be an integer or a string of at most 256 bytes, got [1]"
        ],
    );
}

#[test]
fn envelope_errors_name_the_id() {
    check(
        r#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#,
        expect![[r#"invalid id=7 -32600: invalid request: `jsonrpc` must be "2.0", got "1.0""#]],
    );
    check(
        r#"{"id":7,"method":"ping"}"#,
        expect![[r#"invalid id=7 -32600: invalid request: missing `jsonrpc`: "2.0""#]],
    );
    check(
        r#"{"jsonrpc":"2.0","id":7,"method":5}"#,
        expect!["invalid id=7 -32600: invalid request: `method` must be a string, got 5"],
    );
    check(
        r#"{"jsonrpc":"2.0","id":7,"method":"x","params":3}"#,
        expect!["invalid id=7 -32600: invalid request: `params` must be an object, got 3"],
    );
    check(
        r#"{"jsonrpc":"2.0"}"#,
        expect![
            "invalid id=null -32600: invalid request: a message needs `method` (request or notification) or `id` (response)"
        ],
    );
    check(
        r#"42"#,
        expect!["invalid id=null -32600: invalid request: a message must be a JSON object"],
    );
}

#[test]
fn responses() {
    check(
        r#"{"jsonrpc":"2.0","id":"s1","result":{}}"#,
        expect![[r#"response id="s1" ok {}"#]],
    );
    check(
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#,
        expect!["response id=null err -32700"],
    );
    check(
        r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"x"}}"#,
        expect![
            "invalid id=1 -32600: invalid request: a response has `result` or `error`, not both"
        ],
    );
    check(
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x"}}"#,
        expect![[
            r#"invalid id=1 -32600: invalid request: malformed `error` object: invalid type: string "x", expected i64"#
        ]],
    );
    check(
        r#"{"jsonrpc":"2.0","id":null,"result":{}}"#,
        expect!["invalid id=null -32600: invalid request: a result response needs an `id`"],
    );
}

#[test]
fn parse_errors_and_batches() {
    check(
        r#"{"jsonrpc":"2.0","#,
        expect!["parse error -32700: parse error: EOF while parsing a value at line 1 column 17"],
    );
    check(
        "[]",
        expect!["invalid id=null -32600: invalid request: empty batch"],
    );
    check(
        r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"},1]"#,
        expect![
            "batch [request id=1 method=a; notification method=b; invalid id=null -32600: invalid request: a message must be a JSON object]"
        ],
    );
}

#[test]
fn round_trip() {
    let messages = [
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        json!({"jsonrpc":"2.0","id":"x","result":{"content":[]}}),
        json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"m","data":{"k":1}}}),
    ];
    for value in messages {
        let msg: Message = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(serde_json::to_value(&msg).unwrap(), value);
    }
}

/// Found by the `jsonrpc` fuzz target: without serde_json's correctly rounded float parsing,
/// a number written back (shortest form) parsed to a different float, so a value passed
/// through the server could change on the way.
#[test]
fn numbers_survive_being_written_and_read_again() {
    let text = r#"{"jsonrpc":"2.0","id":8,"error":{"code":-32601,"message":"nope","data":{"x":[1,999999999999999999999999999999999999999999999999999999999999999999999999999999992.5,0.1,1e-320]}}}"#;
    let Ok(Incoming::Single(Ok(message))) = parse(text) else {
        panic!("{text} does not parse");
    };
    let written = message.to_text();
    let Ok(Incoming::Single(Ok(again))) = parse(&written) else {
        panic!("{written} does not parse");
    };
    assert_eq!(again, message, "{written}");
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct Nested {
    outer: Inner,
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct Inner {
    a: f64,
}

#[test]
fn decode_params_names_the_field() {
    let err = decode_params::<Nested>(Some(json!({"outer":{"a":"x"}}))).unwrap_err();
    expect![[r#"invalid params: `outer.a`: invalid type: string "x", expected f64"#]]
        .assert_eq(&err.message);
    let err = decode_params::<Nested>(None).unwrap_err();
    expect!["invalid params: missing field `outer`"].assert_eq(&err.message);
}

#[test]
fn params_are_objects_and_errors_stay_short() {
    let err = decode_params::<Inner>(Some(json!([1.0]))).unwrap_err();
    expect!["invalid params: params must be an object with named fields"].assert_eq(&err.message);
    let err = decode_params::<Inner>(Some(json!({"a": "x".repeat(10_000)}))).unwrap_err();
    assert!(err.message.len() < 400, "{} bytes", err.message.len());
    assert!(err.message.ends_with('…'));
    let err = ErrorObject::method_not_found(&"é".repeat(1000));
    assert!(err.message.len() < 200);
    assert_eq!(shorten("short", 10), "short");
}

mod properties {
    //! Properties over generated input: what is written parses back to the same message,
    //! and no text whatever makes the parser or a dialect panic.

    use std::time::{Duration, UNIX_EPOCH};

    use proptest::prelude::*;
    use serde_json::Value;

    use super::super::*;
    use crate::dialect::{Dialect, Envelope, Tutorial};

    fn id() -> impl Strategy<Value = RequestId> {
        prop_oneof![
            any::<i64>().prop_map(RequestId::from),
            ".{0,12}".prop_map(RequestId::from),
        ]
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn params() -> impl Strategy<Value = Option<Value>> {
        prop::option::of(
            prop::collection::btree_map("[a-z]{1,6}", json(), 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        )
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (id(), "[a-z/]{1,20}", params())
                .prop_map(|(id, method, params)| Message::Request(Request { id, method, params })),
            ("[a-z/]{1,20}", params()).prop_map(|(method, params)| Message::Notification(
                Notification { method, params }
            )),
            (id(), json()).prop_map(|(id, result)| Message::Response(Response::ok(id, result))),
            (id(), any::<i32>(), ".{0,20}").prop_map(|(id, code, text)| Message::Response(
                Response::error(Some(id), ErrorObject::new(i64::from(code), text))
            )),
        ]
    }

    proptest! {
        #[test]
        fn a_written_message_parses_back_to_itself(message in message()) {
            let text = message.to_text();
            match parse(&text) {
                Ok(Incoming::Single(Ok(parsed))) => prop_assert_eq!(parsed, message),
                other => prop_assert!(false, "{text} parsed as {other:?}"),
            }
        }

        #[test]
        fn no_text_makes_the_parser_panic(text in ".{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn no_json_makes_the_parser_panic(value in json()) {
            let _ = parse(&value.to_string());
        }

        #[test]
        fn no_input_makes_a_dialect_panic(
            from_client in prop::collection::vec(prop_oneof![".{0,80}", json().prop_map(|v| v.to_string())], 0..8),
            from_session in prop::collection::vec(prop_oneof![".{0,80}", json().prop_map(|v| v.to_string())], 0..8),
        ) {
            let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
            for mut dialect in [
                Dialect::Envelope(Envelope::new("c", "0123456789abcdef0123456789abcdef", None)),
                Dialect::Tutorial(Tutorial::new("c")),
            ] {
                dialect.open(now);
                for (a, b) in from_client.iter().zip(from_session.iter()) {
                    dialect.on_client(a, now);
                    dialect.on_session(b, now);
                }
            }
        }
    }
}

#[test]
fn decode_str_reads_in_one_pass_and_names_the_wrong_field() {
    #[derive(Debug, serde::Deserialize)]
    struct Call {
        request: Inner,
    }
    #[derive(Debug, serde::Deserialize)]
    struct Inner {
        method: String,
    }
    let call: Call = super::decode_str(r#"{"request":{"method":"add"}}"#).unwrap();
    assert_eq!(call.request.method, "add");
    let error = super::decode_str::<Call>(r#"{"request":{"method":7}}"#).unwrap_err();
    assert!(
        error.starts_with("`request.method`: invalid type"),
        "{error}"
    );
    let error = super::decode_str::<Call>("nonsense").unwrap_err();
    assert!(!error.starts_with('`'), "{error}");
}

#[test]
fn nesting_is_counted_outside_strings_only() {
    use super::{MAX_DEPTH, nests_deeper, parse};
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert!(!nests_deeper(nested(64).as_bytes(), 64));
    assert!(nests_deeper(nested(65).as_bytes(), 64));
    // Brackets in strings, escaped quotes included, are text.
    let text = format!(
        r#"{{"a":"{}\"{}","b":[[1]]}}"#,
        "[".repeat(100),
        "{".repeat(100)
    );
    assert!(!nests_deeper(text.as_bytes(), 3));
    assert!(nests_deeper(text.as_bytes(), 2));
    // Unbalanced closers never go below zero.
    assert!(!nests_deeper(b"]]]]{}", 1));
    // A message: 64 levels are served, 65 refused with -32600 and the limit.
    let message = |depth: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"v":{}}}}}"#,
            nested(depth - 2)
        )
    };
    assert!(parse(&message(MAX_DEPTH)).is_ok());
    let error = parse(&message(MAX_DEPTH + 1)).unwrap_err();
    assert_eq!(error.code, super::error_codes::INVALID_REQUEST);
    assert_eq!(error.data.unwrap()["maxDepth"], MAX_DEPTH);
    assert!(super::decode_str::<serde_json::Value>(&message(MAX_DEPTH + 1)).is_err());
}

#[test]
fn a_long_id_is_refused_without_being_echoed() {
    let id = "i".repeat(1 << 20);
    let message = json!({"jsonrpc": "2.0", "id": id, "method": "ping"});
    let refused = Message::from_value(message).unwrap_err();
    assert_eq!(refused.id, None, "a refused id is not echoed");
    assert_eq!(refused.error.code, error_codes::INVALID_REQUEST);
    assert!(
        refused.error.message.len() < 300,
        "{}",
        refused.error.message
    );
    assert_eq!(
        refused.error.data.unwrap()["maxIdBytes"],
        super::MAX_ID_BYTES
    );
    let longest = "i".repeat(super::MAX_ID_BYTES);
    let message = json!({"jsonrpc": "2.0", "id": longest, "method": "ping"});
    assert!(Message::from_value(message).is_ok());
}
