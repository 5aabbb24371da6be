//! Tidy checks, run as ordinary tests: module docs, dependency directions, generated files.

use std::path::Path;

use crate::root;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_says_what_it_is_for() {
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "tests", "bench", "fuzz"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} Rust files", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .map(|f| f.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` line: {missing:#?}"
    );
}

#[test]
fn the_benchmark_peers_stay_out_of_the_product() {
    // bench/ is a workspace of its own: the peers are measured, never linked or audited with
    // the product.
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
    for peer in ["rmcp", "tower-mcp", "mcp-peers"] {
        assert!(
            !lock.contains(&format!("name = \"{peer}\"\n")),
            "{peer} is in the product's Cargo.lock"
        );
    }
    let peers = std::fs::read_to_string(root().join("bench/Cargo.lock")).unwrap();
    assert!(peers.contains("name = \"rmcp\"\n") && peers.contains("name = \"tower-mcp\"\n"));
}

/// The normal dependencies named in a crate's Cargo.toml.
fn dependencies(krate: &str) -> Vec<String> {
    let manifest =
        std::fs::read_to_string(root().join("crates").join(krate).join("Cargo.toml")).unwrap();
    let mut deps = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps
            && let Some((name, _)) = line.split_once(['=', '.'])
            && !name.trim().is_empty()
            && !name.starts_with('#')
        {
            deps.push(name.trim().to_owned());
        }
    }
    deps
}

/// Each crate's allowed dependencies on the workspace's own crates (the layering, top to
/// bottom), and the outside crates it must not use. Every crate under `crates/` has a row.
const LAYERS: &[(&str, &[&str], &[&str])] = &[
    // The protocol crate does no IO and has no runtime.
    ("mcp-protocol", &[], &["tokio", "hyper", "tracing"]),
    // Tools know the protocol's types, not sessions or transports.
    ("mcp-tools", &["mcp-protocol"], &["hyper"]),
    // The session core never touches a socket.
    (
        "mcp-session",
        &["mcp-protocol", "mcp-tools"],
        &["hyper", "hyper-tungstenite"],
    ),
    // Authentication reads tokens and makes principals; where tokens travel is the
    // transports' business.
    (
        "mcp-auth",
        &["mcp-protocol", "mcp-session"],
        &["hyper-tungstenite"],
    ),
    // A storage engine behind the session store's trait.
    ("mcp-store-redb", &["mcp-session"], &["hyper"]),
    ("mcp-store-redis", &["mcp-session"], &["hyper"]),
    // The WebSocket transport makes no protocol decisions: it never parses JSON (it knows the
    // protocol crate only for the shape of a dialect's translation).
    ("mcp-ws", &["mcp-protocol", "mcp-session"], &["serde_json"]),
    // The Streamable HTTP transport makes no protocol decisions either: it reads the ids,
    // methods and progress tokens of what it receives, only to route the answers back.
    (
        "mcp-http",
        &["mcp-protocol", "mcp-session"],
        &["hyper-tungstenite", "mcp-tools"],
    ),
    // The binary and the library that wires everything together.
    (
        "mcp-server",
        &[
            "mcp-protocol",
            "mcp-session",
            "mcp-tools",
            "mcp-ws",
            "mcp-http",
            "mcp-auth",
            "mcp-gateway",
            "mcp-store-redb",
            "mcp-store-redis",
        ],
        &[],
    ),
    // A client knows the protocol, nothing of the server's insides.
    ("mcp-client", &["mcp-protocol"], &[]),
    // The gateway: upstreams reached as a client, their tools offered through the hub; no
    // transport of the server's own.
    (
        "mcp-gateway",
        &["mcp-client", "mcp-protocol", "mcp-session", "mcp-tools"],
        &[],
    ),
    // What the tests share: never a dependency of the product.
    ("mcp-test-support", &["mcp-server"], &[]),
    // The load generator talks to servers over the network only.
    ("mcp-bench", &[], &[]),
];

/// The normal dependencies of every package in the workspace, by package directory.
fn packages() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.extend(["examples", "tests", "xtask"].map(|d| root().join(d)));
    dirs
}

#[test]
fn only_tests_use_the_test_support_crate() {
    for dir in packages() {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let normal = manifest
            .split("\n[")
            .find(|section| section.starts_with("dependencies]"))
            .unwrap_or_default();
        assert!(
            !normal.contains("mcp-test-support"),
            "{} depends on mcp-test-support outside [dev-dependencies]",
            dir.display()
        );
    }
}

#[test]
fn every_crate_depends_only_on_what_its_layer_allows() {
    let mut crates: Vec<String> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    crates.sort();
    for krate in &crates {
        let Some((_, allowed, banned)) = LAYERS.iter().find(|(name, ..)| name == krate) else {
            panic!("crates/{krate} has no row in tidy.rs's LAYERS: say what it may depend on");
        };
        let deps = dependencies(krate);
        assert!(
            !deps.is_empty(),
            "{krate} has no [dependencies] section to check"
        );
        for dep in &deps {
            let internal = crates.iter().any(|c| c == dep);
            assert!(
                !internal || allowed.contains(&dep.as_str()),
                "{krate} must not depend on {dep} (allowed: {allowed:?})"
            );
            assert!(
                !banned.contains(&dep.as_str()),
                "{krate} must not depend on {dep}"
            );
        }
    }
}

#[test]
fn the_readme_shows_the_example_server_as_it_is() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let example = std::fs::read_to_string(root().join("examples/count_primes.rs")).unwrap();
    assert!(
        readme.contains(&format!("```rust\n{example}```")),
        "README.md's \"Serve your own tools\" section differs from examples/count_primes.rs"
    );
}

#[test]
fn readme_cli_reference_is_fresh() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let fresh = crate::codegen::readme_with_cli_reference(&readme).unwrap();
    assert!(
        fresh == readme,
        "README.md's CLI reference is stale: run `cargo xtask codegen`"
    );
}
