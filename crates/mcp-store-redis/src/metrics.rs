//! What the store counts of Redis: round trips, failures, recoveries.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use redis::RedisError;

/// The store's metrics, for the server's registry ([`RedisStore::register_metrics`]).
pub(crate) struct RedisMetrics {
    pub(crate) round_trips: Histogram,
    pub(crate) failures: Counter,
    pub(crate) recoveries: Counter,
}

impl RedisMetrics {
    pub(crate) fn new() -> Self {
        Self {
            round_trips: Histogram::new(exponential_buckets(0.000_05, 4.0, 10)),
            failures: Counter::default(),
            recoveries: Counter::default(),
        }
    }

    /// Counts a command that took since `started`: its time when Redis answered, a failure
    /// when it did not.
    pub(crate) fn round_trip(&self, started: std::time::Instant, result: Result<(), &RedisError>) {
        match result {
            Err(e) if !reached(e) => {
                self.failures.inc();
            }
            _ => self.round_trips.observe(started.elapsed().as_secs_f64()),
        }
    }
}

/// Whether Redis answered (an error reply is an answer; a refused, dropped or timed-out
/// connection is not).
pub(crate) fn reached(e: &RedisError) -> bool {
    !(e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal())
}
