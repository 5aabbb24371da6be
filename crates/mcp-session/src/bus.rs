//! What instances that share a store tell each other: a `tasks/cancel` for a task another
//! instance runs, a task's changed record (for `subscriptions/listen` streams anywhere), an
//! admin broadcast for every session. The [`Bus`] carries [`Signal`]s; Redis's pub/sub is
//! one (in `mcp-store-redis`). Signals are hints that make things happen sooner: the store
//! stays the truth, and a signal lost while an instance was disconnected loses nothing
//! stored.

use mcp_protocol::LoggingLevel;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::store::{StoreFuture, TaskId};

/// One thing an instance tells the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Signal {
    /// `tasks/cancel` of a task that may run on another instance: the one running it stops
    /// it.
    CancelTask {
        /// The task.
        task: TaskId,
    },
    /// A task's record changed in the store: listen streams of it re-read it.
    TaskChanged {
        /// The task.
        task: TaskId,
    },
    /// A client resumes a 2025 session on another instance: the one running it lets it go
    /// (its connection is closed with 1000, its calls' tasks stop without ending, and its
    /// lease is released), so that the other takes it over.
    ReleaseSession {
        /// The session.
        session: crate::SessionId,
    },
    /// An admin broadcast, for the sessions of every instance.
    Broadcast {
        /// Its level.
        level: LoggingLevel,
        /// Its text.
        message: String,
    },
}

/// How signals reach the other instances.
pub trait Bus: Send + Sync + 'static {
    /// Sends `signal` to the other instances (never back to this one).
    fn publish<'a>(&'a self, signal: &'a Signal) -> StoreFuture<'a, ()>;
    /// The other instances' signals from now on, for as long as the receiver is kept (the
    /// bus reconnects by itself; what was sent while it was disconnected is not received).
    fn subscribe(&self) -> mpsc::Receiver<Signal>;
}
