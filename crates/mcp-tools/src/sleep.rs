//! The `sleep` tool: waits, then returns. Lets users check their client's timeouts,
//! cancellation and concurrency against a real server.

use std::time::Duration;

use mcp_protocol::ToolAnnotations;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ProgressUpdate, Tool, ToolContext, ToolError};

/// The arguments of `sleep`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SleepParams {
    /// How long to wait, in milliseconds.
    pub ms: u64,
}

/// The output of `sleep`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SleepOutput {
    /// How long the call waited, in milliseconds.
    pub slept_ms: u64,
}

/// Waits for up to `max_ms` milliseconds; cancellable at any moment.
#[derive(Debug, Clone, Copy)]
pub struct Sleep {
    /// The longest wait a caller may ask for.
    pub max_ms: u64,
}

impl Default for Sleep {
    fn default() -> Self {
        Self { max_ms: 300_000 }
    }
}

impl Tool for Sleep {
    type Params = SleepParams;
    type Output = SleepOutput;

    /// A task when the client takes tasks: it may run long.
    fn task_support(&self) -> crate::TaskSupport {
        crate::TaskSupport::Optional
    }

    fn name(&self) -> &str {
        "sleep"
    }

    fn description(&self) -> &str {
        "Waits for `ms` milliseconds (at most 300000), then returns; reports progress when asked. Useful to check a client's timeouts, progress display, cancellation and concurrent calls."
    }

    fn annotations(&self) -> ToolAnnotations {
        crate::tool::self_contained()
    }

    async fn call(&self, p: SleepParams, ctx: ToolContext) -> Result<SleepOutput, ToolError> {
        if p.ms > self.max_ms {
            return Err(ToolError::InvalidArguments(format!(
                "`ms` is {}, more than the limit of {} ms",
                p.ms, self.max_ms
            )));
        }
        let mut progress = ctx.progress;
        let total = Duration::from_millis(p.ms);
        let started = tokio::time::Instant::now();
        let deadline = started + total;
        // With a progress token, report about ten times over the wait (at most every 50 ms).
        let tick = (total / 10).max(Duration::from_millis(50));
        let mut next_report = started + tick;
        loop {
            let wake = if progress.is_requested() {
                next_report.min(deadline)
            } else {
                deadline
            };
            tokio::select! {
                () = ctx.cancel.cancelled() => return Err(ToolError::Cancelled),
                () = tokio::time::sleep_until(wake) => {}
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            let elapsed = now.duration_since(started).as_millis();
            progress.report(ProgressUpdate {
                progress: elapsed as f64,
                total: Some(p.ms as f64),
                message: Some(format!("slept {elapsed} of {} ms", p.ms)),
            });
            next_report += tick;
        }
        if p.ms > 0 {
            progress.report(ProgressUpdate {
                progress: p.ms as f64,
                total: Some(p.ms as f64),
                message: Some(format!("slept {0} of {0} ms", p.ms)),
            });
        }
        Ok(SleepOutput { slept_ms: p.ms })
    }
}
