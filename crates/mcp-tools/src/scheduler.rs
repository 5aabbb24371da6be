//! The scheduler for heavy work: a global limit on how many heavy calls run at once, and fair
//! queueing across principals, then across each principal's sessions, so that neither one
//! client submitting a hundred batches nor one principal opening a hundred sessions can
//! starve another.
//!
//! Fairness rule: when a slot frees up, it goes to the principal with waiters that has the
//! fewest heavy calls running, and among those the one served longest ago; within that
//! principal, to the first waiter of the session that has the fewest heavy calls running, and
//! among those the one served longest ago. A principal with many sessions thus gets one turn
//! per round, like every other principal with waiters, and so does each of its sessions
//! within its turns.

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

/// Who waits: a principal, and its session (unique within the principal; 0 for calls of no
/// session).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Caller {
    /// The principal's name.
    pub principal: Arc<str>,
    /// The session's number.
    pub session: u64,
}

struct Waiter {
    id: u64,
    grant: oneshot::Sender<()>,
    position: watch::Sender<usize>,
}

/// How much a principal or a session holds, and when it was last served.
#[derive(Default, Clone, Copy)]
struct Tally {
    /// How many slots it holds.
    running: usize,
    /// When it was last granted a slot (a counter, not a time); 0 = never.
    last_grant: u64,
}

impl Tally {
    /// The serving order: smaller goes first.
    fn key(self) -> (usize, u64) {
        (self.running, self.last_grant)
    }
}

#[derive(Default)]
struct SessionQueue {
    waiters: VecDeque<Waiter>,
    tally: Tally,
}

#[derive(Default)]
struct PrincipalQueue {
    sessions: HashMap<u64, SessionQueue>,
    tally: Tally,
}

impl PrincipalQueue {
    fn waits(&self) -> bool {
        self.sessions.values().any(|s| !s.waiters.is_empty())
    }
}

struct State {
    limit: usize,
    running: usize,
    principals: HashMap<Arc<str>, PrincipalQueue>,
    grants: u64,
    next_waiter: u64,
}

/// A slot to run heavy work. The slot is released when this is dropped.
#[derive(Debug)]
pub struct Permit {
    scheduler: Scheduler,
    caller: Caller,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.scheduler.lock();
        state.release(&self.caller);
    }
}

impl Scheduler {
    /// A scheduler running at most `limit` heavy calls at once.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(State {
                limit: limit.max(1),
                running: 0,
                principals: HashMap::new(),
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
        let waiting = state
            .principals
            .values()
            .flat_map(|p| p.sessions.values())
            .map(|s| s.waiters.len())
            .sum();
        (state.running, waiting)
    }

    /// Waits for a slot for `caller`. While queued, reports the position as progress: values
    /// below 1 that grow as the call moves up, with a message such as
    /// `batch 7: queued, position 3`.
    ///
    /// Dropping the future gives up the place in the queue (or the slot, if it was granted
    /// in the meantime).
    pub async fn acquire(&self, caller: Caller, progress: &mut Progress, label: &str) -> Permit {
        let (id, mut granted, mut position) = {
            let mut state = self.lock();
            let nobody_waits = state.principals.values().all(|p| !p.waits());
            if state.running < state.limit && nobody_waits {
                state.take_slot(&caller);
                return Permit {
                    scheduler: self.clone(),
                    caller,
                };
            }
            let id = state.next_waiter;
            state.next_waiter += 1;
            let (grant, granted) = oneshot::channel();
            let (position_tx, position) = watch::channel(0);
            state.queue(&caller).waiters.push_back(Waiter {
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
            caller: &caller,
            id,
            granted: None,
        };
        if granted.try_recv().is_ok() {
            guard.granted = Some(());
            drop(guard);
            return Permit {
                scheduler: self.clone(),
                caller,
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
                        drop(guard);
                        return Permit { scheduler: self.clone(), caller };
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
    caller: &'a Caller,
    id: u64,
    granted: Option<()>,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if self.granted.is_some() {
            return;
        }
        let mut state = self.scheduler.lock();
        let removed = state
            .principals
            .get_mut(&self.caller.principal)
            .and_then(|p| p.sessions.get_mut(&self.caller.session))
            .and_then(|s| {
                let index = s.waiters.iter().position(|w| w.id == self.id)?;
                s.waiters.remove(index)
            });
        if removed.is_none() {
            // Granted after the future stopped being polled: give the slot back.
            state.release(self.caller);
        } else {
            state.update_positions();
            state.forget_idle(self.caller);
        }
    }
}

impl State {
    fn queue(&mut self, caller: &Caller) -> &mut SessionQueue {
        self.principals
            .entry(Arc::clone(&caller.principal))
            .or_default()
            .sessions
            .entry(caller.session)
            .or_default()
    }

    /// Counts a slot granted to `caller`.
    fn take_slot(&mut self, caller: &Caller) {
        self.running += 1;
        self.grants += 1;
        let stamp = self.grants;
        let principal = self
            .principals
            .entry(Arc::clone(&caller.principal))
            .or_default();
        principal.tally.running += 1;
        principal.tally.last_grant = stamp;
        let session = principal.sessions.entry(caller.session).or_default();
        session.tally.running += 1;
        session.tally.last_grant = stamp;
    }

    fn release(&mut self, caller: &Caller) {
        self.running -= 1;
        if let Some(principal) = self.principals.get_mut(&caller.principal) {
            principal.tally.running -= 1;
            if let Some(session) = principal.sessions.get_mut(&caller.session) {
                session.tally.running -= 1;
            }
        }
        self.forget_idle(caller);
        self.grant_next();
    }

    /// Who the next free slot goes to, by the rule above.
    fn next(&self) -> Option<Caller> {
        let (name, principal) = self
            .principals
            .iter()
            .filter(|(_, p)| p.waits())
            .min_by(|(a, p), (b, q)| (p.tally.key(), a).cmp(&(q.tally.key(), b)))?;
        let (&session, _) = principal
            .sessions
            .iter()
            .filter(|(_, s)| !s.waiters.is_empty())
            .min_by_key(|&(&id, s)| (s.tally.key(), id))?;
        Some(Caller {
            principal: Arc::clone(name),
            session,
        })
    }

    fn grant_next(&mut self) {
        while self.running < self.limit {
            let Some(caller) = self.next() else {
                break;
            };
            let Some(waiter) = self.queue(&caller).waiters.pop_front() else {
                break;
            };
            if waiter.grant.send(()).is_ok() {
                self.take_slot(&caller);
            }
            // A waiter whose receiver is gone is being removed by its guard; skip it.
        }
        self.update_positions();
    }

    /// Tells every waiter its place in the order the rule above will serve them, by playing
    /// the rule forward as if slots kept freeing up.
    fn update_positions(&mut self) {
        struct Sim<'a> {
            name: &'a Arc<str>,
            tally: Tally,
            sessions: Vec<(u64, Tally, &'a VecDeque<Waiter>, usize)>,
        }
        let mut sim: Vec<Sim<'_>> = self
            .principals
            .iter()
            .filter(|(_, p)| p.waits())
            .map(|(name, p)| Sim {
                name,
                tally: p.tally,
                sessions: p
                    .sessions
                    .iter()
                    .filter(|(_, s)| !s.waiters.is_empty())
                    .map(|(&id, s)| (id, s.tally, &s.waiters, 0))
                    .collect(),
            })
            .collect();
        let mut stamp = self.grants;
        let mut position = 0;
        while let Some(principal) = sim
            .iter_mut()
            .filter(|p| p.sessions.iter().any(|s| s.2.len() > s.3))
            .min_by(|a, b| (a.tally.key(), a.name).cmp(&(b.tally.key(), b.name)))
        {
            let Some(session) = principal
                .sessions
                .iter_mut()
                .filter(|s| s.2.len() > s.3)
                .min_by_key(|s| (s.1.key(), s.0))
            else {
                break;
            };
            position += 1;
            stamp += 1;
            let waiter = &session.2[session.3];
            waiter.position.send_if_modified(|p| {
                let changed = *p != position;
                *p = position;
                changed
            });
            session.3 += 1;
            session.1 = Tally {
                running: session.1.running + 1,
                last_grant: stamp,
            };
            principal.tally = Tally {
                running: principal.tally.running + 1,
                last_grant: stamp,
            };
        }
    }

    /// Drops the bookkeeping of a session (and a principal) that neither waits nor runs, so
    /// the maps do not grow with every session ever seen.
    fn forget_idle(&mut self, caller: &Caller) {
        let Some(principal) = self.principals.get_mut(&caller.principal) else {
            return;
        };
        if principal
            .sessions
            .get(&caller.session)
            .is_some_and(|s| s.waiters.is_empty() && s.tally.running == 0)
        {
            principal.sessions.remove(&caller.session);
        }
        if principal.sessions.is_empty() && principal.tally.running == 0 {
            self.principals.remove(&caller.principal);
        }
    }
}

#[cfg(test)]
mod tests;
