//! The session's outbound log, and the receivers through which connections read it.
//!
//! Every message the session sends gets a position (`seq`, from 1) and enters the log; a
//! connection reads the log through an [`OutboundReceiver`] that remembers how far it got.
//!
//! Messages (responses, errors, notifications, server requests) are never dropped: while a
//! connection is attached and `capacity` of them are unsent, the session waits, and so stops
//! reading its input. Progress notifications and resource updates never wait: one still unsent
//! with the same key is replaced by the newer one, keeping its position (newest wins).
//!
//! A session that is not resumable forgets what was sent. A resumable one keeps the last
//! `retain` messages, sent or not, so that a client that lost its connection can attach a new
//! one and carry on after the last position it saw ([`OutboundQueue::attach`]); while no
//! connection is attached its messages wait in the log, and beyond `retain` the oldest go
//! (resuming from before them is then refused). A resumable session also writes its messages
//! to the store before they are sent: a receiver only yields what was persisted, so that what
//! a client saw survives a crash and no position is ever given twice.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use mcp_protocol::{ProgressToken, RequestId};
use serde_json::Value;
use tokio::sync::Notify;

use crate::CloseReason;
use crate::metrics::Metrics;
use crate::store::LogEntry;

/// What the session hands its transport.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// One JSON-RPC message (or batch response) as text: one WebSocket text frame.
    Text(String),
    /// Close the connection; the transport picks the matching close code.
    Close(CloseReason),
}

/// What a message answers, so that a transport that sends each answer where its request came
/// from (Streamable HTTP) need not read the message to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Regarding {
    /// The response to one request.
    Answer(Answered),
    /// The responses of one batch, as one array.
    Batch(Vec<Answered>),
    /// Progress of the request that gave this token.
    Progress(ProgressToken),
    /// Read back from the store after a restart: it answers requests no connection of this
    /// process made.
    Restored,
    /// Anything else: a notification, a request to the client, an error without an id.
    #[default]
    Other,
}

/// A response's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// The request's id.
    pub id: RequestId,
    /// The response refuses a request whose id was still running: it answers the newest
    /// request with that id, not the running one.
    pub duplicate: bool,
}

impl Answered {
    /// The answer to request `id`.
    pub fn to(id: RequestId) -> Self {
        Self {
            id,
            duplicate: false,
        }
    }
}

/// How many notices may be queued beyond the capacity.
pub(crate) const NOTICE_ALLOWANCE: usize = 32;

/// How many bytes of messages may wait unsent for an attached connection before the session
/// waits for its client (besides the capacity in messages): one message of any size always
/// fits.
pub(crate) const UNSENT_BYTES: usize = 16 * 1024 * 1024;

/// The queue was closed: the transport is gone or the session has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

/// Why a connection cannot attach at the position it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttachError {
    /// Messages after the position were dropped by the log's cap.
    Truncated {
        /// The oldest position still kept.
        oldest: u64,
    },
    /// The position was never sent.
    Ahead {
        /// The newest position so far (0 when none).
        newest: u64,
    },
}

/// What makes two notifications replaceable by the newer one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Coalesce {
    /// Progress of one call.
    Progress(ProgressToken),
    /// A change of one resource.
    Updated(String),
    /// A change of one task's state.
    Task(String),
    /// A change of one list (`tools`, `resources`, `prompts`).
    ListChanged(&'static str),
}

struct Entry {
    seq: u64,
    text: String,
    regarding: Regarding,
    /// Set for a notification a newer one may replace while unsent.
    key: Option<Coalesce>,
    /// Written to the store (always true for a session that is not resumable).
    persisted: bool,
    /// Bumped when the text is replaced, so a store write of the older text does not count.
    version: u32,
    /// Counted in the queue-depth metric (unsent).
    counted: bool,
}

/// The connection reading the log.
struct Reader {
    generation: u64,
    /// The last position given to it.
    cursor: u64,
    /// Messages for this connection only, sent before the log (the answer to its resuming
    /// `initialize`, output of the session it came from).
    preamble: VecDeque<(String, Regarding)>,
    /// How many unsent entries are messages (not coalescing notifications): what
    /// `capacity` bounds.
    unsent_messages: usize,
    /// Their bytes: what [`UNSENT_BYTES`] bounds.
    unsent_bytes: usize,
}

/// How a resumable session keeps its log.
#[derive(Clone, Copy)]
struct Keeping {
    /// How many messages to keep.
    retain: usize,
    /// How many bytes of them, at most: messages may be megabytes each.
    retain_bytes: usize,
    /// Whether each message carries its position (`"seq": N`) for the client.
    stamp: bool,
}

struct State {
    entries: VecDeque<Entry>,
    next_seq: u64,
    reader: Option<Reader>,
    next_generation: u64,
    resumable: Option<Keeping>,
    /// Close the attached connection once everything was sent.
    close: Option<CloseReason>,
    /// No more pushes: the session ended or asked to close.
    ended: bool,
    /// Where the attached connection goes on once this log is done: the session it resumed.
    handover: Option<OutboundReceiver>,
    /// Some entry is not in the store yet.
    unpersisted: bool,
    /// The newest position handed to any connection.
    delivered: u64,
    /// The bytes of the entries' texts (kept exact while the log is resumable).
    bytes: usize,
}

impl State {
    fn index_of(&self, seq: u64) -> Option<usize> {
        let first = self.entries.front()?.seq;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        (index < self.entries.len()).then_some(index)
    }
}

struct Shared {
    state: Mutex<State>,
    capacity: usize,
    /// Wakes readers: something was queued, persisted, or the log ended or changed hands.
    readable: Notify,
    /// Wakes pushers waiting for room, or for the reader to go away.
    writable: Notify,
    /// Wakes the session: entries wait to be written to the store.
    persist: Notify,
    metrics: Metrics,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The session's side of the log. Cheap to clone.
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

/// What [`OutboundReceiver::recv`] found.
enum Step {
    Item(Outbound, Regarding),
    /// Carry on with the log of the session this connection resumed.
    Next(OutboundReceiver),
    Done,
}

/// A connection's side of a session's log: yields what to send, in order.
pub struct OutboundReceiver {
    shared: Arc<Shared>,
    generation: u64,
    /// Set once this receiver was told that a newer connection took its place.
    replaced: bool,
}

/// A new log holding at most `capacity` unsent messages, with a receiver attached.
pub(crate) fn channel(capacity: usize, metrics: Metrics) -> (OutboundQueue, OutboundReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            entries: VecDeque::new(),
            next_seq: 1,
            reader: Some(Reader {
                generation: 0,
                cursor: 0,
                preamble: VecDeque::new(),
                unsent_messages: 0,
                unsent_bytes: 0,
            }),
            next_generation: 1,
            resumable: None,
            close: None,
            ended: false,
            handover: None,
            unpersisted: false,
            delivered: 0,
            bytes: 0,
        }),
        capacity: capacity.max(1),
        readable: Notify::new(),
        writable: Notify::new(),
        persist: Notify::new(),
        metrics,
    });
    (
        OutboundQueue {
            shared: Arc::clone(&shared),
        },
        OutboundReceiver {
            shared,
            generation: 0,
            replaced: false,
        },
    )
}

/// Waits for `notify` unless `ready` holds; registers first, so no wake-up is missed.
async fn wait_until(notify: &Notify, mut ready: impl FnMut() -> bool) {
    // Ready already (a busy session's writer mostly is): no waiter to register and remove.
    if ready() {
        return;
    }
    loop {
        let mut notified = pin!(notify.notified());
        notified.as_mut().enable();
        if ready() {
            return;
        }
        notified.await;
    }
}

impl OutboundQueue {
    pub(crate) fn downgrade(&self) -> WeakQueue {
        WeakQueue(Arc::downgrade(&self.shared))
    }

    /// Appends an entry; the caller holds the lock and has checked that pushing is allowed.
    fn append(
        &self,
        state: &mut State,
        text: String,
        regarding: Regarding,
        key: Option<Coalesce>,
    ) -> u64 {
        let seq = state.next_seq;
        state.next_seq += 1;
        let resumable = state.resumable;
        if let (Some(reader), None) = (&mut state.reader, &key) {
            reader.unsent_messages += 1;
            reader.unsent_bytes += text.len();
        }
        state.bytes += text.len();
        state.entries.push_back(Entry {
            seq,
            text,
            regarding,
            key,
            persisted: resumable.is_none(),
            version: 0,
            counted: true,
        });
        self.shared.metrics.outbound_queued(1);
        if let Some(resumable) = resumable {
            state.unpersisted = true;
            self.shared.persist.notify_waiters();
            // A resumable log keeps `retain` entries, sent or not; but never drops what the
            // attached connection has not read (backpressure bounds that by `capacity`).
            let cursor = state.reader.as_ref().map(|r| r.cursor);
            while (state.entries.len() > resumable.retain.max(1)
                || (state.bytes > resumable.retain_bytes && state.entries.len() > 1))
                && state
                    .entries
                    .front()
                    .is_some_and(|e| cursor.is_none_or(|c| e.seq <= c))
            {
                if let Some(old) = state.entries.pop_front() {
                    state.bytes = state.bytes.saturating_sub(old.text.len());
                    if old.counted {
                        self.shared.metrics.outbound_queued(-1);
                    }
                }
            }
        }
        self.shared.readable.notify_waiters();
        seq
    }

    /// Whether a push fails because nobody will ever read it.
    fn closed(state: &State) -> bool {
        state.ended || (state.reader.is_none() && state.resumable.is_none())
    }

    /// Queues a message, waiting while a connection is attached and `capacity` messages are
    /// unsent. Returns its position.
    pub(crate) async fn push(&self, text: String, regarding: Regarding) -> Result<u64, Closed> {
        let mut message = Some((text, regarding));
        let mut result = Err(Closed);
        wait_until(&self.shared.writable, || {
            let mut state = self.shared.lock();
            if Self::closed(&state) {
                return true;
            }
            if state.reader.as_ref().is_some_and(|r| {
                r.unsent_messages >= self.shared.capacity || r.unsent_bytes >= UNSENT_BYTES
            }) {
                return false;
            }
            let (text, regarding) = message.take().unwrap_or_default();
            result = Ok(self.append(&mut state, text, regarding, None));
            true
        })
        .await;
        result
    }

    /// Queues a notice (a log message, a broadcast) without waiting. Notices may exceed the
    /// capacity by [`NOTICE_ALLOWANCE`]; past that the client is not reading and the notice is
    /// dropped (counted in `mcp_notices_dropped_total`). Returns whether it was queued.
    pub(crate) fn try_push_notice(&self, text: String) -> Result<bool, Closed> {
        let mut state = self.shared.lock();
        if Self::closed(&state) {
            return Err(Closed);
        }
        if state
            .reader
            .as_ref()
            .is_some_and(|r| r.unsent_messages >= self.shared.capacity + NOTICE_ALLOWANCE)
        {
            self.shared.metrics.notice_dropped();
            return Ok(false);
        }
        self.append(&mut state, text, Regarding::Other, None);
        Ok(true)
    }

    /// Queues a progress notification without waiting; replaces the one still unsent for the
    /// same token, if any.
    pub(crate) fn push_progress(&self, token: ProgressToken, text: String) -> Result<(), Closed> {
        self.push_coalesced(Coalesce::Progress(token), text)
    }

    /// Queues a notification without waiting; replaces the one still unsent with the same
    /// key, if any (newest wins, in the older one's position).
    pub(crate) fn push_coalesced(&self, key: Coalesce, text: String) -> Result<(), Closed> {
        let mut state = self.shared.lock();
        if Self::closed(&state) {
            return Err(Closed);
        }
        // Unsent entries are at the end of the log; look there for one with the same key.
        let cursor = state.reader.as_ref().map_or(0, |r| r.cursor);
        let resumable = state.resumable.is_some();
        let found = state
            .entries
            .iter_mut()
            .rev()
            .take_while(|e| e.seq > cursor)
            .find(|e| e.key.as_ref() == Some(&key));
        if let Some(entry) = found {
            let now = text.len();
            let was = std::mem::replace(&mut entry.text, text).len();
            entry.version = entry.version.wrapping_add(1);
            entry.persisted &= !resumable;
            state.bytes = state.bytes.saturating_sub(was) + now;
            if resumable {
                state.unpersisted = true;
                self.shared.persist.notify_waiters();
            }
            if matches!(key, Coalesce::Progress(_)) {
                self.shared.metrics.progress_coalesced();
            }
            return Ok(());
        }
        let regarding = match &key {
            Coalesce::Progress(token) => Regarding::Progress(token.clone()),
            Coalesce::Updated(_) | Coalesce::Task(_) | Coalesce::ListChanged(_) => Regarding::Other,
        };
        self.append(&mut state, text, regarding, Some(key));
        Ok(())
    }

    /// Asks the attached connection to close once everything queued was sent, and refuses
    /// further pushes.
    pub(crate) fn close(&self, reason: CloseReason) {
        let mut state = self.shared.lock();
        if state.ended {
            return;
        }
        state.ended = true;
        state.close = Some(reason);
        drop(state);
        self.shared.readable.notify_waiters();
        self.shared.writable.notify_waiters();
    }

    /// Marks the end of the session's output: the receiver sends what is queued, then ends.
    pub(crate) fn end(&self) {
        self.shared.lock().ended = true;
        self.shared.readable.notify_waiters();
        self.shared.writable.notify_waiters();
    }

    /// Ends this log and sends its connection on to `next` (the log of the session it
    /// resumed) once what is queued here was sent.
    pub(crate) fn hand_over(&self, next: OutboundReceiver) {
        let mut state = self.shared.lock();
        state.ended = true;
        state.handover = Some(next);
        drop(state);
        self.shared.readable.notify_waiters();
        self.shared.writable.notify_waiters();
    }

    /// Makes the log resumable from now on: it keeps the last `retain` messages, sent or not,
    /// and yields only what was persisted. With `stamp`, each message carries its position.
    pub(crate) fn make_resumable(&self, retain: usize, retain_bytes: usize, stamp: bool) {
        let mut state = self.shared.lock();
        state.bytes = state.entries.iter().map(|e| e.text.len()).sum();
        state.resumable = Some(Keeping {
            retain,
            retain_bytes,
            stamp,
        });
    }

    /// The oldest position the log keeps (the next one when it is empty): what the store
    /// need not keep before.
    pub(crate) fn oldest_kept(&self) -> u64 {
        let state = self.shared.lock();
        state.entries.front().map_or(state.next_seq, |e| e.seq)
    }

    /// Replaces the log with one restored from the store: `entries` (persisted, oldest first)
    /// and the next position. The attached connection has seen everything up to `after`; it
    /// gets what was queued for it and not sent yet, then `preamble` (neither with
    /// positions), then the restored messages after `after`.
    pub(crate) fn restore(
        &self,
        entries: Vec<LogEntry>,
        next_seq: u64,
        after: u64,
        preamble: Vec<(String, Regarding)>,
    ) {
        let mut state = self.shared.lock();
        let old: Vec<Entry> = state.entries.drain(..).collect();
        let cursor = state.reader.as_ref().map_or(0, |r| r.cursor);
        let mut unsent = VecDeque::new();
        for entry in old {
            if entry.counted {
                self.shared.metrics.outbound_queued(-1);
            }
            if entry.seq > cursor {
                unsent.push_back((entry.text, entry.regarding));
            }
        }
        state.entries = entries
            .into_iter()
            .map(|e| Entry {
                seq: e.seq,
                text: e.text,
                regarding: Regarding::Restored,
                key: None,
                persisted: true,
                version: 0,
                counted: false,
            })
            .collect();
        state.bytes = state.entries.iter().map(|e| e.text.len()).sum();
        state.next_seq = next_seq.max(state.entries.back().map_or(1, |e| e.seq + 1));
        // Which of them reached a client before the restart is not known: count them as
        // delivered rather than give them twice.
        state.delivered = state.next_seq - 1;
        let unsent_messages = state.entries.iter().filter(|e| e.seq > after).count();
        let unsent_bytes = state
            .entries
            .iter()
            .filter(|e| e.seq > after)
            .map(|e| e.text.len())
            .sum();
        if let Some(reader) = &mut state.reader {
            let mut queued: VecDeque<(String, Regarding)> = reader.preamble.drain(..).collect();
            queued.extend(unsent);
            queued.extend(preamble);
            reader.preamble = queued;
            reader.cursor = after;
            reader.unsent_messages = unsent_messages;
            reader.unsent_bytes = unsent_bytes;
        }
        drop(state);
        self.shared.readable.notify_waiters();
    }

    /// Attaches a new connection that has seen everything up to `after` (or, when `None`,
    /// everything handed to a connection so far); the previous one is told it was replaced
    /// ([`CloseReason::Replaced`]). The connection gets `preamble` first, then every message
    /// after `after`, then the live ones.
    pub(crate) fn attach(
        &self,
        after: Option<u64>,
        preamble: Vec<(String, Regarding)>,
    ) -> Result<OutboundReceiver, AttachError> {
        let mut state = self.shared.lock();
        let after = after.unwrap_or(state.delivered);
        let newest = state.next_seq - 1;
        if after > newest {
            return Err(AttachError::Ahead { newest });
        }
        let oldest = state.entries.front().map_or(state.next_seq, |e| e.seq);
        if after + 1 < oldest {
            return Err(AttachError::Truncated { oldest });
        }
        let generation = state.next_generation;
        state.next_generation += 1;
        let unsent = || {
            state
                .entries
                .iter()
                .filter(|e| e.seq > after && e.key.is_none())
        };
        let unsent_messages = unsent().count();
        let unsent_bytes = unsent().map(|e| e.text.len()).sum();
        state.reader = Some(Reader {
            generation,
            cursor: after,
            preamble: preamble.into(),
            unsent_messages,
            unsent_bytes,
        });
        drop(state);
        self.shared.readable.notify_waiters();
        self.shared.writable.notify_waiters();
        Ok(OutboundReceiver {
            shared: Arc::clone(&self.shared),
            generation,
            replaced: false,
        })
    }

    /// Completes once some entry waits to be written to the store.
    pub(crate) async fn unpersisted(&self) {
        wait_until(&self.shared.persist, || self.shared.lock().unpersisted).await;
    }

    /// The entries to write to the store, with the version each had.
    pub(crate) fn take_unpersisted(&self) -> Vec<(LogEntry, u32)> {
        let mut state = self.shared.lock();
        state.unpersisted = false;
        state
            .entries
            .iter()
            .filter(|e| !e.persisted)
            .map(|e| {
                (
                    LogEntry {
                        seq: e.seq,
                        text: e.text.clone(),
                    },
                    e.version,
                )
            })
            .collect()
    }

    /// Marks entries as written to the store (unless replaced since), so they can be sent.
    pub(crate) fn mark_persisted(&self, written: &[(LogEntry, u32)]) {
        let mut state = self.shared.lock();
        for (entry, version) in written {
            if let Some(index) = state.index_of(entry.seq)
                && state.entries[index].version == *version
            {
                state.entries[index].persisted = true;
            }
        }
        drop(state);
        self.shared.readable.notify_waiters();
    }

    /// Marks entries as needing another write (the store failed).
    pub(crate) fn retry_persist(&self) {
        self.shared.lock().unpersisted = true;
    }
}

impl OutboundReceiver {
    /// The next item to send; `None` once the session's output has ended and all of it was
    /// taken.
    pub async fn recv(&mut self) -> Option<Outbound> {
        self.recv_with_regarding().await.map(|(item, _)| item)
    }

    /// The next item to send, and what it answers ([`Regarding::Other`] for a close).
    pub async fn recv_with_regarding(&mut self) -> Option<(Outbound, Regarding)> {
        loop {
            let shared = Arc::clone(&self.shared);
            let generation = self.generation;
            let mut replaced = self.replaced;
            let mut step = None;
            wait_until(&shared.readable, || {
                let mut state = shared.lock();
                step = Self::step(&shared, &mut state, generation, &mut replaced);
                step.is_some()
            })
            .await;
            self.replaced = replaced;
            match step {
                Some(Step::Item(item, regarding)) => return Some((item, regarding)),
                Some(Step::Next(next)) => *self = next,
                Some(Step::Done) | None => return None,
            }
        }
    }

    /// The next item if one is ready now, without waiting: `None` when there is none yet
    /// or the output ended ([`recv`](Self::recv) tells them apart).
    pub fn try_recv(&mut self) -> Option<Outbound> {
        loop {
            let mut state = self.shared.lock();
            let step = Self::step(
                &self.shared,
                &mut state,
                self.generation,
                &mut self.replaced,
            );
            drop(state);
            match step {
                Some(Step::Item(item, _)) => return Some(item),
                Some(Step::Next(next)) => *self = next,
                Some(Step::Done) | None => return None,
            }
        }
    }

    /// One look at the log: what to send, or `None` to wait.
    fn step(
        shared: &Shared,
        state: &mut State,
        generation: u64,
        replaced: &mut bool,
    ) -> Option<Step> {
        let current = state
            .reader
            .as_ref()
            .is_some_and(|r| r.generation == generation);
        if !current {
            if *replaced {
                return Some(Step::Done);
            }
            *replaced = true;
            return Some(Step::Item(
                Outbound::Close(CloseReason::Replaced),
                Regarding::Other,
            ));
        }
        let State {
            entries,
            next_seq,
            reader,
            resumable,
            close,
            ended,
            handover,
            delivered,
            bytes,
            ..
        } = state;
        let reader = reader.as_mut()?;
        if let Some((text, regarding)) = reader.preamble.pop_front() {
            return Some(Step::Item(Outbound::Text(text), regarding));
        }
        let first = entries.front().map_or(*next_seq, |e| e.seq);
        if reader.cursor + 1 < first && first < *next_seq {
            // Cannot happen while attached (the cap only drops sent entries then); say so
            // rather than stall.
            tracing::error!(
                wanted = reader.cursor + 1,
                first,
                "outbound log lost unsent messages"
            );
            reader.cursor = first - 1;
        }
        let stamp = resumable.is_some_and(|d| d.stamp);
        let keep = resumable.is_some();
        let index = (reader.cursor + 1)
            .checked_sub(first)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < entries.len());
        if let Some(index) = index {
            let entry = &mut entries[index];
            if !entry.persisted && !*ended {
                return None;
            }
            if !entry.persisted {
                // The session ended before the store took these: they were never
                // acknowledged, so they are not sent.
                tracing::warn!(
                    unsent = entries.len() - index,
                    "session ended with messages the store did not take"
                );
                entries.truncate(index);
                *bytes = entries.iter().map(|e| e.text.len()).sum();
                return Some(match (close.take(), handover.take()) {
                    (Some(reason), _) => Step::Item(Outbound::Close(reason), Regarding::Other),
                    (None, Some(receiver)) => Step::Next(receiver),
                    (None, None) => Step::Done,
                });
            }
            reader.cursor = entry.seq;
            *delivered = (*delivered).max(entry.seq);
            if entry.key.is_none() {
                reader.unsent_messages = reader.unsent_messages.saturating_sub(1);
                reader.unsent_bytes = reader.unsent_bytes.saturating_sub(entry.text.len());
            }
            if entry.counted {
                entry.counted = false;
                shared.metrics.outbound_queued(-1);
            }
            let text = if stamp {
                with_member(&entry.text, "seq", &Value::from(entry.seq))
            } else if keep {
                entry.text.clone()
            } else {
                std::mem::take(&mut entry.text)
            };
            let regarding = if keep {
                entry.regarding.clone()
            } else {
                std::mem::take(&mut entry.regarding)
            };
            if !keep {
                // Nobody resumes this session: what was sent can go.
                let cursor = reader.cursor;
                while entries.front().is_some_and(|e| e.seq <= cursor) {
                    entries.pop_front();
                }
            }
            shared.writable.notify_waiters();
            return Some(Step::Item(Outbound::Text(text), regarding));
        }
        if *ended {
            if let Some(reason) = close.take() {
                return Some(Step::Item(Outbound::Close(reason), Regarding::Other));
            }
            if let Some(receiver) = handover.take() {
                return Some(Step::Next(receiver));
            }
            return Some(Step::Done);
        }
        None
    }

    /// How many items are unsent, progress included.
    pub fn len(&self) -> usize {
        let state = self.shared.lock();
        match &state.reader {
            Some(r) if r.generation == self.generation => {
                r.preamble.len() + (state.next_seq - 1).saturating_sub(r.cursor) as usize
            }
            _ => 0,
        }
    }

    /// Whether nothing is unsent.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for OutboundReceiver {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if state
            .reader
            .as_ref()
            .is_none_or(|r| r.generation != self.generation)
        {
            return;
        }
        state.reader = None;
        if state.resumable.is_none() {
            // Nobody will read this session's output again.
            let dropped = state.entries.iter().filter(|e| e.counted).count();
            state.entries.clear();
            self.shared.metrics.outbound_queued(-(dropped as i64));
        }
        drop(state);
        self.shared.writable.notify_waiters();
    }
}

#[cfg(test)]
mod tests;

/// The message with `member` added at the top level (to each element of a batch).
pub(crate) fn with_member(text: &str, key: &str, value: &Value) -> String {
    if let Some(rest) = text.strip_prefix('{') {
        let sep = if rest.trim_start().starts_with('}') {
            ""
        } else {
            ","
        };
        return format!("{{{}:{value}{sep}{rest}", Value::from(key));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(mut items)) => {
            for item in &mut items {
                if let Value::Object(map) = item {
                    map.insert(key.to_owned(), value.clone());
                }
            }
            Value::Array(items).to_string()
        }
        _ => text.to_owned(),
    }
}
