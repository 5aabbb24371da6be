//! The behaviour every [`SessionStore`](super::SessionStore) must show: a suite that each
//! backend's tests run against a fresh store.

use super::*;

fn record(id: &SessionId, last_active_ms: u64) -> SessionRecord {
    let mut record = SessionRecord::new(id.clone(), "anonymous", Some("MathAgent".to_owned()), 1);
    record.last_active_ms = last_active_ms;
    record
}

fn entry(seq: u64) -> LogEntry {
    LogEntry {
        seq,
        text: format!("{{\"n\":{seq}}}"),
    }
}

/// What an owner's [`Usage`] must be when it keeps `sessions` and `tasks` (those gone are
/// skipped): worked out from what the store gives back of them.
async fn expected_usage(
    store: &dyn SessionStore,
    sessions: &[&SessionId],
    tasks: &[&TaskId],
) -> Usage {
    let mut usage = Usage::default();
    for id in sessions {
        let Some(record) = store.load(id).await.expect("load") else {
            continue;
        };
        usage.sessions += 1;
        usage.bytes += stored_len(&record);
        let entries = match store.replay(id, 0).await.expect("replay") {
            Replay::Entries(entries) => entries,
            Replay::Truncated { oldest } => match store.replay(id, oldest - 1).await {
                Ok(Replay::Entries(entries)) => entries,
                other => panic!("replay from the oldest kept: {other:?}"),
            },
        };
        usage.bytes += entries.iter().map(|e| e.text.len() as u64).sum::<u64>();
    }
    for id in tasks {
        if let Some(task) = store.load_task(id).await.expect("load") {
            usage.bytes += stored_len(&task);
        }
    }
    usage
}

/// Runs every check against `store`, which must be empty. Panics on the first failure.
pub async fn run(store: &dyn SessionStore) {
    let a = SessionId::random().expect("randomness");
    let b = SessionId::random().expect("randomness");
    assert_ne!(a, b);
    assert_eq!(SessionId::parse(a.as_str()), Some(a.clone()));

    // Create, load, refuse a duplicate.
    store.create(&record(&a, 100)).await.expect("create");
    assert_eq!(
        store.create(&record(&a, 100)).await,
        Err(StoreError::Exists(a.clone()))
    );
    assert_eq!(store.load(&a).await.expect("load"), Some(record(&a, 100)));
    assert_eq!(store.load(&b).await.expect("load"), None);
    let usage = store.usage("anonymous").await.expect("usage");
    assert_eq!(usage, expected_usage(store, &[&a], &[]).await);
    assert_eq!(usage.sessions, 1);
    assert!(usage.bytes > 0);

    // Updates change the record; updating an unknown session fails.
    let add = HistoryEntry {
        tool: "add".to_owned(),
        arguments: serde_json::json!({"a": 5, "b": 3}),
        result: serde_json::json!({"structuredContent": {"result": 8}}),
        at_ms: 150,
    };
    let operation = OperationRecord {
        request_id: RequestId::from("req_001"),
        tool: "process_batch".to_owned(),
        arguments: serde_json::json!({"count": 10}),
        progress_token: Some(ProgressToken::from("p")),
        task: Some(TaskId::random().expect("random")),
        started_ms: 120,
    };
    let update = Update {
        last_active_ms: Some(200),
        protocol_version: Some("2025-11-25".to_owned()),
        history: vec![add.clone()],
        operations: Some(vec![operation.clone()]),
        ..Update::default()
    };
    store.update(&a, &update).await.expect("update");
    let mut expected = record(&a, 200);
    expected.protocol_version = Some("2025-11-25".to_owned());
    expected.history = vec![add.clone()];
    expected.operations = vec![operation];
    assert_eq!(store.load(&a).await.expect("load"), Some(expected.clone()));
    assert_eq!(
        store.update(&b, &update).await,
        Err(StoreError::NotFound(b.clone()))
    );

    // History is appended, so two writers do not lose each other's calls; it is capped.
    let twice = Update {
        history: vec![add.clone(), add.clone()],
        operations: Some(Vec::new()),
        ..Update::default()
    };
    store.update(&a, &twice).await.expect("update");
    let loaded = store.load(&a).await.expect("load").expect("exists");
    assert_eq!(loaded.history.len(), 3);
    assert!(loaded.operations.is_empty());
    let many = Update {
        history: vec![add; HISTORY_CAP],
        ..Update::default()
    };
    store.update(&a, &many).await.expect("update");
    let loaded = store.load(&a).await.expect("load").expect("exists");
    assert_eq!(loaded.history.len(), HISTORY_CAP);
    assert_eq!(
        store.usage("anonymous").await.expect("usage"),
        expected_usage(store, &[&a], &[]).await,
        "the usage follows the record as it grows and is capped"
    );
    // And capped in bytes: the newest first, the newest kept whatever its size.
    let big = |n: usize| HistoryEntry {
        tool: "add".to_owned(),
        arguments: serde_json::json!({"note": "x".repeat(n)}),
        result: serde_json::json!({"structuredContent": {"result": 8}}),
        at_ms: 160,
    };
    let three = Update {
        history: vec![big(400_000), big(400_001), big(400_002)],
        ..Update::default()
    };
    store.update(&a, &three).await.expect("update");
    let loaded = store.load(&a).await.expect("load").expect("exists");
    assert_eq!(loaded.history, vec![big(400_001), big(400_002)]);
    let huge = Update {
        history: vec![big(2 << 20)],
        ..Update::default()
    };
    store.update(&a, &huge).await.expect("update");
    let loaded = store.load(&a).await.expect("load").expect("exists");
    assert_eq!(loaded.history, vec![big(2 << 20)]);
    assert!(stored_len(&loaded.history[0]) > HISTORY_BYTES);

    // The log replays after a position, in order, and says when it cannot.
    for seq in 1..=5 {
        let append = Update {
            entries: vec![entry(seq)],
            log_cap: 3,
            ..Update::default()
        };
        store.update(&a, &append).await.expect("append");
    }
    assert_eq!(
        store
            .load(&a)
            .await
            .expect("load")
            .expect("exists")
            .next_seq,
        6
    );
    assert_eq!(
        store.replay(&a, 3).await.expect("replay"),
        Replay::Entries(vec![entry(4), entry(5)])
    );
    assert_eq!(
        store.replay(&a, 2).await.expect("replay"),
        Replay::Entries(vec![entry(3), entry(4), entry(5)])
    );
    assert_eq!(
        store.replay(&a, 5).await.expect("replay"),
        Replay::Entries(vec![])
    );
    assert_eq!(
        store.replay(&a, 1).await.expect("replay"),
        Replay::Truncated { oldest: 3 }
    );
    assert_eq!(
        store.replay(&a, 0).await.expect("replay"),
        Replay::Truncated { oldest: 3 }
    );
    // A message replaced at its position (coalesced progress) is replayed as replaced.
    let replaced = LogEntry {
        seq: 5,
        text: "{\"n\":\"five\"}".to_owned(),
    };
    let replace = Update {
        entries: vec![replaced.clone()],
        log_cap: 3,
        ..Update::default()
    };
    store.update(&a, &replace).await.expect("replace");
    assert_eq!(
        store.replay(&a, 4).await.expect("replay"),
        Replay::Entries(vec![replaced.clone()])
    );
    // The session's own log went further (its bytes): the store keeps no more than it.
    let trimmed = Update {
        entries: vec![entry(6)],
        log_cap: 3,
        oldest_kept: 5,
        ..Update::default()
    };
    store.update(&a, &trimmed).await.expect("append");
    assert_eq!(
        store.replay(&a, 4).await.expect("replay"),
        Replay::Entries(vec![replaced, entry(6)])
    );
    assert_eq!(
        store.replay(&a, 3).await.expect("replay"),
        Replay::Truncated { oldest: 5 }
    );
    assert_eq!(
        store.replay(&b, 0).await,
        Err(StoreError::NotFound(b.clone()))
    );

    assert_eq!(
        store.usage("anonymous").await.expect("usage"),
        expected_usage(store, &[&a], &[]).await,
        "the usage counts the log's messages, replaced and dropped ones no more"
    );

    // Idle sessions are found; deleting removes record and log.
    store.create(&record(&b, 1_000)).await.expect("create");
    let usage = store.usage("anonymous").await.expect("usage");
    assert_eq!(usage, expected_usage(store, &[&a, &b], &[]).await);
    assert_eq!(usage.sessions, 2);
    assert_eq!(
        store.usage("someone else").await.expect("usage"),
        Usage::default()
    );
    assert_eq!(store.idle_since(500).await.expect("idle"), vec![a.clone()]);
    store.delete(&a).await.expect("delete");
    store.delete(&a).await.expect("deleting twice is fine");
    assert_eq!(store.load(&a).await.expect("load"), None);
    let usage = store.usage("anonymous").await.expect("usage");
    assert_eq!(usage, expected_usage(store, &[&b], &[]).await);
    assert_eq!(usage.sessions, 1);
    assert_eq!(
        store.replay(&a, 0).await,
        Err(StoreError::NotFound(a.clone()))
    );
    assert_eq!(
        store.idle_since(5_000).await.expect("idle"),
        vec![b.clone()]
    );

    tasks(store).await;
}

/// Tasks: saved whole, replaced whole, listed, deleted.
async fn tasks(store: &dyn SessionStore) {
    let id = TaskId::random().expect("randomness");
    assert_eq!(TaskId::parse(id.as_str()), Some(id.clone()));
    assert_eq!(store.load_task(&id).await.expect("load"), None);
    let mut task = TaskRecord {
        id: id.clone(),
        owner: "alice".to_owned(),
        tool: "process_batch".to_owned(),
        arguments: serde_json::json!({"count": 10}),
        status: TaskStatus::Working,
        status_message: Some("4/10".to_owned()),
        created_ms: 1_000,
        updated_ms: 1_000,
        ttl_ms: 60_000,
        poll_interval_ms: 1_000,
        input_requests: serde_json::Map::new(),
        answers: serde_json::Map::new(),
        progress: Some(4.0),
        total: Some(10.0),
        checkpoint: Some(serde_json::json!({"processed": 4})),
        result: None,
        error: None,
        client_capabilities: Some(serde_json::json!({"elicitation": {}})),
        session: Some(SessionId::random().expect("randomness")),
        protocol_version: Some("2025-11-25".to_owned()),
    };
    store.save_task(&task).await.expect("save");
    assert_eq!(
        store.load_task(&id).await.expect("load"),
        Some(task.clone())
    );
    let usage = store.usage("alice").await.expect("usage");
    assert_eq!(usage, expected_usage(store, &[], &[&id]).await);
    assert_eq!(usage.sessions, 0, "a task is no session");
    task.status = TaskStatus::Completed;
    task.result = Some(serde_json::json!({"content": [], "structuredContent": {"processed": 10}}));
    task.checkpoint = None;
    store.save_task(&task).await.expect("replace");
    assert_eq!(
        store.load_task(&id).await.expect("load"),
        Some(task.clone())
    );
    assert_eq!(
        store.usage("alice").await.expect("usage"),
        expected_usage(store, &[], &[&id]).await,
        "a replaced task counts as it is now"
    );
    assert_eq!(store.tasks().await.expect("list"), vec![task]);
    store.delete_task(&id).await.expect("delete");
    store
        .delete_task(&id)
        .await
        .expect("deleting twice is fine");
    assert_eq!(store.load_task(&id).await.expect("load"), None);
    assert!(store.tasks().await.expect("list").is_empty());
    assert_eq!(store.usage("alice").await.expect("usage"), Usage::default());
}
