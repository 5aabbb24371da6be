//! The server's log: one line per event whatever it quotes, and no flood from one place.
//!
//! Much of what is logged comes from clients (client names, request ids, error messages,
//! refused headers), so each line is made safe as it is written: control characters inside
//! it (a newline that would forge a second line, an escape sequence for a terminal) are
//! written escaped, and a line longer than [`MAX_LINE`] bytes is cut, saying how much went.
//! A log statement that fires more than [`BURST`] times a second drops the rest of that
//! second; how many were dropped is reported every [`REPORT_EVERY`].

use std::collections::HashMap;
use std::io::{self, IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing_subscriber::filter::{EnvFilter, FilterExt as _, LevelFilter, dynamic_filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};

/// The longest line written, in bytes; the rest is cut.
pub const MAX_LINE: usize = 16 * 1024;
/// How many events one log statement may write in a second.
pub const BURST: u32 = 20;
/// How often the number of dropped events is reported.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Installs the log on standard error: `format` is `text` or `json`, the level comes from
/// `RUST_LOG` (default `info`). Call [`report_dropped`] on a runtime to hear of drops.
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(log_layer(format, filter, io::stderr().is_terminal()))
        .init();
}

/// The log's one layer: lines on standard error, filtered by `filter`, throttled.
fn log_layer<S>(
    format: &str,
    filter: EnvFilter,
    ansi: bool,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    // The throttle passes every level: saying so keeps the filter's own level as the log's
    // maximum. Without a hint the maximum is unknown, so every disabled `debug!` and every
    // `log` record of a dependency (tungstenite logs each frame) is built and asked about
    // at run time: a few percent of a small call.
    let throttle = dynamic_filter_fn(|meta, _| !meta.is_event() || THROTTLE.allow(meta.callsite()))
        .with_max_level_hint(LevelFilter::TRACE);
    let writer = SafeStderr { ansi };
    let layer = fmt::layer().with_writer(writer).with_ansi(ansi);
    match format {
        "json" => layer.json().with_filter(filter.and(throttle)).boxed(),
        _ => layer.with_filter(filter.and(throttle)).boxed(),
    }
}

/// Reports, every [`REPORT_EVERY`], how many events were dropped for coming too fast.
pub async fn report_dropped() {
    let mut every = tokio::time::interval(REPORT_EVERY);
    loop {
        every.tick().await;
        let dropped = THROTTLE.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                per_second = BURST,
                "log events dropped: one statement fired more than {BURST} times a second"
            );
        }
    }
}

static THROTTLE: Throttle = Throttle::new();

/// At most [`BURST`] events a second per log statement.
struct Throttle {
    windows: Mutex<Option<HashMap<Identifier, Window>>>,
    dropped: AtomicU64,
}

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

impl Throttle {
    const fn new() -> Self {
        Self {
            windows: Mutex::new(None),
            dropped: AtomicU64::new(0),
        }
    }

    fn allow(&self, callsite: Identifier) -> bool {
        self.allow_at(callsite, Instant::now())
    }

    /// Whether an event of `callsite` at `now` is written. The map holds one entry per log
    /// statement of the program: bounded.
    fn allow_at(&self, callsite: Identifier, now: Instant) -> bool {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let window = windows
            .get_or_insert_with(HashMap::new)
            .entry(callsite)
            .or_insert(Window {
                start: now,
                count: 0,
            });
        if now.saturating_duration_since(window.start) >= Duration::from_secs(1) {
            *window = Window {
                start: now,
                count: 0,
            };
        }
        window.count += 1;
        let allowed = window.count <= BURST;
        if !allowed {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }
}

/// Standard error, one safe line per event.
#[derive(Clone, Copy)]
struct SafeStderr {
    /// The formatter writes colour escapes of its own: keep ESC.
    ansi: bool,
}

impl<'a> MakeWriter<'a> for SafeStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            line: Vec::with_capacity(256),
            ansi: self.ansi,
        }
    }
}

/// Collects one event and writes it, made safe, when dropped.
struct LineWriter {
    line: Vec<u8>,
    ansi: bool,
}

impl io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Past twice the cap nothing more is kept: it would be cut anyway.
        let room = (2 * MAX_LINE).saturating_sub(self.line.len());
        self.line.extend_from_slice(&buf[..buf.len().min(room)]);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let safe = safe_line(&self.line, self.ansi);
        let _ = io::stderr().lock().write_all(&safe);
    }
}

/// `line` (one formatted event) as one line: control characters but a final newline written
/// escaped (ESC kept when `ansi`, for the formatter's colours), at most [`MAX_LINE`] bytes.
fn safe_line(line: &[u8], ansi: bool) -> Vec<u8> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let mut out = Vec::with_capacity(body.len().min(MAX_LINE) + 64);
    let mut written = 0;
    for &byte in body {
        if out.len() >= MAX_LINE {
            break;
        }
        match byte {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.push(b'\t'),
            0x1b if ansi => out.push(byte),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\x{byte:02x}").as_bytes()),
            _ => out.push(byte),
        }
        written += 1;
    }
    if written < body.len() {
        // Cut on a character boundary: a partial UTF-8 sequence is dropped.
        while let Some(&last) = out.last() {
            if last & 0xc0 == 0x80 || last >= 0xc0 {
                out.pop();
                if last >= 0xc0 {
                    break;
                }
            } else {
                break;
            }
        }
        out.extend_from_slice(format!(" … [{} bytes cut]", line.len() - written).as_bytes());
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_says_its_maximum_level() {
        // Without a known maximum, disabled events and dependencies' `log` records are
        // evaluated one by one at run time.
        for format in ["text", "json"] {
            let layer =
                log_layer::<tracing_subscriber::Registry>(format, EnvFilter::new("info"), false);
            assert_eq!(layer.max_level_hint(), Some(LevelFilter::INFO), "{format}");
            let layer = log_layer::<tracing_subscriber::Registry>(
                format,
                EnvFilter::new("warn,mcp_ws=debug"),
                false,
            );
            assert_eq!(layer.max_level_hint(), Some(LevelFilter::DEBUG), "{format}");
        }
    }

    #[test]
    fn a_quoted_newline_cannot_forge_a_line() {
        let line = b"INFO initialize client=evil\nERROR forged\r\x07 x\n";
        let safe = safe_line(line, false);
        assert_eq!(
            String::from_utf8(safe).unwrap(),
            "INFO initialize client=evil\\nERROR forged\\r\\x07 x\n"
        );
        // A terminal's colours survive; without one, ESC is escaped too.
        assert_eq!(
            safe_line(b"\x1b[32mINFO\x1b[0m\n", true),
            b"\x1b[32mINFO\x1b[0m\n"
        );
        assert_eq!(safe_line(b"\x1b[2J\n", false), b"\\x1b[2J\n");
    }

    #[test]
    fn a_long_line_is_cut_on_a_character_boundary() {
        let mut line = "é".repeat(MAX_LINE).into_bytes();
        line.push(b'\n');
        let safe = String::from_utf8(safe_line(&line, false)).expect("still UTF-8");
        assert!(safe.len() < MAX_LINE + 64, "{}", safe.len());
        assert!(
            safe.ends_with(" bytes cut]\n"),
            "{}",
            &safe[safe.len() - 40..]
        );
        assert_eq!(safe.matches('\n').count(), 1);
    }

    #[test]
    fn one_statement_writes_at_most_a_burst_a_second() {
        struct Here;
        static HERE: Here = Here;
        impl tracing::callsite::Callsite for Here {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &tracing::Metadata<'_> {
                unimplemented!("not called")
            }
        }
        let throttle = Throttle::new();
        let id = || Identifier(&HERE);
        let start = Instant::now();
        let allowed = (0..100).filter(|_| throttle.allow_at(id(), start)).count();
        assert_eq!(allowed, BURST as usize);
        assert_eq!(
            throttle.dropped.load(Ordering::Relaxed),
            100 - u64::from(BURST)
        );
        // The next second writes again.
        assert!(throttle.allow_at(id(), start + Duration::from_secs(1)));
    }
}
