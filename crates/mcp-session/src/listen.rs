//! `subscriptions/listen` (2026-07-28): a long-lived request whose output carries the change
//! notifications its filter asks for, each tagged with the subscription's id (the request's
//! own id). It replaces `resources/subscribe` and the GET stream for modern clients.
//!
//! The stream starts with `notifications/subscriptions/acknowledged`, naming the part of the
//! filter this server honours: updates of the resources that can change or exist here (the
//! server statistics, the providers' resources). Its lists never change while it runs, so
//! no list-changed subscription is acknowledged. The stream lasts until the client closes it;
//! a graceful shutdown ends it with the request's result.

use mcp_protocol::modern::{self, SUBSCRIPTION_ID};
use mcp_protocol::{ErrorObject, Message, Notification, RequestId, Response, methods};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Hub;
use crate::outbound::{self, Answered, Regarding};
use crate::resources::STATS_URI;
use crate::stateless::StatelessCall;

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
    /// Opens a `subscriptions/listen` stream for request `id`.
    pub(crate) fn listen(
        &self,
        id: &RequestId,
        params: Option<Value>,
    ) -> Result<StatelessCall, ErrorObject> {
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
        let inner = &self.inner;
        let (queue, output) =
            outbound::channel(inner.config.outbound_capacity, inner.metrics.clone());
        // Queued before the stream is handed over: nothing can come before it.
        let _ = queue.try_push_notice(ack);
        let token = inner.shutdown.child_token();
        let stats = honoured.iter().any(|uri| uri == STATS_URI);
        let hub = self.clone();
        let id = id.clone();
        let stop = token.clone();
        let run = Box::pin(async move {
            let mut changes = hub.inner.stats_version.subscribe();
            changes.mark_unchanged();
            let draining = hub.inner.draining.clone();
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = draining.cancelled() => {
                        // Ended by the server: the request's result says it ended well.
                        let mut result = serde_json::Map::new();
                        result.insert("_meta".to_owned(), json!({ SUBSCRIPTION_ID: id.to_value() }));
                        modern::complete(&mut result, &hub.inner.config.server_info, None);
                        let text = Message::Response(Response::ok(id.clone(), Value::Object(result))).to_text();
                        let _ = queue.push(text, Regarding::Answer(Answered::to(id))).await;
                        break;
                    }
                    Ok(()) = changes.changed(), if stats => {
                        let params = json!({"_meta": { SUBSCRIPTION_ID: id.to_value() }, "uri": STATS_URI});
                        let updated = notification(methods::RESOURCES_UPDATED, params);
                        let key = outbound::Coalesce::Updated(STATS_URI.to_owned());
                        if queue.push_coalesced(key, updated).is_err() {
                            break;
                        }
                    }
                }
            }
            queue.end();
        });
        Ok(StatelessCall {
            output,
            run,
            cancel: token.drop_guard(),
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
