//! The binary as a gateway: an upstreams file read again at SIGHUP, a bad one refused at
//! start. The upstream is a stdio server on the official Python SDK
//! (tests/upstreams/stdio_server.py).

use std::path::PathBuf;

use mcp_client::{Client, Options};

use super::{HANG, send_signal, spawn, start_or_refuse};

/// The python with the MCP SDK that `cargo xtask ci` installs (`MCP_TEST_PYTHON`, or
/// target/py-venv, as mcp-test-support finds it: that crate cannot be used here).
fn sdk_python() -> PathBuf {
    std::env::var_os("MCP_TEST_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/py-venv/bin/python"),
        PathBuf::from,
    )
}

fn upstreams_file(name: &str) -> String {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/upstreams/stdio_server.py");
    format!(
        "[[upstream]]\nname = \"{name}\"\ncommand = [{:?}, {:?}]\n",
        sdk_python().display().to_string(),
        script.display().to_string()
    )
}

/// Lists the tools each time the server says they changed, until `done` says so.
async fn wait_for_tools(client: &Client, done: impl Fn(&[String]) -> bool) {
    let mut notifications = client.notifications();
    tokio::time::timeout(HANG, async {
        loop {
            let names: Vec<String> = client
                .list_tools()
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.name)
                .collect();
            if done(&names) {
                return;
            }
            while let Ok(n) = notifications.recv().await {
                if n.method == "notifications/tools/list_changed" {
                    break;
                }
            }
        }
    })
    .await
    .expect("the tools never became what was expected");
}

#[tokio::test]
async fn the_upstreams_file_is_read_again_at_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upstreams.toml");
    std::fs::write(&file, upstreams_file("first")).unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--upstreams-file",
        file.to_str().unwrap(),
    ];
    let (mut child, first) = spawn(&args, std::process::Stdio::piped()).await;
    let address = first
        .trim_end()
        .strip_prefix("listening on http://")
        .unwrap()
        .to_owned();
    // The log, a line at a time, read all along so that the pipe never fills.
    let (log_tx, mut log) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stderr = child.stderr.take().unwrap();
    tokio::spawn(async move {
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = log_tx.send(line);
        }
    });
    let mut options = Options::new(format!("ws://{address}/mcp"));
    options.legacy = true;
    let client = Client::connect(options).await.unwrap();
    wait_for_tools(&client, |names| names.iter().any(|n| n == "first.add")).await;

    // Renamed in the file: the old upstream goes, the new one comes.
    std::fs::write(&file, upstreams_file("second")).unwrap();
    send_signal(&child, "-HUP");
    wait_for_tools(&client, |names| {
        names.iter().any(|n| n == "second.add") && !names.iter().any(|n| n.starts_with("first."))
    })
    .await;
    let sum = client
        .call_tool(
            "second.add",
            serde_json::json!({"a": 1, "b": 2})
                .as_object()
                .unwrap()
                .clone(),
        )
        .await
        .unwrap();
    assert_eq!(sum.structured_content.unwrap()["result"], 3);

    // A broken file changes nothing: the server says so, and the upstream runs on in the
    // same process (had it been stopped and started again, its pid would differ).
    let pid = |result: mcp_server::protocol::CallToolResult| {
        result.structured_content.unwrap()["result"]
            .as_i64()
            .unwrap()
    };
    let before = pid(client
        .call_tool("second.pid", Default::default())
        .await
        .unwrap());
    std::fs::write(&file, "[[upstream]]\nname = \"bad name\"\n").unwrap();
    send_signal(&child, "-HUP");
    let mut seen = Vec::new();
    tokio::time::timeout(HANG, async {
        while let Some(line) = log.recv().await {
            if line.contains("SIGHUP: cannot use the upstreams file") {
                return;
            }
            seen.push(line);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the broken file was never read: {seen:#?}"));
    std::fs::write(&file, upstreams_file("second") + &upstreams_file("third")).unwrap();
    send_signal(&child, "-HUP");
    wait_for_tools(&client, |names| names.iter().any(|n| n == "third.add")).await;
    let after = pid(client
        .call_tool("second.pid", Default::default())
        .await
        .unwrap());
    let mut rest = Vec::new();
    while let Ok(line) = log.try_recv() {
        rest.push(line);
    }
    assert_eq!(before, after, "the upstream was started again: {rest:#?}");
    client.close().await;
    drop(child);
}

#[tokio::test]
async fn a_bad_upstream_is_refused_at_start_with_its_name() {
    for (args, expected) in [
        (
            vec!["--upstream", "no-equals-sign"],
            "expected NAME=COMMAND",
        ),
        (vec!["--upstream", "a.b=cmd"], "upstream name `a.b`"),
        (
            vec!["--upstream", "a=x", "--upstream", "a=y"],
            "upstream `a` is configured twice",
        ),
    ] {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend(args);
        match start_or_refuse(&all).await {
            Err(stderr) => assert!(stderr.contains(expected), "{stderr}"),
            Ok(_) => panic!("started with {all:?}"),
        }
    }
}
