//! One WebSocket connection: a reader that feeds the session, a writer that drains it, and
//! the close handshake.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper_tungstenite::tungstenite::Message as Frame;
use hyper_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use hyper_tungstenite::tungstenite::protocol::frame::CloseFrame;
use hyper_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use hyper_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use hyper_tungstenite::{HyperWebsocket, WebSocketStream};
use mcp_protocol::dialect::Translated;
use mcp_session::{
    CloseReason, InboundSender, Outbound, OutboundReceiver, Principal, SessionSlot,
    WeakInboundSender,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use tracing::Instrument;

/// The close codes this transport sends, and when.
pub mod close_codes {
    /// The session ended normally (the client closed, or the server had nothing more to say).
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame violated the WebSocket protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A binary frame: MCP messages are JSON text.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A text frame that is not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// The client stopped reading: one frame could not be written for `stall_timeout`.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message larger than the configured maximum.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
}

/// Settings of the WebSocket transport.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// The largest message (and frame) accepted, in bytes; a larger one closes the connection
    /// with 1009.
    pub max_message_size: usize,
    /// How many received messages may wait for the session.
    pub inbound_queue: usize,
    /// How long to wait for the client's reply to a close frame before dropping the TCP
    /// connection.
    pub close_timeout: Duration,
    /// How long writing one frame may take before the client counts as not reading: the
    /// connection is then closed with 1008 and the session's calls are cancelled.
    pub stall_timeout: Duration,
    /// How often the server checks that the client is alive.
    pub ping_interval: Duration,
    /// How long the client may show no sign of life (no frame at all, pongs included) before
    /// the connection is closed with 1001 "heartbeat timeout".
    pub ping_timeout: Duration,
    /// How the server asks for a sign of life.
    pub heartbeat: Heartbeat,
}

/// How the server checks that a client is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// WebSocket ping frames, answered by every WebSocket stack without the application.
    Frames,
    /// MCP `ping` requests, which also prove the client's MCP layer is responsive.
    JsonRpc,
    /// Both.
    Both,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_message_size: 4 * 1024 * 1024,
            inbound_queue: 16,
            close_timeout: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(30),
            // Common proxies cut streams idle for 60 s.
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(45),
            heartbeat: Heartbeat::Frames,
        }
    }
}

/// The WebSocket read buffer of each connection.
const READ_BUFFER: usize = 4 * 1024;

impl WsConfig {
    pub(crate) fn tungstenite(&self) -> WebSocketConfig {
        // The write buffer holds at most the frame being written, so a client that does not
        // read cannot make it grow. The read buffer is allocated whole for every connection
        // (tungstenite's default is 128 KiB): 4 KiB holds any ordinary request, and a larger
        // frame reserves its own length when its header arrives.
        WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_message_size))
            .max_write_buffer_size(self.max_message_size.saturating_mul(2).max(256 * 1024))
    }
}

/// Translates a connection's frames to and from the session's messages: a wire dialect,
/// supplied by whoever routes the connection. The transport only moves what it returns
/// ([`Translated`]: messages for the session, frames for the client, and whether to close).
pub trait Translate: Send + 'static {
    /// What to send when the connection opens.
    fn open(&mut self) -> Translated;
    /// What one text frame of the client becomes.
    fn on_client(&mut self, text: &str) -> Translated;
    /// What one message of the session becomes.
    fn on_session(&mut self, text: &str) -> Translated;
}

/// A connection's translator, shared by its reader and writer.
#[derive(Clone)]
struct SharedDialect(Arc<Mutex<Box<dyn Translate>>>);

impl SharedDialect {
    fn translate(&self, f: impl FnOnce(&mut dyn Translate) -> Translated) -> Translated {
        let mut dialect = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(dialect.as_mut())
    }
}

/// A new random connection id (a UUID v4, as the tutorial's `connected` names it).
pub fn connection_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Without randomness the id only needs to be unique here.
        static NEXT: AtomicU64 = AtomicU64::new(1);
        b[..8].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// What the transport reports about its connections, for metrics. Both methods are called
/// on the connection's task, and must not block.
pub trait ConnectionObserver: Send + Sync + 'static {
    /// The connection ended with close code `code` (1006: no close frame was sent, the
    /// connection broke).
    fn closed(&self, code: u16);
    /// The connection is being closed because its client showed no sign of life.
    fn heartbeat_timeout(&self);
}

/// Everything a connection needs besides its socket.
pub struct Connection {
    /// The place of the connection's session, reserved on its hub before the upgrade was
    /// accepted.
    pub session: SessionSlot,
    /// The transport's settings.
    pub config: WsConfig,
    /// The client's address, for logs.
    pub remote: SocketAddr,
    /// Whatever the caller holds for as long as the connection is open (its place under a
    /// connection limit); dropped when the connection ends.
    pub place: Box<dyn Send + Sync>,
    /// A wire dialect that translates every frame on the way in and out, if any.
    pub dialect: Option<Box<dyn Translate>>,
    /// Who authenticated: the session belongs to it, and its scopes bound what it may do.
    pub principal: Principal,
    /// Told how the connection ends.
    pub observer: Arc<dyn ConnectionObserver>,
    /// Where the connection's session, reader and heartbeat pings are spawned: the server
    /// waits for it at shutdown (hyper forgets a connection once it is upgraded).
    pub tracker: TaskTracker,
}

/// Runs one upgraded WebSocket connection as an MCP session until either side closes it or
/// the server shuts down.
///
/// `websocket` is the future returned by [`crate::accept`]; it resolves once the 101 response
/// has been sent. See [`serve_stream`] for the rest.
pub fn serve_connection(
    websocket: HyperWebsocket,
    connection: Connection,
) -> impl Future<Output = ()> + Send + 'static {
    serve(websocket, connection)
}

/// Runs one WebSocket connection over any byte stream whose handshake is done (an upgraded
/// TCP connection's, or an in-memory duplex in tests) as an MCP session until either side
/// closes it or the server shuts down.
///
/// With a dialect, every frame is translated by it on the way in and out, so the session
/// sees only what the translator makes of the client's frames. When this returns, the
/// session and every request it started are gone, unless it is resumable.
///
/// A plain function returning the future, not an `async fn`: an `async fn` would keep its
/// arguments in its frame beside the inner future that took them, and every open connection
/// pays for its task's frame.
pub fn serve_stream<S>(
    stream: S,
    connection: Connection,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = connection.config.tungstenite();
    let socket = async move {
        let socket = WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await;
        Ok::<_, WsError>(socket)
    };
    serve(socket, connection)
}

/// Both of the above: one future, so that nothing is kept twice in its frame.
fn serve<S, E>(
    socket: impl Future<Output = Result<WebSocketStream<S>, E>> + Send + 'static,
    connection: Connection,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    E: std::fmt::Display,
{
    // One span for the connection and its session: each open span costs memory.
    let span = tracing::info_span!(
        "connection",
        remote = %connection.remote,
        principal = connection.principal.name(),
        session = tracing::field::Empty
    );
    async move {
        // The connection's fields are used where they are, or moved straight into what takes
        // them, never into locals: a local would be a second copy in this future's frame,
        // which every open connection pays.
        let socket = match socket.await {
            Ok(socket) => socket,
            Err(e) => {
                tracing::warn!(error = %e, "WebSocket upgrade failed");
                return;
            }
        };
        tracing::debug!("connected");
        let config = &connection.config;
        let (sink, stream) = socket.split();
        let (in_tx, in_rx) = mcp_session::inbound::channel(config.inbound_queue);
        let controls = Arc::new(Controls::default());
        // Fires once a close frame was sent or the writer stopped: from then on the reader
        // waits at most `close_timeout` for the client.
        let closing = Closing::default();
        let life = Life::new();
        let (mut session, out_rx) = connection.session.open();
        // The credential's end is the connection's: its client reconnects with a fresh one
        // (and resumes its session).
        let expires = connection.principal.expires_at();
        session.set_principal(connection.principal);
        let peer = session.peer();
        // The session runs on its own: a resumable one outlives this connection, and a
        // connection that resumes another session hands its input and output over to it.
        let span = tracing::Span::current();
        span.record("session", session.id());
        session.set_span(span);
        connection.tracker.spawn(session.run(in_rx));
        let dialect = connection
            .dialect
            .map(|d| SharedDialect(Arc::new(Mutex::new(d))));
        let first = match &dialect {
            Some(dialect) => Box::pin(open_dialect(dialect, &in_tx)).await,
            None => Vec::new(),
        };
        let writer = Writer {
            out_rx,
            controls: Arc::clone(&controls),
            closing: closing.clone(),
            stall_timeout: config.stall_timeout,
            dialect: dialect.clone(),
            // Weak: the session's input must end when the reader does.
            to_session: in_tx.downgrade(),
        };
        // The reader runs on a task of its own: `join!` polls every branch whenever any is
        // woken, and every poll of the reader without data zero-fills its read buffer
        // (tungstenite), which made each message the writer sent cost 4 KiB of memset.
        // Aborted if this connection's task is dropped first.
        let reader = AbortOnDropHandle::new(
            connection.tracker.spawn(
                read(
                    stream,
                    in_tx,
                    Arc::clone(&controls),
                    closing.clone(),
                    config.close_timeout,
                    life.clone(),
                    dialect,
                )
                .in_current_span(),
            ),
        );
        let pulse = Pulse {
            peer,
            expires,
            controls: &controls,
            closing,
            life,
            config,
            observer: connection.observer.as_ref(),
            tracker: &connection.tracker,
        };
        let (read, code, ()) = tokio::join!(reader, writer.run(sink, first), pulse.run());
        if let Err(e) = read {
            // The session's input ended with it, so the connection closed all the same.
            tracing::error!(error = %e, "the connection's reader failed");
        }
        connection.observer.closed(code);
        // Named here so that the block holds it: a field the block never used would be
        // left behind, and dropped when this function returns, not when the connection
        // ends.
        drop(connection.place);
        tracing::debug!(code, "disconnected");
    }
    .instrument(span)
}

/// What the reader and the heartbeat ask of the writer: a few fields behind a lock and a
/// wake-up, not a channel. A tokio channel allocates a block of 32 slots and a
/// cache-padded header up front, over a kilobyte for every open connection, for messages
/// that come every 20 seconds.
#[derive(Default)]
struct Controls {
    state: Mutex<ControlState>,
    /// Wakes the writer.
    wake: tokio::sync::Notify,
    /// Wakes a dialect answer waiting for room.
    room: tokio::sync::Notify,
}

#[derive(Default)]
struct ControlState {
    /// The first close asked for, and whether to skip waiting for the client's reply.
    close: Option<(CloseFrame, bool)>,
    ping: bool,
    /// The dialect's own answers to the client's frames, in order.
    sends: std::collections::VecDeque<String>,
    /// The writer stopped: nothing more will be sent.
    writer_gone: bool,
}

/// What the writer is asked to do next.
enum Control {
    /// Send a ping frame.
    Ping,
    /// Close with this frame; with `abandon`, do not wait for the client's reply.
    Close { frame: CloseFrame, abandon: bool },
    /// Send this text frame: the dialect's own answer to a client's frame.
    Send(String),
}

/// How many dialect answers may wait for the writer; more wait for room.
const CONTROL_SENDS: usize = 4;

/// The most messages of the session written before one flush.
const BATCH: usize = 64;

impl Controls {
    fn lock(&self) -> std::sync::MutexGuard<'_, ControlState> {
        // Every critical section leaves the state consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks for a ping frame; false once the writer is gone.
    fn ping(&self) -> bool {
        let mut state = self.lock();
        if state.writer_gone {
            return false;
        }
        state.ping = true;
        drop(state);
        self.wake.notify_one();
        true
    }

    /// Asks for the connection to close with `frame`; the first close asked for wins.
    fn close(&self, frame: CloseFrame, abandon: bool) {
        let mut state = self.lock();
        if state.close.is_none() {
            state.close = Some((frame, abandon));
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Queues a text frame, waiting while the writer has `CONTROL_SENDS` of them; false
    /// once the writer is gone.
    async fn send(&self, text: String) -> bool {
        loop {
            {
                let mut state = self.lock();
                if state.writer_gone {
                    return false;
                }
                if state.sends.len() < CONTROL_SENDS {
                    state.sends.push_back(text);
                    drop(state);
                    self.wake.notify_one();
                    return true;
                }
            }
            // A permit stored by the writer since the check is not lost: `notify_one`
            // keeps one for the next waiter.
            self.room.notified().await;
        }
    }

    /// The next thing to do: queued answers first, in order, then a close, then a ping.
    async fn next(&self) -> Control {
        loop {
            {
                let mut state = self.lock();
                if let Some(text) = state.sends.pop_front() {
                    drop(state);
                    self.room.notify_one();
                    return Control::Send(text);
                }
                if let Some((frame, abandon)) = state.close.take() {
                    return Control::Close { frame, abandon };
                }
                if std::mem::take(&mut state.ping) {
                    return Control::Ping;
                }
            }
            self.wake.notified().await;
        }
    }

    /// Whether a close was asked for and not yet taken.
    fn closing(&self) -> bool {
        self.lock().close.is_some()
    }

    /// The writer stopped: senders stop waiting.
    fn writer_gone(&self) {
        self.lock().writer_gone = true;
        self.room.notify_one();
    }
}

/// When the client last showed a sign of life: any frame at all.
#[derive(Clone)]
struct Life {
    start: tokio::time::Instant,
    last_ms: Arc<AtomicU64>,
}

impl Life {
    fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn seen(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// The heartbeat: asks for a sign of life every `ping_interval` and closes the connection
/// when none came for `ping_timeout`.
struct Pulse<'a> {
    peer: mcp_session::Peer,
    /// When the connection's credential stops being accepted.
    expires: Option<std::time::SystemTime>,
    controls: &'a Controls,
    closing: Closing,
    life: Life,
    config: &'a WsConfig,
    observer: &'a dyn ConnectionObserver,
    tracker: &'a TaskTracker,
}

impl Pulse<'_> {
    async fn run(self) {
        let config = self.config;
        let mut ticks = tokio::time::interval(config.ping_interval.max(Duration::from_millis(10)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        // An expiry too far away to be an instant here never comes.
        let expiry = self.expires.and_then(|at| {
            let left = at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            tokio::time::Instant::now().checked_add(left)
        });
        let expired = async {
            match expiry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        loop {
            tokio::select! {
                () = self.closing.started.cancelled() => return,
                () = &mut expired => {
                    tracing::info!("the connection's token expired; closing");
                    let frame = CloseFrame {
                        code: CloseCode::from(close_codes::POLICY_VIOLATION),
                        reason: "token expired".into(),
                    };
                    self.controls.close(frame, true);
                    return;
                }
                _ = ticks.tick() => {}
            }
            if self.life.silent_for() > config.ping_timeout {
                tracing::info!(
                    silent_ms = self.life.silent_for().as_millis(),
                    "no sign of life from the client; closing"
                );
                self.observer.heartbeat_timeout();
                let frame = CloseFrame {
                    code: CloseCode::from(close_codes::GOING_AWAY),
                    reason: "heartbeat timeout".into(),
                };
                self.controls.close(frame, true);
                return;
            }
            if matches!(config.heartbeat, Heartbeat::Frames | Heartbeat::Both)
                && !self.controls.ping()
            {
                return;
            }
            if matches!(config.heartbeat, Heartbeat::JsonRpc | Heartbeat::Both) {
                // The answer is a frame, so it counts as a sign of life when the reader sees
                // it.
                let peer = self.peer.clone();
                let timeout = config.ping_timeout;
                self.tracker.spawn(async move {
                    let _ = tokio::time::timeout(timeout, peer.ping()).await;
                });
            }
        }
    }
}

/// How the writer tells the reader that the connection is closing.
#[derive(Clone, Default)]
struct Closing {
    /// A close frame was sent (or the writer stopped): wait a little for the client's reply.
    started: CancellationToken,
    /// The client is not reading: stop at once.
    abandoned: CancellationToken,
}

/// The frames a connection reads.
trait FrameStream: futures_util::Stream<Item = Result<Frame, WsError>> + Unpin + Send {}
impl<T: futures_util::Stream<Item = Result<Frame, WsError>> + Unpin + Send> FrameStream for T {}

/// Where a connection writes its frames.
trait FrameSink: futures_util::Sink<Frame, Error = WsError> + Unpin + Send {}
impl<T: futures_util::Sink<Frame, Error = WsError> + Unpin + Send> FrameSink for T {}

/// Forwards text frames to the session until the client closes, a frame is refused, or the
/// close handshake runs out of time.
async fn read(
    mut stream: impl FrameStream,
    in_tx: InboundSender,
    controls: Arc<Controls>,
    closing: Closing,
    close_timeout: Duration,
    life: Life,
    dialect: Option<SharedDialect>,
) {
    let mut in_tx = Some(in_tx);
    let deadline = async {
        tokio::select! {
            () = async {
                closing.started.cancelled().await;
                tokio::time::sleep(close_timeout).await;
            } => {}
            () = closing.abandoned.cancelled() => {}
        }
    };
    tokio::pin!(deadline);
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            () = &mut deadline => {
                tracing::debug!("no close reply from the client in time; dropping the connection");
                break;
            }
        };
        if frame.is_some() {
            life.seen();
        }
        let refuse = match frame {
            None => break,
            Some(Ok(Frame::Text(text))) => {
                let Some(tx) = &in_tx else {
                    tracing::debug!("text frame after close; discarded");
                    continue;
                };
                let Some(dialect) = &dialect else {
                    if tx.send(text.as_str().to_owned()).await.is_err() {
                        // The session ended; it has asked the writer to close.
                        in_tx = None;
                    }
                    continue;
                };
                // Boxed, like every rare path here: what is inline is in every connection's
                // frame for as long as it is open.
                if !Box::pin(forward_translated(dialect, text.as_str(), &controls, tx)).await {
                    in_tx = None;
                }
                continue;
            }
            // Pings are answered by tungstenite itself; pongs need no action.
            Some(Ok(Frame::Ping(_) | Frame::Pong(_) | Frame::Frame(_))) => continue,
            Some(Ok(Frame::Close(frame))) => {
                tracing::debug!(?frame, "client closed");
                break;
            }
            Some(Ok(Frame::Binary(_))) => (
                close_codes::UNSUPPORTED_DATA,
                "binary frames are not supported: send JSON-RPC messages as text frames",
            ),
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                (close_codes::MESSAGE_TOO_BIG, "message too big")
            }
            Some(Err(WsError::Utf8(_))) => (
                close_codes::INVALID_PAYLOAD,
                "text frame is not valid UTF-8",
            ),
            Some(Err(WsError::Protocol(e))) => {
                tracing::debug!(error = %e, "WebSocket protocol error");
                (close_codes::PROTOCOL_ERROR, "WebSocket protocol error")
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "connection lost");
                break;
            }
        };
        let (code, reason) = refuse;
        tracing::debug!(code, reason, "closing the connection");
        // Stop feeding the session; it ends and cancels what it started.
        in_tx = None;
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        controls.close(frame, false);
    }
    // The input ended (the client closed, or the connection broke): the output ends too,
    // even for a session that carries on waiting to be resumed.
    controls.close(normal_close(), false);
}

/// Gives the session what the dialect sends when the connection opens; returns what it
/// sends the client.
async fn open_dialect(dialect: &SharedDialect, to_session: &InboundSender) -> Vec<String> {
    let opened = dialect.translate(|d| d.open());
    for text in opened.to_session {
        // The session was just made: it reads these before anything from the client.
        let _ = to_session.send(text).await;
    }
    opened.to_client
}

/// Forwards what the dialect makes of one client frame: its own answers to the writer, the
/// rest to the session. False when the session is gone.
async fn forward_translated(
    dialect: &SharedDialect,
    text: &str,
    controls: &Controls,
    to_session: &InboundSender,
) -> bool {
    let translated = dialect.translate(|d| d.on_client(text));
    for answer in translated.to_client {
        // Waits while the writer is busy: a client that does not read its answers is not
        // read either.
        if !controls.send(answer).await {
            break;
        }
    }
    for message in translated.to_session {
        if to_session.send(message).await.is_err() {
            return false;
        }
    }
    true
}

/// The writing half of a connection.
struct Writer {
    out_rx: OutboundReceiver,
    controls: Arc<Controls>,
    closing: Closing,
    stall_timeout: Duration,
    dialect: Option<SharedDialect>,
    /// Where the dialect's answers to the session's own requests go.
    to_session: WeakInboundSender,
}

/// Why the writer stopped writing.
enum Stop {
    /// Writing failed: the connection is broken.
    Broken,
    /// One frame could not be written for `stall_timeout`: the client is not reading.
    Stalled,
}

impl Writer {
    async fn send(&self, sink: &mut impl FrameSink, frame: Frame) -> Result<(), Stop> {
        self.within_stall_timeout(sink.send(frame)).await
    }

    /// Runs one write of the sink; a write that takes `stall_timeout` means the client
    /// stopped reading.
    async fn within_stall_timeout(
        &self,
        write: impl Future<Output = Result<(), WsError>>,
    ) -> Result<(), Stop> {
        match tokio::time::timeout(self.stall_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "write failed");
                Err(Stop::Broken)
            }
            Err(_) => {
                tracing::info!(
                    stall_ms = self.stall_timeout.as_millis(),
                    queued = self.out_rx.len(),
                    "the client stopped reading; disconnecting it"
                );
                Err(Stop::Stalled)
            }
        }
    }

    /// Writes without flushing: the caller flushes when the batch is written.
    async fn feed(&self, sink: &mut impl FrameSink, frame: Frame) -> Result<(), Stop> {
        self.within_stall_timeout(sink.feed(frame)).await
    }

    /// Sends `first` and what else of the session's output is ready now, up to [`BATCH`]
    /// messages, then flushes once: under load many answers go in one write, and a lone
    /// answer goes at once as before. A close the reader asks for ends the batch; a close
    /// in the output is returned, to be sent after the batch.
    async fn send_batch(
        &mut self,
        sink: &mut impl FrameSink,
        first: String,
    ) -> Result<Option<CloseFrame>, Stop> {
        self.feed(sink, Frame::text(first)).await?;
        let mut close = None;
        for _ in 1..BATCH {
            if self.controls.closing() {
                break;
            }
            match self.out_rx.try_recv() {
                Some(Outbound::Text(text)) => self.feed(sink, Frame::text(text)).await?,
                Some(Outbound::Close(reason)) => {
                    close = Some(close_frame(reason));
                    break;
                }
                None => break,
            }
        }
        self.within_stall_timeout(sink.flush()).await?;
        Ok(close)
    }

    /// Sends one message of the session, through the dialect if there is one; a close
    /// frame when the dialect ends the connection.
    async fn send_session_text(
        &self,
        sink: &mut impl FrameSink,
        text: String,
    ) -> Result<Option<CloseFrame>, Stop> {
        let Some(dialect) = &self.dialect else {
            return self.send(sink, Frame::text(text)).await.map(|()| None);
        };
        Box::pin(self.send_translated(sink, dialect, text)).await
    }

    /// Sends what the dialect makes of one message of the session.
    async fn send_translated(
        &self,
        sink: &mut impl FrameSink,
        dialect: &SharedDialect,
        text: String,
    ) -> Result<Option<CloseFrame>, Stop> {
        let translated = dialect.translate(|d| d.on_session(&text));
        for message in translated.to_session {
            // Never waits: the session may itself be waiting for this writer. Only answers
            // to the session's own requests go this way, and it gives up on those in time.
            if let Some(tx) = self.to_session.upgrade()
                && let Err(e) = tx.try_send(message)
            {
                tracing::warn!(error = %e, "the session's input is full; an answer to its request is lost");
            }
        }
        for frame in translated.to_client {
            self.send(sink, Frame::text(frame)).await?;
        }
        Ok(translated.close.map(|reason| CloseFrame {
            code: CloseCode::from(close_codes::NORMAL),
            reason: reason.into(),
        }))
    }

    /// Sends `first`, then the session's output until it ends, then closes the connection.
    async fn run(mut self, mut sink: impl FrameSink, first: Vec<String>) -> u16 {
        let mut result = Ok(());
        for text in first {
            result = self.send(&mut sink, Frame::text(text)).await;
            if result.is_err() {
                break;
            }
        }
        let (close, stalled) = match result {
            Ok(()) => self.pump(&mut sink).await,
            Err(stop) => stopped(stop),
        };
        self.controls.writer_gone();
        // From here on the reader waits at most `close_timeout` for the client, or not at
        // all for a client that stopped reading: it will not answer a close either.
        self.closing.started.cancel();
        if stalled {
            self.closing.abandoned.cancel();
        }
        // 1006: closed without a close frame of ours (the connection broke).
        let code = close.as_ref().map_or(1006, |f| u16::from(f.code));
        if let Some(frame) = close {
            // Fails harmlessly when the client closed first (tungstenite has replied
            // already). A client that does not read may never take the frame, hence the
            // bound.
            let _ = Box::pin(tokio::time::timeout(self.stall_timeout, async {
                let _ = sink.send(Frame::Close(Some(frame))).await;
                let _ = sink.flush().await;
            }))
            .await;
        }
        code
    }

    /// Writes until the output ends or the connection must close: the close frame to send
    /// (none when the connection broke), and whether the client stopped reading.
    async fn pump(&mut self, sink: &mut impl FrameSink) -> (Option<CloseFrame>, bool) {
        loop {
            // A close requested by the reader wins over queued output: the connection is
            // unusable.
            let sent = tokio::select! {
                biased;
                command = self.controls.next() => match command {
                    Control::Close { frame, abandon } => return (Some(frame), abandon),
                    Control::Ping => self.send(sink, Frame::Ping(Default::default())).await.map(|()| None),
                    Control::Send(text) => self.send(sink, Frame::text(text)).await.map(|()| None),
                },
                item = self.out_rx.recv() => match item {
                    Some(Outbound::Text(text)) if self.dialect.is_none() => self.send_batch(sink, text).await,
                    Some(Outbound::Text(text)) => self.send_session_text(sink, text).await,
                    Some(Outbound::Close(reason)) => return (Some(close_frame(reason)), false),
                    None => return (Some(normal_close()), false),
                },
            };
            match sent {
                Ok(None) => {}
                Ok(Some(frame)) => return (Some(frame), false),
                Err(stop) => return stopped(stop),
            }
        }
    }
}

/// The close frame and stall flag for a writer that had to stop.
fn stopped(stop: Stop) -> (Option<CloseFrame>, bool) {
    match stop {
        Stop::Broken => (None, false),
        Stop::Stalled => (Some(not_reading()), true),
    }
}

/// The close frame of a connection that ended normally.
fn normal_close() -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(close_codes::NORMAL),
        reason: "".into(),
    }
}

/// The close frame for a client that stopped reading.
fn not_reading() -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(close_codes::POLICY_VIOLATION),
        reason: "client not reading".into(),
    }
}

fn close_frame(reason: CloseReason) -> CloseFrame {
    let (code, text) = match reason {
        CloseReason::ShuttingDown => (close_codes::GOING_AWAY, "server shutting down"),
        CloseReason::InitTimeout => (
            close_codes::POLICY_VIOLATION,
            "initialize not received in time",
        ),
        CloseReason::Idle => (close_codes::NORMAL, "idle timeout"),
        CloseReason::Replaced => (
            close_codes::NORMAL,
            "MCP session reconnected on another connection",
        ),
        CloseReason::Deleted => (close_codes::NORMAL, "session deleted"),
        other => {
            tracing::warn!(?other, "unknown close reason");
            (close_codes::NORMAL, "")
        }
    };
    CloseFrame {
        code: CloseCode::from(code),
        reason: text.into(),
    }
}
