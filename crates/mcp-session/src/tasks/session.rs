//! A resumable 2025 session's long calls are tasks underneath ([`crate::TaskRecord::session`]):
//! the session follows its call's task, which keeps the call's progress, checkpoint and
//! outcome in the store, so that the call carries on while its client is away, after a
//! restart, and on another instance the session moves to.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use mcp_protocol::{ErrorObject, error_codes, modern};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::lease::TakenUp;
use super::{Front, Live, lock, no_client, store_failed};
use crate::Principal;
use crate::calls::{CallReply, Reply};
use crate::hub::Hub;
use crate::router::ToolCall;
use crate::store::{TaskId, TaskRecord, TaskStatus};

impl Hub {
    /// Starts a call of a resumable 2025 session as a task (see [`TaskRecord::session`]): it
    /// runs here and tells `front` what it produces. Its record is first written with its
    /// progress or checkpoint, so a quick call costs no write: the session's record names
    /// the task, and a restored session treats a task missing from the store as one that
    /// never got that far (a resumable tool starts over, any other is interrupted). The
    /// task's id, and its outcome as the session answers the call: once `token` (the
    /// call's) is cancelled, the task is too.
    pub(crate) fn start_session_task(
        &self,
        principal: &Principal,
        session: &crate::SessionId,
        version: mcp_protocol::ProtocolVersion,
        call: ToolCall,
        front: Front,
        token: &CancellationToken,
    ) -> Result<(TaskId, impl Future<Output = Reply> + Send + 'static), ErrorObject> {
        let mut record = self.admit_task(principal, &call, &no_client(None))?;
        record.session = Some(session.clone());
        record.protocol_version = Some(version.as_str().to_owned());
        let id = record.id.clone();
        let slot = call.slot;
        let live = self.start_task(record, slot, no_client(None), Some(front), false);
        Ok((id, self.follow_task(live, None, token.clone())))
    }

    /// A task of a resumed session's call, as the restart left it: still running here
    /// (resumed from its checkpoint), ended (its outcome), or unknown here.
    pub(crate) async fn session_task(&self, principal: &Principal, id: &TaskId) -> SessionTask {
        // Held by another instance: until its lease runs out (its instance died), or twice
        // that long at most (it lives, and runs the task still).
        let lease = self.inner.config.task_lease;
        let deadline = tokio::time::Instant::now() + lease * 2;
        loop {
            let live = lock(&self.inner.tasks.live).get(id).cloned();
            if let Some(live) = live {
                let mine = live.record().owner == principal.name();
                return match mine {
                    true => SessionTask::Running(live),
                    false => SessionTask::Unknown,
                };
            }
            let record = match self.inner.store.load_task(id).await {
                Ok(Some(record)) if record.owner == principal.name() => record,
                Ok(_) => return SessionTask::Unknown,
                Err(e) => return SessionTask::Ended(Box::new(Err(store_failed(e)))),
            };
            if record.status.is_terminal() {
                return SessionTask::Ended(Box::new(session_reply(&record)));
            }
            // Running, but not here: the session moved here, so the task does too, once its
            // lease is free.
            match self.claim_lease(id).await {
                Ok(true) => {
                    return match self.take_up(id.clone()).await {
                        Ok(TakenUp::Resumed(live)) => SessionTask::Running(live),
                        Ok(TakenUp::Ended(Some(record))) => {
                            SessionTask::Ended(Box::new(session_reply(&record)))
                        }
                        Ok(TakenUp::Ended(None)) => SessionTask::Unknown,
                        Err(e) => SessionTask::Ended(Box::new(Err(store_failed(e)))),
                    };
                }
                Ok(false) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(lease / 3).await;
                }
                Ok(false) => {
                    return SessionTask::Ended(Box::new(Err(ErrorObject::new(
                        error_codes::INTERRUPTED,
                        format!(
                            "task {id} of this call still runs on another instance; resume the session there, or call again"
                        ),
                    ))));
                }
                Err(e) => return SessionTask::Ended(Box::new(Err(store_failed(e)))),
            }
        }
    }

    /// The outcome of a session's task, as its session answers the call: waits for its end,
    /// and stops it when `token` is cancelled or the wait is dropped. From now on the task
    /// tells `front`, when given, what it produces.
    pub(crate) fn follow_task(
        &self,
        live: Arc<Live>,
        front: Option<Front>,
        token: CancellationToken,
    ) -> impl Future<Output = Reply> + Send + 'static {
        if let Some(front) = front {
            *lock(&live.front) = Some(front);
        }
        let stop = StopTask {
            hub: self.clone(),
            live,
        };
        async move {
            tokio::select! {
                () = stop.live.done.cancelled() => {}
                () = token.cancelled() => {
                    stop.stop();
                    stop.live.done.cancelled().await;
                }
            }
            let record = stop.live.record().clone();
            session_reply(&record)
        }
    }

    /// Removes the tasks of `owner`'s session's calls whose answers are in the session's
    /// log (a task that never reached the store included).
    pub(crate) async fn drop_session_tasks(self, owner: String, ids: Vec<TaskId>) {
        for id in ids {
            // Most never reached the store (a quick call writes nothing): a read is cheaper
            // than a write that removes nothing.
            if let Ok(None) = self.inner.store.load_task(&id).await {
                self.forget_task(&owner);
                continue;
            }
            match self.inner.store.delete_task(&id).await {
                Ok(()) => self.forget_task(&owner),
                Err(e) => {
                    tracing::warn!(task = %id, error = %e, "cannot remove an answered session task; it expires");
                }
            }
        }
    }

    /// Stops the tasks of session number `session` (which moves to another instance)
    /// without ending them: each writes its record and gives its lease up, for the other
    /// instance to take up from its checkpoint.
    pub(crate) fn move_tasks_of(&self, session: u64) {
        let running: Vec<Arc<Live>> = lock(&self.inner.tasks.live).values().cloned().collect();
        for live in running {
            if live.front().is_some_and(|f| f.session == session) {
                live.moving.store(true, Ordering::Release);
                live.cancel.cancel();
            }
        }
    }
}

/// A resumed session's task, as [`Hub::session_task`] found it.
pub(crate) enum SessionTask {
    /// Running here: its session follows it.
    Running(Arc<Live>),
    /// Ended: the answer to the call.
    Ended(Box<Reply>),
    /// Not in the store (the restart came before its first write), or not the caller's.
    Unknown,
}

/// Stops a session's task when its call is cancelled, or its session stops waiting for it
/// (a session that ends takes its calls along). Not a stop by a shutdown: that leaves it
/// to resume after the restart.
struct StopTask {
    hub: Hub,
    live: Arc<Live>,
}

impl StopTask {
    fn stop(&self) {
        if !self.hub.inner.shutdown.is_cancelled() && !self.live.moving.load(Ordering::Acquire) {
            self.live.cancelled.store(true, Ordering::Release);
        }
        self.live.cancel.cancel();
    }
}

impl Drop for StopTask {
    fn drop(&mut self) {
        if !self.live.done.is_cancelled() {
            self.stop();
        }
    }
}

/// How a session answers the call its task ran: the tool's result (as the call's revision
/// shapes it, without what a task's result adds), or the error the task failed with.
fn session_reply(record: &TaskRecord) -> Reply {
    match record.status {
        TaskStatus::Completed => {
            let mut result = match &record.result {
                Some(Value::Object(result)) => result.clone(),
                _ => return Err(ErrorObject::internal("the task completed without a result")),
            };
            result.remove("resultType");
            if let Some(Value::Object(meta)) = result.get_mut("_meta") {
                meta.remove(modern::SERVER_INFO);
                if meta.is_empty() {
                    result.remove("_meta");
                }
            }
            let is_error = result.get("isError") == Some(&Value::Bool(true));
            let mut reply = CallReply::from_value(&Value::Object(result))?;
            reply.is_error = is_error;
            Ok(reply)
        }
        TaskStatus::Failed => Err(record
            .error
            .clone()
            .and_then(|error| serde_json::from_value(error).ok())
            .unwrap_or_else(|| ErrorObject::internal("the task failed"))),
        TaskStatus::Cancelled => Err(ErrorObject::new(
            error_codes::SERVER_SHUTTING_DOWN,
            "the call was cancelled",
        )),
        // Stopped without ending: the server is going down.
        TaskStatus::Working | TaskStatus::InputRequired => Err(ErrorObject::new(
            error_codes::SERVER_SHUTTING_DOWN,
            "the server stopped the call before it ended",
        )),
    }
}
