//! Progress throttling and the rate message.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

#[derive(Default)]
struct Recorder(Mutex<Vec<f64>>);

impl ProgressSink for Recorder {
    fn send(&self, update: ProgressUpdate) {
        self.0.lock().unwrap().push(update.progress);
    }
}

fn update(progress: f64) -> ProgressUpdate {
    ProgressUpdate {
        progress,
        total: Some(100.0),
        message: None,
    }
}

#[tokio::test(start_paused = true)]
async fn at_most_one_report_per_interval_but_first_and_final_always() {
    let recorder = Arc::new(Recorder::default());
    let mut progress = Progress::new(recorder.clone(), Duration::from_millis(100));
    assert!(progress.report(update(1.0)), "the first report goes out");
    assert!(!progress.report(update(2.0)), "too soon");
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(progress.report(update(3.0)));
    assert!(!progress.report(update(3.0)), "not increasing");
    assert!(!progress.report(update(2.5)), "going back");
    assert!(!progress.report(update(f64::NAN)));
    assert!(
        progress.report(update(100.0)),
        "the final report goes out however soon"
    );
    assert_eq!(*recorder.0.lock().unwrap(), [1.0, 3.0, 100.0]);
}

#[test]
fn without_a_token_nothing_is_sent() {
    let mut progress = Progress::none();
    assert!(!progress.is_requested());
    assert!(!progress.report(update(1.0)));
}

#[test]
fn rate_and_eta() {
    assert_eq!(
        rate_message("batch 42", 4200, 10_000, Duration::from_secs(12)),
        "batch 42: 4200/10000, 350 items/s, ETA 17 s"
    );
    assert_eq!(
        rate_message("b", 0, 10, Duration::ZERO),
        "b: 0/10, starting"
    );
}
