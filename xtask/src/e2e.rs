//! `cargo xtask e2e`: the web console in a real browser. Debian's Chromium (installed with
//! apt-get when missing; Playwright's own browser download cannot work on the build
//! machines) is driven by playwright-core (locked in tests/browser, installed into
//! target/e2e-deps) against the debug binary. Screenshots go to target/e2e.

use std::path::Path;
use std::process::Command;

use crate::ci::{apt_install, ensure_node, npm_install, target_dir};
use crate::{root, run};

/// Where Debian puts Chromium.
const CHROMIUM: &str = "/usr/bin/chromium";

pub(crate) fn run_all() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    run(Command::new(&cargo).args(["build", "--locked", "-p", "mcp-server"]))?;
    if !Path::new(CHROMIUM).exists() {
        apt_install(&["chromium"])?;
    }
    ensure_node()?;
    let deps = npm_install("tests/browser", "e2e-deps")?;
    let out = target_dir().join("e2e");
    std::fs::create_dir_all(&out)?;
    run(Command::new("node")
        .arg("--test")
        .arg(root().join("tests/browser/console.test.mjs"))
        .env(
            "MCP_SERVER_BIN",
            target_dir().join("debug").join("mcp-server"),
        )
        .env("E2E_DEPS", &deps)
        .env("CHROMIUM", CHROMIUM)
        .env("E2E_OUT", &out))
}
