//! The registry: the tools this server offers, in a fixed order, with paging and dispatch.

use std::collections::HashMap;
use std::sync::Arc;

use mcp_protocol::{CallToolResult, Tool as ToolDescriptor};
use serde_json::{Map, Value};

use crate::tool::{BoxFuture, Dynamic, DynamicTool, Erased, ErasedTool};
use crate::{
    BinaryOp, DataRoot, MathTool, ProcessBatch, ProcessImages, Sleep, Sqrt, Tool, ToolContext,
};

/// What the built-in tools need from the server's configuration.
#[derive(Clone, Default)]
pub struct ToolsConfig {
    /// Where file tools may read and write; without it, `process_images` is not offered.
    pub data_root: Option<DataRoot>,
    /// The worker threads image decoding runs on.
    pub image_pool: Option<Arc<rayon::ThreadPool>>,
}

impl std::fmt::Debug for ToolsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolsConfig")
            .field("data_root", &self.data_root)
            .field(
                "image_workers",
                &self.image_pool.as_ref().map(|p| p.current_num_threads()),
            )
            .finish()
    }
}

impl ToolsConfig {
    /// File tools confined to `root`, decoding on `workers` threads.
    pub fn with_data_root(root: DataRoot, workers: usize) -> std::io::Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers.max(1))
            .thread_name(|i| format!("image-worker-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Self {
            data_root: Some(root),
            image_pool: Some(Arc::new(pool)),
        })
    }
}

/// Why a registry operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A tool with this name is already registered: a programming error in the wiring.
    #[error("a tool named `{0}` is already registered")]
    DuplicateName(String),
    /// The tool's params type does not produce an object schema, which MCP requires:
    /// a programming error in the tool.
    #[error("tool `{0}`: its input schema must describe a JSON object")]
    InputNotObject(String),
    /// The cursor was not produced by this registry (or the tool list shrank since):
    /// the client should list again from the first page.
    #[error(
        "invalid cursor `{0}`: pass the `nextCursor` of a previous page, or none for the first page"
    )]
    InvalidCursor(String),
}

/// The tools a server offers.
///
/// Descriptors and implementations are kept in two parallel vectors so that a page of
/// descriptors is a plain slice. A clone shares the implementations.
#[derive(Default, Clone)]
pub struct ToolRegistry {
    descriptors: Vec<ToolDescriptor>,
    tools: Vec<Arc<dyn ErasedTool>>,
    by_name: HashMap<String, usize>,
}

/// One page of `tools/list`.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<'a> {
    /// The tools on this page, in registration order.
    pub tools: &'a [ToolDescriptor],
    /// The cursor of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tools this server ships: the math tools, `sleep` and `process_batch`, and
    /// `process_images` when a data root is configured.
    pub fn builtin(config: &ToolsConfig) -> Self {
        let mut registry = Self::new();
        let mut result = BinaryOp::ALL
            .into_iter()
            .try_for_each(|op| registry.register(MathTool(op)))
            .and_then(|()| registry.register(Sqrt))
            .and_then(|()| registry.register(Sleep::default()))
            .and_then(|()| registry.register(ProcessBatch));
        if let (Some(root), Some(pool)) = (&config.data_root, &config.image_pool) {
            result = result.and_then(|()| {
                registry.register(ProcessImages::new(root.clone(), Arc::clone(pool)))
            });
        }
        if let Err(e) = result {
            unreachable!("the built-in tools have distinct names and object schemas: {e}");
        }
        registry
    }

    /// Adds a tool at the end of the list.
    pub fn register<T: Tool>(&mut self, tool: T) -> Result<(), RegistryError> {
        let name = tool.name().to_owned();
        if self.by_name.contains_key(&name) {
            return Err(RegistryError::DuplicateName(name));
        }
        let input_schema = tool.input_schema().unwrap_or_else(schema_of::<T::Params>);
        if input_schema.get("type") != Some(&Value::from("object")) {
            return Err(RegistryError::InputNotObject(name));
        }
        let annotations = tool.annotations();
        let descriptor = ToolDescriptor {
            name: name.clone(),
            title: tool.title().map(str::to_owned),
            description: Some(tool.description().to_owned()),
            input_schema,
            output_schema: tool.structured().then(schema_of::<T::Output>),
            annotations: (annotations != Default::default()).then_some(annotations),
            execution: execution(tool.task_support()),
        };
        self.by_name.insert(name, self.tools.len());
        self.descriptors.push(descriptor);
        self.tools.push(Arc::new(Erased(tool)));
        Ok(())
    }

    /// Adds a tool known only at run time, described by `descriptor` (its input schema must
    /// be an object schema, its name unused here); its `execution` is set from the tool's
    /// task support.
    pub fn register_dynamic(
        &mut self,
        mut descriptor: ToolDescriptor,
        tool: Arc<dyn DynamicTool>,
    ) -> Result<(), RegistryError> {
        if self.by_name.contains_key(&descriptor.name) {
            return Err(RegistryError::DuplicateName(descriptor.name));
        }
        if descriptor.input_schema.get("type") != Some(&Value::from("object")) {
            return Err(RegistryError::InputNotObject(descriptor.name));
        }
        descriptor.execution = execution(tool.task_support());
        self.by_name
            .insert(descriptor.name.clone(), self.tools.len());
        self.descriptors.push(descriptor);
        self.tools.push(Arc::new(Dynamic(tool)));
        Ok(())
    }

    /// Adds every tool of `other` after these, in its order.
    pub fn extend(&mut self, other: ToolRegistry) -> Result<(), RegistryError> {
        for (descriptor, tool) in other.descriptors.into_iter().zip(other.tools) {
            if self.by_name.contains_key(&descriptor.name) {
                return Err(RegistryError::DuplicateName(descriptor.name));
            }
            self.by_name
                .insert(descriptor.name.clone(), self.tools.len());
            self.descriptors.push(descriptor);
            self.tools.push(tool);
        }
        Ok(())
    }

    /// How many tools there are.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The descriptor of the tool named `name`.
    pub fn get(&self, name: &str) -> Option<&ToolDescriptor> {
        self.by_name.get(name).map(|&i| &self.descriptors[i])
    }

    /// One page of at most `page_size` tools, starting at `cursor`.
    pub fn page(&self, cursor: Option<&str>, page_size: usize) -> Result<Page<'_>, RegistryError> {
        let page_size = page_size.max(1);
        let start = match cursor {
            None => 0,
            Some(c) => decode_cursor(c)
                .filter(|&start| start > 0 && start < self.tools.len())
                .ok_or_else(|| RegistryError::InvalidCursor(c.to_owned()))?,
        };
        let end = (start + page_size).min(self.tools.len());
        Ok(Page {
            tools: &self.descriptors[start..end],
            next_cursor: (end < self.tools.len()).then(|| encode_cursor(end)),
        })
    }

    /// Whether the tool named `name` can resume an interrupted call ([`crate::Tool::resumable`]).
    pub fn is_resumable(&self, name: &str) -> bool {
        self.by_name
            .get(name)
            .is_some_and(|&i| self.tools[i].resumable())
    }

    /// Whether calls of the tool named `name` may run as tasks ([`crate::Tool::task_support`]);
    /// `Forbidden` for an unknown tool.
    pub fn task_support(&self, name: &str) -> crate::TaskSupport {
        self.by_name
            .get(name)
            .map_or(crate::TaskSupport::Forbidden, |&i| {
                self.tools[i].task_support()
            })
    }

    /// Whether the tool named `name` asks its client first and then becomes a task itself
    /// ([`crate::Tool::detaches_itself`]).
    pub fn detaches_itself(&self, name: &str) -> bool {
        self.by_name
            .get(name)
            .is_some_and(|&i| self.tools[i].detaches_itself())
    }

    /// Starts a call of the tool named `name`; `None` when there is no such tool.
    ///
    /// The returned future owns everything it needs, so it can be spawned.
    pub fn call(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        ctx: ToolContext,
    ) -> Option<BoxFuture<CallToolResult>> {
        let tool = &self.tools[*self.by_name.get(name)?];
        Some(Arc::clone(tool).call_json(arguments, ctx))
    }
}

/// A descriptor's `execution`: how a tool's calls may run as tasks.
fn execution(support: crate::TaskSupport) -> Option<Value> {
    match support {
        crate::TaskSupport::Forbidden => None,
        crate::TaskSupport::Optional => Some(serde_json::json!({"taskSupport": "optional"})),
        crate::TaskSupport::Required => Some(serde_json::json!({"taskSupport": "required"})),
    }
}

const CURSOR_PREFIX: &str = "tools:";

fn encode_cursor(offset: usize) -> String {
    format!("{CURSOR_PREFIX}{offset}")
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    cursor.strip_prefix(CURSOR_PREFIX)?.parse().ok()
}

/// The JSON Schema of `T`, draft 2020-12, without the `$schema` and `title` keywords (the
/// tool's name and description say what the title would).
fn schema_of<T: schemars::JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let schema = generator.into_root_schema_for::<T>();
    let mut value = schema.to_value();
    if let Some(obj) = value.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
    }
    drop_private_formats(&mut value);
    value
}

/// The formats JSON Schema 2020-12 defines; others (schemars' `uint64`, `double`) are
/// warned about or refused by clients' validators, so they are left out.
const STANDARD_FORMATS: [&str; 19] = [
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

fn drop_private_formats(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| !STANDARD_FORMATS.contains(&f))
            {
                map.remove("format");
            }
            map.values_mut().for_each(drop_private_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_private_formats),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
