//! Per-principal limits: requests per second (a token bucket) and tool calls running at
//! once. Over a limit a request gets -32001 with a retry hint (429 with Retry-After on the
//! HTTP API); other principals carry on as if nothing happened.

use std::num::NonZeroU32;
use std::time::Duration;

use mcp_server::{Auth, Config};
use mcp_session::RateLimit;
use serde_json::{Value, json};

use crate::auth::{bearer, request};
use crate::support::{Client, HANG, TestServer, exchange};

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-9876543210";

fn config() -> Config {
    Config {
        auth: Auth::new(&[format!("alice={ALICE}"), format!("bob={BOB}")], None).unwrap(),
        ..Config::default()
    }
}

async fn connect(server: &TestServer, token: &str) -> Client {
    let (mut client, _) =
        Client::connect_with_headers(server, "/mcp", &[("Authorization", &bearer(token))])
            .await
            .unwrap();
    client.initialize("2025-11-25").await;
    client
}

#[tokio::test]
async fn a_principal_over_its_request_rate_is_told_when_to_retry_and_others_are_not_slowed() {
    let mut config = config();
    let one = NonZeroU32::MIN;
    config.session.rate_limit = Some(RateLimit {
        per_second: one,
        burst: NonZeroU32::new(4).unwrap(),
    });
    let server = TestServer::with_config(config).await;
    // The upgrade and `initialize` took two requests of alice's four.
    let mut alice = connect(&server, ALICE).await;
    for id in 0..10 {
        alice
            .send(json!({"jsonrpc":"2.0","id":id,"method":"tools/list"}))
            .await;
    }
    let mut answers = Vec::new();
    for _ in 0..10 {
        answers.push(alice.recv().await);
    }
    assert!(
        answers[..2].iter().all(|a| a["result"]["tools"].is_array()),
        "{answers:?}"
    );
    let refused: Vec<&Value> = answers.iter().filter(|a| a["error"].is_object()).collect();
    // A refill of one a second lets at most a few more through, however slow this machine.
    assert!(refused.len() >= 5, "{answers:?}");
    for answer in &refused {
        assert_eq!(answer["error"]["code"], -32001, "{answer}");
        assert_eq!(answer["error"]["data"]["limit"], "rate", "{answer}");
        let retry = answer["error"]["data"]["retryAfterMs"].as_u64().unwrap();
        assert!((1..=1000).contains(&retry), "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--rate-limit"),
            "{answer}"
        );
    }
    // Pings do not draw on the requests' bucket: they keep connections alive.
    let pong = alice
        .request(json!({"jsonrpc":"2.0","id":"p","method":"ping"}))
        .await;
    assert_eq!(pong["result"], json!({}), "{pong}");
    // But they have a bucket of their own at the same rate: a flood is not free (issue 19,
    // item 2).
    for id in 0..10 {
        alice
            .send(json!({"jsonrpc":"2.0","id":format!("f{id}"),"method":"ping"}))
            .await;
    }
    let mut pongs = Vec::new();
    for _ in 0..10 {
        pongs.push(alice.recv().await);
    }
    let limited: Vec<&Value> = pongs.iter().filter(|p| p["error"].is_object()).collect();
    assert!(limited.len() >= 5, "{pongs:?}");
    assert!(
        limited
            .iter()
            .all(|p| p["error"]["data"]["limit"] == "pings"),
        "{pongs:?}"
    );
    // Bob has his own bucket.
    let mut bob = connect(&server, BOB).await;
    let sum = bob.call(1, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(sum["structuredContent"]["result"], 3, "{sum}");

    // The HTTP API draws on the same bucket as a principal's sessions, and says 429 with
    // Retry-After.
    let (status, body) = request(
        &server,
        "POST /agent HTTP/1.1",
        Some(BOB),
        Some(&json!({"name": "a"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let agent = serde_json::from_str::<Value>(&body).unwrap()["agentId"].clone();
    let call = json!({"agentId": agent, "request": {"method": "add", "params": {"a": 1, "b": 1}}})
        .to_string();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nAuthorization: Bearer {BOB}\r\nContent-Type: application/json\r\nContent-Length: {}",
        call.len()
    );
    let mut statuses = Vec::new();
    let limited = loop {
        let (status, head, body) = exchange(&server, &head, &call).await;
        statuses.push(status);
        if status == 429 {
            break (head, body);
        }
        assert_eq!(status, 200, "{body}");
        assert!(statuses.len() < 10, "never limited: {statuses:?}");
    };
    assert!(limited.0.contains("retry-after: 1"), "{}", limited.0);
    let body: Value = serde_json::from_str(&limited.1).unwrap();
    assert!(body["retryAfterMs"].as_u64().unwrap() >= 1, "{body}");
    drop((alice, bob));
    server.shutdown().await;
}

#[tokio::test]
async fn a_principal_may_run_only_so_many_calls_at_once_across_its_sessions() {
    let mut config = config();
    config.session.max_calls_per_principal = Some(1);
    let server = TestServer::with_config(config).await;
    let mut first = connect(&server, ALICE).await;
    first
        .send(
            json!({"jsonrpc":"2.0","id":"long","method":"tools/call","params":{
            "name":"sleep","arguments":{"ms":5_000},"_meta":{"progressToken":"s"}}}),
        )
        .await;
    // Running once its first progress is out (after a tenth of the wait).
    loop {
        let message = first.recv().await;
        if message["params"]["progressToken"] == "s" {
            break;
        }
    }
    let mut second = connect(&server, ALICE).await;
    let refused = second
        .request(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":1}}}))
        .await;
    assert_eq!(refused["error"]["code"], -32001, "{refused}");
    assert_eq!(
        refused["error"]["data"]["limit"], "calls_per_principal",
        "{refused}"
    );
    assert!(
        refused["error"]["data"]["retryAfterMs"].as_u64().is_some(),
        "{refused}"
    );
    // Another principal is not affected.
    let mut bob = connect(&server, BOB).await;
    let sum = bob.call(1, "add", json!({"a": 2, "b": 2})).await;
    assert_eq!(sum["structuredContent"]["result"], 4, "{sum}");
    // Once the long call is cancelled, alice may call again.
    first
        .send(json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"long"}}))
        .await;
    let deadline = tokio::time::Instant::now() + HANG;
    let mut id = 2;
    loop {
        let answer = second
            .request(json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":1}}}))
            .await;
        if answer["result"]["structuredContent"]["result"] == 2 {
            break;
        }
        // The cancelled call is still winding down: poll until the server has let it go.
        assert_eq!(
            answer["error"]["data"]["limit"], "calls_per_principal",
            "{answer}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was never released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        id += 1;
    }
    drop((first, second, bob));
    server.shutdown().await;
}
