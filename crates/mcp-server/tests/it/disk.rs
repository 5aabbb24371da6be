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
    let (status, body) = post(&address, "/agent", &json!({"name": "filler"})).await;
    assert_eq!(status, 201, "{body}");
    let agent = serde_json::from_str::<Value>(&body).unwrap()["agentId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Calls whose history grows until the disk is full: each answered call is in the store.
    let call = |pad: usize| {
        json!({"agentId": agent, "request": {"method": "add",
               "params": {"a": 1, "b": 2, "pad": "x".repeat(pad)}}})
    };
    let mut acknowledged = 0;
    let refusal = loop {
        let (status, body) = post(&address, "/mcp", &call(50_000)).await;
        match status {
            // 422: a tool error (the extra argument), recorded all the same.
            200 | 422 => acknowledged += 1,
            _ => break (status, body),
        }
        assert!(acknowledged < 1_000, "the disk never filled");
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
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let (status, body) = post(&address, "/mcp", &call(0)).await;
        if matches!(status, 200 | 422) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never again: {status} {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(get(&address, "/readyz").await.0, 200);
    let history = |state: &str| {
        serde_json::from_str::<Value>(state).unwrap()["history"]
            .as_array()
            .unwrap()
            .len()
    };
    let (status, state) = get(&address, &format!("/agent/{agent}")).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(
        history(&state),
        acknowledged + 1,
        "acknowledged calls kept, the refused one not"
    );

    // And after a restart, the same.
    crate::sigterm(&child);
    let mut child = child;
    tokio::time::timeout(HANG, child.wait())
        .await
        .unwrap()
        .unwrap();
    let restarted = restart(&address, &data).await;
    let (status, state) = get(&address, &format!("/agent/{agent}")).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(history(&state), acknowledged + 1);
    crate::sigterm(&restarted);
}
