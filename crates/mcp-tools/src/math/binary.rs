//! The binary math tools: add, subtract, multiply, divide, power and modulo.

use mcp_protocol::ToolAnnotations;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{MathResult, finite};
use crate::{Tool, ToolContext, ToolError};

/// The arguments of a binary operation.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BinaryParams {
    /// The first operand.
    pub a: f64,
    /// The second operand.
    pub b: f64,
}

/// A binary arithmetic operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a - b
    Subtract,
    /// a * b
    Multiply,
    /// a / b; fails for b = 0.
    Divide,
    /// a raised to the power b.
    Power,
    /// The remainder of a / b with the sign of a; fails for b = 0.
    Modulo,
}

impl BinaryOp {
    /// Every operation, in the order they are listed.
    pub const ALL: [BinaryOp; 6] = [
        Self::Add,
        Self::Subtract,
        Self::Multiply,
        Self::Divide,
        Self::Power,
        Self::Modulo,
    ];

    /// The tool name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Subtract => "subtract",
            Self::Multiply => "multiply",
            Self::Divide => "divide",
            Self::Power => "power",
            Self::Modulo => "modulo",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Add => "Adds two numbers: a + b.",
            Self::Subtract => "Subtracts b from a: a - b.",
            Self::Multiply => "Multiplies two numbers: a * b.",
            Self::Divide => "Divides a by b: a / b. Fails when b is 0.",
            Self::Power => {
                "Raises a to the power b: a ^ b. Fails when the result is not a finite real number."
            }
            Self::Modulo => {
                "The remainder of a divided by b, with the sign of a (like C's fmod). Fails when b is 0."
            }
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Self::Add => "+",
            Self::Subtract => "-",
            Self::Multiply => "*",
            Self::Divide => "/",
            Self::Power => "^",
            Self::Modulo => "mod",
        }
    }

    /// Computes `a op b`, or says why it has no finite result.
    pub fn apply(self, a: f64, b: f64) -> Result<f64, ToolError> {
        let result = match self {
            Self::Add => a + b,
            Self::Subtract => a - b,
            Self::Multiply => a * b,
            Self::Divide if b == 0.0 => {
                return Err(ToolError::Failed(format!(
                    "division by zero: cannot divide {a} by 0"
                )));
            }
            Self::Divide => a / b,
            Self::Power => a.powf(b),
            Self::Modulo if b == 0.0 => {
                return Err(ToolError::Failed(format!(
                    "modulo by zero: {a} mod 0 is undefined"
                )));
            }
            Self::Modulo => a % b,
        };
        finite(result, || format!("{a} {} {b}", self.symbol()))
    }
}

/// A tool that performs one [`BinaryOp`].
#[derive(Debug, Clone, Copy)]
pub struct MathTool(pub BinaryOp);

impl Tool for MathTool {
    type Params = BinaryParams;
    type Output = MathResult;

    fn name(&self) -> &str {
        self.0.name()
    }

    fn description(&self) -> &str {
        self.0.description()
    }

    fn annotations(&self) -> ToolAnnotations {
        crate::tool::self_contained()
    }

    async fn call(&self, p: BinaryParams, _ctx: ToolContext) -> Result<MathResult, ToolError> {
        Ok(MathResult {
            result: self.0.apply(p.a, p.b)?,
            operation: self.0.name().to_owned(),
            a: p.a,
            b: Some(p.b),
        })
    }
}
