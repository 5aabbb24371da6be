//! The MCP session state machine, independent of any transport.
//!
//! A transport hands a [`Session`] the text of each message it receives and forwards every
//! [`Outbound`] item the session produces. The session owns the lifecycle (awaiting
//! initialize, initializing, operating, closing), protocol version negotiation, routing to
//! handlers, the in-flight request table, the correlation of server-initiated requests
//! with their responses, and per-request cancellation. It never touches a socket, which is
//! why it can be tested with transcripts: client lines in, server lines out.

#![warn(missing_docs)]

pub mod bus;
mod calls;
mod catalog;
mod error;
mod hub;
pub mod inbound;
mod lifecycle;
mod limits;
mod listen;
mod metrics;
mod outbound;
mod peer;
mod principal;
mod resources;
mod resumable;
mod round_trip;
mod router;
mod session;
mod sinks;
mod stateless;
pub mod store;
mod tasks;

pub use bus::{Bus, Signal};
pub use error::PeerError;
pub use hub::{
    ConnectionHold, Hub, HubBuilder, ServerConfig, SessionRefusal, SessionSlot, Stat,
    default_instance_id,
};
pub use inbound::{InboundReceiver, InboundSender, WeakInboundSender};
pub use lifecycle::{CloseReason, SessionEnd};
pub use limits::RateLimit;
pub use outbound::{Answered, Outbound, OutboundReceiver, Regarding};
pub use peer::Peer;
pub use principal::{Principal, SCOPE_ADMIN, SCOPE_TOOL_PREFIX, SCOPE_TOOLS};
pub use session::Session;
pub use stateless::{Mirrored, Stateless, StatelessCall};
pub use store::{
    ANONYMOUS, HISTORY_BYTES, HISTORY_CAP, HistoryEntry, LogEntry, MemoryStore, OperationRecord,
    Replay, SessionId, SessionRecord, SessionStore, StoreError, StoreFuture, TaskId, TaskRecord,
    TaskStatus, Update, Usage, stored_len,
};

#[cfg(test)]
mod tests;
