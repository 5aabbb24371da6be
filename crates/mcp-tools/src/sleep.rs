//! The `sleep` tool: waits, then returns. Lets users check their client's timeouts,
//! cancellation and concurrency against a real server.

use std::time::Duration;

use mcp_protocol::ToolAnnotations;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Tool, ToolContext, ToolError};

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

    fn name(&self) -> &str {
        "sleep"
    }

    fn description(&self) -> &str {
        "Waits for `ms` milliseconds (at most 300000), then returns. Useful to check a client's timeouts, cancellation and concurrent calls."
    }

    fn annotations(&self) -> ToolAnnotations {
        ToolAnnotations {
            read_only_hint: Some(true),
            idempotent_hint: Some(true),
            open_world_hint: Some(false),
        }
    }

    async fn call(&self, p: SleepParams, ctx: ToolContext) -> Result<SleepOutput, ToolError> {
        if p.ms > self.max_ms {
            return Err(ToolError::InvalidArguments(format!(
                "`ms` is {}, more than the limit of {} ms",
                p.ms, self.max_ms
            )));
        }
        tokio::select! {
            () = ctx.cancel.cancelled() => Err(ToolError::Cancelled),
            () = tokio::time::sleep(Duration::from_millis(p.ms)) => Ok(SleepOutput { slept_ms: p.ms }),
        }
    }
}
