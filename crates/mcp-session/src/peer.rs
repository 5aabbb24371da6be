//! Requests the server sends to the client, and their correlation with the client's responses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use mcp_protocol::{ErrorObject, Message, Request, RequestId, methods};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::PeerError;
use crate::outbound::{OutboundQueue, Regarding, WeakQueue};

type Reply = Result<Value, ErrorObject>;

/// The table of server-initiated requests waiting for the client's response.
#[derive(Default)]
pub(crate) struct Pending {
    next_id: i64,
    waiting: HashMap<RequestId, oneshot::Sender<Reply>>,
    closed: bool,
}

#[derive(Clone, Default)]
pub(crate) struct PendingTable(Arc<Mutex<Pending>>);

impl PendingTable {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // The table holds no invariant a panic elsewhere could break halfway.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Delivers the client's response; `false` when no request with this id is waiting.
    pub(crate) fn complete(&self, id: &RequestId, reply: Reply) -> bool {
        match self.lock().waiting.remove(id) {
            Some(tx) => {
                // The requester may have given up (dropped its future): nothing to deliver to.
                let _ = tx.send(reply);
                true
            }
            None => false,
        }
    }

    /// Hands the client's response to the request waiting for it; a response nobody waits
    /// for, or one without an id, is logged and ignored.
    pub(crate) fn answer(&self, response: mcp_protocol::Response) {
        match response.id {
            Some(id) => {
                if !self.complete(&id, response.result) {
                    tracing::warn!(%id, "response to a request this server is not waiting for; ignored");
                }
            }
            None => match response.result {
                Err(error) => {
                    tracing::warn!(%error, "the client reported an error about a message it could not read")
                }
                Ok(_) => tracing::warn!("result without an id; ignored"),
            },
        }
    }

    /// Fails every waiting request with [`PeerError::Closed`] and refuses new ones.
    pub(crate) fn close(&self) {
        let mut pending = self.lock();
        pending.closed = true;
        pending.waiting.clear();
    }
}

/// Removes a request from the table when its future is dropped, answered or not.
struct Forget<'a> {
    table: &'a PendingTable,
    id: RequestId,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.table.lock().waiting.remove(&self.id);
    }
}

/// Where a [`Peer`]'s requests go.
#[derive(Clone)]
struct Target {
    pending: PendingTable,
    outbound: WeakQueue,
}

/// A handle for sending requests to the client of one session. Cheap to clone; it does not
/// keep the session or its connection alive.
///
/// When the connection resumes another session, the handles of the session it started with
/// follow it there ([`Peer::follow`]), so that a transport's heartbeat keeps reaching the
/// client.
#[derive(Clone)]
pub struct Peer {
    target: Arc<Mutex<Target>>,
}

impl Peer {
    pub(crate) fn new(pending: PendingTable, outbound: &OutboundQueue) -> Self {
        let target = Target {
            pending,
            outbound: outbound.downgrade(),
        };
        Self {
            target: Arc::new(Mutex::new(target)),
        }
    }

    fn target(&self) -> Target {
        self.target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// From now on, this handle and its clones send to `other`'s session.
    pub(crate) fn follow(&self, other: &Peer) {
        let target = other.target();
        *self.target.lock().unwrap_or_else(PoisonError::into_inner) = target;
    }

    /// Sends a request to the client and waits for its response.
    ///
    /// Dropping the returned future forgets the request; a late response is then logged and
    /// discarded by the session. Use a timeout around it where the client may never answer.
    pub async fn request(&self, method: &str, params: Option<Value>) -> Result<Value, PeerError> {
        let target = self.target();
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut pending = target.pending.lock();
            if pending.closed {
                return Err(PeerError::Closed);
            }
            pending.next_id += 1;
            let id = RequestId::Number(pending.next_id);
            pending.waiting.insert(id.clone(), tx);
            id
        };
        let _forget = Forget {
            table: &target.pending,
            id: id.clone(),
        };
        let outbound = target.outbound.upgrade().ok_or(PeerError::Closed)?;
        let text = Message::Request(Request {
            id,
            method: method.to_owned(),
            params,
        })
        .to_text();
        outbound
            .push(text, Regarding::Other)
            .await
            .map_err(|_| PeerError::Closed)?;
        drop(outbound);
        match rx.await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(error)) => Err(PeerError::Rejected(error)),
            Err(_) => Err(PeerError::Closed),
        }
    }

    /// Sends `ping` and waits for the client's `{}`.
    pub async fn ping(&self) -> Result<(), PeerError> {
        self.request(methods::PING, None).await.map(drop)
    }
}
