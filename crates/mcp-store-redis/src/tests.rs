//! The Redis store against Debian's real `redis-server`.

use super::*;
use crate::testing::RedisServer;

#[tokio::test]
async fn the_redis_store_conforms_and_keeps_what_it_wrote() {
    let redis = RedisServer::start().await;
    let store = RedisStore::open(&redis.url(), "conformance:").unwrap();
    mcp_session::store::conformance::run(&store).await;
    let survivors = store.idle_since(u64::MAX).await.unwrap();
    assert_eq!(survivors.len(), 1, "the conformance run leaves one session");
    // Another instance (another connection) sees the same.
    let other = RedisStore::open(&redis.url(), "conformance:").unwrap();
    assert!(other.load(&survivors[0]).await.unwrap().is_some());
    // Another prefix is another store.
    let apart = RedisStore::open(&redis.url(), "apart:").unwrap();
    assert_eq!(apart.load(&survivors[0]).await.unwrap(), None);
}

/// Of two instances claiming a task's lease, one gets it; only the holder renews or
/// releases it; an expired lease can be claimed again.
#[tokio::test]
async fn a_lease_is_had_by_one_instance_at_a_time() {
    let redis = RedisServer::start().await;
    let store = RedisStore::open(&redis.url(), "lease:").unwrap();
    let task = format!("task:{}", TaskId::random().unwrap());
    let long = Duration::from_secs(60);
    let (a, b) = tokio::join!(
        store.claim_lease(&task, "a", long),
        store.claim_lease(&task, "b", long)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a ^ b, "exactly one: {a} {b}");
    let (holder, other) = if a { ("a", "b") } else { ("b", "a") };
    assert!(
        !store.claim_lease(&task, holder, long).await.unwrap(),
        "held, even by itself"
    );
    assert!(store.renew_lease(&task, holder, long).await.unwrap());
    assert!(!store.renew_lease(&task, other, long).await.unwrap());
    store.release_lease(&task, other).await.unwrap();
    assert!(
        !store.claim_lease(&task, other, long).await.unwrap(),
        "not released by another"
    );
    store.release_lease(&task, holder).await.unwrap();
    assert!(
        store
            .claim_lease(&task, other, Duration::from_millis(1))
            .await
            .unwrap()
    );
    // Expired (Redis expires a key of 1 ms at once, or at its next look).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !store.claim_lease(&task, holder, long).await.unwrap() {
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!store.renew_lease(&task, other, long).await.unwrap());
    assert_eq!(
        store.lease_holder(&task).await.unwrap().as_deref(),
        Some(holder)
    );
    assert_eq!(store.lease_holder("task:none").await.unwrap(), None);
}

/// All of an instance's leases are renewed in one go: each answer says whether that
/// lease was still the holder's, in the order asked, across several scripts' worth.
#[tokio::test]
async fn leases_are_renewed_together() {
    let redis = RedisServer::start().await;
    let store = RedisStore::open(&redis.url(), "renew:").unwrap();
    let (short, long) = (Duration::from_millis(300), Duration::from_secs(60));
    let names: Vec<String> = (0..RENEWALS_PER_SCRIPT + 3)
        .map(|i| format!("task:{i}"))
        .collect();
    // Every third is another's; every third never existed.
    for (i, name) in names.iter().enumerate() {
        let holder = match i % 3 {
            0 => "a",
            1 => "b",
            _ => continue,
        };
        assert!(store.claim_lease(name, holder, short).await.unwrap());
    }
    let renewed = store.renew_leases(&names, "a", long).await.unwrap();
    let expected: Vec<bool> = (0..names.len()).map(|i| i % 3 == 0).collect();
    assert_eq!(renewed, expected);
    // Renewed to the longer time, in the second script too.
    let mine = (RENEWALS_PER_SCRIPT..names.len())
        .find(|i| i % 3 == 0)
        .unwrap();
    let mut connection = store.connection();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(store.keys.lease(&names[mine]))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(ttl > 1_000, "{ttl} ms left");
    assert!(store.renew_leases(&[], "a", long).await.unwrap().is_empty());
}

/// Two instances writing the same session at once lose neither's history: an update is a
/// compare-and-set, tried again when the other wrote first.
#[tokio::test]
async fn concurrent_writers_lose_nothing() {
    let redis = RedisServer::start().await;
    let a = RedisStore::open(&redis.url(), "cas:").unwrap();
    let b = RedisStore::open(&redis.url(), "cas:").unwrap();
    let id = SessionId::random().unwrap();
    a.create(&SessionRecord::new(id.clone(), "alice", None, 1))
        .await
        .unwrap();
    let write = |store: RedisStore, n: u64| {
        let id = id.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                let update = Update {
                    history: vec![mcp_session::HistoryEntry {
                        tool: format!("w{n}"),
                        arguments: serde_json::json!({"i": i}),
                        result: serde_json::Value::Null,
                        at_ms: i,
                    }],
                    ..Update::default()
                };
                store.update(&id, &update).await.unwrap();
            }
        })
    };
    let (one, two) = (write(a.clone(), 1), write(b.clone(), 2));
    one.await.unwrap();
    two.await.unwrap();
    let record = a.load(&id).await.unwrap().unwrap();
    assert_eq!(record.history.len(), 40);
    assert_eq!(
        a.usage("alice").await.unwrap().bytes,
        mcp_session::stored_len(&record)
    );
}

/// Redis gone: clear errors and an unhealthy store; Redis back: healthy again by itself.
#[tokio::test]
async fn a_store_whose_redis_goes_away_says_so_and_recovers() {
    let mut redis = RedisServer::start().await;
    let store = RedisStore::open(&redis.url(), "gone:").unwrap();
    let id = SessionId::random().unwrap();
    store
        .create(&SessionRecord::new(id.clone(), "alice", None, 1))
        .await
        .unwrap();
    assert_eq!(store.health(), Ok(()));
    redis.kill().await;
    let error = store.load(&id).await.unwrap_err();
    assert!(error.to_string().contains("redis"), "{error}");
    assert!(store.health().is_err());
    redis.restart().await;
    // The append-only file kept the session (written more than a second ago or not, a
    // clean SIGKILL after `everysec`'s write: the file has it when the write returned).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let record = loop {
        match store.load(&id).await {
            Ok(record) => break record,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "never back: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(record.is_some());
    assert_eq!(store.health(), Ok(()));
}
