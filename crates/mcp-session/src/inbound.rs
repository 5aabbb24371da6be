//! A session's input: the texts its transport read from the client, in order, at most
//! `capacity` of them waiting.
//!
//! The same contract as a bounded `tokio::sync::mpsc` channel of strings (a sender waits
//! while the queue is full; the receiver sees the end once every sender is gone; sending
//! fails once the receiver is gone; a weak sender keeps nothing open), at a fraction of its
//! memory: tokio's channel allocates a block of 32 slots and two cache-padded headers up
//! front, about 1.3 KB, and every open connection holds one for as long as it is open,
//! mostly empty (docs/performance.md, memory per idle session). This one is a lock around a
//! queue that grows as it is used, and two wake-ups.

use std::collections::VecDeque;
use std::fmt;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::Notify;

/// The most room an empty queue keeps; a burst's growth beyond it is given back.
const KEPT: usize = 8;

/// A new input holding at most `capacity` (at least 1) waiting texts.
pub fn channel(capacity: usize) -> (InboundSender, InboundReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            senders: 1,
            receiver: true,
        }),
        capacity: capacity.max(1),
        readable: Notify::new(),
        writable: Notify::new(),
    });
    (
        InboundSender {
            shared: Arc::clone(&shared),
        },
        InboundReceiver { shared },
    )
}

struct Shared {
    state: Mutex<State>,
    capacity: usize,
    /// Wakes the receiver: a text came, or the last sender went.
    readable: Notify,
    /// Wakes senders: room was made, or the receiver went.
    writable: Notify,
}

struct State {
    queue: VecDeque<String>,
    /// Live senders; the input ends when the last one goes.
    senders: usize,
    /// Whether the receiver is still there.
    receiver: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The receiver is gone: the text was not taken.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed(pub String);

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the session's input is closed")
    }
}

impl std::error::Error for Closed {}

/// Why [`InboundSender::try_send`] did not take a text; the text comes back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError {
    /// `capacity` texts are waiting already.
    Full(String),
    /// The receiver is gone.
    Closed(String),
}

impl fmt::Display for TrySendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("the session's input is full"),
            Self::Closed(_) => f.write_str("the session's input is closed"),
        }
    }
}

impl std::error::Error for TrySendError {}

/// Sends texts to a session. Cloning it makes another sender; the input ends when the last
/// one is dropped.
pub struct InboundSender {
    shared: Arc<Shared>,
}

impl InboundSender {
    /// Queues `text`, waiting while `capacity` texts are waiting; fails once the receiver
    /// is gone.
    pub async fn send(&self, text: String) -> Result<(), Closed> {
        let mut text = Some(text);
        // Room already (the usual case): no waiter to register and remove.
        if let Some(result) = self.offer(&mut text) {
            return result;
        }
        loop {
            let mut writable = pin!(self.shared.writable.notified());
            writable.as_mut().enable();
            match self.offer(&mut text) {
                Some(result) => return result,
                None => writable.await,
            }
        }
    }

    /// Queues `text` if there is room now.
    pub fn try_send(&self, text: String) -> Result<(), TrySendError> {
        let mut state = self.shared.lock();
        if !state.receiver {
            return Err(TrySendError::Closed(text));
        }
        if state.queue.len() >= self.shared.capacity {
            return Err(TrySendError::Full(text));
        }
        state.queue.push_back(text);
        drop(state);
        self.shared.readable.notify_one();
        Ok(())
    }

    /// Queues what `text` holds if there is room: `None` (the text kept) to wait.
    fn offer(&self, text: &mut Option<String>) -> Option<Result<(), Closed>> {
        let mut state = self.shared.lock();
        let taken = text.take().unwrap_or_default();
        if !state.receiver {
            return Some(Err(Closed(taken)));
        }
        if state.queue.len() >= self.shared.capacity {
            *text = Some(taken);
            return None;
        }
        state.queue.push_back(taken);
        drop(state);
        self.shared.readable.notify_one();
        Some(Ok(()))
    }

    /// A sender that does not keep the input open.
    pub fn downgrade(&self) -> WeakInboundSender {
        WeakInboundSender {
            shared: Arc::downgrade(&self.shared),
        }
    }
}

impl Clone for InboundSender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for InboundSender {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.senders -= 1;
        let last = state.senders == 0;
        drop(state);
        if last {
            // `notify_one` keeps a permit for a receiver not yet waiting.
            self.shared.readable.notify_one();
        }
    }
}

impl fmt::Debug for InboundSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundSender").finish_non_exhaustive()
    }
}

/// A sender that does not keep the input open: [`upgrade`](Self::upgrade) it to send.
#[derive(Clone)]
pub struct WeakInboundSender {
    shared: Weak<Shared>,
}

impl WeakInboundSender {
    /// A sender, while another still keeps the input open.
    pub fn upgrade(&self) -> Option<InboundSender> {
        let shared = self.shared.upgrade()?;
        let mut state = shared.lock();
        if state.senders == 0 {
            return None;
        }
        state.senders += 1;
        drop(state);
        Some(InboundSender { shared })
    }
}

/// Receives a session's input.
pub struct InboundReceiver {
    shared: Arc<Shared>,
}

impl InboundReceiver {
    /// The next text; `None` once every sender is gone and everything was taken.
    pub async fn recv(&mut self) -> Option<String> {
        if let Some(next) = self.take() {
            return next;
        }
        loop {
            let mut readable = pin!(self.shared.readable.notified());
            readable.as_mut().enable();
            if let Some(next) = self.take() {
                return next;
            }
            readable.await;
        }
    }

    /// The next text if one is waiting; `None` when none is (the input may have ended:
    /// [`recv`](Self::recv) tells).
    pub fn try_recv(&mut self) -> Option<String> {
        self.take().flatten()
    }

    /// One look: `Some(Some(text))`, `Some(None)` at the end, `None` to wait.
    fn take(&self) -> Option<Option<String>> {
        let mut state = self.shared.lock();
        match state.queue.pop_front() {
            Some(text) => {
                if state.queue.is_empty() && state.queue.capacity() > KEPT {
                    // A burst is over: give back what it grew.
                    state.queue = VecDeque::new();
                }
                drop(state);
                self.shared.writable.notify_one();
                Some(Some(text))
            }
            None if state.senders == 0 => Some(None),
            None => None,
        }
    }
}

impl Drop for InboundReceiver {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver = false;
        state.queue.clear();
        drop(state);
        self.shared.writable.notify_waiters();
    }
}

impl fmt::Debug for InboundReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundReceiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn texts_come_in_order_and_the_end_after_them() {
        let (tx, mut rx) = channel(4);
        let second = tx.clone();
        tx.send("a".into()).await.unwrap();
        second.send("b".into()).await.unwrap();
        drop(tx);
        assert_eq!(rx.recv().await.as_deref(), Some("a"));
        drop(second);
        // The last sender went with a text still waiting: it comes first.
        assert_eq!(rx.recv().await.as_deref(), Some("b"));
        assert_eq!(rx.recv().await, None);
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_sender_waits_for_room_and_no_text_is_lost() {
        let (tx, mut rx) = channel(2);
        let sending = tokio::spawn(async move {
            for i in 0..100 {
                tx.send(i.to_string()).await.unwrap();
            }
        });
        for i in 0..100 {
            assert_eq!(rx.recv().await, Some(i.to_string()));
            assert!(
                rx.shared.lock().queue.len() <= 2,
                "more than capacity waited"
            );
        }
        sending.await.unwrap();
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn try_send_says_full_and_closed() {
        let (tx, rx) = channel(1);
        tx.try_send("a".into()).unwrap();
        assert_eq!(tx.try_send("b".into()), Err(TrySendError::Full("b".into())));
        drop(rx);
        assert_eq!(
            tx.try_send("c".into()),
            Err(TrySendError::Closed("c".into()))
        );
        assert_eq!(tx.send("d".into()).await, Err(Closed("d".into())));
    }

    #[tokio::test]
    async fn a_waiting_sender_fails_when_the_receiver_goes() {
        let (tx, rx) = channel(1);
        tx.send("a".into()).await.unwrap();
        let waiting = tokio::spawn(async move { tx.send("b".into()).await });
        tokio::task::yield_now().await;
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Err(Closed("b".into())));
    }

    #[tokio::test]
    async fn a_weak_sender_keeps_nothing_open() {
        let (tx, mut rx) = channel(4);
        let weak = tx.downgrade();
        let strong = weak.upgrade().expect("a sender is alive");
        drop(tx);
        strong.send("a".into()).await.unwrap();
        drop(strong);
        assert!(
            weak.upgrade().is_none(),
            "upgraded after the last sender went"
        );
        assert_eq!(rx.recv().await.as_deref(), Some("a"));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn try_recv_takes_what_waits() {
        let (tx, mut rx) = channel(4);
        assert_eq!(rx.try_recv(), None);
        tx.try_send("a".into()).unwrap();
        assert_eq!(rx.try_recv().as_deref(), Some("a"));
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn a_receiver_waiting_wakes_for_a_text_and_for_the_end() {
        let (tx, mut rx) = channel(4);
        let receiving = tokio::spawn(async move { (rx.recv().await, rx.recv().await) });
        tokio::task::yield_now().await;
        tx.send("a".into()).await.unwrap();
        drop(tx);
        assert_eq!(receiving.await.unwrap(), (Some("a".into()), None));
    }
}
