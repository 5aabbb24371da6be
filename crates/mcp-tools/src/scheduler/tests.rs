//! Fair queueing, positions, and giving up a place.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::{ProgressSink, ProgressUpdate};

/// Records what a queued call reports.
#[derive(Default)]
struct Recorder(Mutex<Vec<ProgressUpdate>>);

impl ProgressSink for Recorder {
    fn send(&self, update: ProgressUpdate) {
        self.0.lock().unwrap().push(update);
    }
}

/// One principal's session `session`.
fn caller(session: u64) -> Caller {
    of("p", session)
}

/// `principal`'s session `session`.
fn of(principal: &str, session: u64) -> Caller {
    Caller {
        principal: Arc::from(principal),
        session,
    }
}

/// Queues a call for one principal's `session`; the returned channel yields the permit once
/// granted.
fn queue(
    scheduler: &Scheduler,
    session: u64,
    label: &str,
) -> (tokio::sync::oneshot::Receiver<Permit>, Arc<Recorder>) {
    queue_as(scheduler, caller(session), label)
}

/// Queues a call for `who`.
fn queue_as(
    scheduler: &Scheduler,
    who: Caller,
    label: &str,
) -> (tokio::sync::oneshot::Receiver<Permit>, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let mut progress = Progress::new(recorder.clone(), Duration::ZERO);
    let scheduler = scheduler.clone();
    let label = label.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let permit = scheduler.acquire(who, &mut progress, &label).await;
        let _ = tx.send(permit);
    });
    (rx, recorder)
}

async fn settle() {
    // Lets every spawned task run until it blocks; on the paused clock this returns once the
    // runtime is idle.
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_session_with_many_calls_does_not_starve_another() {
    let scheduler = Scheduler::new(1);
    let (a1, _) = queue(&scheduler, 1, "a1");
    let a1 = a1.await.unwrap();
    let mut a_rest = Vec::new();
    for i in 2..=5 {
        a_rest.push(queue(&scheduler, 1, &format!("a{i}")));
        settle().await;
    }
    let (mut b1, b_progress) = queue(&scheduler, 2, "b1");
    settle().await;
    assert_eq!(scheduler.load(), (1, 5));
    // B has nothing running, so it is next although A queued first.
    let last = b_progress.0.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.message.as_deref(), Some("b1: queued, position 1"));
    drop(a1);
    let b1 = (&mut b1).await.unwrap();
    assert_eq!(scheduler.load(), (1, 4));
    drop(b1);
    // Then A's calls in order.
    for (rx, _) in a_rest {
        let permit = rx.await.unwrap();
        drop(permit);
    }
    assert_eq!(scheduler.load(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn positions_move_up_and_progress_increases() {
    let scheduler = Scheduler::new(1);
    let (first, _) = queue(&scheduler, 1, "x");
    let first = first.await.unwrap();
    let mut waiting = Vec::new();
    for session in 2..=4 {
        waiting.push(queue(&scheduler, session, &format!("s{session}")));
        settle().await;
    }
    let (_, last_recorder) = &waiting[2];
    assert_eq!(
        last_recorder.0.lock().unwrap()[0].message.as_deref(),
        Some("s4: queued, position 3")
    );
    drop(first);
    let mut iter = waiting.into_iter();
    let (rx2, _) = iter.next().unwrap();
    let p2 = rx2.await.unwrap();
    drop(p2);
    let (rx3, _) = iter.next().unwrap();
    let p3 = rx3.await.unwrap();
    let (rx4, recorder4) = iter.next().unwrap();
    settle().await;
    let reports = recorder4.0.lock().unwrap().clone();
    let messages: Vec<_> = reports.iter().map(|r| r.message.clone().unwrap()).collect();
    assert_eq!(
        messages,
        [
            "s4: queued, position 3",
            "s4: queued, position 2",
            "s4: queued, position 1"
        ]
    );
    assert!(reports.windows(2).all(|w| w[0].progress < w[1].progress));
    assert!(reports.iter().all(|r| r.progress < 1.0));
    drop(p3);
    drop(rx4.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn giving_up_a_place_frees_it() {
    let scheduler = Scheduler::new(1);
    let mut none = Progress::none();
    let held = scheduler.acquire(caller(1), &mut none, "held").await;
    let abandoned = tokio::spawn({
        let scheduler = scheduler.clone();
        async move {
            let mut none = Progress::none();
            scheduler.acquire(caller(2), &mut none, "abandoned").await
        }
    });
    settle().await;
    assert_eq!(scheduler.load(), (1, 1));
    abandoned.abort();
    let _ = abandoned.await;
    assert_eq!(scheduler.load(), (1, 0));
    drop(held);
    assert_eq!(scheduler.load(), (0, 0));
    // The slot is free for the next caller at once.
    let again = scheduler.acquire(caller(3), &mut none, "again").await;
    assert_eq!(scheduler.load(), (1, 0));
    drop(again);
}

/// Issue 19, item 4: fairness was per session, so a principal with many sessions took
/// turn after turn. Now a principal with nothing running goes first, however many sessions
/// another has waiting.
#[tokio::test(start_paused = true)]
async fn a_principal_with_many_sessions_does_not_starve_another() {
    let scheduler = Scheduler::new(1);
    let (held, _) = queue_as(&scheduler, of("many", 1), "m1");
    let held = held.await.unwrap();
    // "many" queues one call in each of 20 sessions, then "one" queues a single call.
    let mut many = Vec::new();
    for session in 2..=21 {
        many.push(queue_as(
            &scheduler,
            of("many", session),
            &format!("m{session}"),
        ));
        settle().await;
    }
    let (mut one, one_progress) = queue_as(&scheduler, of("one", 1), "o1");
    settle().await;
    assert_eq!(scheduler.load(), (1, 21));
    let last = one_progress.0.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.message.as_deref(), Some("o1: queued, position 1"));
    drop(held);
    let granted = (&mut one).await.unwrap();
    assert_eq!(scheduler.load(), (1, 20));
    // The other principal's sessions then take their turns.
    drop(granted);
    let (first, _) = many.remove(0);
    drop(first.await.unwrap());
    for (rx, _) in many {
        drop(rx.await.unwrap());
    }
    assert_eq!(scheduler.load(), (0, 0));
}
