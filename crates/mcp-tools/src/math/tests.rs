//! The math tools through the registry, as a client sees them.

use expect_test::{Expect, expect};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{ToolContext, ToolRegistry};

async fn check(tool: &str, args: Value, expect: Expect) {
    let registry = ToolRegistry::builtin(&crate::ToolsConfig::default());
    let Value::Object(args) = args else {
        panic!("arguments must be an object")
    };
    let call = registry
        .call(tool, args, ToolContext::new(CancellationToken::new()))
        .expect("tool exists");
    let result = call.await;
    expect.assert_eq(&serde_json::to_string(&result).unwrap());
}

#[tokio::test]
async fn operations() {
    check("add", json!({"a": 5, "b": 3}), expect![[r#"{"content":[{"type":"text","text":"{\"result\":8,\"operation\":\"add\",\"a\":5,\"b\":3}"}],"structuredContent":{"a":5,"b":3,"operation":"add","result":8}}"#]]).await;
    check("subtract", json!({"a": 5, "b": 7.5}), expect![[r#"{"content":[{"type":"text","text":"{\"result\":-2.5,\"operation\":\"subtract\",\"a\":5,\"b\":7.5}"}],"structuredContent":{"a":5,"b":7.5,"operation":"subtract","result":-2.5}}"#]]).await;
    check("multiply", json!({"a": -4, "b": 2.5}), expect![[r#"{"content":[{"type":"text","text":"{\"result\":-10,\"operation\":\"multiply\",\"a\":-4,\"b\":2.5}"}],"structuredContent":{"a":-4,"b":2.5,"operation":"multiply","result":-10}}"#]]).await;
    check("divide", json!({"a": 1, "b": 4}), expect![[r#"{"content":[{"type":"text","text":"{\"result\":0.25,\"operation\":\"divide\",\"a\":1,\"b\":4}"}],"structuredContent":{"a":1,"b":4,"operation":"divide","result":0.25}}"#]]).await;
    check("power", json!({"a": 2, "b": 10}), expect![[r#"{"content":[{"type":"text","text":"{\"result\":1024,\"operation\":\"power\",\"a\":2,\"b\":10}"}],"structuredContent":{"a":2,"b":10,"operation":"power","result":1024}}"#]]).await;
    check("modulo", json!({"a": -7, "b": 3}), expect![[r#"{"content":[{"type":"text","text":"{\"result\":-1,\"operation\":\"modulo\",\"a\":-7,\"b\":3}"}],"structuredContent":{"a":-7,"b":3,"operation":"modulo","result":-1}}"#]]).await;
    check("sqrt", json!({"a": 2}), expect![[r#"{"content":[{"type":"text","text":"{\"result\":1.4142135623730951,\"operation\":\"sqrt\",\"a\":2}"}],"structuredContent":{"a":2,"operation":"sqrt","result":1.4142135623730951}}"#]]).await;
}

#[tokio::test]
async fn failures_are_error_results() {
    check("divide", json!({"a": 1, "b": 0}), expect![[r#"{"content":[{"type":"text","text":"division by zero: cannot divide 1 by 0"}],"isError":true}"#]]).await;
    check("modulo", json!({"a": 1, "b": 0}), expect![[r#"{"content":[{"type":"text","text":"modulo by zero: 1 mod 0 is undefined"}],"isError":true}"#]]).await;
    check("sqrt", json!({"a": -4}), expect![[r#"{"content":[{"type":"text","text":"square root of a negative number: -4 has no real square root"}],"isError":true}"#]]).await;
    check("power", json!({"a": 10, "b": 400}), expect![[r#"{"content":[{"type":"text","text":"the result of 10 ^ 400 is not a finite number (it overflows or is undefined)"}],"isError":true}"#]]).await;
    check("power", json!({"a": -8, "b": 0.5}), expect![[r#"{"content":[{"type":"text","text":"the result of -8 ^ 0.5 is not a finite number (it overflows or is undefined)"}],"isError":true}"#]]).await;
    check("multiply", json!({"a": 1e308, "b": 10}), expect![[r#"{"content":[{"type":"text","text":"the result of 100000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000 * 10 is not a finite number (it overflows or is undefined)"}],"isError":true}"#]]).await;
}

#[tokio::test]
async fn invalid_arguments_are_error_results() {
    check("add", json!({"a": 5}), expect![[r#"{"content":[{"type":"text","text":"invalid arguments for tool `add`: missing field `b`"}],"isError":true}"#]]).await;
    check("add", json!({"a": "5", "b": 3}), expect![[r#"{"content":[{"type":"text","text":"invalid arguments for tool `add`: `a`: invalid type: string \"5\", expected f64"}],"isError":true}"#]]).await;
    check("sqrt", json!({"a": 1, "b": 2}), expect![[r#"{"content":[{"type":"text","text":"invalid arguments for tool `sqrt`: `b`: unknown field `b`, expected `a`"}],"isError":true}"#]]).await;
    check("sleep", json!({"ms": 300_001}), expect![[r#"{"content":[{"type":"text","text":"invalid arguments for tool `sleep`: `ms` is 300001, more than the limit of 300000 ms"}],"isError":true}"#]]).await;
}
