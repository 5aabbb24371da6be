//! What a running tool gets besides its arguments: a cancellation token and a progress
//! reporter.

use std::fmt;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::tool::BoxFuture;

/// The context of one tool call.
#[derive(Debug)]
pub struct ToolContext {
    /// Fires when the call is cancelled: by the client, by its connection closing, by a time
    /// limit or by shutdown. A tool checks it between units of work.
    pub cancel: CancellationToken,
    /// Where to report progress; a no-op when the caller did not ask for progress.
    pub progress: Progress,
}

impl ToolContext {
    /// A context with the given token and no progress reporting.
    pub fn new(cancel: CancellationToken) -> Self {
        Self {
            cancel,
            progress: Progress::none(),
        }
    }
}

/// One progress report.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressUpdate {
    /// Work done so far.
    pub progress: f64,
    /// Total work, when known.
    pub total: Option<f64>,
    /// A human-readable status line.
    pub message: Option<String>,
}

/// Receives a call's progress reports; the session implements it by sending
/// `notifications/progress` tagged with the caller's token.
pub trait ProgressSink: Send + Sync {
    /// Delivers one report. Waits while the connection's outbound queue is full.
    fn send(&self, update: ProgressUpdate) -> BoxFuture<()>;
}

/// A call's progress reporter.
///
/// It keeps progress strictly increasing, as the specification requires: a report that does
/// not move forward is not sent.
pub struct Progress {
    sink: Option<Arc<dyn ProgressSink>>,
    last: Option<f64>,
}

impl Progress {
    /// A reporter that drops every report, for calls made without a progress token.
    pub fn none() -> Self {
        Self {
            sink: None,
            last: None,
        }
    }

    /// A reporter that delivers to `sink`.
    pub fn new(sink: Arc<dyn ProgressSink>) -> Self {
        Self {
            sink: Some(sink),
            last: None,
        }
    }

    /// Whether anyone listens; a tool may skip building messages when nobody does.
    pub fn is_requested(&self) -> bool {
        self.sink.is_some()
    }

    /// Reports progress. Returns whether the report was sent.
    pub async fn report(&mut self, update: ProgressUpdate) -> bool {
        let Some(sink) = &self.sink else {
            return false;
        };
        if !update.progress.is_finite() || self.last.is_some_and(|last| update.progress <= last) {
            tracing::debug!(progress = update.progress, last = ?self.last, "progress not increasing; not sent");
            return false;
        }
        self.last = Some(update.progress);
        sink.send(update).await;
        true
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress")
            .field("requested", &self.is_requested())
            .field("last", &self.last)
            .finish()
    }
}
