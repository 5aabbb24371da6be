//! `cargo xtask soak`: the release server on loopback with two principals, one abusing it
//! every way the hardening issue found while the other works (`mcp-bench soak`); prints the
//! victim's latency and errors and the server's memory and data directory over time, writes
//! `target/soak/report.json`, and fails when the victim saw an error or lost an acknowledged
//! call. CI runs a short pass; docs/security.md has a full run's figures.

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::ci::target_dir;
use crate::spawn_listening;

pub(crate) fn run_all(seconds: u64) -> anyhow::Result<()> {
    crate::bench::build_release()?;
    let release = target_dir().join("release");
    let dir = target_dir().join("soak");
    let _ = std::fs::remove_dir_all(&dir);
    let (data, root) = (dir.join("data"), dir.join("files"));
    std::fs::create_dir_all(&data)?;
    std::fs::create_dir_all(&root)?;
    let victim = "victim-token-0123456789abcdef";
    let attacker = "attacker-token-0123456789abcdef";
    let (mut server, address) = spawn_listening(
        Command::new(release.join("mcp-server"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .arg("--data-root")
            .arg(&root)
            .args([
                "--auth-token",
                &format!("victim={victim}"),
                "--auth-token",
                &format!("attacker={attacker}"),
                // Lower than its default (256 MiB), so that a short run reaches it.
                "--max-stored-bytes-per-principal",
                "33554432",
            ])
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null()),
    )
    .context("cannot start the server")?;
    eprintln!("==> mcp-bench soak for {seconds} s against {address}");
    let output = Command::new(release.join("mcp-bench"))
        .args([
            "soak",
            "--address",
            &address,
            "--victim",
            victim,
            "--attacker",
            attacker,
        ])
        .args([
            "--seconds",
            &seconds.to_string(),
            "--pid",
            &server.id().to_string(),
        ])
        .arg("--data-dir")
        .arg(&data)
        .stderr(Stdio::inherit())
        .output();
    let _ = server.kill();
    let _ = server.wait();
    let output = output.context("cannot run mcp-bench soak")?;
    if !output.status.success() {
        bail!("mcp-bench soak failed");
    }
    let report: Value = serde_json::from_slice(&output.stdout).context("the soak's report")?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let victim = &report["victim"];
    println!(
        "victim: {} calls, {} errors, p50 {} ms, p99 {} ms, max {} ms; {} batches, p99 {} ms; {} acknowledged, {} lost",
        victim["calls"],
        victim["errors"],
        victim["p50Ms"],
        victim["p99Ms"],
        victim["maxMs"],
        victim["batches"],
        victim["batchP99Ms"],
        victim["acknowledged"],
        victim["lost"]
    );
    if let Some(abuse) = report["abuse"].as_object() {
        for (kind, answers) in abuse {
            println!("abuse {kind}: {answers}");
        }
    }
    println!("| s | server RSS (MB) | data dir (MB) | victim p99 (ms) |");
    println!("|---|---|---|---|");
    for sample in report["samples"].as_array().into_iter().flatten() {
        println!(
            "| {} | {:.0} | {:.1} | {} |",
            sample["t"],
            sample["rssMb"].as_f64().unwrap_or_default(),
            sample["dataMb"].as_f64().unwrap_or_default(),
            sample["victimP99Ms"]
        );
    }
    if victim["lost"].as_u64() != Some(0) {
        bail!("the victim lost acknowledged calls: {victim}");
    }
    if victim["errors"].as_u64() != Some(0) {
        bail!("the victim saw errors: {victim}");
    }
    if victim["calls"].as_u64().unwrap_or(0) == 0 {
        bail!("the victim made no call");
    }
    eprintln!("==> soak passed");
    Ok(())
}
