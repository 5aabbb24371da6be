//! `cargo xtask bench`: builds the server, the load generator (`mcp-bench`) and the peers
//! (bench/, their own workspace) in release mode, starts each server on loopback, runs each
//! scenario, and writes `target/bench/report.json` and `report.md`: the machine, every
//! figure, every ratio, and where each target of docs/performance.md stands.
//!
//! `--smoke` runs every scenario briefly so the harness never rots (CI runs it); the full run
//! is manual. `--full` holds 100,000 sessions instead of 10,000 in the capacity scenario.
//! Timings are reported, never asserted.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::ci::{python_venv, target_dir};
use crate::{root, run, spawn_listening};

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

impl Running {
    fn ws(&self, path: &str) -> String {
        format!("ws://{}{path}", self.address)
    }

    fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

/// Starts `program args` and reads the address from its first line (`listening on ...`).
fn start(name: &'static str, program: &Path, args: &[&str]) -> anyhow::Result<Running> {
    let (child, address) = spawn_listening(Command::new(program).args(args).stderr(Stdio::null()))
        .with_context(|| format!("cannot start {name}"))?;
    Ok(Running {
        name,
        child,
        address,
    })
}

/// A closed loop of 64 connections with 16 calls in flight each, connection N with the
/// Nth of `tokens`.
fn with_tokens(tokens: &[String]) -> Vec<&str> {
    let mut args = vec!["--connections", "64", "--inflight", "16"];
    for token in tokens {
        args.extend(["--token", token.as_str()]);
    }
    args
}

/// How many principals the production-settings scenarios have.
const PRINCIPALS: usize = 64;

/// The credentials of [`PRINCIPALS`] principals: a static token each, and a JWT each, signed
/// with a secret in a temporary file.
struct Credentials {
    tokens: Vec<String>,
    jwts: Vec<String>,
    dir: tempfile::TempDir,
}

impl Credentials {
    const ISSUER: &str = "https://issuer.bench.invalid";
    const AUDIENCE: &str = "mcp-bench";

    fn new(principals: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let secret = format!("bench-jwt-secret-{}", std::process::id()).repeat(2);
        std::fs::write(dir.path().join("secret"), &secret)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        let jwts = (0..principals)
            .map(|i| {
                let claims = json!({"iss": Self::ISSUER, "aud": Self::AUDIENCE, "sub": format!("p{i}"),
                    "scope": "mcp:tools", "exp": now.as_secs() + 24 * 3600});
                jsonwebtoken::encode(
                    &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                    &claims,
                    &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            tokens: (0..principals)
                .map(|i| format!("bench-token-{i:03}-{}", std::process::id()))
                .collect(),
            jwts,
            dir,
        })
    }

    /// The server's arguments that accept the JWTs.
    fn jwt_args(&self) -> Vec<String> {
        vec![
            "--jwt-secret-file".to_owned(),
            self.dir
                .path()
                .join("secret")
                .to_string_lossy()
                .into_owned(),
            "--jwt-issuer".to_owned(),
            Self::ISSUER.to_owned(),
            "--jwt-audience".to_owned(),
            Self::AUDIENCE.to_owned(),
        ]
    }
}

/// One measurement: a scenario, a server, the load generator's summary.
struct Row {
    scenario: &'static str,
    server: &'static str,
    summary: Value,
}

/// How long and how big each scenario is.
struct Plan {
    smoke: bool,
    /// The groups of scenarios to run ([`GROUPS`]); empty: all of them.
    only: Vec<String>,
    seconds: &'static str,
    warmup: &'static str,
    sessions: usize,
    fanout_runs: usize,
    batch_items: u64,
    rounds: usize,
    images: usize,
}

impl Plan {
    fn new(smoke: bool, full: bool, only: Vec<String>) -> Self {
        if smoke {
            Self {
                smoke,
                only,
                seconds: "2",
                warmup: "0.5",
                sessions: 1_000,
                fanout_runs: 5,
                batch_items: 200_000,
                rounds: 1,
                images: 200,
            }
        } else {
            Self {
                smoke,
                only,
                seconds: "10",
                warmup: "2",
                sessions: if full { 100_000 } else { 10_000 },
                fanout_runs: 20,
                batch_items: 1_000_000,
                rounds: 5,
                images: 2_000,
            }
        }
    }
}

/// The groups of scenarios `--only` may name.
const GROUPS: [&str; 5] = ["calls", "capacity", "tools", "scale", "store"];

impl Plan {
    /// Whether this run has the scenarios of `group`.
    fn wants(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }
}

/// Runs `mcp-bench ARGS` and parses its summary.
fn bench(bench: &Path, args: &[&str]) -> anyhow::Result<Value> {
    eprintln!("==> mcp-bench {}", args.join(" "));
    let output = Command::new(bench)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run mcp-bench")?;
    if !output.status.success() {
        bail!("mcp-bench {} failed", args.join(" "));
    }
    serde_json::from_slice(&output.stdout).context("the load generator's summary")
}

/// The hard limit on open files of this process, which its children inherit (Linux).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(4)?.parse().ok()
}

/// Builds the server and the load generator in release mode; returns the cargo it used.
pub(crate) fn build_release() -> anyhow::Result<String> {
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
    Ok(cargo)
}

pub(crate) fn run_all(smoke: bool, full: bool, only: Vec<String>) -> anyhow::Result<()> {
    if let Some(unknown) = only.iter().find(|g| !GROUPS.contains(&g.as_str())) {
        bail!(
            "no group of scenarios `{unknown}`: the groups are {}",
            GROUPS.join(", ")
        );
    }
    let plan = Plan::new(smoke, full, only);
    let cargo = build_release()?;
    let peers_target = target_dir().join("bench-peers");
    let mut rows = Vec::new();
    if plan.wants("calls") {
        run(Command::new(&cargo)
            .args([
                "build",
                "--release",
                "--locked",
                "--manifest-path",
                "bench/Cargo.toml",
                "--target-dir",
            ])
            .arg(&peers_target))?;
    }
    let release = target_dir().join("release");
    let peers = peers_target.join("release");
    let mcp_bench = release.join("mcp-bench");
    let data = target_dir().join("bench").join("data");
    std::fs::create_dir_all(&data)?;
    let data_arg = data.to_string_lossy().into_owned();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let cores_arg = cores.to_string();

    // Capacity is bounded by open files: one per session in the server, and in the client.
    let limit = open_files_limit();
    let sessions = match limit {
        Some(limit) if limit < plan.sessions + 1_000 => limit.saturating_sub(1_000),
        _ => plan.sessions,
    };
    let room = (sessions + 1_000).to_string();
    let start_ours_with = |name: &'static str, extra: &[String]| {
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--data-root",
            &data_arg,
            "--heavy-concurrency",
            &cores_arg,
            "--max-connections",
            &room,
            "--max-sessions",
            &room,
        ];
        args.extend(extra.iter().map(String::as_str));
        start(name, &release.join("mcp-server"), &args)
    };
    let start_ours = || start_ours_with("ours", &[]);
    if plan.wants("calls") {
        let python = python_venv()?;
        let ours = start_ours()?;
        let echo = start("echo", &mcp_bench, &["echo", "--listen", "127.0.0.1:0"])?;
        let tower = start("tower-mcp", &peers.join("peer-tower-mcp"), &[])?;
        let rmcp = start("rmcp", &peers.join("peer-rmcp"), &[])?;
        let python_peer = start("python-sdk", &python, &["bench/python/peer_websocket.py"])?;
        // Production settings: 64 principals, each with its own token (static, or a JWT),
        // under the per-principal rate limit that authentication turns on (1,000 requests a
        // second, bursts of 2,000): the same loads, each connection a principal of its own.
        let credentials = Credentials::new(PRINCIPALS)?;
        let static_args: Vec<String> = (0..PRINCIPALS)
            .flat_map(|i| {
                [
                    "--auth-token".to_owned(),
                    format!("p{i}={}", credentials.tokens[i]),
                ]
            })
            .collect();
        let ours_token = start_ours_with("ours-token", &static_args)?;
        let ours_jwt = start_ours_with("ours-jwt", &credentials.jwt_args())?;

        // 1. Throughput, closed loop; 2. latency at a fixed offered load, open loop. Each
        // load is run `plan.rounds` times, the servers alternating, in the reverse order every
        // other round, so that a drift of the machine does not favour whoever runs first.
        let mut jobs: Vec<(&'static str, &Running, String, Vec<&str>)> = Vec::new();
        for (scenario, connections, inflight) in [("1x64", "1", "64"), ("64x16", "64", "16")] {
            let shape = vec!["--connections", connections, "--inflight", inflight];
            jobs.push((scenario, &ours, ours.ws("/mcp"), shape.clone()));
            jobs.push((
                scenario,
                &echo,
                echo.ws("/"),
                [&shape[..], &["--raw"]].concat(),
            ));
            // tower-mcp does not select the `mcp` subprotocol, which a client asking for it
            // must then refuse.
            jobs.push((
                scenario,
                &tower,
                tower.ws("/"),
                [&shape[..], &["--subprotocol", "none"]].concat(),
            ));
            jobs.push((scenario, &python_peer, python_peer.ws("/"), shape));
        }
        jobs.push((
            "64x16",
            &ours_token,
            ours_token.ws("/mcp"),
            with_tokens(&credentials.tokens),
        ));
        jobs.push((
            "64x16",
            &ours_jwt,
            ours_jwt.ws("/mcp"),
            with_tokens(&credentials.jwts),
        ));
        // Streamable HTTP: HTTP/1.1 carries one request per connection at a time.
        // (`--inflight` is WebSocket's; an HTTP/1.1 connection has one request at a time.)
        let http_tokens = with_tokens(&credentials.tokens);
        jobs.push(("http-64", &ours_token, ours_token.http("/mcp"), http_tokens));
        for server in [&ours, &rmcp] {
            jobs.push((
                "http-64",
                server,
                server.http("/mcp"),
                vec!["--connections", "64"],
            ));
        }
        for server in [&ours, &tower] {
            let subprotocol = if server.name == "ours" { "mcp" } else { "none" };
            let path = if server.name == "ours" { "/mcp" } else { "/" };
            let open = vec![
                "--connections",
                "16",
                "--rate",
                "10000",
                "--subprotocol",
                subprotocol,
            ];
            jobs.push(("open-10k", server, server.ws(path), open));
        }
        // 2026-07-28: no `initialize`, every request stands alone; over WebSocket against
        // tower-mcp (built with its 2026-07-28 protocol), over HTTP against rmcp.
        for (scenario, connections, inflight) in
            [("modern-1x64", "1", "64"), ("modern-64x16", "64", "16")]
        {
            let shape = vec![
                "--modern",
                "--connections",
                connections,
                "--inflight",
                inflight,
            ];
            jobs.push((scenario, &ours, ours.ws("/mcp"), shape.clone()));
            jobs.push((
                scenario,
                &tower,
                tower.ws("/"),
                [&shape[..], &["--subprotocol", "none"]].concat(),
            ));
        }
        for server in [&ours, &rmcp] {
            let shape = vec!["--modern", "--connections", "64"];
            jobs.push(("modern-http-64", server, server.http("/mcp"), shape));
        }
        let open = vec!["--modern", "--connections", "16", "--rate", "10000"];
        jobs.push(("modern-open-10k", &ours, ours.ws("/mcp"), open));
        let mut samples = Vec::new();
        for round in 0..plan.rounds {
            let order: Vec<usize> = match round % 2 {
                0 => (0..jobs.len()).collect(),
                _ => (0..jobs.len()).rev().collect(),
            };
            for i in order {
                let (scenario, server, url, extra) = &jobs[i];
                let mut args = vec![
                    "load",
                    "--url",
                    url,
                    "--seconds",
                    plan.seconds,
                    "--warmup",
                    plan.warmup,
                ];
                args.extend_from_slice(extra);
                let summary = bench(&mcp_bench, &args)
                    .with_context(|| format!("{scenario} on {}", server.name))?;
                samples.push(Row {
                    scenario,
                    server: server.name,
                    summary,
                });
            }
        }
        rows.extend(medians(samples));
        drop((
            ours,
            echo,
            tower,
            rmcp,
            python_peer,
            ours_token,
            ours_jwt,
            credentials,
        ));
    }

    if plan.wants("capacity") {
        // 3. Capacity and 5. fan-out: the same held sessions, on a fresh server, so that what the
        // load left in its allocator is not taken for room.
        let ours = start_ours()?;
        let pid = ours.child.id().to_string();
        let sessions_arg = sessions.to_string();
        let runs = plan.fanout_runs.to_string();
        let mut held = bench(
            &mcp_bench,
            &[
                "sessions",
                "--url",
                &ours.ws("/mcp"),
                "--sessions",
                &sessions_arg,
                "--server-pid",
                &pid,
                "--broadcast-url",
                &ours.http("/admin/broadcast"),
                "--runs",
                &runs,
            ],
        )?;
        let fanout = held
            .as_object_mut()
            .and_then(|o| o.remove("fanout"))
            .unwrap_or_default();
        held["asked"] = json!(plan.sessions);
        held["openFilesLimit"] = json!(limit);
        rows.push(Row {
            scenario: "capacity",
            server: "ours",
            summary: held,
        });
        rows.push(Row {
            scenario: "fanout",
            server: "ours",
            summary: fanout,
        });
        drop(ours);
    }
    if plan.wants("tools") {
        let ours = start_ours()?;
        // 4. Progress: the batch without and with a progress token (the default interval).
        let items = plan.batch_items.to_string();
        let rounds = plan.rounds.to_string();
        rows.push(Row {
            scenario: "batch",
            server: "ours",
            summary: bench(
                &mcp_bench,
                &[
                    "batch",
                    "--url",
                    &ours.ws("/mcp"),
                    "--count",
                    &items,
                    "--rounds",
                    &rounds,
                ],
            )?,
        });

        // 6. Images: the tool against a bare loop over the `image` crate.
        let count = plan.images.to_string();
        rows.push(Row {
            scenario: "images",
            server: "ours",
            summary: bench(
                &mcp_bench,
                &[
                    "images",
                    "--url",
                    &ours.ws("/mcp"),
                    "--data-root",
                    &data_arg,
                    "--count",
                    &count,
                    "--threads",
                    &cores_arg,
                    "--rounds",
                    &rounds,
                ],
            )?,
        });
        drop(ours);

        // 4b. Notifications per second to a fast client: progress not rate-limited at all.
        let unthrottled = start(
            "ours-unthrottled",
            &release.join("mcp-server"),
            &["--listen", "127.0.0.1:0", "--progress-interval-ms", "0"],
        )?;
        rows.push(Row {
            scenario: "progress-stream",
            server: "ours",
            summary: bench(
                &mcp_bench,
                &[
                    "batch",
                    "--url",
                    &unthrottled.ws("/mcp"),
                    "--count",
                    &items,
                    "--rounds",
                    "1",
                    "--only-progress",
                ],
            )?,
        });
        drop(unthrottled);
    }
    if plan.wants("scale") {
        // 5. Scale-out: 2026-07-28 calls (no session: any instance serves any of them) through
        // HAProxy, to one instance and to three, on one Redis. On one machine the instances
        // share its cores with the balancer and the load generator.
        for (scenario, instances) in [("lb-1", 1), ("lb-3", 3)] {
            let cluster = crate::scale::Cluster::start(&release.join("mcp-server"), instances)?;
            let url = format!("http://{}/mcp", cluster.address);
            let args = [
                "load",
                "--url",
                &url,
                "--modern",
                "--connections",
                "32",
                "--seconds",
                plan.seconds,
                "--warmup",
                plan.warmup,
            ];
            rows.push(Row {
                scenario,
                server: "ours",
                summary: bench(&mcp_bench, &args)
                    .with_context(|| format!("{scenario} through the balancer"))?,
            });
        }
    }
    if plan.wants("store") {
        // 6. The store: what it costs to write before answering. A resumable 2025 session writes
        // every message before it sends it; a 2026-07-28 task is a durable record, created,
        // written as it changes and read by every poll. On redb (the embedded default: each
        // commit fsync'd), and on Redis with its AOF fsync'd before each write is acknowledged
        // (`always`: the same promise) and once a second (`everysec`: the documented
        // deployment's, which may lose the last second when Redis itself dies).
        for (store, resumable, tasks) in [
            ("redb", "resumable-redb", "tasks-redb"),
            (
                "redis-always",
                "resumable-redis-always",
                "tasks-redis-always",
            ),
            (
                "redis-everysec",
                "resumable-redis-everysec",
                "tasks-redis-everysec",
            ),
        ] {
            let dir = tempfile::tempdir()?;
            let data = dir.path().to_string_lossy().into_owned();
            let mut redis = None;
            let store_args = match store.strip_prefix("redis-") {
                Some(fsync) => {
                    crate::ci::ensure_services()?;
                    let (child, url) = crate::scale::start_redis(dir.path(), fsync)?;
                    redis = Some(Running {
                        name: "redis-server",
                        child,
                        address: url.clone(),
                    });
                    ["--store".to_owned(), url]
                }
                None => ["--data-dir".to_owned(), data],
            };
            let server = start(
                "ours-stored",
                &release.join("mcp-server"),
                &[
                    "--listen",
                    "127.0.0.1:0",
                    &store_args[0],
                    &store_args[1],
                    // Every task of the run is kept until it expires.
                    "--max-tasks-per-principal",
                    "100000000",
                ],
            )?;
            let load = [
                "load",
                "--url",
                &server.ws("/mcp"),
                "--resumable",
                "--connections",
                "1",
                "--inflight",
                "64",
                "--seconds",
                plan.seconds,
                "--warmup",
                plan.warmup,
            ];
            if store == "redb" {
                // The baseline: the same calls in a session that is not resumable.
                let plain: Vec<&str> = load
                    .iter()
                    .copied()
                    .filter(|a| *a != "--resumable")
                    .collect();
                rows.push(Row {
                    scenario: "not-resumable",
                    server: "ours",
                    summary: bench(&mcp_bench, &plain).context("not-resumable")?,
                });
            }
            rows.push(Row {
                scenario: resumable,
                server: "ours",
                summary: bench(&mcp_bench, &load).context(resumable)?,
            });
            let tasks_args = [
                "tasks",
                "--url",
                &server.http("/mcp"),
                "--connections",
                "8",
                "--seconds",
                plan.seconds,
                "--warmup",
                plan.warmup,
            ];
            rows.push(Row {
                scenario: tasks,
                server: "ours",
                summary: bench(&mcp_bench, &tasks_args).context(tasks)?,
            });
            drop(server);
            drop(redis);
        }
    }
    let report = report(&rows, &plan)?;
    let out = target_dir().join("bench");
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(out.join("report.md"), markdown(&report))?;
    eprintln!("==> wrote {}", out.join("report.md").display());
    Ok(())
}

/// The rounds of each scenario and server as one row: the round of median throughput, with
/// every round's throughput (`rounds`) and their spread, (max - min) / median (`spread`).
fn medians(samples: Vec<Row>) -> Vec<Row> {
    let mut keys: Vec<(&'static str, &'static str)> = Vec::new();
    for row in &samples {
        if !keys.contains(&(row.scenario, row.server)) {
            keys.push((row.scenario, row.server));
        }
    }
    let rate = |row: &Row| row.summary["callsPerSecond"].as_f64().unwrap_or(0.0);
    keys.into_iter()
        .filter_map(|(scenario, server)| {
            let mut rounds: Vec<&Row> = samples
                .iter()
                .filter(|r| r.scenario == scenario && r.server == server)
                .collect();
            rounds.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
            let median = rounds.get(rounds.len() / 2)?;
            let rates: Vec<f64> = rounds.iter().map(|r| rate(r)).collect();
            let (min, max) = (rates[0], rates[rates.len() - 1]);
            let mut summary = median.summary.clone();
            summary["rounds"] = json!(rates);
            summary["spread"] = json!(if rate(median) > 0.0 {
                (max - min) / rate(median)
            } else {
                0.0
            });
            Some(Row {
                scenario,
                server,
                summary,
            })
        })
        .collect()
}

fn figure(rows: &[Row], scenario: &str, server: &str, key: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.scenario == scenario && r.server == server)
        .and_then(|r| r.summary[key].as_f64())
}

fn rate(rows: &[Row], scenario: &str, server: &str) -> Option<f64> {
    figure(rows, scenario, server, "callsPerSecond")
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

/// A target: the figure, the bound, and whether it is met.
fn target(what: &str, value: Option<f64>, bound: f64, at_least: bool) -> Value {
    json!({
        "target": what,
        "value": value,
        "bound": bound,
        "met": value.map(|v| if at_least { v >= bound } else { v < bound }),
    })
}

fn report(rows: &[Row], plan: &Plan) -> anyhow::Result<Value> {
    let ours = |s| rate(rows, s, "ours");
    let over = |s, peer| ratio(ours(s), rate(rows, s, peer));
    let progress_cost = figure(rows, "batch", "ours", "progressCost");
    let ratios = json!({
        "oursOverEcho1x64": over("1x64", "echo"),
        "oursOverEcho64x16": over("64x16", "echo"),
        "oursOverTowerMcp1x64": over("1x64", "tower-mcp"),
        "oursOverTowerMcp64x16": over("64x16", "tower-mcp"),
        "oursOverPythonSdk1x64": over("1x64", "python-sdk"),
        "oursOverPythonSdk64x16": over("64x16", "python-sdk"),
        "oursHttpOverRmcpHttp": over("http-64", "rmcp"),
        "staticTokensOverOpen64x16": ratio(rate(rows, "64x16", "ours-token"), ours("64x16")),
        "jwtsOverOpen64x16": ratio(rate(rows, "64x16", "ours-jwt"), ours("64x16")),
        "staticTokensOverOpenHttp64": ratio(rate(rows, "http-64", "ours-token"), ours("http-64")),
        "threeInstancesOverOne": ratio(ours("lb-3"), ours("lb-1")),
        "resumableOverNotResumable": ratio(ours("resumable-redb"), ours("not-resumable")),
        "redisEverysecOverRedbTasks": ratio(
            figure(rows, "tasks-redis-everysec", "ours", "tasksPerSecond"),
            figure(rows, "tasks-redb", "ours", "tasksPerSecond"),
        ),
        "redisAlwaysOverRedbTasks": ratio(
            figure(rows, "tasks-redis-always", "ours", "tasksPerSecond"),
            figure(rows, "tasks-redb", "ours", "tasksPerSecond"),
        ),
        "progressCost": progress_cost,
        "imagesOverBareLoop": figure(rows, "images", "ours", "ratio"),
        "imagesOverBareLoopWall": figure(rows, "images", "ours", "ratioWall"),
        "progressCostWall": figure(rows, "batch", "ours", "progressCostWall"),
    });
    let worse = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let targets = vec![
        target(
            "WebSocket throughput >= 80% of the echo ceiling (worse of 1x64, 64x16)",
            worse(over("1x64", "echo"), over("64x16", "echo")),
            0.8,
            true,
        ),
        target(
            ">= 2x tower-mcp's WebSocket, both with TCP_NODELAY (worse of 1x64, 64x16)",
            worse(over("1x64", "tower-mcp"), over("64x16", "tower-mcp")),
            2.0,
            true,
        ),
        target(
            ">= 20x the Python SDK's WebSocket server (worse of 1x64, 64x16)",
            worse(over("1x64", "python-sdk"), over("64x16", "python-sdk")),
            20.0,
            true,
        ),
        target(
            ">= 1.5x rmcp's Streamable HTTP at equal concurrency (http-64, 2025 sessions)",
            over("http-64", "rmcp"),
            1.5,
            true,
        ),
        target(
            ">= 2x tower-mcp's WebSocket in 2026-07-28 (worse of 1x64, 64x16)",
            worse(
                over("modern-1x64", "tower-mcp"),
                over("modern-64x16", "tower-mcp"),
            ),
            2.0,
            true,
        ),
        target(
            ">= 1.5x rmcp's Streamable HTTP in 2026-07-28 at equal concurrency (64)",
            over("modern-http-64", "rmcp"),
            1.5,
            true,
        ),
        target(
            "p99 < 1 ms at 10,000 calls/s over WebSocket, 2026-07-28 (µs)",
            figure(rows, "modern-open-10k", "ours", "p99Us"),
            1000.0,
            false,
        ),
        target(
            "p99 < 1 ms at 10,000 calls/s over WebSocket (µs)",
            figure(rows, "open-10k", "ours", "p99Us"),
            1000.0,
            false,
        ),
        target(
            "<= 16 KiB of server memory per idle session (bytes)",
            figure(rows, "capacity", "ours", "serverBytesPerSession"),
            16384.0,
            false,
        ),
        target(
            "sessions held (asked for in this run)",
            figure(rows, "capacity", "ours", "sessions"),
            plan.sessions as f64,
            true,
        ),
        target(
            "progress costs < 2% of the batch's throughput",
            progress_cost,
            0.02,
            false,
        ),
        target(
            "fan-out to every session, p99 < 100 ms (µs)",
            figure(rows, "fanout", "ours", "lastP99Us"),
            100_000.0,
            false,
        ),
        target(
            "process_images >= 95% of the bare loop",
            figure(rows, "images", "ours", "ratio"),
            0.95,
            true,
        ),
    ];
    Ok(json!({
        "smoke": plan.smoke,
        "machine": machine(),
        "results": rows.iter().map(|r| json!({"scenario": r.scenario, "server": r.server, "summary": r.summary})).collect::<Vec<_>>(),
        "ratios": ratios,
        "targets": targets,
    }))
}

/// What the machine is: cores, CPU model, kernel, compiler, and the peers' versions.
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
    let output = |program: &Path, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let python_sdk = python_venv().ok().map(|python| {
        output(
            &python,
            &[
                "-c",
                "from importlib.metadata import version as v; print('mcp', v('mcp'), 'uvicorn', v('uvicorn'))",
            ],
        )
    });
    json!({
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": cpu,
        "kernel": output(Path::new("uname"), &["-sr"]),
        "rustc": output(Path::new("rustc"), &["--version"]),
        "server": env!("CARGO_PKG_VERSION"),
        // What was measured: the commit, and whether the tree had changes beside it.
        "commit": output(Path::new("git"), &["rev-parse", "--short", "HEAD"]),
        "uncommittedChanges": !output(Path::new("git"), &["status", "--porcelain"]).is_empty(),
        "peers": {
            "tower-mcp": locked_version("tower-mcp"),
            "rmcp": locked_version("rmcp"),
            "python": python_sdk,
        },
    })
}

/// A package's version in bench/Cargo.lock.
fn locked_version(name: &str) -> Option<String> {
    let lock = std::fs::read_to_string(root().join("bench/Cargo.lock")).ok()?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{name}\"") {
            return lines
                .next()?
                .strip_prefix("version = \"")?
                .strip_suffix('"')
                .map(str::to_owned);
        }
    }
    None
}

fn fmt_number(value: &Value) -> String {
    match value.as_f64() {
        Some(v) if v.fract() == 0.0 || v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "–".to_owned(),
    }
}

fn markdown(report: &Value) -> String {
    let mut text = String::from("# Benchmark report\n\n");
    let machine = &report["machine"];
    text.push_str(&format!(
        "Commit {}{}. {} cores, {}; {}; {}. Peers: tower-mcp {}, rmcp {}, {}.{}\n\n",
        machine["commit"].as_str().unwrap_or("?"),
        if machine["uncommittedChanges"] == json!(true) {
            " with uncommitted changes"
        } else {
            ""
        },
        machine["cores"],
        machine["cpu"].as_str().unwrap_or(""),
        machine["kernel"].as_str().unwrap_or(""),
        machine["rustc"].as_str().unwrap_or(""),
        machine["peers"]["tower-mcp"].as_str().unwrap_or("?"),
        machine["peers"]["rmcp"].as_str().unwrap_or("?"),
        machine["peers"]["python"].as_str().unwrap_or("?"),
        if report["smoke"] == json!(true) {
            " **Smoke run**: a few seconds per scenario, not a measurement."
        } else {
            ""
        }
    ));
    let results: Vec<&Value> = report["results"].as_array().into_iter().flatten().collect();
    let in_scenarios = |names: &[&str]| {
        results
            .iter()
            .filter(|r| names.contains(&r["scenario"].as_str().unwrap_or("")))
            .copied()
            .collect::<Vec<_>>()
    };
    text.push_str("## Throughput and latency (`tools/call add`)\n\nThe median of the rounds, and their spread ((max - min) / median).\n\n| scenario | server | calls/s | spread | p50 µs | p99 µs | p99.9 µs |\n|---|---|---|---|---|---|---|\n");
    for row in in_scenarios(&[
        "1x64",
        "64x16",
        "http-64",
        "open-10k",
        "modern-1x64",
        "modern-64x16",
        "modern-http-64",
        "modern-open-10k",
        "lb-1",
        "lb-3",
    ]) {
        let s = &row["summary"];
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            row["scenario"].as_str().unwrap_or(""),
            row["server"].as_str().unwrap_or(""),
            fmt_number(&s["callsPerSecond"]),
            s["spread"]
                .as_f64()
                .map_or("–".to_owned(), |c| format!("{:.1}%", c * 100.0)),
            s["p50Us"],
            s["p99Us"],
            s["p999Us"],
        ));
    }
    for row in in_scenarios(&["capacity"]) {
        let s = &row["summary"];
        text.push_str(&format!(
            "\n## Capacity\n\n{} idle initialized sessions (asked for {}; open files limit {}): established in {:.2} s ({} sessions/s); server memory {} bytes per session on average (RSS {} → {} KiB), {} bytes for each session of the second half (the marginal cost); `ping` round trip while all are open p50 {} µs, p99 {} µs.\n",
            s["sessions"],
            s["asked"],
            s["openFilesLimit"],
            s["establishSeconds"].as_f64().unwrap_or(0.0),
            fmt_number(&s["sessionsPerSecond"]),
            fmt_number(&s["serverBytesPerSession"]),
            s["serverRssBeforeKiB"],
            s["serverRssAfterKiB"],
            fmt_number(&s["serverBytesPerSessionMarginal"]),
            s["pingP50Us"],
            s["pingP99Us"],
        ));
    }
    for row in in_scenarios(&["fanout"]) {
        let s = &row["summary"];
        text.push_str(&format!(
            "\n## Broadcast fan-out\n\nTime until the last session has the notification, over {} broadcasts: p50 {} µs, p99 {} µs (each session: p50 {} µs, p99 {} µs); {} deliveries missing. CPU per notification delivered: {} µs in the server, {} µs in the load generator.\n",
            s["runs"], s["lastP50Us"], s["lastP99Us"], s["eachP50Us"], s["eachP99Us"], s["missing"],
            fmt_number(&s["serverCpuUsPerDelivery"]), fmt_number(&s["clientCpuUsPerDelivery"]),
        ));
    }
    if !in_scenarios(&["batch", "progress-stream"]).is_empty() {
        text.push_str("\n## Progress (`process_batch`)\n\nItems per second by the tool's own timer, and by the client's clock (request to answer).\n\n| scenario | items | items/s without progress | items/s with progress | progress cost | client's clock: without / with / cost | notifications | notifications/s |\n|---|---|---|---|---|---|---|---|\n");
        for row in in_scenarios(&["batch", "progress-stream"]) {
            let s = &row["summary"];
            let percent = |v: &Value| {
                v.as_f64()
                    .map_or("–".to_owned(), |c| format!("{:.1}%", c * 100.0))
            };
            text.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} / {} / {} | {} | {} |\n",
                row["scenario"].as_str().unwrap_or(""),
                s["count"],
                fmt_number(&s["itemsPerSecond"]),
                fmt_number(&s["itemsPerSecondWithProgress"]),
                percent(&s["progressCost"]),
                fmt_number(&s["itemsPerSecondWall"]),
                fmt_number(&s["itemsPerSecondWithProgressWall"]),
                percent(&s["progressCostWall"]),
                fmt_number(&s["notifications"]),
                fmt_number(&s["notificationsPerSecond"]),
            ));
        }
    }
    for row in in_scenarios(&["images"]) {
        let s = &row["summary"];
        text.push_str(&format!(
            "\n## Images\n\n{} generated {}×{} PNGs, {} threads, median of {} rounds: `process_images` {} images/s by its own timer, {} by the client's clock (request to answer); the bare loop {} images/s (its pool built before its clock starts). Ratio {:.3} by the tool's timer, {:.3} by the client's clock.\n",
            s["images"], s["size"], s["size"], s["threads"], s["rounds"],
            fmt_number(&s["toolImagesPerSecond"]),
            fmt_number(&s["toolImagesPerSecondWall"]),
            fmt_number(&s["bareImagesPerSecond"]),
            s["ratio"].as_f64().unwrap_or(0.0),
            s["ratioWall"].as_f64().unwrap_or(0.0),
        ));
    }
    if !in_scenarios(&["tasks-redb", "tasks-redis-always", "tasks-redis-everysec"]).is_empty() {
        text.push_str("\n## The store\n\nA resumable 2025 session over WebSocket (1 connection, 64 calls in flight; every message written before it is sent), against the same session not resumable; and 2026-07-28 tasks over HTTP (8 clients, each creating a `process_batch` of 100 items, polling it to its end and checking its result).\n\n| store | resumable calls/s | p50 µs | p99 µs | tasks/s | p50 µs | p99 µs | polls per task |\n|---|---|---|---|---|---|---|---|\n");
        for store in ["redb", "redis-always", "redis-everysec"] {
            let find = |prefix: &str| {
                results
                    .iter()
                    .find(|r| r["scenario"].as_str() == Some(&format!("{prefix}-{store}")))
                    .map(|r| r["summary"].clone())
                    .unwrap_or_default()
            };
            let (calls, tasks) = (find("resumable"), find("tasks"));
            text.push_str(&format!(
                "| {store} | {} | {} | {} | {} | {} | {} | {} |\n",
                fmt_number(&calls["callsPerSecond"]),
                calls["p50Us"],
                calls["p99Us"],
                fmt_number(&tasks["tasksPerSecond"]),
                tasks["p50Us"],
                tasks["p99Us"],
                fmt_number(&tasks["pollsPerTask"]),
            ));
        }
        for row in in_scenarios(&["not-resumable"]) {
            let s = &row["summary"];
            text.push_str(&format!(
                "\nNot resumable (redb's server, the same load): {} calls/s, p50 {} µs, p99 {} µs.\n",
                fmt_number(&s["callsPerSecond"]),
                s["p50Us"],
                s["p99Us"],
            ));
        }
    }
    text.push_str("\n## Ratios\n\n| ratio | value |\n|---|---|\n");
    for (name, value) in report["ratios"].as_object().into_iter().flatten() {
        text.push_str(&format!("| {name} | {} |\n", fmt_number(value)));
    }
    text.push_str("\n## Targets\n\n| target | value | bound | met |\n|---|---|---|---|\n");
    for t in report["targets"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            t["target"].as_str().unwrap_or(""),
            fmt_number(&t["value"]),
            fmt_number(&t["bound"]),
            match t["met"].as_bool() {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            }
        ));
    }
    text
}
