//! Where a 2025 session's tool calls send what they produce: progress into the session's
//! outbound log (coalesced per token) and its call resources, log messages at the level the
//! client set, and requests to the client through the session's `Peer`.

use std::sync::Arc;
use std::time::Duration;

use mcp_protocol::{
    ClientCapabilities, LoggingLevel, Message, Notification, ProgressParams, ProgressToken, methods,
};
use mcp_tools::{Checkpoint, LogSink, Logger, Progress, ProgressSink, ProgressUpdate};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::Peer;
use crate::hub::Notices;
use crate::outbound::{Coalesce, OutboundQueue};
use crate::resources::Resources;
use crate::router::{CallScope, ToolCall};
use crate::tasks::Front;

/// What a 2025 session lends its tool calls.
pub(crate) struct SessionSinks<'a> {
    pub(crate) outbound: &'a OutboundQueue,
    pub(crate) resources: &'a Arc<Resources>,
    pub(crate) log: &'a Arc<Notices>,
    pub(crate) peer: &'a Peer,
    pub(crate) capabilities: Option<&'a Arc<ClientCapabilities>>,
    pub(crate) progress_interval: Duration,
    pub(crate) principal: Arc<str>,
    pub(crate) session: u64,
}

impl SessionSinks<'_> {
    /// The scope of a call whose resource is `operation`, run by the session.
    pub(crate) fn scope(
        self,
        call: &ToolCall,
        token: &CancellationToken,
        operation: &str,
    ) -> CallScope {
        CallScope {
            cancel: token.clone(),
            progress: Progress::new(
                self.notifier(call, token, operation),
                self.progress_interval,
            ),
            checkpoint: Checkpoint::none(),
            log: Logger::new(self.log.clone(), call.name.clone()),
            client: mcp_tools::Client::new(self.client()),
            task: mcp_tools::TaskGate::open(),
            principal: self.principal,
            session: self.session,
            time_limit: None,
            label: None,
        }
    }

    /// What a call whose resource is `operation`, run by a task, tells the session; a
    /// resumed call's client has `seen` its progress up to there.
    pub(crate) fn front(
        self,
        call: &ToolCall,
        token: &CancellationToken,
        operation: &str,
        seen: Option<f64>,
    ) -> Front {
        Front {
            progress: self.notifier(call, token, operation),
            after: seen,
            log: self.log.clone(),
            client: self.client(),
            session: self.session,
        }
    }

    /// Progress always feeds the call's resource; it becomes notifications only for a
    /// caller that gave a token.
    fn notifier(
        &self,
        call: &ToolCall,
        token: &CancellationToken,
        operation: &str,
    ) -> Arc<ProgressNotifier> {
        Arc::new(ProgressNotifier {
            progress_token: call.progress_token.clone(),
            outbound: self.outbound.clone(),
            call: token.clone(),
            resource: Some((Arc::clone(self.resources), operation.to_owned())),
        })
    }

    fn client(&self) -> Arc<ToolClient> {
        Arc::new(ToolClient {
            peer: self.peer.clone(),
            capabilities: self.capabilities.cloned().unwrap_or_default(),
        })
    }
}

/// Queues a call's progress as `notifications/progress` with the caller's token. Never waits:
/// a notification still queued for the same token is replaced by the newer one.
pub(crate) struct ProgressNotifier {
    progress_token: Option<ProgressToken>,
    outbound: OutboundQueue,
    /// Once the call is cancelled nobody waits for its progress, and after a time limit its
    /// response may already be out: no progress may follow it.
    call: CancellationToken,
    /// A 2025 session's resources, and the call's resource there.
    resource: Option<(Arc<Resources>, String)>,
}

impl ProgressNotifier {
    /// The progress of a modern call: notifications on its own output, nothing else.
    pub(crate) fn stateless(
        progress_token: Option<ProgressToken>,
        outbound: OutboundQueue,
        call: CancellationToken,
    ) -> Self {
        Self {
            progress_token,
            outbound,
            call,
            resource: None,
        }
    }
}

impl ProgressSink for ProgressNotifier {
    fn send(&self, update: ProgressUpdate) {
        if self.call.is_cancelled() {
            return;
        }
        if let Some((resources, operation)) = &self.resource
            && resources.progress(
                operation,
                update.progress,
                update.total,
                update.message.as_deref(),
            )
        {
            let _ = self.outbound.push_coalesced(
                Coalesce::Updated(operation.clone()),
                updated_text(operation),
            );
        }
        let Some(progress_token) = &self.progress_token else {
            return;
        };
        let params = ProgressParams {
            progress_token: progress_token.clone(),
            progress: update.progress,
            total: update.total,
            message: update.message,
        };
        let Ok(params) = serde_json::to_value(params) else {
            return;
        };
        let text = Message::Notification(Notification {
            method: methods::PROGRESS.to_owned(),
            params: Some(params),
        })
        .to_text();
        // A closed queue means the session is ending and the call is being cancelled.
        let _ = self.outbound.push_progress(progress_token.clone(), text);
    }
}

/// The text of `notifications/resources/updated` for `uri`.
pub(crate) fn updated_text(uri: &str) -> String {
    Message::Notification(Notification {
        method: methods::RESOURCES_UPDATED.to_owned(),
        params: Some(serde_json::json!({ "uri": uri })),
    })
    .to_text()
}

impl LogSink for Notices {
    fn log(&self, level: LoggingLevel, logger: &str, data: Value) {
        self.send(level, logger, data);
    }
}

/// The way to a 2025 session's client, for what is not a tool call (a prompt that asks).
pub(crate) fn session_client(
    peer: &Peer,
    capabilities: Arc<ClientCapabilities>,
) -> mcp_tools::Client {
    mcp_tools::Client::new(Arc::new(ToolClient {
        peer: peer.clone(),
        capabilities,
    }))
}

/// A tool's requests to the session's client, through the session's `Peer`.
struct ToolClient {
    peer: Peer,
    capabilities: Arc<ClientCapabilities>,
}

impl mcp_tools::ClientSink for ToolClient {
    fn supports(&self, capability: &str) -> bool {
        let c = &self.capabilities;
        match capability {
            "sampling" => c.sampling.is_some(),
            "elicitation" => c.elicitation.is_some(),
            "roots" => c.roots.is_some(),
            _ => false,
        }
    }

    fn request(
        &self,
        _key: &str,
        method: &str,
        params: Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, String>> + Send>> {
        let peer = self.peer.clone();
        let method = method.to_owned();
        Box::pin(async move {
            peer.request(&method, Some(params))
                .await
                .map_err(|e| e.to_string())
        })
    }
}
