//! The `sqrt` tool.

use mcp_protocol::ToolAnnotations;
use schemars::JsonSchema;
use serde::Deserialize;

use super::MathResult;
use crate::{Tool, ToolContext, ToolError};

/// The argument of a unary operation.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnaryParams {
    /// The operand.
    pub a: f64,
}

/// The square root of a non-negative number.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sqrt;

impl Tool for Sqrt {
    type Params = UnaryParams;
    type Output = MathResult;

    fn name(&self) -> &str {
        "sqrt"
    }

    fn description(&self) -> &str {
        "The square root of a. Fails when a is negative."
    }

    fn annotations(&self) -> ToolAnnotations {
        crate::tool::self_contained()
    }

    async fn call(&self, p: UnaryParams, _ctx: ToolContext) -> Result<MathResult, ToolError> {
        if p.a < 0.0 {
            return Err(ToolError::Failed(format!(
                "square root of a negative number: {} has no real square root",
                p.a
            )));
        }
        Ok(MathResult {
            result: p.a.sqrt(),
            operation: "sqrt".to_owned(),
            a: p.a,
            b: None,
        })
    }
}
