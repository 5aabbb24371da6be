//! The bounded queue between a session and its transport's writer.
//!
//! Messages (responses, errors, notifications, server requests) are never dropped: when the
//! queue holds `capacity` of them, the session waits, and so stops reading its input.
//! Progress notifications never wait: a token has at most one queued notification, and a
//! newer one replaces it (newest wins). Memory is therefore bounded by `capacity` messages
//! plus one progress notification per running request, whatever the client does.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use mcp_protocol::ProgressToken;
use tokio::sync::Notify;

use crate::CloseReason;
use crate::metrics::Metrics;

/// What the session hands its transport.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// One JSON-RPC message (or batch response) as text: one WebSocket text frame.
    Text(String),
    /// Close the connection; the transport picks the matching close code.
    Close(CloseReason),
}

/// How many notices may be queued beyond the capacity.
pub(crate) const NOTICE_ALLOWANCE: usize = 32;

/// The queue was closed: the transport is gone or the session has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

/// What makes two notifications replaceable by the newer one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Coalesce {
    /// Progress of one call.
    Progress(ProgressToken),
    /// A change of one resource.
    Updated(String),
}

enum Slot {
    Message(String),
    /// The text is in `State::progress`, where a newer notification can replace it.
    Coalesced(Coalesce),
    Close(CloseReason),
}

#[derive(Default)]
struct State {
    slots: VecDeque<Slot>,
    /// How many `Slot::Message`s are queued: what `capacity` bounds.
    messages: usize,
    progress: HashMap<Coalesce, String>,
    /// No more pushes: the session ended or asked to close.
    ended: bool,
    /// The transport stopped reading the queue.
    receiver_gone: bool,
}

struct Shared {
    state: Mutex<State>,
    capacity: usize,
    /// Wakes the transport's writer: something was queued, or the queue ended.
    readable: Notify,
    /// Wakes pushers waiting for room, or for the receiver to go away.
    writable: Notify,
    metrics: Metrics,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The session's side of the queue. Cheap to clone.
#[derive(Clone)]
pub(crate) struct OutboundQueue {
    shared: Arc<Shared>,
}

/// A handle that does not keep the queue open, for [`crate::Peer`].
#[derive(Clone)]
pub(crate) struct WeakQueue(Weak<Shared>);

impl WeakQueue {
    pub(crate) fn upgrade(&self) -> Option<OutboundQueue> {
        self.0.upgrade().map(|shared| OutboundQueue { shared })
    }
}

/// The transport's side of the queue.
pub struct OutboundReceiver {
    shared: Arc<Shared>,
}

/// A new queue holding at most `capacity` messages.
pub(crate) fn channel(capacity: usize, metrics: Metrics) -> (OutboundQueue, OutboundReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        capacity: capacity.max(1),
        readable: Notify::new(),
        writable: Notify::new(),
        metrics,
    });
    (
        OutboundQueue {
            shared: Arc::clone(&shared),
        },
        OutboundReceiver { shared },
    )
}

impl OutboundQueue {
    pub(crate) fn downgrade(&self) -> WeakQueue {
        WeakQueue(Arc::downgrade(&self.shared))
    }

    /// Queues a message, waiting while `capacity` messages are queued.
    pub(crate) async fn push(&self, text: String) -> Result<(), Closed> {
        loop {
            // Register for a wake-up before looking, so a pop between the look and the wait
            // is not missed.
            let writable = self.shared.writable.notified();
            {
                let mut state = self.shared.lock();
                if state.ended || state.receiver_gone {
                    return Err(Closed);
                }
                if state.messages < self.shared.capacity {
                    state.messages += 1;
                    state.slots.push_back(Slot::Message(text));
                    self.shared.metrics.outbound_queued(1);
                    drop(state);
                    self.shared.readable.notify_one();
                    return Ok(());
                }
            }
            writable.await;
        }
    }

    /// Queues a notice (a log message, a broadcast) without waiting. Notices may exceed the
    /// capacity by [`NOTICE_ALLOWANCE`]; past that the client is not reading and the notice is
    /// dropped (counted in `mcp_notices_dropped_total`). Returns whether it was queued.
    pub(crate) fn try_push_notice(&self, text: String) -> Result<bool, Closed> {
        let mut state = self.shared.lock();
        if state.ended || state.receiver_gone {
            return Err(Closed);
        }
        if state.messages >= self.shared.capacity + NOTICE_ALLOWANCE {
            self.shared.metrics.notice_dropped();
            return Ok(false);
        }
        state.messages += 1;
        state.slots.push_back(Slot::Message(text));
        self.shared.metrics.outbound_queued(1);
        drop(state);
        self.shared.readable.notify_one();
        Ok(true)
    }

    /// Queues a progress notification without waiting; replaces the one still queued for the
    /// same token, if any.
    pub(crate) fn push_progress(&self, token: ProgressToken, text: String) -> Result<(), Closed> {
        self.push_coalesced(Coalesce::Progress(token), text)
    }

    /// Queues a notification without waiting; replaces the one still queued with the same
    /// key, if any (newest wins).
    pub(crate) fn push_coalesced(&self, key: Coalesce, text: String) -> Result<(), Closed> {
        let mut state = self.shared.lock();
        if state.ended || state.receiver_gone {
            return Err(Closed);
        }
        if let Some(queued) = state.progress.get_mut(&key) {
            *queued = text;
            if matches!(key, Coalesce::Progress(_)) {
                self.shared.metrics.progress_coalesced();
            }
            return Ok(());
        }
        state.progress.insert(key.clone(), text);
        state.slots.push_back(Slot::Coalesced(key));
        self.shared.metrics.outbound_queued(1);
        drop(state);
        self.shared.readable.notify_one();
        Ok(())
    }

    /// Queues a request to close after everything already queued, and refuses further pushes.
    pub(crate) fn close(&self, reason: CloseReason) {
        let mut state = self.shared.lock();
        if state.ended {
            return;
        }
        state.ended = true;
        state.slots.push_back(Slot::Close(reason));
        self.shared.metrics.outbound_queued(1);
        drop(state);
        self.shared.readable.notify_one();
        self.shared.writable.notify_waiters();
    }

    /// Marks the end of the session's output: the receiver drains what is queued, then ends.
    pub(crate) fn end(&self) {
        self.shared.lock().ended = true;
        self.shared.readable.notify_one();
        self.shared.writable.notify_waiters();
    }
}

impl OutboundReceiver {
    /// The next item to send; `None` once the session's output has ended and all of it was
    /// taken.
    pub async fn recv(&mut self) -> Option<Outbound> {
        loop {
            let readable = self.shared.readable.notified();
            {
                let mut state = self.shared.lock();
                if let Some(slot) = state.slots.pop_front() {
                    self.shared.metrics.outbound_queued(-1);
                    let item = match slot {
                        Slot::Message(text) => {
                            state.messages -= 1;
                            drop(state);
                            self.shared.writable.notify_one();
                            Outbound::Text(text)
                        }
                        Slot::Coalesced(key) => {
                            let text = state.progress.remove(&key).unwrap_or_default();
                            Outbound::Text(text)
                        }
                        Slot::Close(reason) => Outbound::Close(reason),
                    };
                    return Some(item);
                }
                if state.ended {
                    return None;
                }
            }
            readable.await;
        }
    }

    /// How many items are queued, progress included.
    pub fn len(&self) -> usize {
        self.shared.lock().slots.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for OutboundReceiver {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_gone = true;
        let dropped = state.slots.len();
        state.slots.clear();
        state.progress.clear();
        state.messages = 0;
        drop(state);
        self.shared.metrics.outbound_queued(-(dropped as i64));
        self.shared.writable.notify_waiters();
    }
}

#[cfg(test)]
mod tests;
