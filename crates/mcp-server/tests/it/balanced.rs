//! Issue 20's harness: Debian's `redis-server`, three instances of the real binary on it,
//! and Debian's `haproxy` in front of them, round-robin with no stickiness (it takes an
//! instance out while its `/readyz` fails). Everything a client does goes through the
//! balancer unless a test needs one instance in particular.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::tasks::{answer, create, terminal, until};
use crate::{HANG, exchange, get, recv, send, start, status};

/// Redis, three instances named a, b and c, and HAProxy.
struct Cluster {
    redis: mcp_store_redis::testing::RedisServer,
    /// Each instance: its name, process and address.
    instances: Vec<(String, Child, String)>,
    haproxy: Child,
    /// The balancer's address.
    address: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Self {
        let redis = mcp_store_redis::testing::RedisServer::start().await;
        let url = redis.url();
        let mut instances = Vec::new();
        for name in ["a", "b", "c"] {
            let args = ["--store", &url, "--instance-id", name, "--task-lease", "2"];
            let (child, address) = start(&args).await;
            instances.push((name.to_owned(), child, address));
        }
        for (_, _, address) in &instances {
            ready(address).await;
        }
        let port = {
            let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            free.local_addr().unwrap().port()
        };
        let address = format!("127.0.0.1:{port}");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("haproxy.cfg");
        let servers: String = instances
            .iter()
            .map(|(name, _, at)| {
                format!("    server {name} {at} check inter 200ms fall 1 rise 1\n")
            })
            .collect();
        std::fs::write(
            &config,
            format!(
                "global\n    maxconn 2000\n\
                 defaults\n    mode http\n    timeout connect 2s\n    timeout client 120s\n    \
                 timeout server 120s\n    timeout tunnel 1h\n    retries 3\n    option redispatch\n    \
                 retry-on conn-failure empty-response\n\
                 frontend mcp\n    bind {address}\n    default_backend instances\n\
                 backend instances\n    balance roundrobin\n    option httpchk\n    \
                 http-check send meth GET uri /readyz hdr Host 127.0.0.1\n    \
                 http-check expect status 200\n{servers}"
            ),
        )
        .unwrap();
        let haproxy = Command::new("haproxy")
            .arg("-f")
            .arg(&config)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot run haproxy: install it (apt-get install haproxy), or run the README's test command, which does");
        let cluster = Self {
            redis,
            instances,
            haproxy,
            address,
            _dir: dir,
        };
        // Through the balancer, once it sees the instances ready.
        ready(&cluster.address).await;
        cluster
    }

    /// The address of the instance named `name`.
    fn at(&self, name: &str) -> &str {
        let found = self.instances.iter().find(|(n, _, _)| n == name);
        &found.expect("an instance of that name").2
    }

    /// Kills the instance named `name` with SIGKILL.
    async fn kill(&mut self, name: &str) {
        let found = self.instances.iter_mut().find(|(n, _, _)| n == name);
        let child = &mut found.expect("an instance of that name").1;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }

    /// The instance running task `id`: the holder of its lease.
    async fn runner_of(&self, task: &str) -> String {
        self.redis
            .get(&format!("mcp:lease:task:{task}"))
            .await
            .expect("the task's lease is held")
    }

    async fn stop(mut self) {
        for (_, child, _) in &self.instances {
            if child.id().is_some() {
                crate::sigterm(child);
            }
        }
        let _ = self.haproxy.start_kill();
    }
}

/// Waits until `address` answers `/readyz` with 200 (it may not listen yet).
async fn ready(address: &str) {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let listening = tokio::net::TcpStream::connect(address).await.is_ok();
        if listening && status(address, "/readyz").await == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{address} never got ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The count of successful `tools/call` requests an instance served.
async fn calls_served(address: &str) -> f64 {
    let (_, metrics) = get(address, "/metrics").await;
    metrics
        .lines()
        .filter(|l| l.starts_with("mcp_requests_total{") && l.contains("method=\"tools/call\""))
        .filter(|l| l.contains("outcome=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn behind_a_balancer_calls_spread_tasks_move_and_signals_reach_every_instance() {
    let mut cluster = Cluster::start().await;
    let lb = cluster.address.clone();

    // A 2026-07-28 client's calls spread over all three instances, and all succeed.
    for i in 0..30 {
        let params = json!({"name": "add", "arguments": {"a": i, "b": 1}});
        let result = answer(&lb, "tools/call", params, Some("add")).await;
        assert_eq!(
            result["result"]["structuredContent"]["result"],
            f64::from(i + 1),
            "{result}"
        );
    }
    for name in ["a", "b", "c"] {
        let served = calls_served(cluster.at(name)).await;
        assert!(served >= 5.0, "instance {name} served {served} of 30 calls");
    }

    // A broadcast sent to one instance reaches WebSocket clients connected to all three.
    let mut clients = Vec::new();
    for name in ["a", "b", "c"] {
        clients.push(crate::connect(cluster.at(name)).await);
    }
    let body = json!({"message": "to everyone", "level": "warning"}).to_string();
    let head = format!(
        "POST /admin/broadcast HTTP/1.1\r\nHost: {lb}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (code, text) = exchange(&lb, &head).await;
    assert_eq!(code, 200, "{text}");
    for client in &mut clients {
        let notice = recv(client).await;
        assert_eq!(notice["params"]["data"], "to everyone", "{notice}");
    }
    drop(clients);

    // `tasks/cancel` through the balancer stops work running on whichever instance.
    let long = json!({"count": 100_000_000, "cost": 200});
    let task = create(&lb, "process_batch", long).await;
    let running = until(&lb, &task, |t| {
        terminal(t) || t["_meta"]["mcp-server/progress"].is_object()
    })
    .await;
    assert_eq!(running["status"], "working", "{running}");
    let cancelled = answer(&lb, "tasks/cancel", json!({"taskId": task}), Some(&task)).await;
    assert!(cancelled.get("error").is_none(), "{cancelled}");
    let ended = tokio::time::timeout(Duration::from_secs(5), until(&lb, &task, terminal))
        .await
        .expect("the cancelled task did not stop");
    assert_eq!(ended["status"], "cancelled", "{ended}");

    // A task whose instance is killed with SIGKILL is taken up by another, and ends as an
    // uninterrupted run does.
    let batch = json!({"count": 2_000_000, "cost": 200});
    let task = create(&lb, "process_batch", batch.clone()).await;
    let expected = until(&lb, &task, terminal).await;
    assert_eq!(expected["status"], "completed", "{expected}");
    let task = create(&lb, "process_batch", batch).await;
    let saved = until(&lb, &task, |t| {
        terminal(t) || t["_meta"]["mcp-server/checkpointedProgress"].is_number()
    })
    .await;
    assert_eq!(saved["status"], "working", "{saved}");
    let runner = cluster.runner_of(&task).await;
    cluster.kill(&runner).await;
    let ended = until(&lb, &task, terminal).await;
    assert_eq!(ended["status"], "completed", "{ended}");
    let (result, expected) = (
        &ended["result"]["structuredContent"],
        &expected["result"]["structuredContent"],
    );
    assert_eq!(result["checksum"], expected["checksum"], "{result}");
    assert!(result["resumedFrom"].is_u64(), "it resumed: {result}");
    cluster.stop().await;
}

/// A 2025 WebSocket client resumes its session through the balancer after its instance is
/// killed: no message lost or repeated, and its batch ends as an uninterrupted one.
#[tokio::test]
async fn behind_a_balancer_a_2025_session_resumes_after_its_instance_is_killed() {
    let mut cluster = Cluster::start().await;
    let (mut socket, response) = crate::initialize_resumable(cluster.at("a"), None).await;
    let id = response["mcpSessionId"].as_str().unwrap().to_owned();
    send(
        &mut socket,
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    send(&mut socket, crate::batch(7, Some("t"))).await;
    let mut last_seq = 0;
    let mut seen = 0.0;
    for _ in 0..2 {
        let message = recv(&mut socket).await;
        assert_eq!(message["method"], "notifications/progress", "{message}");
        last_seq = message["seq"].as_u64().unwrap();
        seen = message["params"]["progress"].as_f64().unwrap();
    }
    cluster.kill("a").await;
    drop(socket);

    let (mut socket, response) =
        crate::initialize_resumable(&cluster.address, Some((&id, last_seq))).await;
    assert_eq!(response["mcpSessionId"], id.as_str(), "{response}");
    let (result, _) = crate::follow_resumed(&mut socket, last_seq, seen).await;
    assert_eq!(result["id"], 7, "{result}");
    assert_eq!(
        result["result"]["structuredContent"]["processed"], 100_000,
        "{result}"
    );
    cluster.stop().await;
}

/// Redis stopped for a few seconds: the instances say they are not ready, then recover by
/// themselves; what was acknowledged before is still there.
#[tokio::test]
async fn behind_a_balancer_the_instances_wait_out_a_redis_restart() {
    let mut cluster = Cluster::start().await;
    let lb = cluster.address.clone();
    let body = json!({"name": "kept"}).to_string();
    let head = format!(
        "POST /agent HTTP/1.1\r\nHost: {lb}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (code, text) = exchange(&lb, &head).await;
    assert_eq!(code, 201, "{text}");
    let agent = serde_json::from_str::<Value>(&text).unwrap()["agentId"]
        .as_str()
        .unwrap()
        .to_owned();

    cluster.redis.stop().await;
    for name in ["a", "b", "c"] {
        let at = cluster.at(name).to_owned();
        let deadline = tokio::time::Instant::now() + HANG;
        loop {
            let (code, why) = get(&at, "/readyz").await;
            if code == 503 {
                assert!(why.contains("Redis") || why.contains("redis"), "{why}");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} stayed ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Meanwhile a request that needs the store gets a clear error, not a hang.
    let (code, text) = get(cluster.at("b"), &format!("/agent/{agent}")).await;
    assert!(code >= 500, "{code} {text}");

    cluster.redis.restart().await;
    for name in ["a", "b", "c"] {
        ready(cluster.at(name)).await;
    }
    // Each says so in its metrics.
    for name in ["a", "b", "c"] {
        let (_, metrics) = get(cluster.at(name), "/metrics").await;
        let value = |metric: &str| {
            metrics
                .lines()
                .find_map(|l| {
                    l.strip_prefix(metric)?
                        .strip_prefix(' ')?
                        .parse::<f64>()
                        .ok()
                })
                .unwrap_or(0.0)
        };
        assert!(
            value("mcp_redis_recoveries_total") >= 1.0,
            "{name}: {metrics}"
        );
        assert!(
            value("mcp_redis_failures_total") >= 1.0,
            "{name}: {metrics}"
        );
        assert!(
            value("mcp_redis_round_trip_seconds_count") >= 1.0,
            "{name}: {metrics}"
        );
    }
    // And the balancer sees them ready again.
    ready(&lb).await;
    let (code, text) = get(&lb, &format!("/agent/{agent}")).await;
    assert_eq!(code, 200, "{text}");
    cluster.stop().await;
}

/// A 2025 Streamable HTTP session through the balancer: each request may reach another
/// instance than the one holding the session, which serves it all the same (forwarded there).
#[tokio::test]
async fn behind_a_balancer_a_2025_http_session_works_whichever_instance_a_request_reaches() {
    let cluster = Cluster::start().await;
    let lb = cluster.address.clone();
    let post = |session: Option<&str>, body: Value| {
        let body = body.to_string();
        let session = session.map_or(String::new(), |id| {
            format!("Mcp-Session-Id: {id}\r\nMCP-Protocol-Version: 2025-11-25\r\n")
        });
        format!(
            "POST /mcp HTTP/1.1\r\nHost: {lb}\r\nConnection: close\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\n{session}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "it", "version": "1"}}});
    let mut stream = tokio::net::TcpStream::connect(&lb).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, post(None, init).as_bytes())
        .await
        .unwrap();
    let mut raw = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut raw)
        .await
        .unwrap();
    let id = raw
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("mcp-session-id")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no session id: {raw}"));
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (code, text) = exchange(&lb, &post(Some(&id), initialized)).await;
    assert_eq!(code, 202, "{text}");
    // Round-robin over three instances: most of these reach one that does not hold it.
    for n in 1..=6 {
        let call = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": n, "b": 10}}});
        let (code, text) = exchange(&lb, &post(Some(&id), call)).await;
        assert_eq!(code, 200, "{text}");
        let answer = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .next_back()
            .unwrap_or(&text);
        let answer: Value = serde_json::from_str(answer.trim()).unwrap();
        assert_eq!(answer["id"], n, "{answer}");
        assert_eq!(
            answer["result"]["structuredContent"]["result"],
            f64::from(n + 10),
            "{answer}"
        );
    }
    // Ended wherever the DELETE lands; then gone everywhere.
    let delete = format!(
        "DELETE /mcp HTTP/1.1\r\nHost: {lb}\r\nConnection: close\r\nMcp-Session-Id: {id}\r\nMCP-Protocol-Version: 2025-11-25\r\n\r\n"
    );
    let (code, text) = exchange(&lb, &delete).await;
    assert!(code == 200 || code == 204, "{code} {text}");
    for n in 0..3 {
        let call = json!({"jsonrpc": "2.0", "id": 100 + n, "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": 1, "b": 1}}});
        let (code, text) = exchange(&lb, &post(Some(&id), call)).await;
        assert_eq!(code, 404, "{text}");
    }
    cluster.stop().await;
}
