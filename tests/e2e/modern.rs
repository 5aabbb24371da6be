//! MCP 2026-07-28 over Streamable HTTP: requests with no session, each carrying its revision
//! and its client's capabilities in `_meta` and mirrored in headers; discovery, complete
//! results, progress on the request's own stream, a closed stream that cancels, and the
//! revision's refusals.

use mcp_server::Config;
use serde_json::{Value, json};

use crate::client_requests::with_fixtures;
use crate::streamable::{ACCEPT_BOTH, Sse, header, json_of, send};
use crate::support::{TestServer, metric, metrics, wait_for_metric};

const REVISION: &str = "2026-07-28";

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": REVISION,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"}
    })
}

/// A modern request `method` with `params` (given `_meta` is kept, else [`meta`]), its
/// headers mirrored as the binding says; `headers` adds or replaces some.
pub(crate) async fn request(
    server: &TestServer,
    id: i64,
    method: &str,
    mut params: Value,
    headers: &[(&str, &str)],
) -> hyper::Response<hyper::body::Incoming> {
    if params.get("_meta").is_none() {
        params["_meta"] = meta();
    }
    let name = params
        .get("name")
        .or_else(|| params.get("uri"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut all: Vec<(&str, &str)> = vec![
        ("Content-Type", "application/json"),
        ("Accept", ACCEPT_BOTH),
        ("MCP-Protocol-Version", REVISION),
        ("Mcp-Method", method),
    ];
    if let Some(name) = &name {
        all.push(("Mcp-Name", name));
    }
    for (key, value) in headers {
        all.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        all.push((key, value));
    }
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    send(server, "POST", &all, Some(body)).await
}

#[tokio::test]
async fn a_modern_client_discovers_lists_and_calls_without_a_session() {
    let server = TestServer::start().await;
    let response = request(&server, 1, "server/discover", json!({}), &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "mcp-session-id"),
        "",
        "no session is minted"
    );
    let discover = json_of(response).await;
    let result = &discover["result"];
    assert_eq!(result["resultType"], "complete", "{discover}");
    assert_eq!(result["supportedVersions"][0], REVISION, "{discover}");
    assert!(result["capabilities"]["tools"].is_object(), "{discover}");
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcp-server"
    );
    let list = json_of(request(&server, 2, "tools/list", json!({}), &[]).await).await;
    assert_eq!(list["result"]["resultType"], "complete");
    assert!(list["result"]["ttlMs"].as_u64().is_some(), "{list}");
    assert_eq!(list["result"]["cacheScope"], "public", "{list}");
    let params = json!({"name": "add", "arguments": {"a": 2, "b": 3}});
    let call = json_of(request(&server, 3, "tools/call", params, &[]).await).await;
    assert_eq!(call["id"], 3);
    assert_eq!(call["result"]["resultType"], "complete", "{call}");
    assert_eq!(call["result"]["structuredContent"]["result"], 5.0, "{call}");
    // Counted like any request.
    let text = metrics(&server).await;
    for counted in [
        r#"mcp_requests_total{method="tools/call",outcome="ok"} 1"#,
        r#"mcp_requests_total{method="tools/list",outcome="ok"} 1"#,
    ] {
        assert!(text.contains(counted), "{counted} not in\n{text}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn progress_flows_on_the_request_s_own_stream_and_closing_it_cancels_the_call() {
    let server = TestServer::start().await;
    let mut meta = meta();
    meta["progressToken"] = json!("p");
    let params = json!({"name": "sleep", "arguments": {"ms": 400}, "_meta": meta.clone()});
    let mut stream = Sse::new(request(&server, 1, "tools/call", params, &[]).await);
    let mut progressed = false;
    let answer = loop {
        let message = stream.message().await;
        if message.get("id").is_some() {
            break message;
        }
        assert_eq!(message["method"], "notifications/progress", "{message}");
        assert_eq!(message["params"]["progressToken"], "p", "{message}");
        progressed = true;
    };
    assert!(progressed, "a call of 400 ms reports progress first");
    assert_eq!(answer["result"]["resultType"], "complete", "{answer}");
    assert!(
        stream.next().await.is_none(),
        "the stream ends with its answer"
    );
    // A client that closes the stream cancels the call: nothing stays in flight.
    let params = json!({"name": "sleep", "arguments": {"ms": 300_000}, "_meta": meta});
    // Its response starts as a stream while it runs, before it has anything to say.
    let stream = Sse::new(request(&server, 2, "tools/call", params, &[]).await);
    assert_eq!(
        metric(&metrics(&server).await, "mcp_inflight_requests"),
        1.0
    );
    drop(stream);
    wait_for_metric(&server, "mcp_inflight_requests", 0.0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_revision_s_refusals_carry_their_codes_and_statuses() {
    let server = TestServer::start().await;
    // No `_meta`: -32602, 400.
    let response = request(&server, 1, "tools/list", json!({"_meta": {}}), &[]).await;
    assert_eq!(response.status(), 400);
    let refusal = json_of(response).await;
    assert_eq!(
        (refusal["id"].clone(), refusal["error"]["code"].clone()),
        (json!(1), json!(-32602))
    );
    // A revision the server does not speak: -32022 naming what it does.
    let mut unknown = meta();
    unknown["io.modelcontextprotocol/protocolVersion"] = json!("1999-01-01");
    let params = json!({"_meta": unknown});
    let response = request(
        &server,
        2,
        "tools/list",
        params,
        &[("MCP-Protocol-Version", "1999-01-01")],
    )
    .await;
    assert_eq!(response.status(), 400);
    let refusal = json_of(response).await;
    assert_eq!(refusal["error"]["code"], -32022, "{refusal}");
    assert_eq!(refusal["error"]["data"]["requested"], "1999-01-01");
    assert_eq!(refusal["error"]["data"]["supported"][0], REVISION);
    // Headers that say otherwise than the body: -32020.
    for headers in [
        [("MCP-Protocol-Version", "2025-11-25")],
        [("Mcp-Method", "tools/list")],
        [("Mcp-Name", "subtract")],
    ] {
        let params = json!({"name": "add", "arguments": {"a": 1, "b": 1}});
        let response = request(&server, 3, "tools/call", params, &headers).await;
        assert_eq!(response.status(), 400, "{headers:?}");
        let refusal = json_of(response).await;
        assert_eq!(refusal["error"]["code"], -32020, "{headers:?}: {refusal}");
    }
    // A name outside plain ASCII travels Base64-encoded, and is decoded before comparing.
    let params = json!({"name": "add", "arguments": {"a": 1, "b": 1}});
    let encoded = [("Mcp-Name", "=?base64?YWRk?=")];
    let answer = json_of(request(&server, 4, "tools/call", params, &encoded).await).await;
    assert_eq!(answer["result"]["resultType"], "complete", "{answer}");
    // Methods of the `initialize` era, and unknown ones: 404 with -32601.
    for method in [
        "initialize",
        "ping",
        "logging/setLevel",
        "resources/subscribe",
        "no/such",
    ] {
        let response = request(&server, 5, method, json!({}), &[]).await;
        assert_eq!(response.status(), 404, "{method}");
        let refusal = json_of(response).await;
        assert_eq!(refusal["error"]["code"], -32601, "{method}: {refusal}");
        assert_eq!(refusal["id"], 5);
    }
    // A resource that is not there: -32602 (SEP-2164), not -32002.
    let params = json!({"uri": "test://nowhere"});
    let answer = json_of(request(&server, 6, "resources/read", params, &[]).await).await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_tool_that_asks_its_client_takes_rounds_with_a_tamper_proof_state() {
    let server = TestServer::with_config(with_fixtures()).await;
    let mut meta = meta();
    meta["io.modelcontextprotocol/clientCapabilities"] = json!({"elicitation": {}});
    let tool = "test_input_required_result_multi_round";
    let first = json!({"name": tool, "arguments": {}, "_meta": meta.clone()});
    let round = json_of(request(&server, 1, "tools/call", first, &[]).await).await;
    let result = &round["result"];
    assert_eq!(result["resultType"], "input_required", "{round}");
    assert_eq!(
        result["inputRequests"]["step1"]["method"],
        "elicitation/create"
    );
    let state = result["requestState"].as_str().unwrap().to_owned();
    // The retry answers step 1; the tool asks step 2, the state carrying step 1's answer.
    let answer = |field: &str, value: &str| json!({"action": "accept", "content": {field: value}});
    let retry = json!({"name": tool, "arguments": {}, "_meta": meta.clone(),
        "inputResponses": {"step1": answer("name", "Ada")}, "requestState": state});
    let round = json_of(request(&server, 2, "tools/call", retry, &[]).await).await;
    let result = &round["result"];
    assert_eq!(result["resultType"], "input_required", "{round}");
    assert!(result["inputRequests"].get("step1").is_none(), "{round}");
    let state = result["requestState"].as_str().unwrap().to_owned();
    // A changed state is refused, and so is the state of another call.
    let mut tampered = state.clone().into_bytes();
    tampered[5] ^= 1;
    let tampered = String::from_utf8(tampered).unwrap();
    let other = json!({"name": "test_input_required_result_elicitation", "arguments": {}});
    for (name, state) in [
        (tool, tampered.as_str()),
        ("test_input_required_result_elicitation", state.as_str()),
    ] {
        let retry = json!({"name": name, "arguments": {}, "_meta": meta.clone(),
            "inputResponses": {"step2": answer("color", "green")}, "requestState": state});
        let refusal = json_of(request(&server, 3, "tools/call", retry, &[]).await).await;
        assert_eq!(refusal["error"]["code"], -32602, "{other}: {refusal}");
    }
    let retry = json!({"name": tool, "arguments": {}, "_meta": meta.clone(),
        "inputResponses": {"step2": answer("color", "green")}, "requestState": state});
    let done = json_of(request(&server, 4, "tools/call", retry, &[]).await).await;
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert_eq!(
        done["result"]["content"][0]["text"], "Ada likes green",
        "{done}"
    );
    // A call that needs a capability the client did not declare: -32021, HTTP 400.
    let params = json!({"name": "test_missing_capability", "arguments": {}});
    let response = request(&server, 5, "tools/call", params, &[]).await;
    assert_eq!(response.status(), 400);
    let refusal = json_of(response).await;
    assert_eq!(refusal["error"]["code"], -32021, "{refusal}");
    assert_eq!(
        refusal["error"]["data"]["requiredCapabilities"],
        json!({"sampling": {}})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_listen_stream_is_acknowledged_tagged_and_ended_well_by_a_shutdown() {
    let server = TestServer::with_config(Config {
        stats_interval: std::time::Duration::from_millis(20),
        ..Config::default()
    })
    .await;
    let params = json!({"notifications": {
        "toolsListChanged": true,
        "resourceSubscriptions": ["mcp://server/stats", "test://nowhere"]
    }});
    let mut stream = Sse::new(request(&server, 7, "subscriptions/listen", params, &[]).await);
    let ack = stream.message().await;
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        7
    );
    // Only what can be honoured: the statistics; lists never change here.
    assert_eq!(
        ack["params"]["notifications"],
        json!({"resourceSubscriptions": ["mcp://server/stats"]}),
        "{ack}"
    );
    // A new session changes the statistics: the stream hears of it, tagged.
    let session = crate::support::Client::initialized(&server).await;
    let update = stream.message().await;
    assert_eq!(
        update["method"], "notifications/resources/updated",
        "{update}"
    );
    assert_eq!(update["params"]["uri"], "mcp://server/stats");
    assert_eq!(
        update["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        7
    );
    drop(session);
    // A graceful shutdown ends the stream with the request's result, tagged as well.
    let stopping = tokio::spawn(server.shutdown());
    let end = loop {
        let message = stream.message().await;
        if message.get("id").is_some() {
            break message;
        }
    };
    assert_eq!(end["id"], 7);
    assert_eq!(end["result"]["resultType"], "complete", "{end}");
    assert_eq!(
        end["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        7
    );
    assert!(
        stream.next().await.is_none(),
        "the stream ends with its result"
    );
    stopping.await.unwrap();
}

/// A modern request over WebSocket: the same message as over HTTP, no headers.
fn ws_request(id: i64, method: &str, mut params: Value) -> Value {
    if params.get("_meta").is_none() {
        params["_meta"] = meta();
    }
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

#[tokio::test]
async fn over_websocket_a_modern_client_needs_no_initialize_and_may_mix_eras() {
    let mut config = Config::default();
    // Shorter than the call below: a socket serving modern requests owes no `initialize`.
    config.session.init_timeout = std::time::Duration::from_secs(1);
    let server = TestServer::with_config(config).await;
    let mut client = crate::support::Client::connect(&server).await;
    let discover = client
        .request(ws_request(1, "server/discover", json!({})))
        .await;
    assert_eq!(discover["result"]["resultType"], "complete", "{discover}");
    let list = client.request(ws_request(2, "tools/list", json!({}))).await;
    assert!(list["result"]["ttlMs"].is_u64(), "{list}");
    let params = json!({"name": "add", "arguments": {"a": 2, "b": 2}});
    let sum = client.request(ws_request(3, "tools/call", params)).await;
    assert_eq!(sum["result"]["structuredContent"]["result"], 4.0, "{sum}");
    // Progress on the socket, for a call that outlives the initialize deadline.
    let mut meta = meta();
    meta["progressToken"] = json!(4);
    let params = json!({"name": "sleep", "arguments": {"ms": 1500}, "_meta": meta});
    client.send(ws_request(4, "tools/call", params)).await;
    // Cancelled by notification: it stops, and is never answered.
    let params = json!({"name": "sleep", "arguments": {"ms": 300_000}});
    client.send(ws_request(5, "tools/call", params)).await;
    client
        .send(json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 5}}))
        .await;
    let mut progress = 0;
    let answer = loop {
        let message = client.recv().await;
        assert_ne!(
            message["id"], 5,
            "a cancelled call is not answered: {message}"
        );
        if message["id"] == 4 {
            break message;
        }
        assert_eq!(message["params"]["progressToken"], 4, "{message}");
        progress += 1;
    };
    assert!(progress > 0);
    assert_eq!(answer["result"]["resultType"], "complete", "{answer}");
    crate::support::wait_for_metric(&server, "mcp_inflight_requests", 0.0).await;
    // The same socket may start a 2025 session, and keeps serving modern requests.
    let init = client.initialize("2025-11-25").await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    let legacy = client
        .request(json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list"}))
        .await;
    assert!(legacy["result"].get("resultType").is_none(), "{legacy}");
    let modern = client.request(ws_request(7, "tools/list", json!({}))).await;
    assert_eq!(modern["result"]["resultType"], "complete", "{modern}");
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn a_prompt_that_asks_its_client_is_written_once_for_both_eras() {
    let server = TestServer::with_config(with_fixtures()).await;
    let prompt = "test_input_required_result_prompt";
    // 2026-07-28 over HTTP: a round.
    let mut meta = meta();
    meta["io.modelcontextprotocol/clientCapabilities"] = json!({"elicitation": {}});
    let params = json!({"name": prompt, "_meta": meta.clone()});
    let round = json_of(request(&server, 1, "prompts/get", params, &[]).await).await;
    assert_eq!(round["result"]["resultType"], "input_required", "{round}");
    assert_eq!(
        round["result"]["inputRequests"]["user_context"]["method"],
        "elicitation/create"
    );
    let retry = json!({"name": prompt, "_meta": meta,
        "inputResponses": {"user_context": {"action": "accept", "content": {"context": "maths"}}},
        "requestState": round["result"]["requestState"]});
    let done = json_of(request(&server, 2, "prompts/get", retry, &[]).await).await;
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    let text = &done["result"]["messages"][0]["content"]["text"];
    assert_eq!(text, "Answer within this context: maths", "{done}");
    // A 2025 session: the same prompt asks the client with a request, and waits.
    let mut client = crate::support::Client::connect(&server).await;
    client
        .request(
            json!({"jsonrpc":"2.0","id":"init","method":"initialize","params":{
            "protocolVersion": "2025-11-25", "capabilities": {"elicitation": {}},
            "clientInfo": {"name":"e2e","version":"1"}}}),
        )
        .await;
    client
        .send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    client
        .send(json!({"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name": prompt}}))
        .await;
    let ask = client.recv().await;
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    client
        .send(json!({"jsonrpc":"2.0","id": ask["id"],
            "result": {"action": "accept", "content": {"context": "physics"}}}))
        .await;
    let rendered = client.recv().await;
    assert_eq!(rendered["id"], 3, "{rendered}");
    let text = &rendered["result"]["messages"][0]["content"]["text"];
    assert_eq!(text, "Answer within this context: physics", "{rendered}");
    assert!(rendered["result"].get("resultType").is_none(), "{rendered}");
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn a_parameter_mirrored_in_a_header_must_say_what_the_body_says() {
    let server = TestServer::with_config(with_fixtures()).await;
    let list = json_of(request(&server, 1, "tools/list", json!({}), &[]).await).await;
    let tool = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "test_header_param")
        .unwrap()
        .clone();
    assert_eq!(
        tool["inputSchema"]["properties"]["region"]["x-mcp-header"], "Region",
        "{tool}"
    );
    let call = |region: &str| json!({"name": "test_header_param", "arguments": {"region": region}});
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16);
    let cases: [Case<'_>; 6] = [
        ("us-west1", &[("Mcp-Param-Region", "us-west1")], 200),
        // Header names are case-insensitive; a Base64 value is decoded first.
        ("Hello", &[("mcp-param-region", "=?base64?SGVsbG8=?=")], 200),
        ("us-west1", &[], 400),
        ("us-west1", &[("Mcp-Param-Region", "eu-north1")], 400),
        // Bad padding, and characters outside the alphabet: not Base64.
        ("Hello", &[("Mcp-Param-Region", "=?base64?SGVsbG8?=")], 400),
        (
            "Hello",
            &[("Mcp-Param-Region", "=?base64?SGVs!!!bG8=?=")],
            400,
        ),
    ];
    for (region, headers, status) in cases {
        let response = request(&server, 2, "tools/call", call(region), headers).await;
        assert_eq!(response.status(), status, "{region} {headers:?}");
        let answer = json_of(response).await;
        match status {
            200 => assert_eq!(
                answer["result"]["content"][0]["text"],
                format!("region={region} query=")
            ),
            _ => assert_eq!(answer["error"]["code"], -32020, "{answer}"),
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn log_messages_come_only_at_the_level_a_request_asks_for() {
    let server = TestServer::with_config(with_fixtures()).await;
    let levels = [(Some("info"), 3), (Some("warning"), 0), (None, 0)];
    for (level, expected) in levels {
        let mut meta = meta();
        if let Some(level) = level {
            meta["io.modelcontextprotocol/logLevel"] = json!(level);
        }
        let params = json!({"name": "test_tool_with_logging", "arguments": {}, "_meta": meta});
        let response = request(&server, 1, "tools/call", params, &[]).await;
        // Without messages to send first, the call may be answered as plain JSON.
        let logged = if header(&response, "content-type") == "text/event-stream" {
            let mut stream = Sse::new(response);
            let mut logged = 0;
            loop {
                let message = stream.message().await;
                if message.get("id").is_some() {
                    assert_eq!(message["result"]["resultType"], "complete", "{message}");
                    break logged;
                }
                assert_eq!(message["method"], "notifications/message", "{message}");
                assert_eq!(message["params"]["level"], "info", "{message}");
                logged += 1;
            }
        } else {
            let answer = json_of(response).await;
            assert_eq!(answer["result"]["resultType"], "complete", "{answer}");
            0
        };
        assert_eq!(logged, expected, "at {level:?}");
    }
    server.shutdown().await;
}
