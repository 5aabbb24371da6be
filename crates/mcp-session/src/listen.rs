//! `subscriptions/listen` (2026-07-28): a long-lived request whose output carries the change
//! notifications its filter asks for, each tagged with the subscription's id (the request's
//! own id). It replaces `resources/subscribe` and the GET stream for modern clients.
//!
//! The stream starts with `notifications/subscriptions/acknowledged`, naming the part of the
//! filter this server honours: updates of the resources that can change or exist here (the
//! server statistics, the providers' resources). Its lists never change while it runs, so
//! no list-changed subscription is acknowledged. The stream lasts until the client closes it;
//! a graceful shutdown ends it with the request's result.

use mcp_protocol::modern::SUBSCRIPTION_ID;
use mcp_protocol::{ErrorObject, Message, Notification, RequestId, methods};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::Hub;
use crate::calls::{CallReply, Reply};
use crate::outbound::{self, OutboundQueue};
use crate::resources::STATS_URI;

/// What a listener asks to hear of; of the list changes it may ask for (which never happen
/// here) nothing is read.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    resource_subscriptions: Vec<String>,
}

#[derive(Deserialize)]
struct ListenParams {
    notifications: Filter,
}

/// How many resources one stream may follow.
const MAX_SUBSCRIPTIONS: usize = 1000;

impl Hub {
    /// Opens a `subscriptions/listen` stream for request `id` on `queue`: acknowledges it
    /// there at once, then returns the future that carries its notifications until `cancel`
    /// (the client closed it) or a graceful shutdown, which it answers with the request's
    /// result.
    pub(crate) fn listen(
        &self,
        id: &RequestId,
        params: Option<Value>,
        queue: OutboundQueue,
        cancel: CancellationToken,
    ) -> Result<impl Future<Output = Reply> + Send + 'static, ErrorObject> {
        let params: ListenParams = mcp_protocol::decode_params(params)?;
        let filter = params.notifications;
        if filter.resource_subscriptions.len() > MAX_SUBSCRIPTIONS {
            return Err(ErrorObject::invalid_params(format_args!(
                "one stream follows at most {MAX_SUBSCRIPTIONS} resources; open another"
            )));
        }
        let catalog = &self.inner.catalog;
        let honoured: Vec<String> = filter
            .resource_subscriptions
            .into_iter()
            .filter(|uri| uri == STATS_URI || catalog.is_resource(uri))
            .collect();
        let tag = json!({ SUBSCRIPTION_ID: id.to_value() });
        let mut acknowledged = serde_json::Map::new();
        if !honoured.is_empty() {
            acknowledged.insert("resourceSubscriptions".to_owned(), json!(honoured));
        }
        let ack = notification(
            methods::SUBSCRIPTIONS_ACKNOWLEDGED,
            json!({"_meta": tag, "notifications": acknowledged}),
        );
        // Queued before anyone reads the stream: nothing of it can come before.
        queue
            .try_push_notice(ack)
            .map_err(|_| ErrorObject::internal("the stream closed before it was acknowledged"))?;
        let stats = honoured.iter().any(|uri| uri == STATS_URI);
        let mut changes = self.inner.stats_version.subscribe();
        changes.mark_unchanged();
        let draining = self.inner.draining.clone();
        let id = id.clone();
        Ok(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => {
                        return Err(ErrorObject::internal("the subscription was cancelled"));
                    }
                    () = draining.cancelled() => {
                        // Ended by the server: the request's result says it ended well.
                        let result = json!({
                            "resultType": "complete",
                            "_meta": { SUBSCRIPTION_ID: id.to_value() },
                        });
                        return CallReply::from_value(&result);
                    }
                    Ok(()) = changes.changed(), if stats => {
                        let params = json!({"_meta": { SUBSCRIPTION_ID: id.to_value() }, "uri": STATS_URI});
                        let updated = notification(methods::RESOURCES_UPDATED, params);
                        let key = outbound::Coalesce::Updated(STATS_URI.to_owned());
                        if queue.push_coalesced(key, updated).is_err() {
                            return Err(ErrorObject::internal("the stream closed"));
                        }
                    }
                }
            }
        })
    }
}

fn notification(method: &str, params: Value) -> String {
    Message::Notification(Notification {
        method: method.to_owned(),
        params: Some(params),
    })
    .to_text()
}
