//! Tools: the [`Tool`] trait, the [`ToolRegistry`] that lists and calls them, and the tools
//! this server ships.
//!
//! A tool is a plain Rust type with a params type (`Deserialize + JsonSchema`) and an output
//! type (`Serialize + JsonSchema`); its input and output schemas are derived from them, so
//! they cannot drift from the code. Tool failures are results with `isError: true`, never
//! protocol errors.

#![warn(missing_docs)]

mod batch;
mod context;
pub mod fixtures;
mod images;
mod math;
mod paths;
mod provider;
mod registry;
mod scheduler;
mod sleep;
mod tool;

pub use batch::{BatchParams, BatchSummary, ItemFailure, ProcessBatch};
pub use context::{
    Checkpoint, CheckpointSink, Client, ClientSink, LogSink, Logger, Progress, ProgressSink,
    ProgressUpdate, TaskGate, ToolContext, rate_message,
};
pub use images::{ERRORS_FILE, FileError, ImagesParams, ImagesSummary, ProcessImages};
pub use math::{BinaryOp, BinaryParams, MathResult, MathTool, Sqrt, UnaryParams};
pub use paths::{DataRoot, Folder};
pub use provider::{PromptFuture, Provider};
pub use registry::{Page, RegistryError, ToolRegistry, ToolsConfig};
pub use scheduler::{Caller, Permit, Scheduler};
pub use sleep::{Sleep, SleepOutput, SleepParams};
pub use tool::{BoxFuture, DynamicTool, TaskSupport, Tool, ToolError};
