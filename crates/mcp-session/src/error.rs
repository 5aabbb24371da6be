//! Errors the session reports to its callers.

use mcp_protocol::ErrorObject;

/// Why a server-initiated request to the client got no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The session ended before the client answered. Nothing to retry on this session.
    #[error("the session closed before the client answered")]
    Closed,
    /// The client answered with an error. The caller decides whether that is fatal.
    #[error("the client answered with an error: {0}")]
    Rejected(ErrorObject),
}
