//! The connections: every TCP connection (HTTP, and WebSocket after its upgrade) counts under
//! `--max-connections` from its accept to its close; and the WebSocket transport's metrics
//! (opened, open, closed by close code, heartbeat timeouts) in the hub's registry.

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
    /// Every open TCP connection: what the limit bounds.
    open: AtomicUsize,
    /// Connections over the limit being answered 503 (each for a second at most).
    refusing: Arc<AtomicUsize>,
    open_gauge: Gauge,
    /// The WebSocket connections among them.
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
            "Open WebSocket connections",
            self.gauge.clone(),
        );
        registry.register(
            "mcp_tcp_connections",
            "Open TCP connections, HTTP and WebSocket alike (bounded by --max-connections)",
            self.open_gauge.clone(),
        );
    }

    /// How many WebSocket connections are open.
    pub(crate) fn count(&self) -> usize {
        usize::try_from(self.gauge.get()).unwrap_or(0)
    }

    /// Reserves a place for one more connection, unless `max` are open; the place is held
    /// (and counted) until it is dropped. Checking and counting are one step, so concurrent
    /// accepts cannot overshoot the limit.
    pub(crate) fn try_place(self: &Arc<Self>, max: usize) -> Option<Place> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        self.open_gauge.inc();
        Some(Place(Arc::clone(self)))
    }
}

/// How many connections over the limit are answered at once; the others are closed at once.
const REFUSING_AT_ONCE: usize = 64;

/// A refusal under way, counted until dropped.
pub(crate) struct Refusing(Arc<AtomicUsize>);

impl Drop for Refusing {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Connections {
    /// A place to answer a connection over the limit, unless many are being answered.
    pub(crate) fn try_refusal(&self) -> Option<Refusing> {
        self.refusing
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < REFUSING_AT_ONCE).then_some(n + 1)
            })
            .ok()?;
        Some(Refusing(Arc::clone(&self.refusing)))
    }
}

impl Place {
    /// The place of a connection upgraded to WebSocket: still counted once, now as a
    /// WebSocket connection too.
    pub(crate) fn websocket(self) -> WebSocketPlace {
        self.0.gauge.inc();
        self.0.opened.inc();
        WebSocketPlace(self)
    }
}

/// A WebSocket connection's place, held while it is open.
pub(crate) struct WebSocketPlace(Place);

impl Drop for WebSocketPlace {
    fn drop(&mut self) {
        (self.0).0.gauge.dec();
    }
}

/// The place of the connection a request came on, in the request's extensions: an upgrade
/// takes it over (the connection keeps counting once), and gives it back when it refuses.
#[derive(Clone)]
pub(crate) struct HeldPlace(Arc<std::sync::Mutex<Option<Place>>>);

impl HeldPlace {
    pub(crate) fn new(place: Place) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(place))))
    }

    pub(crate) fn take(&self) -> Option<Place> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    pub(crate) fn give_back(&self, place: Place) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(place);
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
        self.0.open_gauge.dec();
    }
}
