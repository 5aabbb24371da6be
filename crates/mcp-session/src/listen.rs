//! `subscriptions/listen` (2026-07-28): a long-lived request whose output carries the change
//! notifications its filter asks for, each tagged with the subscription's id (the request's
//! own id). It replaces `resources/subscribe` and the GET stream for modern clients.
//!
//! The stream starts with `notifications/subscriptions/acknowledged`, naming the part of the
//! filter this server honours: updates of the resources that can change or exist here (the
//! server statistics, the providers' resources). Its lists never change while it runs, so
//! no list-changed subscription is acknowledged. The stream lasts until the client closes it;
//! a graceful shutdown ends it with the request's result.
//!
//! With the tasks extension, `taskIds` asks for the state of the caller's tasks: each
//! acknowledged task's state follows the acknowledgement, then `notifications/tasks` (the
//! detailed task, as `tasks/get` would answer) whenever it changes; a task that is not the
//! caller's is left out of the acknowledgement, as if it did not exist.

use std::collections::HashSet;

use mcp_protocol::modern::{self, RequestMeta, SUBSCRIPTION_ID};
use mcp_protocol::{ErrorObject, Message, Notification, RequestId, methods};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::calls::{CallReply, Reply};
use crate::outbound::{self, OutboundQueue};
use crate::resources::STATS_URI;
use crate::store::{TaskId, TaskRecord};
use crate::tasks::task_value;
use crate::{Hub, Principal};

/// What a listener asks to hear of; of the list changes it may ask for (which never happen
/// here) nothing is read.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    resource_subscriptions: Vec<String>,
    /// Tasks whose state changes to hear of (the tasks extension).
    #[serde(default)]
    task_ids: Vec<String>,
}

#[derive(Deserialize)]
struct ListenParams {
    notifications: Filter,
}

/// How many resources one stream may follow.
const MAX_SUBSCRIPTIONS: usize = 1000;

impl Hub {
    /// Opens a `subscriptions/listen` stream for request `id` on `queue`: acknowledges it
    /// there (at once, or once the tasks it names are looked up), then returns the future
    /// that carries its notifications until `cancel` (the client closed it) or a graceful
    /// shutdown, which it answers with the request's result.
    pub(crate) fn listen(
        &self,
        id: &RequestId,
        params: Option<Value>,
        meta: &RequestMeta,
        principal: &Principal,
        queue: OutboundQueue,
        cancel: CancellationToken,
    ) -> Result<impl Future<Output = Reply> + Send + 'static, ErrorObject> {
        let params: ListenParams = mcp_protocol::decode_params(params)?;
        let filter = params.notifications;
        if filter.resource_subscriptions.len() > MAX_SUBSCRIPTIONS
            || filter.task_ids.len() > MAX_SUBSCRIPTIONS
        {
            return Err(ErrorObject::invalid_params(format_args!(
                "one stream follows at most {MAX_SUBSCRIPTIONS} resources and {MAX_SUBSCRIPTIONS} tasks; open another"
            )));
        }
        if !filter.task_ids.is_empty() && !meta.declares(modern::TASKS_EXTENSION) {
            return Err(modern::missing_extension(modern::TASKS_EXTENSION));
        }
        let catalog = &self.inner.catalog;
        let honoured: Vec<String> = filter
            .resource_subscriptions
            .into_iter()
            .filter(|uri| uri == STATS_URI || catalog.is_resource(uri))
            .collect();
        let tag = json!({ SUBSCRIPTION_ID: id.to_value() });
        let stats = honoured.iter().any(|uri| uri == STATS_URI);
        let acknowledge = move |tasks: &[TaskRecord]| {
            let mut acknowledged = serde_json::Map::new();
            if !honoured.is_empty() {
                acknowledged.insert("resourceSubscriptions".to_owned(), json!(honoured));
            }
            if !tasks.is_empty() {
                let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
                acknowledged.insert("taskIds".to_owned(), json!(ids));
            }
            notification(
                methods::SUBSCRIPTIONS_ACKNOWLEDGED,
                json!({"_meta": tag, "notifications": acknowledged}),
            )
        };
        let closed = || ErrorObject::internal("the stream closed before it was acknowledged");
        let task_ids = filter.task_ids;
        // Subscribed before any lookup, so that no change between the two is missed.
        let mut task_changes = self.inner.tasks.changes.subscribe();
        if task_ids.is_empty() {
            // Queued before anyone reads the stream: nothing of it can come before.
            queue
                .try_push_notice(acknowledge(&[]))
                .map_err(|_| closed())?;
        }
        let mut changes = self.inner.stats_version.subscribe();
        changes.mark_unchanged();
        let draining = self.inner.draining.clone();
        let id = id.clone();
        let (hub, principal) = (self.clone(), principal.clone());
        Ok(async move {
            let mut watched: HashSet<TaskId> = HashSet::new();
            if !task_ids.is_empty() {
                // The caller's tasks only; each one's state follows the acknowledgement.
                let tasks = hub.tasks_of(&principal, &task_ids).await;
                queue
                    .try_push_notice(acknowledge(&tasks))
                    .map_err(|_| closed())?;
                for task in &tasks {
                    watched.insert(task.id.clone());
                    push_task(&queue, &id, task)?;
                }
            }
            loop {
                tokio::select! {
                    () = cancel.cancelled() => {
                        return Err(ErrorObject::internal("the subscription was cancelled"));
                    }
                    () = draining.cancelled() => {
                        // Ended by the server: the request's result says it ended well.
                        let result = json!({
                            "resultType": "complete",
                            "_meta": { SUBSCRIPTION_ID: id.to_value() },
                        });
                        return CallReply::from_value(&result);
                    }
                    Ok(()) = changes.changed(), if stats => {
                        let params = json!({"_meta": { SUBSCRIPTION_ID: id.to_value() }, "uri": STATS_URI});
                        let updated = notification(methods::RESOURCES_UPDATED, params);
                        let key = outbound::Coalesce::Updated(STATS_URI.to_owned());
                        if queue.push_coalesced(key, updated).is_err() {
                            return Err(ErrorObject::internal("the stream closed"));
                        }
                    }
                    change = task_changes.recv(), if !watched.is_empty() => {
                        let changed: Vec<String> = match change {
                            Ok(task) if watched.contains(&task) => vec![task.as_str().to_owned()],
                            Ok(_) | Err(broadcast::error::RecvError::Closed) => continue,
                            // Some changes were missed: every task's state, as it is now.
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                watched.iter().map(|t| t.as_str().to_owned()).collect()
                            }
                        };
                        for task in hub.tasks_of(&principal, &changed).await {
                            push_task(&queue, &id, &task)?;
                        }
                    }
                }
            }
        })
    }
}

/// Queues a task's state (`notifications/tasks`), replacing an unsent older one.
fn push_task(queue: &OutboundQueue, id: &RequestId, task: &TaskRecord) -> Result<(), ErrorObject> {
    let mut params = task_value(task, true);
    params.insert(
        "_meta".to_owned(),
        json!({ SUBSCRIPTION_ID: id.to_value() }),
    );
    let text = notification(methods::TASK_STATUS, Value::Object(params));
    queue
        .push_coalesced(outbound::Coalesce::Task(task.id.as_str().to_owned()), text)
        .map_err(|_| ErrorObject::internal("the stream closed"))
}

fn notification(method: &str, params: Value) -> String {
    Message::Notification(Notification {
        method: method.to_owned(),
        params: Some(params),
    })
    .to_text()
}
