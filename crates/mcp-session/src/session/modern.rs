//! 2026-07-28 requests on a connection of their own era or of the `initialize` one (the
//! WebSocket binding): each is served on its own, as over HTTP ([`Hub::serve_modern`]),
//! whether the connection ever sent `initialize` or not. Its progress and log messages go
//! out on the connection, `notifications/cancelled` cancels it, and it counts in the call
//! table like any other request (limits, shutdown); what it asks of the client becomes an
//! input-required result, never a request to the client.

use mcp_protocol::{ErrorObject, RequestId, Response};
use serde_json::Value;
use tokio::time::Instant;

use super::{Handled, Session};
use crate::calls::{BatchId, CallInfo, CallReply};
use crate::stateless::{Modern, ModernOutput};

impl Session {
    pub(super) fn handle_modern(
        &mut self,
        id: RequestId,
        method: String,
        params: Option<Value>,
        batch: Option<BatchId>,
    ) -> Result<Handled, ErrorObject> {
        self.served_modern = true;
        let meta = crate::stateless::admit(&method, params.as_ref())?;
        let token = self.token.child_token();
        let out = ModernOutput {
            queue: &self.outbound,
            cancel: &token,
            running: self.calls.len(),
            session: self.id,
        };
        let hub = self.hub.clone();
        let run = match hub.serve_modern(&id, &method, params, meta, &self.principal, out)? {
            Modern::Answer(result) => return Ok(Handled::Reply(Response::ok(id, result))),
            Modern::Call(run) => run,
        };
        // Its answer is a modern result, made where the call ends.
        let run = Box::pin(async move {
            let reply = run.await;
            let is_error = reply.as_ref().is_ok_and(|r| r.is_error);
            let reply = CallReply::from_value(&hub.finish_call(reply)?)?;
            Ok(CallReply { is_error, ..reply })
        });
        let info = CallInfo {
            method: crate::metrics::known(&method),
            started: Instant::now(),
            // A modern call has no resource in the session.
            uri: String::new(),
            call: None,
        };
        Ok(self.launch(id, run, token, batch, info, None))
    }
}
