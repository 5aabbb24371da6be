//! Where a 2025 session is in its life: the lifecycle states, how it ends and what it asks
//! its transport when it does, and a graceful shutdown in progress.

use mcp_protocol::{ErrorObject, Notification, ProtocolVersion, error_codes, methods};
use tokio::time::Instant;

/// Why the session asks its transport to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The server is shutting down (WebSocket close code 1001).
    ShuttingDown,
    /// The client did not send `initialize` within the configured time (1008).
    InitTimeout,
    /// The client sent nothing for the configured idle time while nothing ran (1000).
    Idle,
    /// The client resumed the session on another connection (1000).
    Replaced,
    /// The session was deleted (the agent API) (1000).
    Deleted,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEnd {
    /// The transport reported that no more input will come (the client closed or vanished).
    InputClosed,
    /// The transport stopped taking output.
    OutputClosed,
    /// The server is shutting down.
    ShuttingDown,
    /// The client never initialized, or went idle; see [`CloseReason`].
    TimedOut,
    /// The connection resumed another session, which carries on with it.
    Resumed,
    /// A resumable session had no connection for the grace period; its calls were
    /// cancelled. Its record stays in the store until it expires.
    Expired,
    /// The session was deleted.
    Deleted,
    /// The session moved to another instance, where its client resumed it.
    Moved,
}

/// A graceful shutdown in progress.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Drain {
    /// When running requests are cancelled.
    pub(crate) deadline: Instant,
    /// Set once they were: when the last stragglers are abandoned.
    pub(crate) abandon_at: Option<Instant>,
}

impl Drain {
    /// A drain until `deadline`, and the notice that tells the client.
    pub(crate) fn begin(deadline: Instant, running: usize) -> (Self, Notification) {
        let grace = deadline.saturating_duration_since(Instant::now());
        tracing::info!(running, grace_ms = grace.as_millis(), "draining");
        let data = if running == 0 {
            "server shutting down".to_owned()
        } else {
            format!(
                "server shutting down: {running} running request(s) have {} s to finish; new requests are refused",
                grace.as_secs()
            )
        };
        let notice = Notification {
            method: methods::MESSAGE.to_owned(),
            params: Some(serde_json::json!({"level": "warning", "logger": "server", "data": data})),
        };
        let drain = Self {
            deadline,
            abandon_at: None,
        };
        (drain, notice)
    }

    /// When it moves on next: the running requests are cancelled at the deadline, and the
    /// stragglers abandoned after that.
    pub(crate) fn next_due(&self) -> Instant {
        self.abandon_at.unwrap_or(self.deadline)
    }
}

/// Where the session is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Only `initialize` and `ping` are accepted.
    AwaitingInitialize,
    /// `initialize` was answered; waiting for `notifications/initialized`. Requests are
    /// already served: clients commonly pipeline them right behind the notification.
    Initializing(ProtocolVersion),
    /// Normal operation.
    Operating(ProtocolVersion),
}

impl Lifecycle {
    /// Whether a request for `method` is served in this state, and how.
    pub(crate) fn admit(self, method: &str) -> Result<Admitted, ErrorObject> {
        match (self, method) {
            (_, methods::PING) => Ok(Admitted::Ping),
            (Self::AwaitingInitialize, methods::INITIALIZE) => Ok(Admitted::Initialize),
            (_, methods::INITIALIZE) => Err(ErrorObject::invalid_request(
                "the session is already initialized; `initialize` is accepted once per session",
            )),
            (Self::AwaitingInitialize, _) => Err(ErrorObject::invalid_request(format_args!(
                "the session is not initialized: send `initialize` before `{method}`"
            ))),
            (Self::Initializing(v) | Self::Operating(v), _) => Ok(Admitted::Serve(v)),
        }
    }

    /// `notifications/initialized`: the session operates (ignored out of place).
    pub(crate) fn initialized(&mut self) {
        match *self {
            Self::Initializing(v) => {
                tracing::debug!("initialized");
                *self = Self::Operating(v);
            }
            state => tracing::debug!(?state, "`notifications/initialized` out of place; ignored"),
        }
    }

    /// Whether the session takes a batch (a JSON array): only in 2025-03-26.
    pub(crate) fn admit_batch(self) -> Result<(), ErrorObject> {
        let version = self.version();
        if version.is_some_and(ProtocolVersion::allows_batches) {
            return Ok(());
        }
        let negotiated = match version {
            Some(v) => format!("this session speaks {v}"),
            None => "this session is not initialized".to_owned(),
        };
        Err(ErrorObject::invalid_request(format_args!(
            "batches (JSON arrays) are only allowed in protocol version 2025-03-26, and {negotiated}"
        )))
    }

    pub(crate) fn version(self) -> Option<ProtocolVersion> {
        match self {
            Self::AwaitingInitialize => None,
            Self::Initializing(v) | Self::Operating(v) => Some(v),
        }
    }
}

/// How a request is served in the session's state.
pub(crate) enum Admitted {
    /// `ping`, answered in every state.
    Ping,
    /// The `initialize` the session awaits.
    Initialize,
    /// Any other request of an initialized session, which speaks this revision.
    Serve(ProtocolVersion),
}

/// The -32000 error of a request the shutdown refused or stopped.
pub(crate) fn shutdown_error(what: &str) -> ErrorObject {
    ErrorObject::new(
        error_codes::SERVER_SHUTTING_DOWN,
        format!("the server is shutting down: {what}"),
    )
}

/// The session's deadlines, in the order they are served when several are due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// A store write that failed is tried again.
    Retry,
    /// The progress of running calls is written.
    Operations,
    /// A graceful shutdown moves on.
    Drain,
    /// A resumable session without a connection gives up waiting.
    Grace,
    /// No `initialize` came in time.
    Init,
    /// Nothing came and nothing ran for too long.
    Idle,
}
