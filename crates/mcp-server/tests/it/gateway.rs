//! The binary as a gateway: an upstreams file read again at SIGHUP, a bad one refused at
//! start. The upstream is a stdio server on the official Python SDK
//! (tests/upstreams/stdio_server.py).

use std::path::PathBuf;

use mcp_client::{Client, Options};

use super::{HANG, start, start_or_refuse};

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
    let (child, address) = start(&["--upstreams-file", file.to_str().unwrap()]).await;
    let mut options = Options::new(format!("ws://{address}/mcp"));
    options.legacy = true;
    let client = Client::connect(options).await.unwrap();
    wait_for_tools(&client, |names| names.iter().any(|n| n == "first.add")).await;

    // Renamed in the file: the old upstream goes, the new one comes.
    std::fs::write(&file, upstreams_file("second")).unwrap();
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
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

    // A broken file changes nothing.
    std::fs::write(&file, "[[upstream]]\nname = \"bad name\"\n").unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let sum = client
        .call_tool(
            "second.add",
            serde_json::json!({"a": 2, "b": 2})
                .as_object()
                .unwrap()
                .clone(),
        )
        .await
        .unwrap();
    assert_eq!(sum.structured_content.unwrap()["result"], 4);
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
