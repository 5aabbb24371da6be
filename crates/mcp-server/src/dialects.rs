//! The seeds' wire dialects (`mcp_protocol::dialect`) as translators of the WebSocket
//! transport, with the clock they need.

use std::time::SystemTime;

use mcp_protocol::dialect::{Dialect, Envelope, Translated, Tutorial};
use mcp_ws::Translate;

/// A dialect plugged into a connection.
struct Translator(Dialect);

impl Translate for Translator {
    fn open(&mut self) -> Translated {
        self.0.open(SystemTime::now())
    }

    fn on_client(&mut self, text: &str) -> Translated {
        self.0.on_client(text, SystemTime::now())
    }

    fn on_session(&mut self, text: &str) -> Translated {
        self.0.on_session(text, SystemTime::now())
    }
}

/// The math-mcp seed's envelopes for a socket on `agent`, resuming after `last_seq` (after
/// what was delivered when `None`).
pub(crate) fn envelope(agent: String, last_seq: Option<u64>) -> Box<dyn Translate> {
    let envelope = Envelope::new(mcp_ws::connection_id(), agent, last_seq);
    Box::new(Translator(Dialect::Envelope(envelope)))
}

/// The tutorial's JSON-RPC extras for a new connection.
pub(crate) fn tutorial() -> Box<dyn Translate> {
    let tutorial = Tutorial::new(mcp_ws::connection_id());
    Box::new(Translator(Dialect::Tutorial(tutorial)))
}
