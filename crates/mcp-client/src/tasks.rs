//! Tasks (the 2026-07-28 tasks extension): a tool call the server runs on its own, which the
//! client polls by id, answers, and cancels. A task outlives the client that started it:
//! [`Client::task`] takes one up again by id.

use std::collections::HashSet;
use std::time::Duration;

use mcp_protocol::{CallToolResult, ErrorObject, TaskStatus, methods};
use serde_json::{Map, Value, json};

use crate::{Client, Error, driver::jitter};

/// The `_meta` key under which this server puts a task's last progress as numbers.
const PROGRESS: &str = "mcp-server/progress";

/// The shortest pause between two polls, whatever the server suggests.
const MIN_POLL: Duration = Duration::from_millis(50);

/// What a call made with [`Client::start_task`] became.
pub enum Started {
    /// The server answered at once (the tool is never a task, or the server takes no tasks).
    Done(CallToolResult),
    /// A task: poll it.
    Task(Task),
}

/// A task's state, as `tasks/get` (or its creation) said.
#[derive(Debug, Clone)]
pub struct TaskState {
    /// Where it is.
    pub status: TaskStatus,
    /// What it is doing, or why it ended.
    pub status_message: Option<String>,
    /// Its last progress and total, when the server says (this server does).
    pub progress: Option<(f64, Option<f64>)>,
    /// How long to wait before the next poll.
    pub poll_interval: Duration,
    /// The requests it waits on, by key (`input_required`).
    pub input_requests: Map<String, Value>,
    /// Its result, once completed.
    pub result: Option<CallToolResult>,
    /// Its error, once failed.
    pub error: Option<ErrorObject>,
    /// The whole answer.
    pub raw: Value,
}

impl TaskState {
    fn read(value: Value) -> Result<Self, Error> {
        let decode = |what: &str| Error::Decode(format!("a task's {what}: {value}"));
        let status: TaskStatus =
            serde_json::from_value(value["status"].clone()).map_err(|_| decode("status"))?;
        let progress = value
            .pointer(&format!("/_meta/{}", PROGRESS.replace('/', "~1")))
            .and_then(|p| Some((p.get("progress")?.as_f64()?, p.get("total")?.as_f64())));
        let result = match value.get("result") {
            Some(result) => {
                Some(serde_json::from_value(result.clone()).map_err(|_| decode("result"))?)
            }
            None => None,
        };
        let error = match value.get("error") {
            Some(error) => {
                Some(serde_json::from_value(error.clone()).map_err(|_| decode("error"))?)
            }
            None => None,
        };
        Ok(Self {
            status,
            status_message: value["statusMessage"].as_str().map(str::to_owned),
            progress,
            poll_interval: Duration::from_millis(value["pollIntervalMs"].as_u64().unwrap_or(1_000))
                .max(MIN_POLL),
            input_requests: value["inputRequests"]
                .as_object()
                .cloned()
                .unwrap_or_default(),
            result,
            error,
            raw: value,
        })
    }
}

/// A task on the server. Dropping the handle leaves the task running: cancel it with
/// [`Task::cancel`].
pub struct Task {
    client: Client,
    id: String,
    /// When to poll next; `None`: at once.
    pause: Option<Duration>,
    /// The input requests answered already.
    answered: HashSet<String>,
}

impl Client {
    /// Calls a tool, letting the server run it as a task (the request declares the tasks
    /// extension). A server or tool that makes no task answers at once.
    pub async fn start_task(
        &self,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<Started, Error> {
        if !self.is_modern() {
            // A 2025 session has no tasks: the call is answered as usual.
            return self.call_tool(name, arguments).await.map(Started::Done);
        }
        self.know_header_params().await;
        let params = json!({"name": name, "arguments": arguments});
        let waiting = self
            .start_with(methods::TOOLS_CALL, &params, None, true)
            .await?;
        let value = self
            .clone()
            .rounds(methods::TOOLS_CALL.to_owned(), params, waiting, None, true)
            .await?;
        if value.get("resultType").and_then(Value::as_str) != Some("task") {
            return serde_json::from_value(value)
                .map(Started::Done)
                .map_err(|e| Error::Decode(format!("tools/call: {e}")));
        }
        let state = TaskState::read(value)?;
        let id = state.raw["taskId"]
            .as_str()
            .ok_or_else(|| Error::Decode(format!("a task without an id: {}", state.raw)))?;
        let mut task = self.task(id);
        task.pause = Some(state.poll_interval);
        Ok(Started::Task(task))
    }

    /// The task `id` (one this client's principal started, here or elsewhere).
    pub fn task(&self, id: impl Into<String>) -> Task {
        Task {
            client: self.clone(),
            id: id.into(),
            pause: None,
            answered: HashSet::new(),
        }
    }
}

impl Task {
    /// The task's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    async fn send(&self, method: &str, params: Value) -> Result<Value, Error> {
        let waiting = self.client.start_with(method, &params, None, true).await?;
        self.client
            .clone()
            .rounds(method.to_owned(), params, waiting, None, true)
            .await
    }

    /// Its state now (`tasks/get`).
    pub async fn get(&self) -> Result<TaskState, Error> {
        TaskState::read(
            self.send(methods::TASKS_GET, json!({"taskId": self.id}))
                .await?,
        )
    }

    /// Asks the server to stop it (`tasks/cancel`); it ends `cancelled`, unless it ended
    /// first.
    pub async fn cancel(&self) -> Result<(), Error> {
        self.send(methods::TASKS_CANCEL, json!({"taskId": self.id}))
            .await
            .map(drop)
    }

    /// Its next state: after the pause the server suggests (none the first time), polled
    /// again while the server is unreachable (with the client's reconnection backoff), with
    /// its new input requests answered by the client's [`crate::Handler`].
    pub async fn next(&mut self) -> Result<TaskState, Error> {
        if let Some(pause) = self.pause.take() {
            tokio::time::sleep(pause).await;
        }
        let state = self.get_patiently().await?;
        self.pause = Some(state.poll_interval);
        if state.status == TaskStatus::InputRequired {
            self.answer(&state).await?;
            // Answered: look again at once.
            self.pause = Some(MIN_POLL);
        }
        Ok(state)
    }

    /// Polls until the task ends: its result (a tool error is a result with `is_error`);
    /// a failed task is [`Error::Rpc`], a cancelled one [`Error::Closed`].
    pub async fn result(mut self) -> Result<CallToolResult, Error> {
        loop {
            let state = self.next().await?;
            if let Some(ended) = ended(state) {
                return ended;
            }
        }
    }

    /// `tasks/get`, again while the server cannot be reached.
    async fn get_patiently(&self) -> Result<TaskState, Error> {
        let policy = self.client.shared.reconnect.clone();
        let mut delay = policy.initial;
        let mut failures = 0u32;
        loop {
            match self.get().await {
                Err(Error::Connect(why) | Error::Interrupted(why)) => {
                    failures += 1;
                    if policy.attempts.is_some_and(|max| failures > max) {
                        return Err(Error::Connect(why));
                    }
                    tracing::debug!(task = %self.id, error = %why, "the server is unreachable; polling again");
                    tokio::time::sleep(jitter(delay)).await;
                    delay = (delay * 2).min(policy.max);
                }
                other => return other,
            }
        }
    }

    /// Answers the input requests not answered yet, with the handler, in one `tasks/update`.
    async fn answer(&mut self, state: &TaskState) -> Result<(), Error> {
        let new: Map<String, Value> = state
            .input_requests
            .iter()
            .filter(|(key, _)| !self.answered.contains(*key))
            .map(|(key, request)| (key.clone(), request.clone()))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let asked = json!({"inputRequests": new});
        let answered = crate::modern::answer_inputs(
            self.client.shared.handler.as_ref(),
            &json!({"taskId": self.id}),
            &asked,
        )
        .await?;
        self.send(methods::TASKS_UPDATE, answered).await?;
        self.answered.extend(new.into_iter().map(|(key, _)| key));
        Ok(())
    }
}

/// How a task in `state` ended, if it did.
fn ended(state: TaskState) -> Option<Result<CallToolResult, Error>> {
    match state.status {
        TaskStatus::Completed => Some(
            state
                .result
                .ok_or_else(|| Error::Decode("a completed task without its result".to_owned())),
        ),
        TaskStatus::Failed => {
            Some(Err(Error::Rpc(state.error.unwrap_or_else(|| {
                ErrorObject::internal("the task failed, and did not say why")
            }))))
        }
        TaskStatus::Cancelled => Some(Err(Error::Closed("the task was cancelled".to_owned()))),
        TaskStatus::Working | TaskStatus::InputRequired => None,
    }
}
