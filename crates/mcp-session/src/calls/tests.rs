//! The call table alone: answers at most once, nothing after a client's cancel, batches
//! complete with their last request, and the operations a resumable session records.

use mcp_protocol::{ErrorObject, RequestId, Response};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Answer, CallInfo, CallReply, CallTable, CancelledBy, Reply};
use crate::outbound::{Answered, Regarding};
use crate::store::OperationRecord;

fn info() -> CallInfo {
    CallInfo {
        method: "tools/call",
        started: Instant::now(),
        uri: "mcp://session/op".to_owned(),
        call: None,
    }
}

fn ok(text: &str) -> Reply {
    Ok(CallReply {
        body: serde_json::value::RawValue::from_string(text.to_owned()).unwrap(),
        is_error: false,
    })
}

fn shutdown() -> ErrorObject {
    ErrorObject::new(-32000, "shutting down")
}

fn id(n: i64) -> RequestId {
    serde_json::from_value(json!(n)).unwrap()
}

fn record(n: i64) -> OperationRecord {
    OperationRecord {
        request_id: id(n),
        tool: "sleep".to_owned(),
        arguments: json!({}),
        progress_token: None,
        task: (n == 3).then(|| crate::store::TaskId::random().unwrap()),
        started_ms: 0,
    }
}

#[test]
fn a_request_is_answered_once() {
    let mut table = CallTable::default();
    table.start(id(1), CancellationToken::new(), None, info(), None);
    assert!(table.contains(&id(1)));
    let first = table.finish(&id(1), ok("1"), shutdown).unwrap();
    assert!(matches!(first.send, Answer::One(Ok(_))));
    assert_eq!(first.cancelled, None);
    assert!(table.finish(&id(1), ok("1"), shutdown).is_none());
    assert!(table.is_empty());
}

#[test]
fn numeric_and_string_ids_are_different_requests() {
    let mut table = CallTable::default();
    table.start(id(7), CancellationToken::new(), None, info(), None);
    let text: RequestId = serde_json::from_value(json!("7")).unwrap();
    assert!(!table.contains(&text));
    assert!(table.finish(&text, ok("1"), shutdown).is_none());
    assert_eq!(table.len(), 1);
}

#[test]
fn a_client_cancel_cancels_the_token_and_suppresses_the_answer() {
    let mut table = CallTable::default();
    let token = CancellationToken::new();
    table.start(id(1), token.clone(), None, info(), None);
    assert!(table.cancel(&id(1)));
    assert!(token.is_cancelled());
    let done = table.finish(&id(1), ok("1"), shutdown).unwrap();
    assert_eq!(done.cancelled, Some(CancelledBy::Client));
    assert!(matches!(done.send, Answer::Nothing));
    // A cancel for a finished or unknown request is ignored.
    assert!(!table.cancel(&id(1)));
    assert!(!table.cancel(&id(2)));
}

#[test]
fn a_server_cancel_answers_with_the_server_error() {
    let mut table = CallTable::default();
    let token = CancellationToken::new();
    table.start(id(1), token.clone(), None, info(), None);
    table.start(id(2), CancellationToken::new(), None, info(), None);
    assert!(table.cancel(&id(2)));
    table.cancel_all();
    assert!(token.is_cancelled());
    let done = table.finish(&id(1), ok("1"), shutdown).unwrap();
    assert_eq!(done.cancelled, Some(CancelledBy::Server));
    match done.send {
        Answer::One(Err(e)) => assert_eq!(e.code, -32000),
        other => panic!("expected the shutdown error, got {other:?}"),
    }
    // The client's cancel came first: it stays the client's, and gets no answer.
    let done = table.finish(&id(2), ok("2"), shutdown).unwrap();
    assert_eq!(done.cancelled, Some(CancelledBy::Client));
    assert!(matches!(done.send, Answer::Nothing));
}

#[test]
fn a_batch_goes_out_with_its_last_request() {
    let mut table = CallTable::default();
    let batch = table.open_batch();
    table.batch_reply(batch, mcp_protocol::Response::ok(id(9), json!({})), false);
    table.start(id(1), CancellationToken::new(), Some(batch), info(), None);
    // The same id again, refused while the first runs.
    let refusal = ErrorObject::invalid_request("duplicate");
    table.batch_reply(batch, Response::error(Some(id(1)), refusal), true);
    table.start(id(2), CancellationToken::new(), Some(batch), info(), None);
    table.start(id(3), CancellationToken::new(), Some(batch), info(), None);
    assert!(table.close_batch(batch).is_none(), "requests still run");
    assert!(table.cancel(&id(3)));
    assert!(matches!(
        table.finish(&id(2), ok("2"), shutdown).unwrap().send,
        Answer::Nothing
    ));
    assert!(matches!(
        table.finish(&id(3), ok("3"), shutdown).unwrap().send,
        Answer::Nothing
    ));
    match table.finish(&id(1), ok("1"), shutdown).unwrap().send {
        Answer::Batch(responses) => {
            let ids: Vec<String> = responses
                .responses
                .iter()
                .map(|r| r.id.as_ref().unwrap().to_string())
                .collect();
            // The cancelled request is left out.
            assert_eq!(ids, ["9", "1", "2", "1"]);
            // The transport learns which answer is the refusal, without reading them.
            let answered = |n, duplicate| Answered {
                id: id(n),
                duplicate,
            };
            assert_eq!(
                responses.regarding(),
                Regarding::Batch(vec![
                    answered(9, false),
                    answered(1, true),
                    answered(2, false),
                    answered(1, false),
                ])
            );
        }
        other => panic!("expected the batch, got {other:?}"),
    }
}

#[test]
fn a_batch_of_answers_only_is_complete_when_closed() {
    let mut table = CallTable::default();
    let batch = table.open_batch();
    table.batch_reply(batch, mcp_protocol::Response::ok(id(1), json!({})), false);
    assert_eq!(table.close_batch(batch).unwrap().responses.len(), 1);
    // A batch with nothing to answer (only notifications) has no array at all.
    let empty = table.open_batch();
    assert!(table.close_batch(empty).is_none());
}

#[test]
fn tasks_name_their_requests() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let task = runtime.block_on(async { tokio::spawn(async {}).id() });
    let mut table = CallTable::default();
    table.start(id(4), CancellationToken::new(), None, info(), None);
    table.spawned(task, id(4));
    assert_eq!(table.task_finished(task), Some(id(4)));
    assert_eq!(table.task_finished(task), None);
}

#[test]
fn a_resumable_session_records_its_running_calls() {
    let mut table = CallTable::default();
    // Before the session is resumable, nothing is recorded.
    table.start(
        id(1),
        CancellationToken::new(),
        None,
        info(),
        Some(record(1)),
    );
    let ops = std::sync::Arc::new(crate::calls::Operations::default());
    table.record_operations(std::sync::Arc::clone(&ops));
    table.start(
        id(2),
        CancellationToken::new(),
        None,
        info(),
        Some(record(2)),
    );
    table.start(
        id(3),
        CancellationToken::new(),
        None,
        info(),
        Some(record(3)),
    );
    let (written, answered) = ops.take_if_changed().unwrap();
    assert_eq!(written.len(), 2);
    assert!(answered.is_empty());
    assert!(ops.take_if_changed().is_none(), "written once");
    table.finish(&id(2), ok("2"), shutdown).unwrap();
    let (written, answered) = ops.take_if_changed().unwrap();
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].request_id, id(3));
    assert!(answered.is_empty(), "call 2 ran no task");
    // Call 3's task is let go once a write without it succeeded; a failed write keeps it.
    let task = written[0].task.clone().unwrap();
    let (count, waiting) = table.abandon_all();
    assert_eq!(count, 2);
    assert_eq!(waiting.len(), 2);
    let (written, answered) = ops.take_if_changed().unwrap();
    assert!(written.is_empty());
    assert_eq!(answered, std::slice::from_ref(&task));
    ops.write_failed(answered);
    let (_, answered) = ops.take_if_changed().unwrap();
    assert_eq!(answered, [task]);
}

#[test]
fn abandoning_leaves_out_what_the_client_cancelled() {
    let mut table = CallTable::default();
    table.start(id(1), CancellationToken::new(), None, info(), None);
    table.start(id(2), CancellationToken::new(), None, info(), None);
    assert!(table.cancel(&id(1)));
    table.cancel_all();
    let (count, waiting) = table.abandon_all();
    assert_eq!(count, 2);
    assert_eq!(waiting, [id(2)]);
    assert!(table.is_empty());
}
