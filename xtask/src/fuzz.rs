//! `cargo xtask fuzz`: every fuzz target in fuzz/ for a bounded time, with cargo-fuzz
//! (installed into target/tools) on the stable toolchain, without a sanitizer (Rust code is
//! memory-safe here: `unsafe` is forbidden, so what is sought is panics, overflows in debug
//! assertions, and hangs).
//!
//! Each target starts from its committed corpus (fuzz/corpus/TARGET) and the inputs of bugs it
//! found before (fuzz/regressions/TARGET), both read only, and writes what it finds to
//! target/fuzz/corpus/TARGET; a crash leaves its input in target/fuzz/artifacts/TARGET and
//! fails the run. `--merge` replaces the committed corpus with the smallest set of inputs,
//! old and new, that covers everything they cover (libFuzzer's set-cover merge), to be
//! committed.

use std::path::Path;
use std::process::Command;

use crate::ci::{install_tool, target_dir};
use crate::{root, run};

/// The cargo-fuzz release the targets are built with.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The fuzz targets, as named in fuzz/Cargo.toml.
pub(crate) const TARGETS: [&str; 4] = ["jsonrpc", "envelope", "tutorial", "http"];

pub(crate) fn run_all(
    seconds: u64,
    only: &[String],
    merge: bool,
    quick: bool,
) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let fuzz = install_tool(&cargo, "cargo-fuzz", CARGO_FUZZ_VERSION)?;
    let out = target_dir().join("fuzz");
    let targets: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|t| only.is_empty() || only.iter().any(|o| o == t))
        .collect();
    if targets.is_empty() {
        anyhow::bail!("no such target; the targets are {}", TARGETS.join(", "));
    }
    // Every target at once: their crates are built once, and linked side by side.
    run(&mut fuzz_command(&fuzz, &out, "build", &targets, quick))?;
    for target in targets {
        let committed = root().join("fuzz").join("corpus").join(target);
        let regressions = root().join("fuzz").join("regressions").join(target);
        let found = out.join("corpus").join(target);
        let artifacts = out.join("artifacts").join(target);
        std::fs::create_dir_all(&found)?;
        std::fs::create_dir_all(&artifacts)?;
        let mut command = fuzz_command(&fuzz, &out, "run", &[target], quick);
        command.arg(&found).arg(&committed);
        if regressions.is_dir() {
            command.arg(&regressions);
        }
        command
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-timeout=10")
            .arg("-rss_limit_mb=2048")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-print_final_stats=1");
        run(&mut command)?;
        if merge {
            let merged = out.join("merged").join(target);
            if merged.exists() {
                std::fs::remove_dir_all(&merged)?;
            }
            std::fs::create_dir_all(&merged)?;
            let mut command = fuzz_command(&fuzz, &out, "run", &[target], quick);
            command
                .arg(&merged)
                .arg(&committed)
                .arg(&found)
                .arg("--")
                .arg("-set_cover_merge=1");
            run(&mut command)?;
            std::fs::remove_dir_all(&committed)?;
            std::fs::create_dir_all(&committed)?;
            for file in std::fs::read_dir(&merged)? {
                let file = file?;
                std::fs::copy(file.path(), committed.join(file.file_name()))?;
            }
        }
    }
    Ok(())
}

/// `cargo fuzz VERB TARGETS` in fuzz/ (its own workspace and Cargo.lock), built into `out`:
/// in release mode with debug assertions (cargo-fuzz's default), or unoptimized when `quick`
/// (fuzz/Cargo.toml's dev profile: the whole server builds in about 3 minutes instead of 7
/// here, and runs about 12 times slower, which a short pass over the corpus does not mind).
/// `build` and `run` get the same flags, so a run builds nothing.
fn fuzz_command(fuzz: &Path, out: &Path, verb: &str, targets: &[&str], quick: bool) -> Command {
    let mut command = Command::new(fuzz);
    command.args(["fuzz", verb, "--sanitizer", "none"]);
    if quick {
        command.arg("--dev");
    }
    command
        .arg("--target-dir")
        .arg(out.join("build"))
        .arg("--fuzz-dir")
        .arg(root().join("fuzz"));
    match verb {
        // `build` takes one target or, without one, all of them.
        "build" if targets.len() == TARGETS.len() => {}
        _ => {
            command.args(targets);
        }
    }
    command
}
