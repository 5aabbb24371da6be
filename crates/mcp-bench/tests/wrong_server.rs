//! The load generator counts only right answers: against `mcp-bench wrong`, which answers
//! every hundredth call wrongly (a wrong sum, an id never asked for, no answer, an error), a
//! run fails and says why; against the same server answering rightly, it passes. Over
//! WebSocket and over Streamable HTTP.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

const BENCH: &str = env!("CARGO_BIN_EXE_mcp-bench");

/// `mcp-bench wrong --fault FAULT`, stopped when dropped.
struct Wrong(Child, String);

impl Drop for Wrong {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wrong(fault: &str) -> Wrong {
    let mut child = Command::new(BENCH)
        .args(["wrong", "--fault", fault])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    Wrong(child, address)
}

/// Runs a short load at `url`; its exit status and what it printed on stderr.
fn load(url: &str) -> (bool, String) {
    let output = Command::new(BENCH)
        .args([
            "load",
            "--url",
            url,
            "--seconds",
            "0.5",
            "--warmup",
            "0.1",
            "--drain",
            "1",
        ])
        .args(["--connections", "2", "--inflight", "8"])
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn right_answers_pass_over_both_transports() {
    let server = wrong("none");
    for url in [
        format!("ws://{}/mcp", server.1),
        format!("http://{}/mcp", server.1),
    ] {
        let (passed, stderr) = load(&url);
        assert!(passed, "{url}: {stderr}");
    }
}

#[test]
fn any_wrong_answer_fails_the_run_and_says_what() {
    let cases = [
        ("sum", "ws", "add("),
        ("sum", "http", "add("),
        ("id", "ws", "an answer to no call in flight"),
        ("id", "http", "was answered as call"),
        ("drop", "ws", "never answered"),
        ("drop", "http", "0 answers"),
        ("error", "ws", "wrong on purpose"),
        ("error", "http", "wrong on purpose"),
    ];
    for (fault, scheme, says) in cases {
        let server = wrong(fault);
        let url = format!("{scheme}://{}/mcp", server.1);
        let (passed, stderr) = load(&url);
        assert!(!passed, "{fault} over {scheme} passed: {stderr}");
        assert!(
            stderr.contains("calls went wrong") && stderr.contains(says),
            "{fault} over {scheme}: {stderr}"
        );
    }
}
