//! Tools: the [`Tool`] trait, the [`ToolRegistry`] that lists and calls them, and the tools
//! this server ships.
//!
//! A tool is a plain Rust type with a params type (`Deserialize + JsonSchema`) and an output
//! type (`Serialize + JsonSchema`); its input and output schemas are derived from them, so
//! they cannot drift from the code. Tool failures are results with `isError: true`, never
//! protocol errors.

#![warn(missing_docs)]

mod context;
mod math;
mod registry;
mod sleep;
mod tool;

pub use context::{Progress, ProgressSink, ProgressUpdate, ToolContext};
pub use math::{BinaryOp, BinaryParams, MathResult, MathTool, Sqrt, UnaryParams};
pub use registry::{Page, RegistryError, ToolRegistry};
pub use sleep::{Sleep, SleepOutput, SleepParams};
pub use tool::{Tool, ToolError};
