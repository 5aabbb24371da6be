//! `mcp-bench batch` and `mcp-bench images`: one long tool call over WebSocket, timed, with
//! its progress notifications counted; and, for images, the same work as a bare loop over
//! the `image` crate, the figure the tool is measured against.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use rayon::prelude::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;

#[derive(clap::Args, Clone)]
pub(crate) struct Batch {
    /// `ws://host:port/path` of the server.
    #[arg(long)]
    url: String,
    /// Items in the batch.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Work units per item (`process_batch`'s `cost`).
    #[arg(long, default_value_t = 1_000)]
    cost: u32,
    /// Only with progress (a progressToken); by default, rounds of a batch without and one
    /// with, in alternating order, and what progress costs.
    #[arg(long)]
    only_progress: bool,
    /// Rounds to run; the summary has the medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

#[derive(clap::Args, Clone)]
pub(crate) struct Images {
    /// `ws://host:port/path` of the server.
    #[arg(long)]
    url: String,
    /// The server's `--data-root`.
    #[arg(long)]
    data_root: PathBuf,
    /// Images to generate (once) and process.
    #[arg(long, default_value_t = 2_000)]
    count: usize,
    /// Their side, in pixels.
    #[arg(long, default_value_t = 256)]
    size: u32,
    /// Threads of the bare loop: the server's `--heavy-concurrency`.
    #[arg(long)]
    threads: usize,
    /// Rounds of both, in alternating order; the summary has the medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// What one call gave: its structured result, its progress notifications, and how long.
struct Called {
    result: Value,
    notifications: u64,
    seconds: f64,
}

/// Calls `tool` with `arguments` on a fresh session and waits for the answer.
async fn call(url: &str, tool: &str, arguments: Value, progress: bool) -> anyhow::Result<Called> {
    let mut socket = crate::sessions::open(url, std::net::Ipv4Addr::LOCALHOST).await?;
    let mut params = json!({"name": tool, "arguments": arguments});
    if progress {
        params["_meta"] = json!({"progressToken": "bench"});
    }
    let started = Instant::now();
    socket
        .send(Frame::text(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
                .to_string(),
        ))
        .await?;
    let mut notifications = 0u64;
    loop {
        let Some(frame) = socket.next().await else {
            bail!("the server closed the connection during {tool}")
        };
        let Frame::Text(text) = frame? else { continue };
        if text.contains("\"notifications/progress\"") {
            notifications += 1;
            continue;
        }
        let value: Value = serde_json::from_str(&text)?;
        if value["id"] != json!(1) {
            continue;
        }
        let seconds = started.elapsed().as_secs_f64();
        if value.get("error").is_some() || value["result"]["isError"] == json!(true) {
            bail!("{tool} failed: {text}");
        }
        let _ = socket.close(None).await;
        return Ok(Called {
            result: value["result"]["structuredContent"].clone(),
            notifications,
            seconds,
        });
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

pub(crate) async fn batch(args: Batch) -> anyhow::Result<Value> {
    let (mut plain, mut with_progress) = (Vec::new(), Vec::new());
    // The same, from the client's clock: the call's wall time, request to answer.
    let (mut plain_wall, mut with_progress_wall) = (Vec::new(), Vec::new());
    let mut notifications = Vec::new();
    let mut per_second = Vec::new();
    for round in 0..args.rounds.max(1) {
        // Alternating order, so that neither variant always runs second.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for progress in order {
            if !progress && args.only_progress {
                continue;
            }
            let called = call(
                &args.url,
                "process_batch",
                json!({"count": args.count, "cost": args.cost}),
                progress,
            )
            .await?;
            let rate = called.result["itemsPerSecond"]
                .as_f64()
                .context("no itemsPerSecond in the result")?;
            let wall = args.count as f64 / called.seconds;
            if progress {
                with_progress.push(rate);
                with_progress_wall.push(wall);
                notifications.push(called.notifications as f64);
                per_second.push(called.notifications as f64 / called.seconds);
            } else {
                plain.push(rate);
                plain_wall.push(wall);
            }
        }
    }
    let plain = (!plain.is_empty()).then(|| median(plain));
    let with_progress = median(with_progress);
    let plain_wall = (!plain_wall.is_empty()).then(|| median(plain_wall));
    let with_progress_wall = median(with_progress_wall);
    Ok(json!({
        "count": args.count,
        "cost": args.cost,
        "rounds": args.rounds.max(1),
        "itemsPerSecond": plain,
        "itemsPerSecondWithProgress": with_progress,
        "progressCost": plain.map(|plain| 1.0 - with_progress / plain),
        "itemsPerSecondWall": plain_wall,
        "itemsPerSecondWithProgressWall": with_progress_wall,
        "progressCostWall": plain_wall.map(|plain| 1.0 - with_progress_wall / plain),
        "notifications": median(notifications),
        "notificationsPerSecond": median(per_second),
    }))
}

pub(crate) async fn images(args: Images) -> anyhow::Result<Value> {
    let input = args.data_root.join("bench-images");
    generate(&input, args.count, args.size)?;
    let output = args.data_root.join("bench-thumbs-bare");
    std::fs::create_dir_all(&output)?;
    // One run of each is at the mercy of the machine's noise (±10% here): several rounds,
    // in alternating order so neither always runs on a warmer cache.
    let (mut tool_rates, mut bare_rates) = (Vec::new(), Vec::new());
    let mut tool_wall_rates = Vec::new();
    for round in 0..args.rounds.max(1) {
        for tool_first in [round % 2 == 0, round % 2 == 1] {
            if tool_first {
                let (own, wall) = tool_images(&args.url, args.count).await?;
                tool_rates.push(own);
                tool_wall_rates.push(wall);
            } else {
                let (input, output) = (input.clone(), output.clone());
                bare_rates.push(
                    tokio::task::spawn_blocking(move || bare_loop(&input, &output, args.threads))
                        .await??,
                );
            }
        }
    }
    let (tool, bare) = (median(tool_rates), median(bare_rates));
    let tool_wall = median(tool_wall_rates);
    Ok(json!({
        "images": args.count,
        "size": args.size,
        "threads": args.threads,
        "rounds": args.rounds.max(1),
        "toolImagesPerSecond": tool,
        "bareImagesPerSecond": bare,
        "ratio": tool / bare,
        "toolImagesPerSecondWall": tool_wall,
        "ratioWall": tool_wall / bare,
    }))
}

/// One `process_images` call over the `count` generated images: the images per second it
/// reports, and the same from the client's clock (request to answer).
async fn tool_images(url: &str, count: usize) -> anyhow::Result<(f64, f64)> {
    let called = call(
        url,
        "process_images",
        json!({"input_dir": "bench-images", "output_dir": "bench-thumbs-server"}),
        true,
    )
    .await?;
    if called.result["failed"] != json!(0) {
        bail!("process_images failed on some images: {}", called.result);
    }
    let own = called.result["itemsPerSecond"]
        .as_f64()
        .context("no itemsPerSecond")?;
    Ok((own, count as f64 / called.seconds))
}

/// Writes `count` PNG images of `size`², a gradient with noise (so they compress like
/// pictures, not like flat colour), unless they are already there.
fn generate(dir: &Path, count: usize, size: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    // The marker is beside the folder: the tool would take a file in it for an image.
    let marker = dir.with_extension(format!("generated-{count}-{size}"));
    if marker.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        std::fs::remove_file(entry?.path())?;
    }
    (0..count).into_par_iter().try_for_each(|n| {
        let mut state = (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let image = image::RgbImage::from_fn(size, size, |x, y| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state & 0x1f) as u32;
            image::Rgb([
                ((x * 255 / size + noise) & 0xff) as u8,
                ((y * 255 / size + noise) & 0xff) as u8,
                (((x + y + n as u32) * 3 + noise) & 0xff) as u8,
            ])
        });
        image.save(dir.join(format!("image-{n:05}.png")))
    })?;
    std::fs::write(marker, "")?;
    Ok(())
}

/// The same work as `process_images` (open, guess the format, decode, thumbnail at 128 px,
/// save in the same format) on a rayon pool of `threads`, with nothing around it.
fn bare_loop(input: &Path, output: &Path, threads: usize) -> anyhow::Result<f64> {
    // The pool is the server's from its start: built before the clock starts.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    // Timed from the listing on, as the tool's own duration is.
    let started = Instant::now();
    let mut files: Vec<PathBuf> = std::fs::read_dir(input)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    pool.install(|| {
        files.par_iter().try_for_each(|file| -> anyhow::Result<()> {
            let reader = image::ImageReader::open(file)?.with_guessed_format()?;
            let format = reader.format().context("unknown format")?;
            let thumb = reader.decode()?.thumbnail(128, 128);
            thumb.save_with_format(output.join(file.file_name().context("no name")?), format)?;
            Ok(())
        })
    })?;
    Ok(files.len() as f64 / started.elapsed().as_secs_f64())
}
