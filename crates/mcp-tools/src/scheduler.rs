//! The scheduler for heavy work: a global limit on how many heavy calls run at once, and fair
//! queueing across sessions, so one client submitting a hundred batches cannot starve another.
//!
//! Fairness rule: when a slot frees up, it goes to the first waiter of the session that has the
//! fewest heavy calls running, and among those the one served longest ago. A session with many
//! waiters thus gets one turn per round, like every other session with waiters, and a session
//! with nothing running goes before one that already has a slot.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{oneshot, watch};

use crate::{Progress, ProgressUpdate};

/// A handle to the scheduler. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Scheduler")
            .field("limit", &state.limit)
            .field("running", &state.running)
            .finish()
    }
}

struct Waiter {
    id: u64,
    grant: oneshot::Sender<()>,
    position: watch::Sender<usize>,
}

#[derive(Default)]
struct SessionQueue {
    waiters: VecDeque<Waiter>,
    /// How many slots this session holds.
    running: usize,
    /// When this session was last granted a slot (a counter, not a time); 0 = never.
    last_grant: u64,
}

impl SessionQueue {
    /// The serving order: smaller goes first.
    fn key(&self, session: u64) -> (usize, u64, u64) {
        (self.running, self.last_grant, session)
    }
}

struct State {
    limit: usize,
    running: usize,
    sessions: HashMap<u64, SessionQueue>,
    grants: u64,
    next_waiter: u64,
}

/// A slot to run heavy work. The slot is released when this is dropped.
#[derive(Debug)]
pub struct Permit {
    scheduler: Scheduler,
    session: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.scheduler.lock();
        state.release(self.session);
    }
}

impl Scheduler {
    /// A scheduler running at most `limit` heavy calls at once.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(State {
                limit: limit.max(1),
                running: 0,
                sessions: HashMap::new(),
                grants: 0,
                next_waiter: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many heavy calls are running and how many are waiting.
    pub fn load(&self) -> (usize, usize) {
        let state = self.lock();
        let waiting = state.sessions.values().map(|s| s.waiters.len()).sum();
        (state.running, waiting)
    }

    /// Waits for a slot. While queued, reports the position as progress: values below 1 that
    /// grow as the call moves up, with a message such as `batch 7: queued, position 3`.
    ///
    /// Dropping the future gives up the place in the queue (or the slot, if it was granted
    /// in the meantime).
    pub async fn acquire(&self, session: u64, progress: &mut Progress, label: &str) -> Permit {
        let (id, mut granted, mut position) = {
            let mut state = self.lock();
            let nobody_waits = state.sessions.values().all(|s| s.waiters.is_empty());
            if state.running < state.limit && nobody_waits {
                state.running += 1;
                state.grants += 1;
                let stamp = state.grants;
                let queue = state.sessions.entry(session).or_default();
                queue.last_grant = stamp;
                queue.running += 1;
                return Permit {
                    scheduler: self.clone(),
                    session,
                };
            }
            let id = state.next_waiter;
            state.next_waiter += 1;
            let (grant, granted) = oneshot::channel();
            let (position_tx, position) = watch::channel(0);
            state
                .sessions
                .entry(session)
                .or_default()
                .waiters
                .push_back(Waiter {
                    id,
                    grant,
                    position: position_tx,
                });
            // Serves at once if a slot is free (the waiter is then granted before it waits).
            state.grant_next();
            (id, granted, position)
        };
        let mut guard = Leave {
            scheduler: self,
            session,
            id,
            granted: None,
        };
        if granted.try_recv().is_ok() {
            guard.granted = Some(());
            return Permit {
                scheduler: self.clone(),
                session,
            };
        }
        let first = (*position.borrow_and_update()).max(1);
        let mut report = |at: usize| {
            let moved = first.saturating_sub(at) as f64;
            progress.report(ProgressUpdate {
                progress: moved / first as f64,
                total: None,
                message: Some(format!("{label}: queued, position {at}")),
            });
        };
        report(first);
        loop {
            tokio::select! {
                biased;
                result = &mut granted => {
                    if result.is_ok() {
                        guard.granted = Some(());
                        return Permit { scheduler: self.clone(), session };
                    }
                    // The sender is only dropped after a grant or removal; neither happened.
                    unreachable!("the scheduler dropped a waiter it had not served");
                }
                changed = position.changed() => {
                    if changed.is_ok() {
                        let at = *position.borrow_and_update();
                        report(at);
                    }
                }
            }
        }
    }
}

/// Removes an abandoned waiter, or releases the slot it was granted but never took.
struct Leave<'a> {
    scheduler: &'a Scheduler,
    session: u64,
    id: u64,
    granted: Option<()>,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if self.granted.is_some() {
            return;
        }
        let mut state = self.scheduler.lock();
        let removed = state.sessions.get_mut(&self.session).and_then(|s| {
            let index = s.waiters.iter().position(|w| w.id == self.id)?;
            s.waiters.remove(index)
        });
        if removed.is_none() {
            // Granted after the future stopped being polled: give the slot back.
            state.release(self.session);
        } else {
            state.update_positions();
            state.forget_idle(self.session);
        }
    }
}

impl State {
    fn release(&mut self, session: u64) {
        self.running -= 1;
        if let Some(queue) = self.sessions.get_mut(&session) {
            queue.running -= 1;
        }
        self.forget_idle(session);
        self.grant_next();
    }

    /// The session the next free slot goes to.
    fn next_session(&self) -> Option<u64> {
        self.sessions
            .iter()
            .filter(|(_, q)| !q.waiters.is_empty())
            .min_by_key(|&(&id, q)| q.key(id))
            .map(|(&id, _)| id)
    }

    fn grant_next(&mut self) {
        while self.running < self.limit {
            let Some(session) = self.next_session() else {
                break;
            };
            self.grants += 1;
            let stamp = self.grants;
            let queue = self.sessions.entry(session).or_default();
            queue.last_grant = stamp;
            let Some(waiter) = queue.waiters.pop_front() else {
                break;
            };
            if waiter.grant.send(()).is_ok() {
                queue.running += 1;
                self.running += 1;
            }
            // A waiter whose receiver is gone is being removed by its guard; skip it.
        }
        self.update_positions();
    }

    /// Tells every waiter its place in the order the rule above will serve them, by playing
    /// the rule forward as if slots kept freeing up.
    fn update_positions(&mut self) {
        let mut sim: Vec<((usize, u64, u64), usize)> = self
            .sessions
            .iter()
            .filter(|(_, q)| !q.waiters.is_empty())
            .map(|(&id, q)| (q.key(id), 0))
            .collect();
        let mut stamp = self.grants;
        let mut position = 0;
        while let Some(next) = sim
            .iter_mut()
            .filter(|(key, taken)| self.sessions[&key.2].waiters.len() > *taken)
            .min_by_key(|(key, _)| *key)
        {
            position += 1;
            let (key, taken) = next;
            let waiter = &self.sessions[&key.2].waiters[*taken];
            waiter.position.send_if_modified(|p| {
                let changed = *p != position;
                *p = position;
                changed
            });
            *taken += 1;
            stamp += 1;
            *key = (key.0 + 1, stamp, key.2);
        }
    }

    /// Drops the bookkeeping of a session that neither waits nor runs, so the map does not
    /// grow with every session ever seen.
    fn forget_idle(&mut self, session: u64) {
        if self
            .sessions
            .get(&session)
            .is_some_and(|q| q.waiters.is_empty() && q.running == 0)
        {
            self.sessions.remove(&session);
        }
    }
}

#[cfg(test)]
mod tests;
