//! The `process_batch` tool: a batch of synthetic items, each costing real CPU work, with
//! progress (rate and ETA), cancellation between items, and injected failures.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::context::rate_message;
use crate::{ProgressUpdate, Tool, ToolContext, ToolError};

/// The largest batch one call may ask for.
pub(crate) const MAX_BATCH_ITEMS: u64 = 100_000_000;
/// The most work units one item may cost.
pub(crate) const MAX_ITEM_COST: u32 = 1_000_000;
/// How many failures the result lists; the count is always exact.
pub(crate) const LISTED_FAILURES: usize = 100;

/// The arguments of `process_batch`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchParams {
    /// How many items to process (at most 100,000,000).
    pub count: u64,
    /// Work units per item: rounds of a hash over the item (default 1,000, at most
    /// 1,000,000). About 1 µs per 1,000 units on a current core.
    #[serde(default = "default_cost")]
    pub cost: u32,
    /// When set, every `fail_every`-th item fails (items n·fail_every, counting from 1).
    #[serde(default)]
    pub fail_every: Option<u64>,
}

fn default_cost() -> u32 {
    1_000
}

/// One item that failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ItemFailure {
    /// The item's number, counting from 1.
    pub item: u64,
    /// Why it failed.
    pub error: String,
}

/// The result of `process_batch`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchSummary {
    /// The batch's label, as used in progress messages.
    pub batch: String,
    /// Items asked for.
    pub total: u64,
    /// Items processed (succeeded or failed); less than `total` when the batch was stopped.
    pub processed: u64,
    /// Items that succeeded.
    pub succeeded: u64,
    /// Items that failed.
    pub failed: u64,
    /// Whether the batch was stopped before the end.
    pub cancelled: bool,
    /// Wall time of the processing, in milliseconds.
    pub duration_ms: u64,
    /// Processed items per second.
    pub items_per_second: f64,
    /// The first failures (at most 100); `failed` has the exact count.
    pub failures: Vec<ItemFailure>,
    /// A digest of every item's output, so the work cannot be skipped.
    pub checksum: String,
    /// Set when the batch was interrupted (the server restarted) and resumed: how many
    /// items were done before. The totals and the checksum cover the whole batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<u64>,
}

/// How far a batch got: saved as its checkpoint, so that an interrupted batch carries on
/// from the next item with the same totals and checksum as an uninterrupted one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchCheckpoint {
    processed: u64,
    succeeded: u64,
    failed: u64,
    failures: Vec<ItemFailure>,
    digest: u64,
    duration_ms: u64,
}

/// Processes synthetic items on a blocking thread, one heavy slot per batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessBatch;

impl Tool for ProcessBatch {
    type Params = BatchParams;
    type Output = BatchSummary;

    /// A task when the client takes tasks: it may run long.
    fn task_support(&self) -> crate::TaskSupport {
        crate::TaskSupport::Optional
    }

    fn name(&self) -> &str {
        "process_batch"
    }

    fn resumable(&self) -> bool {
        true
    }

    fn description(&self) -> &str {
        "Processes `count` synthetic items, each costing `cost` units of real CPU work, and reports progress with rate and ETA. \
         Every `fail_every`-th item fails without stopping the batch. Returns totals, duration, rate and the failures. \
         Waits for a free slot when the server is busy (the queue position is reported as progress); stops between items when cancelled."
    }

    async fn call(&self, p: BatchParams, mut ctx: ToolContext) -> Result<BatchSummary, ToolError> {
        if p.count > MAX_BATCH_ITEMS {
            return Err(ToolError::InvalidArguments(format!(
                "`count` is {}, more than the limit of {MAX_BATCH_ITEMS}",
                p.count
            )));
        }
        if p.cost > MAX_ITEM_COST {
            return Err(ToolError::InvalidArguments(format!(
                "`cost` is {}, more than the limit of {MAX_ITEM_COST}",
                p.cost
            )));
        }
        if p.fail_every == Some(0) {
            return Err(ToolError::InvalidArguments(
                "`fail_every` must be at least 1".to_owned(),
            ));
        }
        let label = format!("batch {}", ctx.call_label);
        let Some(permit) = ctx.heavy_slot(&label).await else {
            return Err(ToolError::Cancelled);
        };
        let resume = ctx
            .checkpoint
            .resume_state()
            .and_then(|state| serde_json::from_value::<BatchCheckpoint>(state.clone()).ok())
            .filter(|c| c.processed <= p.count && c.succeeded + c.failed == c.processed);
        let checkpoint = ctx.checkpoint.clone();
        let cancel = ctx.cancel.clone();
        let mut progress = ctx.progress;
        let log = ctx.log.clone();
        log.info(format!("{label}: started, {} items", p.count));
        let job = move || {
            // The slot is held for as long as the work runs, even if the caller gave up.
            let _permit = permit;
            let started = tokio::time::Instant::now();
            let mut summary = BatchSummary {
                batch: label.clone(),
                total: p.count,
                processed: 0,
                succeeded: 0,
                failed: 0,
                cancelled: false,
                duration_ms: 0,
                items_per_second: 0.0,
                failures: Vec::new(),
                checksum: String::new(),
                resumed_from: None,
            };
            let mut digest = 0xcbf2_9ce4_8422_2325_u64;
            let mut earlier = std::time::Duration::ZERO;
            if let Some(c) = resume {
                log.warning(format!(
                    "{label}: resuming after item {} of {}",
                    c.processed, p.count
                ));
                summary.processed = c.processed;
                summary.succeeded = c.succeeded;
                summary.failed = c.failed;
                summary.failures = c.failures;
                summary.resumed_from = Some(c.processed);
                digest = c.digest;
                earlier = std::time::Duration::from_millis(c.duration_ms);
            }
            let first = summary.processed + 1;
            let total = p.count as f64;
            progress.report(ProgressUpdate {
                progress: summary.processed as f64,
                total: Some(total),
                message: Some(rate_message(&label, summary.processed, p.count, earlier)),
            });
            for item in first..=p.count {
                if cancel.is_cancelled() {
                    summary.cancelled = true;
                    break;
                }
                digest ^= work(item, p.cost);
                digest = digest.rotate_left(5);
                summary.processed = item;
                if p.fail_every.is_some_and(|n| item % n == 0) {
                    summary.failed += 1;
                    if summary.failures.len() < LISTED_FAILURES {
                        summary.failures.push(ItemFailure {
                            item,
                            error: format!(
                                "item {item}: injected failure (every {}th item fails)",
                                p.fail_every.unwrap_or(0)
                            ),
                        });
                    }
                } else {
                    summary.succeeded += 1;
                }
                if item == p.count || progress.is_due() {
                    progress.report(ProgressUpdate {
                        progress: item as f64,
                        total: Some(total),
                        message: Some(rate_message(
                            &label,
                            item,
                            p.count,
                            earlier + started.elapsed(),
                        )),
                    });
                    if checkpoint.is_requested() {
                        let state = BatchCheckpoint {
                            processed: summary.processed,
                            succeeded: summary.succeeded,
                            failed: summary.failed,
                            failures: summary.failures.clone(),
                            digest,
                            duration_ms: (earlier + started.elapsed()).as_millis() as u64,
                        };
                        if let Ok(state) = serde_json::to_value(state) {
                            checkpoint.save(state);
                        }
                    }
                }
            }
            let elapsed = earlier + started.elapsed();
            summary.duration_ms = elapsed.as_millis() as u64;
            summary.items_per_second = if elapsed.as_secs_f64() > 0.0 {
                (summary.processed as f64 / elapsed.as_secs_f64()).round()
            } else {
                0.0
            };
            summary.checksum = format!("{digest:016x}");
            log.info(format!(
                "{label}: {} after {} of {} items ({} failed)",
                if summary.cancelled {
                    "stopped"
                } else {
                    "finished"
                },
                summary.processed,
                summary.total,
                summary.failed
            ));
            summary
        };
        let summary = tokio::task::spawn_blocking(job)
            .await
            .map_err(|e| ToolError::Failed(format!("the batch worker failed: {e}")))?;
        if summary.cancelled {
            return Err(ToolError::Stopped(format!(
                "{} stopped after {} of {} items ({} succeeded, {} failed)",
                summary.batch, summary.processed, summary.total, summary.succeeded, summary.failed
            )));
        }
        Ok(summary)
    }

    fn render(&self, s: &BatchSummary) -> String {
        let mut text = format!(
            "{}: processed {} of {} items in {:.3} s ({} items/s): {} succeeded, {} failed.",
            s.batch,
            s.processed,
            s.total,
            s.duration_ms as f64 / 1000.0,
            s.items_per_second,
            s.succeeded,
            s.failed
        );
        for f in &s.failures {
            text.push_str(&format!("\n- {}", f.error));
        }
        if (s.failures.len() as u64) < s.failed {
            text.push_str(&format!(
                "\n- ... and {} more",
                s.failed - s.failures.len() as u64
            ));
        }
        text
    }
}

/// One item's work: `cost` rounds of a 64-bit mix (splitmix64), which the optimizer cannot
/// remove because the result feeds the batch's checksum.
fn work(item: u64, cost: u32) -> u64 {
    let mut x = item;
    for _ in 0..cost {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x = z ^ (z >> 31);
    }
    x
}
