//! The math tools: six binary operations and `sqrt`, each returning the seed's math result
//! shape `{"result": 8, "operation": "add", "a": 5, "b": 3}`.

mod binary;
mod sqrt;

use schemars::JsonSchema;
use serde::{Serialize, Serializer};

pub use binary::{BinaryOp, BinaryParams, MathTool};
pub use sqrt::{Sqrt, UnaryParams};

use crate::ToolError;

/// The output of every math tool.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct MathResult {
    /// The result of the operation.
    #[serde(serialize_with = "number")]
    pub result: f64,
    /// The operation's tool name, such as `add`.
    pub operation: String,
    /// The first (or only) operand.
    #[serde(serialize_with = "number")]
    pub a: f64,
    /// The second operand; absent for unary operations.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_number"
    )]
    pub b: Option<f64>,
}

/// Largest integer below which every integer is exactly representable in an `f64` (2^53).
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Writes integral values as JSON integers (`8`, not `8.0`), as the seed's examples show and as
/// clients in languages without a float/int split expect.
fn number<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    if x.fract() == 0.0 && x.abs() < EXACT_INTEGER_LIMIT {
        // The range check makes the conversion exact.
        #[allow(clippy::cast_possible_truncation)]
        s.serialize_i64(*x as i64)
    } else {
        s.serialize_f64(*x)
    }
}

fn optional_number<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match x {
        Some(x) => number(x, s),
        None => s.serialize_none(),
    }
}

/// Fails with a clear message when an operation's result is infinite or NaN: JSON cannot carry
/// it, and it means the operation overflowed or is undefined for these operands.
fn finite(result: f64, expression: impl FnOnce() -> String) -> Result<f64, ToolError> {
    if result.is_finite() {
        Ok(result)
    } else {
        Err(ToolError::Failed(format!(
            "the result of {} is not a finite number (it overflows or is undefined)",
            expression()
        )))
    }
}

#[cfg(test)]
mod tests;
