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

/// Queues a call for `session`; the returned channel yields the permit once granted.
fn queue(
    scheduler: &Scheduler,
    session: u64,
    label: &str,
) -> (tokio::sync::oneshot::Receiver<Permit>, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let mut progress = Progress::new(recorder.clone(), Duration::ZERO);
    let scheduler = scheduler.clone();
    let label = label.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let permit = scheduler.acquire(session, &mut progress, &label).await;
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
    let held = scheduler.acquire(1, &mut none, "held").await;
    let abandoned = tokio::spawn({
        let scheduler = scheduler.clone();
        async move {
            let mut none = Progress::none();
            scheduler.acquire(2, &mut none, "abandoned").await
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
    let again = scheduler.acquire(3, &mut none, "again").await;
    assert_eq!(scheduler.load(), (1, 0));
    drop(again);
}
