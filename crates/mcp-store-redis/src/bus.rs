//! The store as the instances' bus: signals over Redis pub/sub on `{p}bus`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt as _;
use mcp_session::{Bus, Signal, StoreError, StoreFuture};
use redis::{AsyncCommands as _, RedisError};
use tokio::sync::mpsc;

use crate::{RedisStore, boxed};

/// A signal as it goes over the bus: who sent it, and what.
#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    from: String,
    signal: Signal,
}

/// How many received signals wait for the hub at most; more are dropped (they are hints).
const SIGNALS_WAITING: usize = 4_096;

impl Bus for RedisStore {
    fn publish<'a>(&'a self, signal: &'a Signal) -> StoreFuture<'a, ()> {
        boxed(async move {
            let text = serde_json::to_string(&Envelope {
                from: self.me.to_string(),
                signal: signal.clone(),
            })
            .map_err(|e| StoreError::Backend(e.to_string()))?;
            let mut connection = self.connection();
            let _: i64 = self.run(connection.publish(self.keys.bus(), text)).await?;
            Ok(())
        })
    }

    fn subscribe(&self) -> mpsc::Receiver<Signal> {
        let (tx, rx) = mpsc::channel(SIGNALS_WAITING);
        let (client, channel, me) = (self.client.clone(), self.keys.bus(), Arc::clone(&self.me));
        let listening = Arc::clone(&self.listening);
        listening.0.store(true, Ordering::Release);
        tokio::spawn(async move {
            while !tx.is_closed() {
                if let Err(e) = forward(&client, &channel, &me, &tx, &listening.1).await {
                    tracing::debug!(error = %e, "the signal subscription broke; subscribing again");
                }
                listening.1.store(false, Ordering::Release);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        rx
    }
}

/// Forwards the signals of the other instances to `tx` until the subscription breaks or
/// nobody receives any more.
async fn forward(
    client: &redis::Client,
    channel: &str,
    me: &str,
    tx: &mpsc::Sender<Signal>,
    up: &std::sync::atomic::AtomicBool,
) -> Result<(), RedisError> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    up.store(true, Ordering::Release);
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let envelope: Envelope = match serde_json::from_slice(message.get_payload_bytes()) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::warn!(error = %e, "a signal that does not read; ignored");
                continue;
            }
        };
        if envelope.from == me {
            continue;
        }
        match tx.try_send(envelope.signal) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(signal)) => {
                tracing::warn!(?signal, "too many signals waiting; one dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
        }
    }
    Ok(())
}
