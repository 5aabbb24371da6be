//! The outbound queue: bounded messages, coalescing progress, ordering of a close.

use std::time::Duration;

use super::*;

fn queue(capacity: usize) -> (OutboundQueue, OutboundReceiver, Metrics) {
    let metrics = Metrics::new();
    let (tx, rx) = channel(capacity, metrics.clone());
    (tx, rx, metrics)
}

fn text(item: Option<Outbound>) -> String {
    match item {
        Some(Outbound::Text(t)) => t,
        other => panic!("expected text, got {other:?}"),
    }
}

#[tokio::test]
async fn progress_for_one_token_coalesces_newest_wins() {
    let (tx, mut rx, metrics) = queue(4);
    let token = ProgressToken::from("t");
    for i in 0..1000 {
        tx.push_progress(token.clone(), format!("p{i}")).unwrap();
    }
    tx.push_progress(ProgressToken::from(7), "other".to_owned())
        .unwrap();
    tx.push("response".to_owned(), Regarding::Other)
        .await
        .unwrap();
    assert_eq!(rx.len(), 3, "one slot per token plus the message");
    assert_eq!(text(rx.recv().await), "p999");
    assert_eq!(text(rx.recv().await), "other");
    assert_eq!(text(rx.recv().await), "response");
    assert!(
        metrics
            .render()
            .contains("mcp_progress_coalesced_total 999")
    );
    // Once sent, the next progress of the token is queued anew.
    tx.push_progress(token, "again".to_owned()).unwrap();
    assert_eq!(text(rx.recv().await), "again");
}

#[tokio::test(start_paused = true)]
async fn messages_wait_for_room_and_are_never_dropped() {
    let (tx, mut rx, _) = queue(2);
    tx.push("a".to_owned(), Regarding::Other).await.unwrap();
    tx.push("b".to_owned(), Regarding::Other).await.unwrap();
    let pusher = tokio::spawn({
        let tx = tx.clone();
        async move { tx.push("c".to_owned(), Regarding::Other).await }
    });
    // Progress still gets in while messages wait.
    tx.push_progress(ProgressToken::from(1), "progress".to_owned())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(
        !pusher.is_finished(),
        "the third message must wait for room"
    );
    assert_eq!(text(rx.recv().await), "a");
    pusher.await.unwrap().unwrap();
    let rest: Vec<_> = [rx.recv().await, rx.recv().await, rx.recv().await]
        .into_iter()
        .map(text)
        .collect();
    assert_eq!(rest, ["b", "progress", "c"]);
}

/// Issue 19, item 2: unsent messages were bounded by count only: a client that stops
/// reading could make the server hold `capacity` messages of megabytes each.
#[tokio::test(start_paused = true)]
async fn unsent_messages_are_bounded_in_bytes_too() {
    let (tx, mut rx, _) = queue(1_000);
    let big = || "x".repeat(6 * 1024 * 1024);
    for _ in 0..3 {
        tx.push(big(), Regarding::Other).await.unwrap();
    }
    let pusher = tokio::spawn({
        let tx = tx.clone();
        async move { tx.push("small".to_owned(), Regarding::Other).await }
    });
    // The paused clock moves on once every task waits: the push is still waiting.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(
        !pusher.is_finished(),
        "18 MiB unsent: the next message waits"
    );
    assert_eq!(text(rx.recv().await).len(), big().len());
    pusher.await.unwrap().unwrap();
}

#[tokio::test]
async fn close_goes_out_after_what_was_queued_and_refuses_more() {
    let (tx, mut rx, _) = queue(4);
    tx.push("last words".to_owned(), Regarding::Other)
        .await
        .unwrap();
    tx.close(CloseReason::ShuttingDown);
    assert_eq!(
        tx.push("too late".to_owned(), Regarding::Other).await,
        Err(Closed)
    );
    assert_eq!(text(rx.recv().await), "last words");
    assert_eq!(
        rx.recv().await,
        Some(Outbound::Close(CloseReason::ShuttingDown))
    );
    assert_eq!(rx.recv().await, None);
}

#[tokio::test]
async fn a_gone_receiver_releases_waiting_pushers() {
    let (tx, rx, metrics) = queue(1);
    tx.push("a".to_owned(), Regarding::Other).await.unwrap();
    let pusher = tokio::spawn({
        let tx = tx.clone();
        async move { tx.push("b".to_owned(), Regarding::Other).await }
    });
    tokio::task::yield_now().await;
    drop(rx);
    assert_eq!(pusher.await.unwrap(), Err(Closed));
    assert!(metrics.render().contains("mcp_outbound_queue_depth 0"));
}

#[tokio::test]
async fn the_resume_cap_never_drops_what_the_attached_connection_has_not_read() {
    let (tx, mut rx, _) = queue(8);
    tx.make_resumable(2, usize::MAX, false);
    for i in 1..=5 {
        tx.push(format!("m{i}"), Regarding::Other).await.unwrap();
    }
    let written = tx.take_unpersisted();
    tx.mark_persisted(&written);
    for i in 1..=5 {
        assert_eq!(text(rx.recv().await), format!("m{i}"));
    }
    // Once read, the cap applies: a new connection can resume only from the last two.
    tx.push("m6".to_owned(), Regarding::Other).await.unwrap();
    assert!(matches!(
        tx.attach(Some(3), Vec::new()),
        Err(AttachError::Truncated { oldest: 5 })
    ));
    assert!(tx.attach(Some(4), Vec::new()).is_ok());
}

/// Issue 19, item 2: a resumable log was capped in messages only: 4,096 of 4 MiB each.
#[tokio::test]
async fn a_detached_log_is_capped_in_bytes_too_and_keeps_the_newest_message() {
    let (tx, rx, _) = queue(8);
    tx.make_resumable(1_000, 10_000, false);
    drop(rx);
    for i in 1..=10 {
        tx.push(format!("{i:04}{}", "x".repeat(2_996)), Regarding::Other)
            .await
            .unwrap();
    }
    // Three messages of 3,000 bytes fit in 10,000: the older ones went.
    assert_eq!(tx.oldest_kept(), 8);
    assert!(matches!(
        tx.attach(Some(6), Vec::new()),
        Err(AttachError::Truncated { oldest: 8 })
    ));
    // A message larger than the cap alone is still kept: the newest always is.
    tx.push("y".repeat(20_000), Regarding::Other).await.unwrap();
    assert_eq!(tx.oldest_kept(), 11);
    // The next message makes it go; a coalesced replacement keeps the count exact.
    tx.push_coalesced(Coalesce::Updated("u".to_owned()), "a".repeat(10))
        .unwrap();
    assert_eq!(tx.oldest_kept(), 12);
    tx.push_coalesced(Coalesce::Updated("u".to_owned()), "b".repeat(9_000))
        .unwrap();
    for i in 0..2 {
        tx.push(format!("z{i}"), Regarding::Other).await.unwrap();
    }
    // 9,000 + 2 + 2 bytes: all three fit.
    assert_eq!(tx.oldest_kept(), 12);
    tx.push("w".repeat(1_000), Regarding::Other).await.unwrap();
    assert_eq!(tx.oldest_kept(), 13);
}

#[tokio::test]
async fn a_detached_log_keeps_the_newest_and_refuses_older_positions() {
    let (tx, rx, _) = queue(8);
    tx.make_resumable(3, usize::MAX, false);
    drop(rx);
    for i in 1..=10 {
        tx.push(format!("m{i}"), Regarding::Other).await.unwrap();
    }
    assert!(matches!(
        tx.attach(Some(6), Vec::new()),
        Err(AttachError::Truncated { oldest: 8 })
    ));
    let written = tx.take_unpersisted();
    tx.mark_persisted(&written);
    let mut rx = tx
        .attach(Some(7), vec![("hello".to_owned(), Regarding::Other)])
        .unwrap();
    assert_eq!(text(rx.recv().await), "hello");
    for i in 8..=10 {
        assert_eq!(text(rx.recv().await), format!("m{i}"));
    }
}

#[tokio::test]
async fn attaching_at_the_delivered_position_gets_only_what_no_connection_was_given() {
    let (tx, mut rx, _) = queue(8);
    tx.make_resumable(16, usize::MAX, false);
    for i in 1..=4 {
        tx.push(format!("m{i}"), Regarding::Other).await.unwrap();
    }
    let written = tx.take_unpersisted();
    tx.mark_persisted(&written);
    assert_eq!(text(rx.recv().await), "m1");
    assert_eq!(text(rx.recv().await), "m2");
    drop(rx);
    let mut rx = tx.attach(None, Vec::new()).unwrap();
    assert_eq!(text(rx.recv().await), "m3");
    drop(rx);
    // Re-reading from an older position does not move what counts as delivered back.
    let mut rx = tx.attach(Some(0), Vec::new()).unwrap();
    assert_eq!(text(rx.recv().await), "m1");
    drop(rx);
    let mut rx = tx.attach(None, Vec::new()).unwrap();
    assert_eq!(text(rx.recv().await), "m4");
}

#[tokio::test]
async fn each_message_says_what_it_answers_and_keeps_it_across_a_resume() {
    let (tx, mut rx, _) = queue(8);
    tx.make_resumable(16, usize::MAX, false);
    let answer = Regarding::Answer(Answered::to(RequestId::Number(7)));
    let token = RequestId::String("t".to_owned());
    tx.push("answer".to_owned(), answer.clone()).await.unwrap();
    tx.push_progress(token.clone(), "50%".to_owned()).unwrap();
    // A newer progress replaces the unsent one and still regards the same token.
    tx.push_progress(token.clone(), "60%".to_owned()).unwrap();
    assert_eq!(tx.try_push_notice("log".to_owned()), Ok(true));
    let written = tx.take_unpersisted();
    tx.mark_persisted(&written);
    let progress = Regarding::Progress(token);
    let expected = [
        ("answer", answer.clone()),
        ("60%", progress.clone()),
        ("log", Regarding::Other),
    ];
    for (text, regarding) in &expected {
        let item = rx.recv_with_regarding().await;
        assert_eq!(
            item,
            Some((Outbound::Text((*text).to_owned()), regarding.clone()))
        );
    }
    // A connection that resumes reads them again with what they regard; its preamble too.
    drop(rx);
    let hello = Regarding::Answer(Answered::to(RequestId::Number(8)));
    let mut rx = tx
        .attach(Some(0), vec![("hello".to_owned(), hello.clone())])
        .unwrap();
    assert_eq!(rx.recv_with_regarding().await.unwrap().1, hello);
    for (_, regarding) in &expected {
        assert_eq!(&rx.recv_with_regarding().await.unwrap().1, regarding);
    }
    // Read back from the store, they answer requests of another process.
    tx.restore(
        written.into_iter().map(|(e, _)| e).collect(),
        4,
        0,
        Vec::new(),
    );
    for _ in &expected {
        assert_eq!(
            rx.recv_with_regarding().await.unwrap().1,
            Regarding::Restored
        );
    }
}
