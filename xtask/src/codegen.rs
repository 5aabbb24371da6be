//! Generated sections of committed files, kept in sync with the code they describe.

use std::path::Path;

use anyhow::{Context as _, bail};
use clap::CommandFactory as _;

const BEGIN: &str = "<!-- BEGIN GENERATED: mcp-server --help (cargo xtask codegen) -->";
const END: &str = "<!-- END GENERATED -->";

/// README.md with its CLI reference regenerated from clap's help.
pub(crate) fn readme_with_cli_reference(readme: &str) -> anyhow::Result<String> {
    // Environment values are hidden so that the output does not depend on who runs it.
    let help = mcp_server::Cli::command()
        .mut_args(|a| a.hide_env_values(true))
        .term_width(100)
        .render_long_help()
        .to_string();
    let help: String = help
        .lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect();
    let (before, rest) = readme
        .split_once(BEGIN)
        .with_context(|| format!("README.md lacks the marker {BEGIN}"))?;
    let (_, after) = rest
        .split_once(END)
        .with_context(|| format!("README.md lacks the marker {END}"))?;
    Ok(format!("{before}{BEGIN}\n```text\n{help}```\n{END}{after}"))
}

pub(crate) fn run(check: bool) -> anyhow::Result<()> {
    let path = crate::root().join("README.md");
    let current = std::fs::read_to_string(&path).context("cannot read README.md")?;
    let fresh = readme_with_cli_reference(&current)?;
    if fresh == current {
        eprintln!("README.md is up to date");
        return Ok(());
    }
    if check {
        bail!("README.md's CLI reference is stale: run `cargo xtask codegen`");
    }
    write(&path, &fresh)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("updated {}", path.display());
    Ok(())
}
