//! Project automation, run as `cargo xtask <command>`.
//!
//! - `ci`: everything CI checks, in order, installing what it needs: formatting, clippy with
//!   warnings denied, cargo-deny, every Rust test, and the official MCP Python SDK client
//!   against the real binary, and the official conformance suite (`conformance`).
//! - `conformance`: the official MCP conformance suite's server scenarios against the
//!   release binary, scored against a committed baseline of expected failures.
//! - `bench`: the load generator against the server, its ceiling and its peers; `--smoke` in
//!   CI.
//! - `e2e`: the web console in Debian's Chromium, driven by playwright-core.
//! - `fuzz`: every fuzz target for a bounded time (CI runs a short pass).
//! - `soak`: one principal abuses the server while another works (CI runs a short pass).
//! - `codegen`: regenerates committed artifacts (the CLI reference in README.md); a tidy test
//!   fails when they are stale.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod ci;
mod codegen;
mod conformance;
mod e2e;
mod fuzz;
mod scale;
mod soak;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Project automation")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every check CI runs (fmt, clippy, cargo-deny, tests, SDK tests, conformance).
    Ci,
    /// Run the official MCP conformance suite against the release binary.
    Conformance,
    /// Benchmark the server against its ceiling and its peers (target/bench/report.md).
    Bench {
        /// A few seconds per scenario: checks the harness, measures nothing.
        #[arg(long)]
        smoke: bool,
        /// Hold 100,000 sessions in the capacity scenario instead of 10,000 (as many as the
        /// open files limit allows).
        #[arg(long)]
        full: bool,
        /// Only these groups of scenarios (comma-separated): calls, capacity, tools, scale,
        /// store.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Drive the web console in a real browser (Debian's Chromium, installed when missing).
    E2e,
    /// Run the fuzz targets (cargo-fuzz, stable toolchain) for a bounded time each.
    Fuzz {
        /// How long each target runs.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Merge the new inputs that reach new code into the committed corpus (fuzz/corpus).
        #[arg(long)]
        merge: bool,
        /// Unoptimized: builds in less than half the time, runs about 12 times slower (CI's
        /// short pass over the corpus).
        #[arg(long)]
        quick: bool,
        /// Only these targets (default: all of jsonrpc, envelope, tutorial, http).
        targets: Vec<String>,
    },
    /// One principal abuses the release server while another works: the victim's latency
    /// and errors, the server's memory and data over time, nothing acknowledged lost.
    Soak {
        /// How long to run.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Regenerate committed artifacts (README's CLI reference).
    Codegen {
        /// Fail instead of writing when an artifact is stale.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Cmd::Ci => ci::all(),
        Cmd::Conformance => conformance::run_all(),
        Cmd::E2e => e2e::run_all(),
        Cmd::Bench { smoke, full, only } => bench::run_all(smoke, full, only),
        Cmd::Fuzz {
            seconds,
            merge,
            quick,
            targets,
        } => fuzz::run_all(seconds, &targets, merge, quick),
        Cmd::Soak { seconds } => soak::run_all(seconds),
        Cmd::Codegen { check } => codegen::run(check),
    }
}

/// The workspace root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// Runs a command in the workspace root, echoing it, and fails when it fails.
pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("==> {}", render(cmd));
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot start `{}`", render(cmd)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", render(cmd));
    }
    Ok(())
}

/// Starts a server whose first line of output is `listening on [http://]HOST:PORT` (ours, the
/// benchmark's echo and peers) and returns it with that address. A server that says anything
/// else is killed.
pub(crate) fn spawn_listening(cmd: &mut Command) -> anyhow::Result<(Child, String)> {
    use std::io::{BufRead as _, BufReader};
    let mut child = cmd
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", render(cmd)))?;
    let mut first = String::new();
    let read = match child.stdout.take() {
        Some(stdout) => BufReader::new(stdout).read_line(&mut first).map(drop),
        None => Ok(()),
    };
    let address = first
        .trim()
        .strip_prefix("listening on ")
        .map(|a| a.trim_start_matches("http://").to_owned());
    match (read, address) {
        (Ok(()), Some(address)) if !address.is_empty() => Ok((child, address)),
        (read, _) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{}` did not say where it listens: {first:?}{}",
                render(cmd),
                read.err().map(|e| format!(" ({e})")).unwrap_or_default()
            )
        }
    }
}

fn render(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
