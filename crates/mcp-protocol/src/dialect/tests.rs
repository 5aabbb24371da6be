//! Transcripts of the dialects: what each input becomes.
//!
//! A transcript starts with `!dialect envelope AGENT [LAST_SEQ]` or `!dialect tutorial`.
//! Then, in order:
//! - `!open`: the connection opens;
//! - `!at MS`: the clock reads MS milliseconds after the Unix epoch (0 until set);
//! - `client> TEXT`: a frame from the client;
//! - `session> TEXT`: a message of the session;
//! - `# ...`: a comment.
//!
//! After each input come its outputs, `  => session: ...`, `  => client: ...` and
//! `  => close: ...`, as JSON with sorted keys. `UPDATE_EXPECT=1 cargo test` rewrites them.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use expect_test::{ExpectFile, expect_file};
use serde_json::Value;

use super::{Dialect, Envelope, Translated, Tutorial};

fn canonical(text: &str) -> String {
    serde_json::from_str::<Value>(text).map_or_else(|_| text.to_owned(), |v| v.to_string())
}

fn render(out: &Translated, transcript: &mut String) {
    for m in &out.to_session {
        writeln!(transcript, "  => session: {}", canonical(m)).unwrap();
    }
    for m in &out.to_client {
        writeln!(transcript, "  => client: {}", canonical(m)).unwrap();
    }
    if let Some(reason) = &out.close {
        writeln!(transcript, "  => close: {reason}").unwrap();
    }
}

fn run(expected: &ExpectFile, source: &str) {
    let mut dialect = None;
    let mut now = UNIX_EPOCH;
    let mut transcript = String::new();
    for line in source.lines() {
        if line.starts_with("  => ") || line.trim().is_empty() {
            continue;
        }
        writeln!(transcript, "{line}").unwrap();
        if let Some(rest) = line.strip_prefix("!dialect ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            dialect = Some(match words.as_slice() {
                ["envelope", agent] => Dialect::Envelope(Envelope::new("c1", *agent, None)),
                ["envelope", agent, seq] => Dialect::Envelope(Envelope::new(
                    "c1",
                    *agent,
                    Some(seq.parse().expect("a position")),
                )),
                ["tutorial"] => Dialect::Tutorial(Tutorial::new("c1")),
                other => panic!("unknown dialect {other:?}"),
            });
            continue;
        }
        let dialect = dialect.as_mut().expect("a transcript starts with !dialect");
        let out = if line == "!open" {
            dialect.open(now)
        } else if let Some(ms) = line.strip_prefix("!at ") {
            now = UNIX_EPOCH + Duration::from_millis(ms.trim().parse().expect("milliseconds"));
            continue;
        } else if let Some(text) = line.strip_prefix("client> ") {
            dialect.on_client(text, now)
        } else if let Some(text) = line.strip_prefix("session> ") {
            dialect.on_session(text, now)
        } else if line.starts_with('#') {
            continue;
        } else {
            panic!("unrecognized transcript line: {line}");
        };
        render(&out, &mut transcript);
    }
    expected.assert_eq(&transcript);
}

fn source(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test_data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn envelope_transcript() {
    run(
        &expect_file!["../../test_data/envelope.transcript"],
        &source("envelope.transcript"),
    );
}

#[test]
fn tutorial_transcript() {
    run(
        &expect_file!["../../test_data/tutorial.transcript"],
        &source("tutorial.transcript"),
    );
}

#[test]
fn timestamps_are_iso_8601_in_utc_with_milliseconds() {
    let at = UNIX_EPOCH + Duration::from_millis(1_682_944_496_789);
    assert_eq!(super::timestamp(at), "2023-05-01T12:34:56.789Z");
    assert_eq!(super::millis(SystemTime::UNIX_EPOCH), 0);
}

#[test]
fn envelope_refused_transcript() {
    run(
        &expect_file!["../../test_data/envelope_refused.transcript"],
        &source("envelope_refused.transcript"),
    );
}
