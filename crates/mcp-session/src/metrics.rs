//! The server's metrics, in one registry per [`crate::Server`] so that servers in one
//! process (tests) do not share counts. Rendered in the Prometheus text format.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use mcp_protocol::methods;

/// How a request ended, for `mcp_requests_total`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum Outcome {
    /// Answered with a result.
    ok,
    /// Answered with a JSON-RPC error.
    error,
    /// A tool call answered with `isError: true`.
    tool_error,
    /// Cancelled by the client; no response.
    cancelled,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    outcome: Outcome,
}

/// The methods counted under their own name; anything else is counted as `other`, so that
/// clients cannot grow the label set without bound.
const KNOWN_METHODS: [&str; 5] = [
    methods::INITIALIZE,
    methods::PING,
    methods::TOOLS_LIST,
    methods::TOOLS_CALL,
    methods::LOGGING_SET_LEVEL,
];

pub(crate) fn known(method: &str) -> &'static str {
    KNOWN_METHODS
        .into_iter()
        .find(|m| *m == method)
        .unwrap_or("other")
}

/// Handles to every metric. Cheap to clone; all clones update the same values.
#[derive(Clone)]
pub(crate) struct Metrics {
    registry: Arc<Mutex<Registry>>,
    sessions: Gauge,
    inflight: Gauge,
    requests: Family<RequestLabels, Counter>,
    coalesced: Counter,
    outbound_depth: Gauge,
    drains: Counter,
    latency: Family<MethodLabel, Histogram>,
    notices_dropped: Counter,
    lease_claims: Counter,
    signals: Family<DirectionLabel, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let sessions = Gauge::default();
        let inflight = Gauge::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let coalesced = Counter::default();
        let outbound_depth = Gauge::default();
        let drains = Counter::default();
        let notices_dropped = Counter::default();
        let lease_claims = Counter::default();
        let signals = Family::<DirectionLabel, Counter>::default();
        registry.register(
            "mcp_instance_signals",
            "Signals to and from the other instances sharing the store (cancellations, task changes, broadcasts), by direction",
            signals.clone(),
        );
        registry.register(
            "mcp_task_lease_claims",
            "Task leases this instance took on a shared store (its new tasks, and the tasks of stopped instances it took up)",
            lease_claims.clone(),
        );
        registry.register(
            "mcp_notices_dropped",
            "Log messages and broadcasts not queued because the client was not reading",
            notices_dropped.clone(),
        );
        let latency = Family::<MethodLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 4.0, 10))
        });
        registry.register(
            "mcp_shutdown_drains",
            "Sessions that were drained by a graceful shutdown",
            drains.clone(),
        );
        registry.register(
            "mcp_request_duration_seconds",
            "Time from a request's arrival to its response, by method",
            latency.clone(),
        );
        registry.register("mcp_sessions", "Running MCP sessions", sessions.clone());
        registry.register(
            "mcp_inflight_requests",
            "Client requests being worked on",
            inflight.clone(),
        );
        registry.register(
            "mcp_requests",
            "Client requests by method and outcome",
            requests.clone(),
        );
        registry.register(
            "mcp_progress_coalesced",
            "Progress notifications replaced by a newer one before they were sent",
            coalesced.clone(),
        );
        registry.register(
            "mcp_outbound_queue_depth",
            "Messages waiting in all connections' outbound queues",
            outbound_depth.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            sessions,
            inflight,
            requests,
            coalesced,
            outbound_depth,
            drains,
            latency,
            notices_dropped,
            lease_claims,
            signals,
        }
    }

    pub(crate) fn count_signal(&self, direction: &'static str) {
        self.signals
            .get_or_create(&DirectionLabel { direction })
            .inc();
    }

    pub(crate) fn count_lease_claim(&self) {
        self.lease_claims.inc();
    }

    pub(crate) fn notice_dropped(&self) {
        self.notices_dropped.inc();
    }

    pub(crate) fn drained(&self) {
        self.drains.inc();
    }

    pub(crate) fn observe_latency(&self, method: &str, seconds: f64) {
        self.latency
            .get_or_create(&MethodLabel {
                method: known(method),
            })
            .observe(seconds);
    }

    /// Lets another layer add its metrics to the same registry (a transport's).
    pub(crate) fn register(&self, f: impl FnOnce(&mut Registry)) {
        f(&mut self.registry.lock().unwrap_or_else(PoisonError::into_inner));
    }

    pub(crate) fn render(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }

    pub(crate) fn session_started(&self) {
        self.sessions.inc();
    }

    pub(crate) fn session_ended(&self) {
        self.sessions.dec();
    }

    pub(crate) fn request_started(&self) {
        self.inflight.inc();
    }

    pub(crate) fn request_finished(&self) {
        self.inflight.dec();
    }

    pub(crate) fn inflight(&self) -> i64 {
        self.inflight.get()
    }

    pub(crate) fn count_request(&self, method: &str, outcome: Outcome) {
        self.requests
            .get_or_create(&RequestLabels {
                method: known(method),
                outcome,
            })
            .inc();
    }

    pub(crate) fn progress_coalesced(&self) {
        self.coalesced.inc();
    }

    pub(crate) fn outbound_queued(&self, delta: i64) {
        self.outbound_depth.inc_by(delta);
    }
}
