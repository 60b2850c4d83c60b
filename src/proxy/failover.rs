//! Forwarding with failover: pick a key, try it, and retry on the next key while nothing has
//! reached the client (connect error, timeout before headers, 429, 5xx, 401/402/403; see
//! `cooldown.rs` for what becomes of the key). The final answer's status, body and useful
//! headers go back to the client; exactly one usage record is written whatever happens.
//!
//! When the upstream refused every key tried (or every key that could serve is disabled) the
//! member gets catgate's 502 `upstream_key_rejected`, never the upstream's 401, which SDKs
//! would present as the member's own bad token. With mixed failures the last answer that was
//! not a refusal goes back, as it would without key health.

use std::sync::Arc;
use std::time::Instant;

use http::Response;

use super::attempt::{attempt, Attempt, Outbound};
use super::cooldown::{judge, Verdict};
use super::key_health;
use super::response::respond;
use crate::body::ResponseBody;
use crate::error::ProxyError;
use crate::metering::recorder::Recorder;
use crate::metering::settle::{Finished, Observed};
use crate::state::App;
use crate::upload::RequestBody;
use crate::upstream::pool::PoolKey;
use crate::upstream::ProviderSet;

/// Sends `out` for `user_id`, failing over across keys; always writes one usage record once
/// an upstream was tried.
pub async fn send(
    app: &App,
    user_id: i64,
    out: Outbound,
) -> Result<Response<ResponseBody>, ProxyError> {
    let started = Instant::now();
    let created_at = std::time::SystemTime::now();
    let eligible = ProviderSet::serving(out.route, out.inspected.model.as_deref());
    let upstream = &app.config.upstream;
    // Built before the first attempt so that a client leaving while catgate waits for the
    // upstream (hyper then drops this future) still leaves its audit row.
    let mut in_flight = InFlight {
        recorder: &app.recorder,
        started,
        record: Some(Finished {
            request_id: out.request_id.clone(),
            user_id,
            key_id: None,
            route: out.route,
            path: out.path.clone(),
            request_model: out.inspected.model.clone(),
            request_body: out.body.clone(),
            stream: out.inspected.stream,
            status: 0,
            attempts: 0,
            latency_ms: 0,
            created_at,
            observed: Observed::Nothing,
        }),
    };
    let mut tried: Vec<i64> = Vec::with_capacity(upstream.max_attempts as usize);
    // The last answer that was not a refusal of the key: what the client gets.
    let mut last: Option<(Attempt, Arc<PoolKey>)> = None;
    let mut failed: Option<&'static str> = None;
    while tried.len() < upstream.max_attempts as usize {
        let Some(key) = app.keys.next_for(eligible, &tried) else {
            break;
        };
        // The previous attempt failed and another key is tried: a failover.
        if let Some(reason) = failed.take() {
            app.metrics.failover(reason);
        }
        tried.push(key.id);
        if let Some(r) = in_flight.record.as_mut() {
            r.key_id = Some(key.id);
            r.attempts = tried.len() as u32;
        }
        let sent = Instant::now();
        let attempt = attempt(app, &key, &out).await;
        if let Attempt::Answer(_) = &attempt {
            app.metrics.upstream_first_byte(out.route, sent.elapsed());
        }
        let verdict = judge(upstream, out.route, &attempt);
        if verdict != Verdict::Deliver {
            log_failover(&key, &attempt, &verdict, &out.request_id);
            failed = Some(match verdict {
                Verdict::Reject(_) => "key_rejected",
                _ => failover_reason(&attempt),
            });
        }
        match verdict {
            Verdict::Deliver => {
                app.keys.mark_ok(&key);
                last = Some((attempt, key));
                break;
            }
            Verdict::Cool(rest, why) => {
                app.keys.cool_down(&key, rest, why);
                last = Some((attempt, key));
            }
            Verdict::Reject(reason) => key_health::reject(app, &key, reason).await,
        }
    }
    let Some(mut finished) = in_flight.record.take() else {
        return Err(ProxyError::NoUpstreamKey);
    };
    let Some((attempt, key)) = last else {
        // Still one record (api.md): with the last key tried (none when every key that could
        // serve is disabled), status 502 when keys were refused, else 503 (no key at all).
        let error = match tried.is_empty() && !app.keys.has_key_for(eligible) {
            true => ProxyError::NoUpstreamKey,
            false => ProxyError::UpstreamKeyRejected,
        };
        finished.status = error.status().as_u16();
        finished.latency_ms = started.elapsed().as_millis() as u64;
        finished.request_body = RequestBody::default();
        app.recorder.record_durable(finished).await;
        return Err(error);
    };
    // With mixed failures that may be an earlier key than the last one tried.
    finished.key_id = Some(key.id);
    match attempt {
        Attempt::Failed(e) => {
            finished.status = match e {
                ProxyError::UpstreamTimeout => 504,
                _ => 502,
            };
            finished.latency_ms = started.elapsed().as_millis() as u64;
            finished.request_body = RequestBody::default();
            // Like every answer, catgate's own error goes out once its row is durable.
            app.recorder.record_durable(finished).await;
            Err(e)
        }
        Attempt::Answer(resp) => Ok(respond(app, resp, finished, &out, started, &key)),
    }
}

/// The one line a failed attempt that is answered leaves (attempts without an answer log in
/// `attempt.rs`, where the cause is known). Never the secret: id and name only.
fn log_failover(key: &PoolKey, attempt: &Attempt, verdict: &Verdict, request_id: &str) {
    let Attempt::Answer(answer) = attempt else {
        return;
    };
    let status = answer.parts.status.as_u16();
    match verdict {
        Verdict::Reject(reason) => {
            tracing::warn!(key_id = key.id, key_name = %key.name, status, %request_id,
                %reason, "upstream refused the key; disabled until a probe succeeds");
        }
        Verdict::Cool(rest, _) => {
            tracing::info!(key_id = key.id, key_name = %key.name, status, %request_id,
                rest_secs = rest.as_secs_f64(), "upstream answered an error; key cooling");
        }
        Verdict::Deliver => {}
    }
}

/// Why a key's attempt sent the request on to another key, as a metrics label.
fn failover_reason(failed: &Attempt) -> &'static str {
    match failed {
        Attempt::Failed(ProxyError::UpstreamTimeout) => "timeout",
        Attempt::Failed(_) => "connect",
        Attempt::Answer(r) => match r.parts.status.as_u16() {
            429 => "rate_limited",
            401..=403 => "key_rejected",
            500..=599 => "server_error",
            _ => "other",
        },
    }
}

/// The record of a request still waiting for its upstream answer. Dropped with the record
/// inside (the client went away; hyper cancels the handler), it writes a zero-cost row with
/// status 499, nginx's "client closed request" (`attempts` says whether an upstream saw it).
struct InFlight<'a> {
    recorder: &'a Recorder,
    started: Instant,
    record: Option<Finished>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // Also before the first attempt: the request passed auth and limits, so it has its one
        // record (api.md), and that record is what settles its budget reservation.
        if let Some(mut record) = self.record.take() {
            record.status = 499;
            record.latency_ms = self.started.elapsed().as_millis() as u64;
            record.request_body = RequestBody::default();
            self.recorder.record(record);
        }
    }
}
