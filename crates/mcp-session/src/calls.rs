//! The call table: the client's requests that are running, with no IO at all.
//!
//! It is what makes "respond at most once" and "no response after a cancel" hold: a request
//! enters with [`CallTable::start`], and [`CallTable::finish`] removes it and says what to
//! send, once. It also keeps the running tasks' ids, the batches that wait for their last
//! request, and, for a resumable session, the record of the running calls that the store
//! keeps (so that a restart can report and resume them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use mcp_protocol::{ErrorObject, RequestId, Response};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::task;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Outcome;
use crate::outbound::{Answered, Regarding};
use crate::resources::Status;
use crate::store::{OperationRecord, TaskId};

/// A batch's number within its session.
pub(crate) type BatchId = u64;

/// What a request's handler gives back: a result serialized once, as JSON text, and whether
/// it is a tool error; or a protocol error.
pub(crate) type Reply = Result<CallReply, ErrorObject>;

/// A handler's result, serialized once.
pub(crate) struct CallReply {
    pub(crate) body: Box<RawValue>,
    pub(crate) is_error: bool,
}

impl CallReply {
    /// A result that is not a tool's (a prompt, a listen stream's end), serialized.
    pub(crate) fn from_value(value: &Value) -> Reply {
        let body = serde_json::value::to_raw_value(value).map_err(ErrorObject::internal)?;
        Ok(Self {
            body,
            is_error: false,
        })
    }
}

/// What the session knows of a running request, besides its id.
pub(crate) struct CallInfo {
    pub(crate) method: &'static str,
    pub(crate) started: Instant,
    /// The call's resource.
    pub(crate) uri: String,
    /// A tool call's tool and arguments, for a resumable session's history.
    pub(crate) call: Option<(String, Value)>,
}

/// Who cancelled a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelledBy {
    /// The client (`notifications/cancelled`): no response goes out.
    Client,
    /// The server (shutdown, or a resumable session nobody resumed): the caller gets an error.
    Server,
}

struct Entry {
    token: CancellationToken,
    cancelled: Option<CancelledBy>,
    batch: Option<BatchId>,
    info: CallInfo,
}

/// The responses of one batch, sent as one array when the last of its requests finishes.
#[derive(Default)]
struct Batch {
    responses: BatchResponses,
    running: usize,
}

/// A batch's responses, in the order they were made.
#[derive(Debug, Default)]
pub(crate) struct BatchResponses {
    pub(crate) responses: Vec<Response>,
    /// Which of them (by index) refuse a request whose id was still running.
    duplicates: Vec<usize>,
}

impl BatchResponses {
    /// What the batch's array answers, for the transport.
    pub(crate) fn regarding(&self) -> Regarding {
        let answered = self.responses.iter().enumerate().filter_map(|(i, r)| {
            let id = r.id.clone()?;
            Some(Answered {
                id,
                duplicate: self.duplicates.contains(&i),
            })
        });
        Regarding::Batch(answered.collect())
    }
}

/// What to send for a request that finished.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Its own response.
    One(Reply),
    /// The batch it was the last running request of, as one array (never empty).
    Batch(BatchResponses),
    /// Nothing: the client cancelled it, or its batch waits for others.
    Nothing,
}

impl std::fmt::Debug for CallReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (is_error: {})", self.body.get(), self.is_error)
    }
}

/// A request that finished: what the session knew of it, who cancelled it, how its handler
/// ended, and what to send.
pub(crate) struct Finished {
    pub(crate) info: CallInfo,
    pub(crate) cancelled: Option<CancelledBy>,
    /// How the handler's own reply ended, before a server's cancel replaced it.
    pub(crate) outcome: Outcome,
    /// The handler's result, when it had one: for the call's resource and the history.
    pub(crate) result: Option<Box<RawValue>>,
    pub(crate) send: Answer,
}

impl Finished {
    /// What the call's resource says of how it ended.
    pub(crate) fn status(&self) -> Status {
        match self.outcome {
            Outcome::ok => Status::Completed,
            Outcome::cancelled => Status::Cancelled,
            _ if self.cancelled == Some(CancelledBy::Server) => Status::Cancelled,
            Outcome::error | Outcome::tool_error => Status::Failed,
        }
    }
}

/// The reply of a request whose task panicked or was aborted.
pub(crate) fn failed(error: &tokio::task::JoinError) -> Reply {
    let reason = if error.is_panic() {
        "the handler panicked"
    } else {
        "the handler was aborted"
    };
    tracing::error!(%error, "{reason}");
    Err(ErrorObject::internal(reason))
}

/// The running requests of one session.
#[derive(Default)]
pub(crate) struct CallTable {
    running: HashMap<RequestId, Entry>,
    tasks: HashMap<task::Id, RequestId>,
    batches: HashMap<BatchId, Batch>,
    next_batch: BatchId,
    /// Set for a resumable session: its running calls as the store keeps them.
    operations: Option<Arc<Operations>>,
}

impl CallTable {
    /// Records the running calls in `operations` from now on (the session became
    /// resumable).
    pub(crate) fn record_operations(&mut self, operations: Arc<Operations>) {
        self.operations = Some(operations);
    }

    /// Where the running calls are recorded, for a resumable session.
    pub(crate) fn operations(&self) -> Option<&Arc<Operations>> {
        self.operations.as_ref()
    }

    /// Whether a request with this id is running (a new one with the same id is refused).
    pub(crate) fn contains(&self, id: &RequestId) -> bool {
        self.running.contains_key(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.running.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Opens a batch; each request started in it counts until it finishes, and the batch's
    /// array goes out with the last (see [`CallTable::close_batch`]).
    pub(crate) fn open_batch(&mut self) -> BatchId {
        let id = self.next_batch;
        self.next_batch += 1;
        self.batches.insert(id, Batch::default());
        id
    }

    /// Adds a response that was ready at once to an open batch; `duplicate` when it refuses a
    /// request whose id was still running.
    pub(crate) fn batch_reply(&mut self, batch: BatchId, response: Response, duplicate: bool) {
        if let Some(b) = self.batches.get_mut(&batch) {
            if duplicate {
                b.responses.duplicates.push(b.responses.responses.len());
            }
            b.responses.responses.push(response);
        }
    }

    /// Every message of the batch was handled: its responses, if nothing of it still runs
    /// (and it has any).
    pub(crate) fn close_batch(&mut self, batch: BatchId) -> Option<BatchResponses> {
        match self.batches.get(&batch) {
            Some(b) if b.running == 0 => self
                .batches
                .remove(&batch)
                .map(|b| b.responses)
                .filter(|r| !r.responses.is_empty()),
            _ => None,
        }
    }

    /// Records a started request. The caller has checked [`CallTable::contains`]; `operation`
    /// is the call's record for the store, kept while it runs when the session is resumable.
    pub(crate) fn start(
        &mut self,
        id: RequestId,
        token: CancellationToken,
        batch: Option<BatchId>,
        info: CallInfo,
        operation: Option<OperationRecord>,
    ) {
        if let (Some(ops), Some(record)) = (&self.operations, operation) {
            ops.insert(record);
        }
        if let Some(b) = batch.and_then(|b| self.batches.get_mut(&b)) {
            b.running += 1;
        }
        self.running.insert(
            id,
            Entry {
                token,
                cancelled: None,
                batch,
                info,
            },
        );
    }

    /// Names the task that runs request `id`.
    pub(crate) fn spawned(&mut self, task: task::Id, id: RequestId) {
        self.tasks.insert(task, id);
    }

    /// The request a finished task ran.
    pub(crate) fn task_finished(&mut self, task: task::Id) -> Option<RequestId> {
        self.tasks.remove(&task)
    }

    /// Cancels a request on the client's behalf; `false` when no such request is running
    /// (unknown, or already finished), which the specification says to ignore.
    pub(crate) fn cancel(&mut self, id: &RequestId) -> bool {
        match self.running.get_mut(id) {
            Some(entry) => {
                entry.cancelled = Some(CancelledBy::Client);
                entry.token.cancel();
                true
            }
            None => false,
        }
    }

    /// Handles the client's `notifications/cancelled`: a malformed one, and one for a
    /// request that is not running, are ignored (and logged), as the specification says.
    pub(crate) fn cancelled(&mut self, params: Option<Value>) {
        match mcp_protocol::decode_params::<mcp_protocol::CancelledParams>(params) {
            Ok(p) if self.cancel(&p.request_id) => {
                tracing::debug!(id = %p.request_id, reason = ?p.reason, "request cancelled by the client");
            }
            Ok(p) => {
                tracing::debug!(id = %p.request_id, "cancel for a request that is not running; ignored");
            }
            Err(e) => tracing::warn!(error = %e, "malformed `notifications/cancelled`; ignored"),
        }
    }

    /// Cancels every running request on the server's behalf (shutdown, expiry); one the
    /// client cancelled already stays the client's.
    pub(crate) fn cancel_all(&mut self) {
        for entry in self.running.values_mut() {
            entry.cancelled.get_or_insert(CancelledBy::Server);
            entry.token.cancel();
        }
    }

    /// Removes a finished request and says what to send for it. `None` the second time,
    /// which is what makes "respond at most once" hold. A request the server cancelled is
    /// answered with `server_cancelled`'s error instead of its reply; one the client
    /// cancelled with nothing.
    pub(crate) fn finish(
        &mut self,
        id: &RequestId,
        reply: Reply,
        server_cancelled: impl FnOnce() -> ErrorObject,
    ) -> Option<Finished> {
        let (id, entry) = self.running.remove_entry(id)?;
        if let Some(ops) = &self.operations {
            ops.remove(&id);
        }
        let respond = entry.cancelled != Some(CancelledBy::Client);
        let outcome = match &reply {
            _ if !respond => Outcome::cancelled,
            Ok(reply) if reply.is_error => Outcome::tool_error,
            Ok(_) => Outcome::ok,
            Err(_) => Outcome::error,
        };
        let result = reply.as_ref().ok().map(|r| r.body.clone());
        let reply = match entry.cancelled {
            Some(CancelledBy::Server) => Err(server_cancelled()),
            _ => reply,
        };
        let send = match entry.batch {
            None if respond => Answer::One(reply),
            None => Answer::Nothing,
            Some(batch_id) => {
                let Some(batch) = self.batches.get_mut(&batch_id) else {
                    tracing::error!(batch_id, "a request finished for an unknown batch");
                    return None;
                };
                if respond {
                    // Batches (protocol 2025-03-26 only) are answered as one array of trees.
                    let result = reply
                        .map(|reply| serde_json::from_str(reply.body.get()).unwrap_or(Value::Null));
                    batch.responses.responses.push(Response {
                        id: Some(id.clone()),
                        result,
                    });
                }
                batch.running -= 1;
                match self.close_batch(batch_id) {
                    Some(responses) => Answer::Batch(responses),
                    None => Answer::Nothing,
                }
            }
        };
        Some(Finished {
            info: entry.info,
            cancelled: entry.cancelled,
            outcome,
            result,
            send,
        })
    }

    /// Forgets every request (their tasks were aborted) and its batch: how many there were,
    /// and the ids of those whose callers wait for an answer (all but the ones the client
    /// cancelled).
    pub(crate) fn abandon_all(&mut self) -> (usize, Vec<RequestId>) {
        self.tasks.clear();
        self.batches.clear();
        if let Some(ops) = &self.operations {
            for id in self.running.keys() {
                ops.remove(id);
            }
        }
        let count = self.running.len();
        let waiting = self
            .running
            .drain()
            .filter(|(_, e)| e.cancelled != Some(CancelledBy::Client))
            .map(|(id, _)| id)
            .collect();
        (count, waiting)
    }
}

/// The running calls of a resumable session, as the store should know them: which they
/// are, and for a long tool's call its task, which keeps its progress, checkpoint and
/// outcome. Written by the session when the set changes.
#[derive(Default)]
pub(crate) struct Operations {
    running: Mutex<HashMap<RequestId, OperationRecord>>,
    /// The set changed (a call started or finished): write at the next flush.
    changed: AtomicBool,
    /// The tasks of calls that ended: removed once the session's record without them, and
    /// its log with their answers, is written.
    answered: Mutex<Vec<TaskId>>,
}

impl Operations {
    fn lock(&self) -> MutexGuard<'_, HashMap<RequestId, OperationRecord>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn answered(&self) -> MutexGuard<'_, Vec<TaskId>> {
        self.answered.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn insert(&self, record: OperationRecord) {
        self.lock().insert(record.request_id.clone(), record);
        self.changed.store(true, Ordering::Release);
    }

    pub(crate) fn remove(&self, id: &RequestId) {
        if let Some(op) = self.lock().remove(id) {
            self.answered().extend(op.task);
            self.changed.store(true, Ordering::Release);
        }
    }

    /// Marks the set as changed, so the next flush writes it (after a restore).
    pub(crate) fn touch(&self) {
        self.changed.store(true, Ordering::Release);
    }

    /// The running calls to write, if the set changed, and the tasks that a successful
    /// write of them lets go (hand them back with [`Self::write_failed`] otherwise).
    pub(crate) fn take_if_changed(&self) -> Option<(Vec<OperationRecord>, Vec<TaskId>)> {
        if !self.changed.swap(false, Ordering::AcqRel) {
            return None;
        }
        let answered = std::mem::take(&mut *self.answered());
        let mut ops: Vec<OperationRecord> = self.lock().values().cloned().collect();
        ops.sort_by_key(|op| op.started_ms);
        Some((ops, answered))
    }

    /// Puts the write back after a failed flush.
    pub(crate) fn write_failed(&self, answered: Vec<TaskId>) {
        self.answered().extend(answered);
        self.changed.store(true, Ordering::Release);
    }

    /// Whether a call started or ended since the last write.
    pub(crate) fn has_changed(&self) -> bool {
        self.changed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests;
