//! The WebSocket connections: their count under `--max-connections`, and the transport's
//! metrics (opened, open, closed by close code, heartbeat timeouts) in the hub's registry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    code: u16,
}

/// The open connections and what became of the closed ones.
#[derive(Default)]
pub(crate) struct Connections {
    open: AtomicUsize,
    gauge: Gauge,
    opened: Counter,
    closed: Family<CloseLabels, Counter>,
    heartbeat_timeouts: Counter,
}

impl Connections {
    /// Adds the transport's metrics to `registry` (the hub's).
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "mcp_connections_opened",
            "Connections opened",
            self.opened.clone(),
        );
        registry.register(
            "mcp_connections_closed",
            "Connections closed, by WebSocket close code (1006: without a close frame)",
            self.closed.clone(),
        );
        registry.register(
            "mcp_heartbeat_timeouts",
            "Connections closed because the client showed no sign of life",
            self.heartbeat_timeouts.clone(),
        );
        registry.register(
            "mcp_connections",
            "Open client connections",
            self.gauge.clone(),
        );
    }

    /// How many connections are open.
    pub(crate) fn count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Reserves a place for one more connection, unless `max` are open; the place is held
    /// (and counted) until it is dropped. Checking and counting are one step, so concurrent
    /// upgrades cannot overshoot the limit.
    pub(crate) fn try_place(self: &Arc<Self>, max: usize) -> Option<Place> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        self.gauge.inc();
        self.opened.inc();
        Some(Place(Arc::clone(self)))
    }
}

impl mcp_ws::ConnectionObserver for Connections {
    fn closed(&self, code: u16) {
        self.closed.get_or_create(&CloseLabels { code }).inc();
    }

    fn heartbeat_timeout(&self) {
        self.heartbeat_timeouts.inc();
    }
}

/// A connection's place under the connection limit, held while it is open.
pub(crate) struct Place(Arc<Connections>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.dec();
    }
}
