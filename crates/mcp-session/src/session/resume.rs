//! The session's side of resuming: a connection that attaches to it while it lives, a
//! resuming `initialize` that claims a live session or restores a stored one, and the calls
//! a restart interrupted.

use std::sync::Arc;

use mcp_protocol::{
    ErrorObject, InitializeParams, Message, ProtocolVersion, decode_params, methods,
};
use serde_json::Value;
use tokio::time::Instant;

use super::{CallRun, Handled, Session};
use crate::calls::{CallInfo, Operations};
use crate::lifecycle::Lifecycle;
use crate::outbound::Regarding;
use crate::resumable::{self, Attach, Claimed, Resumable, ResumeRequest, Seen, last_seq};
use crate::router::ToolCall;
use crate::store::OperationRecord;
use crate::tasks::SessionTask;

impl Session {
    /// A connection resumes this (live) session (see [`Resumable::accept`]); it takes the
    /// connection's input, principal and capabilities.
    pub(super) fn attach(&mut self, attach: Attach) {
        let (hub, version) = (&self.hub, self.lifecycle.version());
        let Some(r) = &mut self.resumable else {
            return;
        };
        if let Some(taken) = r.accept(
            attach,
            hub,
            version,
            &self.principal,
            &self.outbound,
            &self.peer,
        ) {
            self.inbound = Some(taken.inbound);
            self.principal = taken.principal;
            self.client = Some(taken.capabilities);
            self.last_activity = Instant::now();
        }
    }

    /// Handles a resuming `initialize`: attaches this connection to the live session it
    /// names, or restores that session from the store into this one.
    pub(super) async fn resume(&mut self, request: ResumeRequest) {
        let id = request.id.clone();
        if let Err(error) = self.try_resume(request).await {
            tracing::info!(%error, "resume refused");
            self.send_error(Some(id), error).await;
        }
    }

    async fn try_resume(&mut self, request: ResumeRequest) -> Result<(), ErrorObject> {
        let params: InitializeParams = decode_params(request.params.clone())?;
        let last_seq = last_seq(&params)?;
        let hub = self.hub.clone();
        let claimed = resumable::claim(
            &hub,
            &request,
            &params,
            last_seq,
            &self.principal,
            &mut self.inbound,
        )
        .await?;
        let stored = match claimed {
            Claimed::Attached(attached) => {
                if let Some((receiver, peer)) = attached {
                    // The transport's requests (heartbeat pings) follow the connection.
                    self.peer.follow(&peer);
                    self.outbound.hand_over(receiver);
                }
                self.handed_over = true;
                return Ok(());
            }
            Claimed::Stored(stored) => *stored,
        };
        let session = stored.record.id.clone();
        let operations = Arc::new(Operations::default());
        let restored = resumable::restore(
            &hub,
            stored,
            request.id,
            &params,
            last_seq,
            &self.outbound,
            Arc::clone(&operations),
        )
        .await
        .inspect_err(|_| hub.release(&session))?;
        self.calls.record_operations(operations);
        self.resumable = Some(restored.resumable);
        self.client = Some(Arc::new(params.capabilities));
        self.lifecycle = Lifecycle::Operating(restored.version);
        for (op, seen) in restored.interrupted {
            self.interrupted(op, seen, restored.version).await;
        }
        Ok(())
    }

    /// Reports a call that was running when the server stopped, and answers it the way
    /// its task went: followed while it runs on (resumed from its checkpoint after the
    /// restart), answered with its outcome when it ended. A resumable tool's call whose task
    /// never reached the store starts over; any other call is answered with -32004.
    async fn interrupted(
        &mut self,
        op: OperationRecord,
        seen: Option<Seen>,
        version: ProtocolVersion,
    ) {
        let found = match &op.task {
            Some(task) => self.hub.session_task(&self.principal, task).await,
            None => SessionTask::Unknown,
        };
        let resumable = self.hub.inner.catalog.tools().is_resumable(&op.tool);
        let resumed = match &found {
            SessionTask::Running(_) => true,
            SessionTask::Ended(reply) => reply.is_ok(),
            SessionTask::Unknown => resumable,
        };
        let notice = resumable::interrupted(&op, seen, resumed);
        self.send_message(Message::Notification(notice), Regarding::Other)
            .await;
        let id = op.request_id.clone();
        let call = ToolCall {
            name: op.tool.clone(),
            arguments: match &op.arguments {
                Value::Object(arguments) => arguments.clone(),
                _ => serde_json::Map::new(),
            },
            progress_token: op.progress_token.clone(),
            // It was admitted before the restart: it counts, but is not refused.
            slot: Some(self.hub.inner.limits.count_call(&self.principal)),
        };
        let token = self.token.child_token();
        let run: CallRun = match found {
            SessionTask::Unknown => {
                if !resumable {
                    let error = resumable::interrupted_error(&op, seen);
                    self.send_error(Some(id), error).await;
                    return;
                }
                match self.start_call(id.clone(), call, version, None, seen.map(|s| s.progress)) {
                    Err(error) => self.send_error(Some(id), error).await,
                    Ok(Handled::Finished(done)) => {
                        let (id, reply) = *done;
                        self.complete(id, reply).await;
                    }
                    Ok(_) => {}
                }
                return;
            }
            SessionTask::Ended(reply) => Box::pin(std::future::ready(*reply)),
            SessionTask::Running(live) => {
                let uri = self.resources.start(&id, &call.name);
                let front = self
                    .sinks()
                    .front(&call, &token, &uri, seen.map(|s| s.progress));
                Box::pin(self.hub.follow_task(live, Some(front), token.clone()))
            }
        };
        let info = CallInfo {
            method: methods::TOOLS_CALL,
            started: Instant::now(),
            uri: self.resources.start(&id, &call.name),
            call: Some((op.tool.clone(), op.arguments.clone())),
        };
        if let Handled::Finished(done) = self.launch(id, run, token, None, info, Some(op)) {
            let (id, reply) = *done;
            self.complete(id, reply).await;
        }
    }

    /// Makes this new session resumable: it gets an id, and its messages are kept (and
    /// written to the store before they are sent) from its answer to `initialize` on.
    pub(super) fn make_resumable(
        &mut self,
        version: ProtocolVersion,
        client: &str,
    ) -> Result<(), ErrorObject> {
        let resumable = Resumable::create(&self.hub, version, client)?;
        self.hub.hold_new_session(&resumable.id);
        self.calls
            .record_operations(Arc::clone(&resumable.operations));
        self.outbound.make_resumable(
            self.hub.inner.config.resume_log,
            self.hub.inner.config.resume_log_bytes,
            true,
        );
        self.announce = Some(resumable.id.clone());
        self.resumable = Some(resumable);
        Ok(())
    }
}
