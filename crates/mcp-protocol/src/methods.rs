//! Method names of the requests and notifications this server knows, as constants.

/// Request: begin the session, negotiate the protocol version and capabilities.
pub const INITIALIZE: &str = "initialize";
/// Request, either direction: liveness check, answered with `{}`.
pub const PING: &str = "ping";
/// Request: list the tools, one page at a time.
pub const TOOLS_LIST: &str = "tools/list";
/// Request: call a tool.
pub const TOOLS_CALL: &str = "tools/call";

/// Request: list the resources, one page at a time.
pub const RESOURCES_LIST: &str = "resources/list";
/// Request: list the resource templates.
pub const RESOURCES_TEMPLATES_LIST: &str = "resources/templates/list";
/// Request: read a resource.
pub const RESOURCES_READ: &str = "resources/read";
/// Request: be told when a resource changes.
pub const RESOURCES_SUBSCRIBE: &str = "resources/subscribe";
/// Request: stop being told.
pub const RESOURCES_UNSUBSCRIBE: &str = "resources/unsubscribe";
/// Notification from the server: a subscribed resource changed; read it again.
pub const RESOURCES_UPDATED: &str = "notifications/resources/updated";

/// Notification from the client: initialization is complete.
pub const INITIALIZED: &str = "notifications/initialized";
/// Notification, either direction: a request is cancelled.
pub const CANCELLED: &str = "notifications/cancelled";
/// Notification, either direction: progress of a long-running request.
pub const PROGRESS: &str = "notifications/progress";
/// Notification from the server: a log message (`level`, `logger`, `data`).
pub const MESSAGE: &str = "notifications/message";
/// Request: set the lowest level of `notifications/message` the client wants.
pub const LOGGING_SET_LEVEL: &str = "logging/setLevel";
/// Notification from the client: its roots changed.
pub const ROOTS_LIST_CHANGED: &str = "notifications/roots/list_changed";
/// Lists the prompts.
pub const PROMPTS_LIST: &str = "prompts/list";
/// Renders one prompt.
pub const PROMPTS_GET: &str = "prompts/get";
/// Suggests values for an argument.
pub const COMPLETION_COMPLETE: &str = "completion/complete";
/// Modern: what the server speaks and offers (2026-07-28).
pub const SERVER_DISCOVER: &str = "server/discover";
/// Modern: a long-lived request whose stream carries the notifications it asks for.
pub const SUBSCRIPTIONS_LISTEN: &str = "subscriptions/listen";
/// Modern: the first message of a `subscriptions/listen` stream.
pub const SUBSCRIPTIONS_ACKNOWLEDGED: &str = "notifications/subscriptions/acknowledged";
/// The tool list changed.
pub const TOOLS_LIST_CHANGED: &str = "notifications/tools/list_changed";
/// The prompt list changed.
pub const PROMPTS_LIST_CHANGED: &str = "notifications/prompts/list_changed";
/// The resource list changed.
pub const RESOURCES_LIST_CHANGED: &str = "notifications/resources/list_changed";
/// The tasks extension: a task's state (2026-07-28, `io.modelcontextprotocol/tasks`).
pub const TASKS_GET: &str = "tasks/get";
/// The tasks extension: answers to a task's input requests.
pub const TASKS_UPDATE: &str = "tasks/update";
/// The tasks extension: asks a task to stop.
pub const TASKS_CANCEL: &str = "tasks/cancel";
/// The tasks extension: a task's state changed (on a `subscriptions/listen` stream).
pub const TASK_STATUS: &str = "notifications/tasks";
