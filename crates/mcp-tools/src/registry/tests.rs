//! Listing, paging and registration rules.

use expect_test::expect;

use super::*;
use crate::{MathTool, Sqrt};

#[test]
fn builtin_tools_in_order() {
    let registry = ToolRegistry::builtin(&crate::ToolsConfig::default());
    let names: Vec<_> = registry
        .page(None, 100)
        .unwrap()
        .tools
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    expect![[r#"["add", "subtract", "multiply", "divide", "power", "modulo", "sqrt", "sleep", "process_batch"]"#]]
        .assert_eq(&format!("{names:?}"));
}

#[test]
fn schemas() {
    let registry = ToolRegistry::builtin(&crate::ToolsConfig::default());
    let add = registry.get("add").unwrap();
    expect![[r#"{"name":"add","description":"Adds two numbers: a + b.","inputSchema":{"additionalProperties":false,"description":"The arguments of a binary operation.","properties":{"a":{"description":"The first operand.","type":"number"},"b":{"description":"The second operand.","type":"number"}},"required":["a","b"],"type":"object"},"outputSchema":{"description":"The output of every math tool.","properties":{"a":{"description":"The first (or only) operand.","type":"number"},"b":{"description":"The second operand; absent for unary operations.","type":["number","null"]},"operation":{"description":"The operation's tool name, such as `add`.","type":"string"},"result":{"description":"The result of the operation.","type":"number"}},"required":["result","operation","a"],"type":"object"},"annotations":{"readOnlyHint":true,"idempotentHint":true,"openWorldHint":false}}"#]]
        .assert_eq(&serde_json::to_string(add).unwrap());
}

#[test]
fn paging() {
    let registry = ToolRegistry::builtin(&crate::ToolsConfig::default());
    let mut cursor = None;
    let mut seen = Vec::new();
    loop {
        let page = registry.page(cursor.as_deref(), 3).unwrap();
        seen.extend(page.tools.iter().map(|t| t.name.clone()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), registry.len());
    for bad in [
        "", "tools:", "tools:0", "tools:99", "tools:-1", "3", "garbage",
    ] {
        assert_eq!(
            registry.page(Some(bad), 3),
            Err(RegistryError::InvalidCursor(bad.to_owned())),
            "cursor {bad:?}"
        );
    }
}

#[test]
fn duplicate_names_are_refused() {
    let mut registry = ToolRegistry::new();
    registry.register(Sqrt).unwrap();
    registry.register(MathTool(crate::BinaryOp::Add)).unwrap();
    assert_eq!(
        registry.register(Sqrt),
        Err(RegistryError::DuplicateName("sqrt".into()))
    );
}

struct Upstream(crate::TaskSupport);

impl DynamicTool for Upstream {
    fn call(
        &self,
        _arguments: Map<String, Value>,
        _ctx: crate::ToolContext,
    ) -> BoxFuture<CallToolResult> {
        Box::pin(async { CallToolResult::error("not reached".to_owned()) })
    }

    fn task_support(&self) -> crate::TaskSupport {
        self.0
    }
}

fn descriptor(name: &str, schema: Value) -> ToolDescriptor {
    serde_json::from_value(serde_json::json!({"name": name, "inputSchema": schema})).unwrap()
}

#[test]
fn dynamic_tools_follow_the_same_rules() {
    let mut registry = ToolRegistry::new();
    registry.register(Sqrt).unwrap();
    let object = serde_json::json!({"type": "object"});
    assert_eq!(
        registry.register_dynamic(
            descriptor("sqrt", object.clone()),
            Arc::new(Upstream(crate::TaskSupport::Forbidden))
        ),
        Err(RegistryError::DuplicateName("sqrt".into()))
    );
    assert_eq!(
        registry.register_dynamic(
            descriptor("up.list", serde_json::json!({"type": "array"})),
            Arc::new(Upstream(crate::TaskSupport::Forbidden))
        ),
        Err(RegistryError::InputNotObject("up.list".into()))
    );
    registry
        .register_dynamic(
            descriptor("up.long", object),
            Arc::new(Upstream(crate::TaskSupport::Optional)),
        )
        .unwrap();
    let listed = registry.get("up.long").unwrap();
    assert_eq!(
        listed.execution,
        Some(serde_json::json!({"taskSupport": "optional"}))
    );
    assert_eq!(
        registry.task_support("up.long"),
        crate::TaskSupport::Optional
    );
    assert!(!registry.is_resumable("up.long"));
}
