//! The session's side of resuming: a connection that attaches to it while it lives, a
//! resuming `initialize` that claims a live session or restores a stored one, and the calls
//! a restart interrupted.

use std::sync::Arc;

use mcp_protocol::{ErrorObject, InitializeParams, Message, ProtocolVersion, decode_params};
use tokio::time::Instant;

use super::{Handled, Session};
use crate::calls::Operations;
use crate::lifecycle::Lifecycle;
use crate::outbound::Regarding;
use crate::resumable::{self, Attach, Claimed, Resumable, ResumeRequest, last_seq};
use crate::store::OperationRecord;

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

    /// Reports a call that was running when the server stopped, and resumes it when its
    /// tool can; otherwise answers it with an -32004 error.
    async fn interrupted(
        &mut self,
        op: OperationRecord,
        seen: Option<f64>,
        version: ProtocolVersion,
    ) {
        let resumes = self.hub.inner.catalog.tools.is_resumable(&op.tool);
        let (notice, refusal) = resumable::interrupted(&op, seen, resumes);
        self.send_message(Message::Notification(notice), Regarding::Other)
            .await;
        if let Some(error) = refusal {
            self.send_error(Some(op.request_id), error).await;
            return;
        }
        // It was admitted before the restart: it counts, but is not refused.
        let slot = self.hub.inner.limits.count_call(&self.principal);
        let (id, call, resume) = resumable::resumed_call(op, slot, seen);
        match self.start_call(id.clone(), call, version, None, Some(resume)) {
            Err(error) => self.send_error(Some(id), error).await,
            Ok(Handled::Finished(done)) => {
                let (id, reply) = *done;
                self.complete(id, reply).await;
            }
            Ok(_) => {}
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
        self.calls
            .record_operations(Arc::clone(&resumable.operations));
        self.outbound
            .make_resumable(self.hub.inner.config.resume_log, true);
        self.announce = Some(resumable.id.clone());
        self.resumable = Some(resumable);
        Ok(())
    }
}
