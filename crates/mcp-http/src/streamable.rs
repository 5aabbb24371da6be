//! Streamable HTTP's endpoints and its streams.
//!
//! A POST carries one JSON-RPC message (or a batch). Notifications and responses are handed
//! to the session and answered 202. Requests open a *stream*: their responses, and what the
//! session sends while they run (their progress, log messages, the server's own requests),
//! go back on that POST's response: plain `application/json` when the answer is all there
//! is, `text/event-stream` as soon as something comes before it. A GET opens the standalone
//! stream for what belongs to no request; DELETE ends the session.
//!
//! Each HTTP session is a session of the core, driven like a WebSocket connection's: its
//! input is fed by POSTs, and one task (the demultiplexer) reads its output and routes every
//! message to the stream it belongs to, by what the session says it answers (it is not read). What cannot be delivered (its stream was closed by
//! the client) waits, bounded, for the next GET stream, which is how a client that lost a
//! stream resumes (with `Last-Event-ID`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use mcp_protocol::{Message, ProgressToken, ProtocolVersion, RequestId, Response as RpcResponse};
use mcp_session::{
    Answered, Hub, Outbound, OutboundReceiver, Principal, Regarding, SessionId, SessionSlot,
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::post::{Post, Unroutable};
use crate::reply::{Body, KEEPALIVE, accepts, text};

/// The session header.
pub const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
/// The header of a client resuming an SSE stream.
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
/// The protocol version header, sent by clients after `initialize`.
const VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// How many events one stream buffers before the session waits for its client.
const STREAM_BUFFER: usize = 64;
/// How many messages wait for a GET stream when none is open; beyond, the oldest go.
const UNDELIVERED_CAP: usize = 1024;
/// How many bytes of messages wait for a GET stream at most; beyond, the oldest go.
const UNDELIVERED_BYTES: usize = 8 * 1024 * 1024;
/// How many events handed to streams are kept for a resume with `Last-Event-ID`.
const SENT_KEPT: usize = 256;
/// How many bytes of them at most (a message may be megabytes: the count alone is no bound).
const SENT_KEPT_BYTES: usize = 8 * 1024 * 1024;
/// What SSE clients are told to wait before reconnecting.
const RETRY_MS: u64 = 1000;

/// The HTTP sessions, by their `Mcp-Session-Id`.
pub struct HttpSessions {
    map: Mutex<HashMap<String, Arc<HttpSession>>>,
    /// Where sessions and their demultiplexers run: the server waits for it at shutdown.
    tracker: TaskTracker,
}

impl HttpSessions {
    /// No sessions yet; theirs will be spawned on `tracker`.
    pub fn new(tracker: TaskTracker) -> Self {
        Self {
            map: Mutex::default(),
            tracker,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<HttpSession>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, id: &str) -> Option<Arc<HttpSession>> {
        self.lock().get(id).cloned()
    }

    /// Whether session `id` lives here.
    pub fn contains(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// The ids of the sessions that live here.
    pub fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}

/// One HTTP session: the input of its core session, and where its output goes.
struct HttpSession {
    /// The principal it belongs to: to anyone else it does not exist; to the same name with
    /// other scopes (another token) it is refused.
    owner: Principal,
    /// `None` once the session was deleted.
    inbound: Mutex<Option<mcp_session::InboundSender>>,
    router: Mutex<Router>,
}

impl HttpSession {
    fn router(&self) -> MutexGuard<'_, Router> {
        self.router.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sender(&self) -> Option<mcp_session::InboundSender> {
        self.inbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// One SSE event, or the final JSON answer of a stream.
#[derive(Clone)]
struct Event {
    /// The stream it was meant for, and its number in the session: its SSE id is
    /// `{stream}-{n}`, so a `Last-Event-ID` names both.
    stream: u64,
    n: u64,
    /// Shared: the same text may wait to be replayed while it is sent.
    data: Arc<str>,
    /// The last response the stream was waiting for.
    completes: bool,
}

impl Event {
    /// The end of a stream whose requests were all cancelled: no answer comes.
    fn end() -> Self {
        Self {
            stream: 0,
            n: 0,
            data: Arc::from(""),
            completes: true,
        }
    }

    fn sse(&self) -> Bytes {
        Bytes::from(format!(
            "id: {}-{}\nevent: message\ndata: {}\n\n",
            self.stream, self.n, self.data
        ))
    }
}

/// Reads a `Last-Event-ID` made by [`Event::sse`].
fn parse_event_id(id: &str) -> Option<(u64, u64)> {
    let (stream, n) = id.trim().split_once('-')?;
    Some((stream.parse().ok()?, n.parse().ok()?))
}

/// An open stream: a POST's (`owed` responses to go) or the standalone GET one.
struct Stream {
    tx: mpsc::Sender<Event>,
    owed: usize,
}

/// Where each message of the session goes.
#[derive(Default)]
struct Router {
    next_stream: u64,
    next_event: u64,
    /// The streams waiting for an answer to each request id, oldest first: the oldest is the
    /// running request's, a newer one a duplicate's (which the session refuses).
    requests: HashMap<RequestId, VecDeque<u64>>,
    /// The stream each progress token's notifications go to.
    tokens: HashMap<ProgressToken, u64>,
    /// Open POST streams; the newest takes what belongs to no request.
    streams: BTreeMap<u64, Stream>,
    /// The standalone GET stream, by its number.
    standalone: Option<(u64, mpsc::Sender<Event>)>,
    /// Messages for a stream that is gone, waiting for the next GET stream.
    undelivered: VecDeque<Event>,
    /// Their bytes.
    undelivered_bytes: usize,
    /// The last events handed to streams, for a client that resumes one with
    /// `Last-Event-ID` (they may have been lost on the way).
    sent: VecDeque<Event>,
    /// Their bytes.
    sent_bytes: usize,
    /// How many waiting messages were dropped beyond the cap.
    dropped: u64,
}

/// Where the router sends one message.
enum Destination {
    Stream(u64, mpsc::Sender<Event>),
    Standalone(u64, mpsc::Sender<Event>),
    Nowhere,
}

impl Router {
    /// Opens a stream for requests `ids`.
    fn open(
        &mut self,
        ids: &[RequestId],
        tokens: &[ProgressToken],
    ) -> (u64, mpsc::Receiver<Event>) {
        let stream = self.new_stream();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        for id in ids {
            self.requests
                .entry(id.clone())
                .or_default()
                .push_back(stream);
        }
        for token in tokens {
            self.tokens.insert(token.clone(), stream);
        }
        self.streams.insert(
            stream,
            Stream {
                tx,
                owed: ids.len(),
            },
        );
        (stream, rx)
    }

    /// The stream waiting for an answer: the oldest for its id (the running request's), or
    /// the newest for the refusal of a duplicate.
    fn take_waiting(&mut self, answered: &Answered) -> Option<u64> {
        let waiting = self.requests.get_mut(&answered.id)?;
        let stream = match answered.duplicate {
            true => waiting.pop_back(),
            false => waiting.pop_front(),
        };
        if waiting.is_empty() {
            self.requests.remove(&answered.id);
        }
        stream
    }

    fn new_stream(&mut self) -> u64 {
        self.next_stream += 1;
        self.next_stream
    }

    /// Decides where `text`, which the session says is `regarding` that, goes and makes its
    /// event.
    fn route(&mut self, text: String, regarding: &Regarding) -> (Destination, Event) {
        self.next_event += 1;
        let n = self.next_event;
        let answers = match regarding {
            Regarding::Answer(answered) => std::slice::from_ref(answered),
            Regarding::Batch(answered) => answered.as_slice(),
            _ => &[],
        };
        let mut target = None;
        let mut completes = false;
        for answered in answers {
            if let Some(stream) = self.take_waiting(answered) {
                target = Some(stream);
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.owed = s.owed.saturating_sub(1);
                    completes = s.owed == 0;
                }
            }
        }
        match regarding {
            Regarding::Progress(token) => target = self.tokens.get(token).copied(),
            // What belongs to no request goes to the newest POST stream.
            Regarding::Other => target = self.streams.keys().next_back().copied(),
            // An answer or progress whose stream is gone does not go to another request's,
            // nor does what was restored after a restart: it waits for the GET stream.
            _ => {}
        }
        let destination = match target.and_then(|t| self.streams.get(&t).map(|s| (t, s))) {
            Some((t, s)) => Destination::Stream(t, s.tx.clone()),
            None => match &self.standalone {
                Some((t, tx)) => Destination::Standalone(*t, tx.clone()),
                None => Destination::Nowhere,
            },
        };
        let stream = match &destination {
            Destination::Stream(t, _) | Destination::Standalone(t, _) => *t,
            // Meant for the stream of its request, gone; 0 when it had none.
            Destination::Nowhere => target.unwrap_or(0),
        };
        let event = Event {
            stream,
            n,
            data: Arc::from(text),
            completes,
        };
        if completes && let Destination::Stream(t, _) = &destination {
            // Its last answer goes out now: the stream ends after it.
            let t = *t;
            self.streams.remove(&t);
            self.tokens.retain(|_, s| *s != t);
        }
        (destination, event)
    }

    /// Remembers an event handed to its stream, for a resume with `Last-Event-ID`.
    fn remember(&mut self, event: Event) {
        self.sent_bytes += event.data.len();
        self.sent.push_back(event);
        while self.sent.len() > SENT_KEPT || self.sent_bytes > SENT_KEPT_BYTES {
            let Some(old) = self.sent.pop_front() else {
                break;
            };
            self.sent_bytes -= old.data.len();
        }
    }

    /// What a new GET stream gets first: the events handed to the stream `Last-Event-ID`
    /// names after it (they may not have arrived), then what found no stream.
    fn replay(&mut self, last_event: Option<(u64, u64)>) -> Vec<Event> {
        let mut events: Vec<Event> = match last_event {
            Some((stream, n)) => self
                .sent
                .iter()
                .filter(|e| e.stream == stream && e.n > n)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        events.extend(self.undelivered.drain(..));
        self.undelivered_bytes = 0;
        events
    }

    /// Keeps an event for the next GET stream, dropping the oldest beyond the cap.
    fn keep(&mut self, event: Event) {
        self.undelivered_bytes += event.data.len();
        self.undelivered.push_back(event);
        while self.undelivered.len() > UNDELIVERED_CAP || self.undelivered_bytes > UNDELIVERED_BYTES
        {
            let Some(old) = self.undelivered.pop_front() else {
                break;
            };
            self.undelivered_bytes -= old.data.len();
            self.dropped += 1;
            // Said at the 1st, 2nd, 4th, 8th... drop: a client that never opens a GET stream
            // must not flood the log.
            if self.dropped.is_power_of_two() {
                tracing::warn!(
                    cap = UNDELIVERED_CAP,
                    cap_bytes = UNDELIVERED_BYTES,
                    dropped = self.dropped,
                    "no stream takes this session's messages; dropping the oldest"
                );
            }
        }
    }

    /// The client cancelled request `id`: it gets no answer. When nothing else is owed on its
    /// stream, the stream ends; returns it, to be told so.
    fn cancelled(&mut self, id: &RequestId) -> Option<mpsc::Sender<Event>> {
        let stream = self.take_waiting(&Answered::to(id.clone()))?;
        let s = self.streams.get_mut(&stream)?;
        s.owed = s.owed.saturating_sub(1);
        if s.owed > 0 {
            return None;
        }
        let tx = self.streams.remove(&stream).map(|s| s.tx);
        self.tokens.retain(|_, t| *t != stream);
        tx
    }

    /// Forgets a stream the client went away from: what was owed to it is kept for a GET.
    fn gone(&mut self, stream: u64) {
        self.streams.remove(&stream);
        self.tokens.retain(|_, s| *s != stream);
        // Responses still owed will find no stream and wait for a GET.
        self.requests.retain(|_, waiting| {
            waiting.retain(|s| *s != stream);
            !waiting.is_empty()
        });
    }
}

/// Reads the session's output and routes each message to its stream, until the session ends.
async fn demultiplex(
    sessions: Arc<HttpSessions>,
    id: IdSlot,
    session: Arc<HttpSession>,
    mut output: OutboundReceiver,
    stall: Duration,
) {
    while let Some((item, regarding)) = output.recv_with_regarding().await {
        let Outbound::Text(text) = item else {
            // The session closes (idle, shutdown, replaced): its streams end with it.
            break;
        };
        let (destination, event) = session.router().route(text, &regarding);
        let (stream, tx, standalone) = match destination {
            Destination::Stream(stream, tx) => (stream, tx, false),
            Destination::Standalone(stream, tx) => (stream, tx, true),
            Destination::Nowhere => {
                session.router().keep(event);
                continue;
            }
        };
        // A client that does not read its stream loses the stream, not the messages.
        match tx.send_timeout(event.clone(), stall).await {
            Ok(()) => session.router().remember(event),
            Err(_) => {
                let mut router = session.router();
                if standalone {
                    if router
                        .standalone
                        .as_ref()
                        .is_some_and(|(s, _)| *s == stream)
                    {
                        router.standalone = None;
                    }
                } else {
                    router.gone(stream);
                }
                router.keep(event);
            }
        }
    }
    let mut router = session.router();
    router.streams.clear();
    router.standalone = None;
    drop(router);
    if let Some(id) = id.lock().unwrap_or_else(PoisonError::into_inner).take() {
        let mut map = sessions.lock();
        // A resumed session's id may already name the HTTP session that took it over.
        if map.get(&id).is_some_and(|s| Arc::ptr_eq(s, &session)) {
            map.remove(&id);
        }
        tracing::debug!(session = %id, "HTTP session ended");
    }
}

/// A plain-text refusal.
fn refuse(status: StatusCode, message: &str) -> Response<Body> {
    text(status, format!("{message}\n"))
}

/// Why a request was refused before it reached its session.
struct Refusal(StatusCode, String);

impl Refusal {
    fn response(self) -> Response<Body> {
        refuse(self.0, &self.1)
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks `Mcp-Protocol-Version` when given: it must be a revision the server speaks.
fn check_version(headers: &HeaderMap) -> Result<(), Refusal> {
    match header(headers, &VERSION_HEADER) {
        None => Ok(()),
        Some(v) if ProtocolVersion::parse(v).is_some() => Ok(()),
        Some(v) => Err(Refusal(
            StatusCode::BAD_REQUEST,
            format!(
                "unsupported MCP-Protocol-Version `{}`: this server speaks {}",
                mcp_protocol::shorten(v, 40),
                ProtocolVersion::SUPPORTED.map(|v| v.as_str()).join(", ")
            ),
        )),
    }
}

/// The session a request names: 400 without the header, 404 for an unknown one.
fn session_of(
    headers: &HeaderMap,
    sessions: &HttpSessions,
    principal: &Principal,
) -> Result<Arc<HttpSession>, Refusal> {
    let Some(id) = header(headers, &SESSION_HEADER) else {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "missing Mcp-Session-Id: send initialize first, then the id it answers with".to_owned(),
        ));
    };
    let session = sessions
        .get(id)
        .filter(|s| s.owner.name() == principal.name())
        .ok_or_else(|| {
            Refusal(
                StatusCode::NOT_FOUND,
                "unknown or expired MCP session: initialize a new one".to_owned(),
            )
        })?;
    // The session acts with the scopes it was started with: a token with others (narrower
    // ones included) may not use it, or it would keep scopes its caller no longer has.
    if session.owner != *principal {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "this token's scopes are not those the MCP session was started with: initialize a new session with it".to_owned(),
        ));
    }
    Ok(session)
}

/// `POST /mcp` with a JSON-RPC body (already read, and scanned once for what routing needs).
pub async fn post(
    headers: &HeaderMap,
    body: Post,
    server: &Hub,
    sessions: &Arc<HttpSessions>,
    stall: Duration,
    principal: &Principal,
) -> Response<Body> {
    let accept = header(headers, &ACCEPT).unwrap_or("*/*");
    if !(accepts(accept, "application/json") && accepts(accept, "text/event-stream")) {
        return refuse(
            StatusCode::NOT_ACCEPTABLE,
            "accept both application/json and text/event-stream",
        );
    }
    let messages = body.messages();
    let initialize = messages.len() == 1
        && messages[0].method.as_deref() == Some(mcp_protocol::methods::INITIALIZE);
    let modern_header = header(headers, &VERSION_HEADER)
        .and_then(ProtocolVersion::parse)
        .is_some_and(ProtocolVersion::is_modern);
    if header(headers, &SESSION_HEADER).is_none() && (!initialize || modern_header) {
        // No session, and none being started (a legacy client's `initialize` comes without
        // the version header): a modern request, served on its own.
        let tracker = &sessions.tracker;
        return crate::stateless::post(headers, body.text(), server, tracker, principal).await;
    }
    if let Err(refusal) = check_version(headers) {
        return refusal.response();
    }
    let existing = match header(headers, &SESSION_HEADER) {
        Some(_) => match session_of(headers, sessions, principal) {
            Ok(session) => Some(session),
            Err(refusal) => return refusal.response(),
        },
        None => None,
    };
    if let Some(Err(Unroutable(error))) = messages.iter().map(|m| &m.id).find(|id| id.is_err()) {
        // Its answer could not find its way back: refused here, as the session would.
        let refusal = Message::Response(RpcResponse::error(None, error.clone()));
        return crate::reply::json(StatusCode::OK, refusal.to_text());
    }
    let ids: Vec<RequestId> = messages
        .iter()
        .filter_map(|m| m.id.as_ref().ok().cloned().flatten())
        .collect();
    let tokens: Vec<ProgressToken> = messages
        .iter()
        .filter_map(|m| m.progress_token.clone())
        .collect();
    let (session, new_id) = match existing {
        Some(session) => (session, None),
        None if initialize && ids.len() == 1 => {
            // Starting sessions is rate-limited like any request.
            if let Err(limited) = server.check_rate(principal) {
                return limited_response(&limited);
            }
            let place = match server.reserve_session_for(principal) {
                Ok(place) => place,
                Err(mcp_session::SessionRefusal::Full) => {
                    return refuse(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many sessions; retry later",
                    );
                }
                Err(mcp_session::SessionRefusal::Principal(limited)) => {
                    return limited_response(&limited);
                }
            };
            let Ok(id) = SessionId::random() else {
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no randomness for a session id; retry later",
                );
            };
            let (session, slot, id) =
                open(place, id.as_str().to_owned(), sessions, stall, principal);
            (session, Some((slot, id)))
        }
        None => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "missing Mcp-Session-Id: send initialize first, then the id it answers with",
            );
        }
    };
    let Some(inbound) = session.sender() else {
        return refuse(StatusCode::NOT_FOUND, "the MCP session was deleted");
    };
    // Cancelled requests get no answer: their streams end once nothing else is owed.
    for message in messages {
        if message.method.as_deref() == Some(mcp_protocol::methods::CANCELLED)
            && let Some(id) = &message.cancels
            && let Some(stream) = session.router().cancelled(id)
        {
            let _ = stream.try_send(Event::end());
        }
    }
    if ids.is_empty() {
        // Notifications and responses: nothing to answer.
        return match inbound.send(body.into_text()).await {
            Ok(()) => {
                let mut response = text(StatusCode::ACCEPTED, "");
                response.headers_mut().remove(CONTENT_TYPE);
                response
            }
            Err(_) => refuse(StatusCode::NOT_FOUND, "the MCP session has ended"),
        };
    }
    // A request id still running is the session's to refuse; its refusal comes back here.
    let (stream, mut rx) = session.router().open(&ids, &tokens);
    if inbound.send(body.into_text()).await.is_err() {
        session.router().gone(stream);
        return refuse(StatusCode::NOT_FOUND, "the MCP session has ended");
    }
    drop(inbound);
    let Some(first) = rx.recv().await else {
        session.router().gone(stream);
        return refuse(
            StatusCode::NOT_FOUND,
            "the MCP session ended before answering",
        );
    };
    let answer: Value = match &new_id {
        Some(_) => serde_json::from_str(&first.data).unwrap_or(Value::Null),
        None => Value::Null,
    };
    let mut response = if first.data.is_empty() {
        // Cancelled: the stream ends without an answer.
        sse(stream, Vec::new(), None)
    } else if first.completes {
        crate::reply::json(StatusCode::OK, first.data.to_string())
    } else {
        sse(stream, vec![first], Some(rx))
    };
    if let Some((id_slot, session_id)) = new_id {
        // The session's id: the resumable session's own when the client asked for one.
        let value = answer;
        let id = match value.get("mcpSessionId").and_then(Value::as_str) {
            Some(durable) => durable.to_owned(),
            None => session_id,
        };
        let answered = value.get("result").is_some();
        if answered {
            *id_slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(id.clone());
            sessions.lock().insert(id.clone(), Arc::clone(&session));
            if let Ok(v) = HeaderValue::from_str(&id) {
                response.headers_mut().insert(SESSION_HEADER, v);
            }
        } else {
            // A failed initialize leaves no session behind.
            session
                .inbound
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
        }
    }
    response
}

/// An SSE response for stream `stream`: a priming event (an id, no data, and `retry`),
/// then `first` and the rest of the stream, with a comment every [`KEEPALIVE`] while
/// nothing comes.
fn sse(stream: u64, first: Vec<Event>, rx: Option<mpsc::Receiver<Event>>) -> Response<Body> {
    let priming = Bytes::from(format!("id: {stream}-0\nretry: {RETRY_MS}\ndata: \n\n"));
    let mut head: VecDeque<Bytes> = VecDeque::from([priming]);
    head.extend(first.iter().map(Event::sse));
    let ends_with_first = first.last().is_some_and(|f| f.completes);
    let state = (head, rx.filter(|_| !ends_with_first));
    let stream = futures_util::stream::unfold(state, |(mut head, mut rx)| async move {
        if let Some(bytes) = head.pop_front() {
            return Some((Ok::<_, Infallible>(Frame::data(bytes)), (head, rx)));
        }
        let receiver = rx.as_mut()?;
        let bytes = match tokio::time::timeout(KEEPALIVE, receiver.recv()).await {
            Ok(Some(event)) => {
                if event.completes {
                    rx = None;
                }
                if event.data.is_empty() {
                    // The stream's requests were cancelled: it ends here.
                    return None;
                }
                event.sse()
            }
            Ok(None) => return None,
            Err(_) => Bytes::from_static(b": keep-alive\n\n"),
        };
        Some((Ok(Frame::data(bytes)), (head, rx)))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The slot an HTTP session's id goes in once its `initialize` succeeded.
type IdSlot = Arc<Mutex<Option<String>>>;

/// A new HTTP session under `id`: its core session runs on its own task, and so does its
/// demultiplexer. Returns it with its id slot and its id.
fn open(
    place: SessionSlot,
    id: String,
    sessions: &Arc<HttpSessions>,
    stall: Duration,
    owner: &Principal,
) -> (Arc<HttpSession>, IdSlot, String) {
    let (mut core, output) = place.open();
    core.set_principal(owner.clone());
    let (in_tx, in_rx) = mcp_session::inbound::channel(16);
    let session = Arc::new(HttpSession {
        owner: owner.clone(),
        inbound: Mutex::new(Some(in_tx)),
        router: Mutex::new(Router::default()),
    });
    let span = tracing::info_span!("http_session");
    sessions
        .tracker
        .spawn(core.run(in_rx).instrument(span.clone()));
    let slot = Arc::new(Mutex::new(None));
    sessions.tracker.spawn(
        demultiplex(
            Arc::clone(sessions),
            Arc::clone(&slot),
            Arc::clone(&session),
            output,
            stall,
        )
        .instrument(span),
    );
    (session, slot, id)
}

/// `GET /mcp` with `Accept: text/event-stream`: the session's standalone stream. It first
/// gets what waited for a stream (after a client lost one; `Last-Event-ID` is accepted for
/// that), then whatever the session sends that belongs to no request. A newer GET replaces
/// it.
pub fn get(headers: &HeaderMap, sessions: &HttpSessions, principal: &Principal) -> Response<Body> {
    if let Err(refusal) = check_version(headers) {
        return refusal.response();
    }
    let session = match session_of(headers, sessions, principal) {
        Ok(session) => session,
        Err(refusal) => return refusal.response(),
    };
    let last_event = header(headers, &LAST_EVENT_ID).and_then(parse_event_id);
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let mut router = session.router();
    let stream = router.new_stream();
    // What the client may have missed goes first, then the live messages. A replayed
    // answer does not end this stream, as it ended its own.
    let first: Vec<Event> = router
        .replay(last_event)
        .into_iter()
        .map(|e| Event {
            completes: false,
            ..e
        })
        .collect();
    router.standalone = Some((stream, tx));
    drop(router);
    // The stream ends when the token that opened it expires: the client opens another with
    // a fresh one.
    if let Some(at) = principal.expires_at() {
        let left = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        if let Some(at) = tokio::time::Instant::now().checked_add(left) {
            let session = Arc::downgrade(&session);
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                if let Some(session) = session.upgrade() {
                    let mut router = session.router();
                    if router
                        .standalone
                        .as_ref()
                        .is_some_and(|(s, _)| *s == stream)
                    {
                        router.standalone = None;
                    }
                }
            });
        }
    }
    sse(stream, first, Some(rx))
}

/// `DELETE /mcp`: ends the session; its running calls are cancelled.
pub fn delete(
    headers: &HeaderMap,
    sessions: &HttpSessions,
    principal: &Principal,
) -> Response<Body> {
    if let Err(refusal) = check_version(headers) {
        return refusal.response();
    }
    let Some(id) = header(headers, &SESSION_HEADER) else {
        return refuse(StatusCode::BAD_REQUEST, "missing Mcp-Session-Id");
    };
    let session = {
        let mut map = sessions.lock();
        match map.get(id) {
            Some(s) if s.owner.name() == principal.name() => map.remove(id),
            _ => None,
        }
    };
    let Some(session) = session else {
        return refuse(StatusCode::NOT_FOUND, "unknown or expired MCP session");
    };
    // Without input the session ends, cancelling what runs (a resumable one waits for a
    // resume first, as after a dropped connection).
    session
        .inbound
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    tracing::info!(session = %id, "HTTP session deleted by the client");
    let mut response = text(StatusCode::NO_CONTENT, "");
    response.headers_mut().remove(CONTENT_TYPE);
    response
}

/// 429 for a request over one of its principal's limits (`error`, -32001 with
/// `data.retryAfterMs`), with `Retry-After`.
pub fn limited_response(error: &mcp_protocol::ErrorObject) -> Response<Body> {
    let retry_ms = error
        .data
        .as_ref()
        .and_then(|d| d.get("retryAfterMs"))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1_000);
    let mut response = text(
        StatusCode::TOO_MANY_REQUESTS,
        format!("{}\n", error.message),
    );
    if let Ok(value) = hyper::header::HeaderValue::from_str(&retry_ms.div_ceil(1_000).to_string()) {
        response
            .headers_mut()
            .insert(hyper::header::RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64, bytes: usize) -> Event {
        Event {
            stream: 1,
            n,
            data: Arc::from("x".repeat(bytes)),
            completes: false,
        }
    }

    /// Issue 19, item 2: the buffers of a session without a GET stream were counted in
    /// messages only, so 1,024 messages of 4 MiB each could wait.
    #[test]
    fn what_waits_for_a_stream_is_bounded_in_bytes_too() {
        let mut router = Router::default();
        for n in 0..20 {
            router.keep(event(n, 1024 * 1024));
            router.remember(event(n, 1024 * 1024));
        }
        assert!(router.undelivered_bytes <= UNDELIVERED_BYTES);
        assert!(router.sent_bytes <= SENT_KEPT_BYTES);
        assert_eq!(router.undelivered.len(), UNDELIVERED_BYTES / (1024 * 1024));
        // The newest are kept.
        assert_eq!(router.undelivered.back().map(|e| e.n), Some(19));
        assert_eq!(router.dropped, 20 - router.undelivered.len() as u64);
        let replayed = router.replay(None);
        assert_eq!(replayed.len(), UNDELIVERED_BYTES / (1024 * 1024));
        assert_eq!(router.undelivered_bytes, 0);
        // Small messages are still bounded by count.
        for n in 0..2_000 {
            router.keep(event(n, 10));
        }
        assert_eq!(router.undelivered.len(), UNDELIVERED_CAP);
    }
}
