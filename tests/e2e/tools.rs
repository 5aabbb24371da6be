//! The math tools over a real socket.

use serde_json::{Value, json};

use crate::support::{Client, TestServer};

#[tokio::test]
async fn lists_every_tool_with_schemas() {
    let server = TestServer::start().await;
    let mut client = Client::initialized(&server).await;
    let response = client
        .request(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    let tools = response["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    for required in [
        "add", "subtract", "multiply", "divide", "power", "sqrt", "modulo",
    ] {
        assert!(
            names.contains(&required),
            "{required} missing from {names:?}"
        );
    }
    for tool in tools {
        assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
        assert_eq!(tool["outputSchema"]["type"], "object", "{tool}");
    }
    assert!(response["result"].get("nextCursor").is_none());
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn every_math_tool() {
    let server = TestServer::start().await;
    let mut client = Client::initialized(&server).await;
    let cases = [
        ("add", json!({"a": 5, "b": 3}), json!(8)),
        ("subtract", json!({"a": 5, "b": 3}), json!(2)),
        ("multiply", json!({"a": 5, "b": -3}), json!(-15)),
        ("divide", json!({"a": 7, "b": 2}), json!(3.5)),
        ("power", json!({"a": 2, "b": -1}), json!(0.5)),
        ("modulo", json!({"a": 7.5, "b": 2}), json!(1.5)),
        ("sqrt", json!({"a": 81}), json!(9)),
    ];
    for (i, (tool, args, expected)) in cases.into_iter().enumerate() {
        let result = client.call(i as i64, tool, args.clone()).await;
        assert!(result.get("isError").is_none(), "{tool}: {result}");
        let structured = &result["structuredContent"];
        assert_eq!(structured["result"], expected, "{tool}: {result}");
        assert_eq!(structured["operation"], tool);
        assert_eq!(structured["a"], args["a"]);
        assert_eq!(structured.get("b"), args.get("b"));
        let text: Value =
            serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(
            &text, structured,
            "the text content carries the same result"
        );
    }
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn math_errors_are_error_results() {
    let server = TestServer::start().await;
    let mut client = Client::initialized(&server).await;
    let cases = [
        ("divide", json!({"a": 1, "b": 0}), "division by zero"),
        ("modulo", json!({"a": 1, "b": 0}), "modulo by zero"),
        ("sqrt", json!({"a": -9}), "negative"),
        ("power", json!({"a": 10, "b": 1000}), "not a finite number"),
        (
            "multiply",
            json!({"a": 1e200, "b": 1e200}),
            "not a finite number",
        ),
        ("add", json!({"a": 1}), "missing field `b`"),
        ("add", json!({"a": "1", "b": 2}), "`a`"),
        ("sqrt", json!({}), "missing field `a`"),
    ];
    for (i, (tool, args, mentions)) in cases.into_iter().enumerate() {
        let result = client.call(i as i64, tool, args).await;
        assert_eq!(result["isError"], true, "{tool}: {result}");
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(
            text.contains(mentions),
            "{tool}: `{text}` does not mention `{mentions}`"
        );
    }
    // After all that, the session still works.
    assert_eq!(
        client.call(99, "add", json!({"a": 5, "b": 3})).await["structuredContent"]["result"],
        8
    );
    drop(client);
    server.shutdown().await;
}
