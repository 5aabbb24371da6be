//! The in-flight table: the client's requests that are running, so that each gets at most one
//! response, duplicate ids are refused, and a cancelled request gets none.

use std::collections::HashMap;

use mcp_protocol::RequestId;
use tokio_util::sync::CancellationToken;

pub(crate) type BatchId = u64;

struct Entry {
    token: CancellationToken,
    cancelled_by_client: bool,
    cancelled_by_shutdown: bool,
    batch: Option<BatchId>,
}

/// What to do with a request that finished.
pub(crate) struct Finished {
    /// Whether a response goes out: not when the client cancelled the request.
    pub(crate) respond: bool,
    /// Whether shutdown cancelled it: the response is then a shutdown error.
    pub(crate) shutdown: bool,
    /// The batch the request came in, if any.
    pub(crate) batch: Option<BatchId>,
}

#[derive(Default)]
pub(crate) struct InFlight {
    entries: HashMap<RequestId, Entry>,
}

impl InFlight {
    pub(crate) fn contains(&self, id: &RequestId) -> bool {
        self.entries.contains_key(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records a started request. The caller has checked [`InFlight::contains`].
    pub(crate) fn insert(
        &mut self,
        id: RequestId,
        token: CancellationToken,
        batch: Option<BatchId>,
    ) {
        self.entries.insert(
            id,
            Entry {
                token,
                cancelled_by_client: false,
                cancelled_by_shutdown: false,
                batch,
            },
        );
    }

    /// Cancels a request on the client's behalf; `false` when no such request is running
    /// (unknown, or already finished), which the specification says to ignore.
    pub(crate) fn cancel(&mut self, id: &RequestId) -> bool {
        match self.entries.get_mut(id) {
            Some(entry) => {
                entry.cancelled_by_client = true;
                entry.token.cancel();
                true
            }
            None => false,
        }
    }

    /// Cancels every running request because the server is shutting down.
    pub(crate) fn cancel_all_for_shutdown(&mut self) {
        for entry in self.entries.values_mut() {
            entry.cancelled_by_shutdown = true;
            entry.token.cancel();
        }
    }

    /// The ids of the running requests.
    pub(crate) fn ids(&self) -> Vec<RequestId> {
        self.entries.keys().cloned().collect()
    }

    /// Removes a finished request. Returns `None` the second time, which is what makes
    /// "respond at most once" hold.
    pub(crate) fn finish(&mut self, id: &RequestId) -> Option<Finished> {
        self.entries.remove(id).map(|entry| Finished {
            respond: !entry.cancelled_by_client,
            shutdown: entry.cancelled_by_shutdown,
            batch: entry.batch,
        })
    }
}
