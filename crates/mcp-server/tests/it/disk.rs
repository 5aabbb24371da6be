//! Issue 19, item 5: a full disk broke the store until a restart (redb refuses everything
//! after an I/O error). Against the real binary, on a small tmpfs this test mounts (it needs
//! root, as CI has): the disk fills, the server says it is not ready and answers clearly,
//! space comes back, the store works again without a restart, and nothing acknowledged is
//! lost.

use std::process::Command;

use serde_json::{Value, json};

use crate::{HANG, exchange, get, restart, start};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs (this test needs root, as CI has): {status}"
        );
        Self(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

async fn post(address: &str, path: &str, body: &Value) -> (u16, String) {
    let body = body.to_string();
    exchange(
        address,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

#[tokio::test]
async fn a_full_disk_is_reported_and_the_store_works_again_when_space_comes_back() {
    let fs = Tmpfs::mount("6m");
    let filler = fs.0.path().join("filler");
    std::fs::write(&filler, vec![0u8; 3_000_000]).unwrap();
    let data = fs.0.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let data = data.to_str().unwrap().to_owned();
    let (child, address) = start(&["--data-dir", &data]).await;
    let new_agent = || async {
        let (status, body) = post(&address, "/agent", &json!({"name": "filler"})).await;
        let id = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["agentId"].as_str().map(str::to_owned));
        (status, body, id)
    };
    // Calls whose history grows until the disk is full: each answered call is in the store.
    // An agent keeps 1 MiB of history, so a new one takes over every 15 calls.
    let call = |agent: &str, pad: usize| {
        json!({"agentId": agent, "request": {"method": "add",
               "params": {"a": 1, "b": 2, "pad": "x".repeat(pad)}}})
    };
    let mut agents: Vec<(String, usize)> = Vec::new();
    let refusal = loop {
        if agents.last().is_none_or(|(_, calls)| *calls == 15) {
            match new_agent().await {
                (201, _, Some(id)) => agents.push((id, 0)),
                (status, body, _) => break (status, body),
            }
        }
        let Some((agent, acknowledged)) = agents.last_mut() else {
            unreachable!("an agent was just made")
        };
        let (status, body) = post(&address, "/mcp", &call(agent, 50_000)).await;
        match status {
            // 422: a tool error (the extra argument), recorded all the same.
            200 | 422 => *acknowledged += 1,
            _ => break (status, body),
        }
        assert!(agents.len() < 100, "the disk never filled");
    };
    assert_eq!(refusal.0, 500, "{}", refusal.1);
    assert!(refusal.1.contains("session store"), "{}", refusal.1);
    let (status, body) = get(&address, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("No space left on device"), "{body}");
    assert_eq!(
        get(&address, "/healthz").await.0,
        200,
        "alive, only not ready"
    );

    // Space comes back: the next write works, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let (agent, acknowledged) = agents.last_mut().unwrap();
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let (status, body) = post(&address, "/mcp", &call(agent, 0)).await;
        if matches!(status, 200 | 422) {
            *acknowledged += 1;
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never again: {status} {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(get(&address, "/readyz").await.0, 200);
    // Acknowledged calls kept, the refused one not; and after a restart, the same.
    let kept = || async {
        let mut kept = Vec::new();
        for (agent, _) in &agents {
            let (status, state) = get(&address, &format!("/agent/{agent}")).await;
            assert_eq!(status, 200, "{state}");
            let history = serde_json::from_str::<Value>(&state).unwrap()["history"]
                .as_array()
                .unwrap()
                .len();
            kept.push(history);
        }
        kept
    };
    let acknowledged: Vec<usize> = agents.iter().map(|(_, n)| *n).collect();
    assert_eq!(kept().await, acknowledged);
    crate::sigterm(&child);
    let mut child = child;
    tokio::time::timeout(HANG, child.wait())
        .await
        .unwrap()
        .unwrap();
    let restarted = restart(&address, &data).await;
    assert_eq!(kept().await, acknowledged);
    crate::sigterm(&restarted);
}
