//! `cargo xtask bench`: builds the server and the load generator (`mcp-bench`) in release
//! mode, starts each server on loopback, runs each scenario, and writes
//! `target/bench/report.json` and `report.md` (machine, versions, every figure and ratio).
//! `--smoke` runs each scenario for two seconds, so the harness never rots (CI runs it);
//! the full run is manual. Timings are reported, never asserted.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::ci::target_dir;
use crate::run;

/// A server under test, running until dropped.
struct Running {
    name: &'static str,
    child: Child,
    address: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `program args` and reads the address from its first line (`listening on ...`).
fn start(name: &'static str, program: &Path, args: &[&str]) -> anyhow::Result<Running> {
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first)?;
    let address = first
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .trim_start_matches("http://")
        .to_owned();
    if address.is_empty() {
        bail!("{name} did not say where it listens: {first:?}");
    }
    Ok(Running {
        name,
        child,
        address,
    })
}

/// One measurement: a server, a scenario, the load generator's summary.
struct Row {
    scenario: &'static str,
    server: &'static str,
    summary: Value,
}

pub(crate) fn run_all(smoke: bool) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    run(Command::new(&cargo).args([
        "build",
        "--release",
        "--locked",
        "-p",
        "mcp-server",
        "-p",
        "mcp-bench",
    ]))?;
    let release = target_dir().join("release");
    let bench = release.join("mcp-bench");
    let (seconds, warmup) = if smoke { ("2", "0.5") } else { ("10", "2") };
    let ours = start(
        "ours",
        &release.join("mcp-server"),
        &["--listen", "127.0.0.1:0"],
    )?;
    let echo = start("echo", &bench, &["echo", "--listen", "127.0.0.1:0"])?;
    let mut rows = Vec::new();
    let mut measure = |scenario: &'static str,
                       server: &Running,
                       url: String,
                       extra: &[&str]|
     -> anyhow::Result<()> {
        let mut command = Command::new(&bench);
        command
            .args([
                "load",
                "--url",
                &url,
                "--seconds",
                seconds,
                "--warmup",
                warmup,
            ])
            .args(extra);
        eprintln!("==> {scenario}: {} {}", server.name, extra.join(" "));
        let output = command.output().context("cannot run mcp-bench")?;
        if !output.status.success() {
            bail!(
                "{scenario} on {}: {}",
                server.name,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let summary: Value = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("{scenario}: the load generator's summary"))?;
        rows.push(Row {
            scenario,
            server: server.name,
            summary,
        });
        Ok(())
    };
    let ws = |s: &Running| format!("ws://{}/mcp", s.address);
    for (scenario, connections, inflight) in [("1x64", "1", "64"), ("64x16", "64", "16")] {
        measure(
            scenario,
            &ours,
            ws(&ours),
            &["--connections", connections, "--inflight", inflight],
        )?;
        measure(
            scenario,
            &echo,
            format!("ws://{}/", echo.address),
            &[
                "--connections",
                connections,
                "--inflight",
                inflight,
                "--raw",
            ],
        )?;
    }
    // Streamable HTTP: HTTP/1.1 carries one request per connection at a time.
    measure(
        "http-64",
        &ours,
        format!("http://{}/mcp", ours.address),
        &["--connections", "64"],
    )?;
    measure(
        "open-10k",
        &ours,
        ws(&ours),
        &["--connections", "16", "--rate", "10000"],
    )?;
    drop((ours, echo));
    let report = report(&rows, smoke)?;
    let out = target_dir().join("bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(out.join("report.md"), markdown(&report))?;
    eprintln!("==> wrote {}", out.join("report.md").display());
    Ok(())
}

fn figure(rows: &[Row], scenario: &str, server: &str, key: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.scenario == scenario && r.server == server)
        .and_then(|r| r.summary[key].as_f64())
}

fn report(rows: &[Row], smoke: bool) -> anyhow::Result<Value> {
    let ratio = |scenario: &str| -> Option<f64> {
        Some(
            figure(rows, scenario, "ours", "callsPerSecond")?
                / figure(rows, scenario, "echo", "callsPerSecond")?,
        )
    };
    Ok(json!({
        "smoke": smoke,
        "machine": machine(),
        "results": rows.iter().map(|r| json!({"scenario": r.scenario, "server": r.server, "summary": r.summary})).collect::<Vec<_>>(),
        "ratios": {
            "oursOverEcho1x64": ratio("1x64"),
            "oursOverEcho64x16": ratio("64x16"),
        },
        "targets": {
            "throughputAtLeast60PercentOfEcho": ratio("64x16").map(|r| r >= 0.6),
            "p99Under1msAt10k": figure(rows, "open-10k", "ours", "p99Us").map(|p| p < 1000.0),
        },
    }))
}

/// What the machine is: cores, CPU model, kernel, compiler.
fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    let output = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    json!({
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": cpu,
        "kernel": output("uname", &["-sr"]),
        "rustc": output("rustc", &["--version"]),
        "server": env!("CARGO_PKG_VERSION"),
    })
}

fn markdown(report: &Value) -> String {
    let mut text = String::from("# Benchmark report\n\n");
    let machine = &report["machine"];
    text.push_str(&format!(
        "{} cores, {}; {}; {}.{}\n\n",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or(""),
        machine["kernel"].as_str().unwrap_or(""),
        machine["rustc"].as_str().unwrap_or(""),
        if report["smoke"] == json!(true) {
            " Smoke run: 2 s per scenario, not a measurement."
        } else {
            ""
        }
    ));
    text.push_str("| scenario | server | calls/s | p50 µs | p99 µs | p99.9 µs | errors |\n|---|---|---|---|---|---|---|\n");
    for row in report["results"].as_array().into_iter().flatten() {
        let s = &row["summary"];
        text.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} |\n",
            row["scenario"].as_str().unwrap_or(""),
            row["server"].as_str().unwrap_or(""),
            s["callsPerSecond"].as_f64().unwrap_or(0.0),
            s["p50Us"],
            s["p99Us"],
            s["p999Us"],
            s["errors"],
        ));
    }
    text.push_str("\n| ratio | value |\n|---|---|\n");
    for (name, value) in report["ratios"].as_object().into_iter().flatten() {
        text.push_str(&format!(
            "| {name} | {:.2} |\n",
            value.as_f64().unwrap_or(0.0)
        ));
    }
    text
}
