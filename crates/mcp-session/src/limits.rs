//! Per-principal limits: a token bucket of requests per second, and a cap on the tool calls
//! a principal has running at once across all its sessions. Over either limit a request is
//! refused at once with a -32001 error that says when to retry; other principals never wait
//! for it.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use mcp_protocol::ErrorObject;
use mcp_protocol::error_codes;

use crate::Principal;

/// How many requests per second a principal may send, with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// The sustained rate.
    pub per_second: NonZeroU32,
    /// How many requests may come at once after a quiet period.
    pub burst: NonZeroU32,
}

/// The limits of every principal, shared by all sessions.
pub(crate) struct Limits {
    rate: Option<(RateLimit, DefaultKeyedRateLimiter<Arc<str>>)>,
    /// Pings, at the same rate, in buckets of their own.
    pings: Option<DefaultKeyedRateLimiter<Arc<str>>>,
    /// `None`: calls are not limited, nor counted.
    max_calls: Option<usize>,
    calls: Counts,
    /// `None`: sessions are not limited per principal, nor counted.
    max_sessions: Option<usize>,
    sessions: Counts,
    /// `None`: connections are not limited per principal, nor counted.
    max_connections: Option<usize>,
    connections: Counts,
    checks: AtomicU64,
}

/// A running tool call, counted against its principal until dropped (when calls are
/// limited).
pub(crate) struct CallSlot(Option<(Counts, Arc<str>)>);

/// Running calls by principal.
type Counts = Arc<Mutex<HashMap<Arc<str>, usize>>>;

impl Drop for CallSlot {
    fn drop(&mut self) {
        let Some((calls, principal)) = &self.0 else {
            return;
        };
        let mut calls = calls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = calls.get_mut(principal) {
            *n -= 1;
            if *n == 0 {
                calls.remove(principal);
            }
        }
    }
}

impl Limits {
    pub(crate) fn new(
        rate: Option<RateLimit>,
        max_calls: Option<usize>,
        max_sessions: Option<usize>,
        max_connections: Option<usize>,
    ) -> Self {
        Self {
            rate: rate.map(|r| {
                let quota = Quota::per_second(r.per_second).allow_burst(r.burst);
                (r, RateLimiter::keyed(quota))
            }),
            pings: rate
                .map(|r| RateLimiter::keyed(Quota::per_second(r.per_second).allow_burst(r.burst))),
            max_calls: max_calls.map(|n| n.max(1)),
            calls: Arc::default(),
            max_sessions: max_sessions.map(|n| n.max(1)),
            sessions: Arc::default(),
            max_connections: max_connections.map(|n| n.max(1)),
            connections: Arc::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one request from `principal`'s bucket, or says when it may retry.
    pub(crate) fn check_rate(&self, principal: &Principal) -> Result<(), ErrorObject> {
        let Some((rate, limiter)) = &self.rate else {
            return Ok(());
        };
        // Forget principals quiet long enough to have a full bucket again, now and then.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter.check_key(principal.key()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            refuse(
                "rate",
                format!("too many requests: the limit is {} per second per principal (--rate-limit); retry in {} ms",
                    rate.per_second, wait.as_millis().max(1)),
                wait,
            )
        })
    }

    /// Takes one ping from `principal`'s ping bucket, or says when it may retry.
    pub(crate) fn check_ping(&self, principal: &Principal) -> Result<(), ErrorObject> {
        let (Some(limiter), Some((rate, _))) = (&self.pings, &self.rate) else {
            return Ok(());
        };
        if self.checks.load(Ordering::Relaxed) % 4096 == 4095 {
            limiter.retain_recent();
        }
        limiter.check_key(principal.key()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            refuse(
                "pings",
                format!("too many pings: the limit is {} per second per principal (--rate-limit), apart from requests; retry in {} ms",
                    rate.per_second, wait.as_millis().max(1)),
                wait,
            )
        })
    }

    /// Counts a tool call against `principal`, or refuses it when the principal already has
    /// the most calls running.
    pub(crate) fn begin_call(&self, principal: &Principal) -> Result<CallSlot, ErrorObject> {
        begin(&self.calls, self.max_calls, principal, |limit| {
            refuse(
                "calls_per_principal",
                format!(
                    "too many tool calls running: this principal has {limit} running, the limit (--max-calls-per-principal); retry when one finishes"
                ),
                Duration::from_secs(1),
            )
        })
    }

    /// Counts a session of `principal`, or refuses it when the principal already has the
    /// most sessions open.
    pub(crate) fn begin_session(&self, principal: &Principal) -> Result<CallSlot, ErrorObject> {
        begin(&self.sessions, self.max_sessions, principal, |limit| {
            refuse(
                "sessions_per_principal",
                format!(
                    "too many sessions: this principal has {limit} open, the limit (--max-sessions-per-principal); close one, or retry when one ends"
                ),
                Duration::from_secs(5),
            )
        })
    }

    /// Counts a connection that `principal` holds open (a WebSocket, or an HTTP request with
    /// its response), or refuses it when the principal already holds the most.
    pub(crate) fn begin_connection(&self, principal: &Principal) -> Result<CallSlot, ErrorObject> {
        begin(
            &self.connections,
            self.max_connections,
            principal,
            |limit| {
                refuse(
                    "connections_per_principal",
                    format!(
                        "too many connections: this principal holds {limit} open (WebSockets, and HTTP requests with their streams), the limit (--max-connections-per-principal); close one, or retry when one ends"
                    ),
                    Duration::from_secs(1),
                )
            },
        )
    }

    /// Counts a call that was admitted earlier (resumed after a restart), whatever the limit.
    pub(crate) fn count_call(&self, principal: &Principal) -> CallSlot {
        if self.max_calls.is_none() {
            return CallSlot(None);
        }
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        *calls.entry(Arc::clone(principal.key())).or_default() += 1;
        CallSlot(Some((Arc::clone(&self.calls), Arc::clone(principal.key()))))
    }
}

/// Counts one more of `principal`'s in `counts`, unless it has `max` (then `refused(max)`);
/// with no `max`, nothing is counted.
fn begin(
    counts: &Counts,
    max: Option<usize>,
    principal: &Principal,
    refused: impl FnOnce(usize) -> ErrorObject,
) -> Result<CallSlot, ErrorObject> {
    let Some(limit) = max else {
        return Ok(CallSlot(None));
    };
    let mut held = counts.lock().unwrap_or_else(PoisonError::into_inner);
    let count = held.entry(Arc::clone(principal.key())).or_default();
    if *count >= limit {
        return Err(refused(limit));
    }
    *count += 1;
    Ok(CallSlot(Some((
        Arc::clone(counts),
        Arc::clone(principal.key()),
    ))))
}

/// The -32001 error of a refused request: `data` names the limit and the retry hint.
pub(crate) fn refuse(limit: &str, message: String, retry_after: Duration) -> ErrorObject {
    ErrorObject::new(error_codes::LIMIT_EXCEEDED, message).with_data(serde_json::json!({
        "limit": limit,
        "retryAfterMs": u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX).max(1),
    }))
}
