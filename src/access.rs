//! The access log: exactly one info line per `/v1` request, target `catgate::access`.
//!
//! A request that reached the upstream stage has a usage record, and its line is written when
//! the record is settled (the recorder has every field then), so the line's `request_id` is
//! the record's id and the `x-catgate-request-id` header. A request answered without a record
//! (a bad token, a limit, a local answer) gets its line from the proxy with what is known.
//! Text that a client or upstream chose (the model) is logged quoted, so it cannot forge a
//! line; secrets never appear.

use crate::store::usage::UsageRecord;

/// The line of a request that has a usage record (`cost` is absent when unpriced).
pub fn settled(r: &UsageRecord) {
    tracing::info!(
        target: "catgate::access",
        request_id = %r.request_id,
        user_id = r.user_id,
        key_id = r.key_id,
        route = %r.route,
        model = ?r.model,
        status = r.status,
        attempts = r.attempts,
        latency_ms = r.latency_ms,
        prompt_tokens = r.prompt_tokens,
        completion_tokens = r.completion_tokens,
        total_tokens = r.total_tokens,
        cost = r.cost.as_ref().map(tracing::field::display),
    );
}

/// The line of a request answered without a usage record; `user_id` when the token was known.
pub fn unrecorded(request_id: &str, user_id: Option<i64>, route: &str, status: u16, ms: u64) {
    tracing::info!(
        target: "catgate::access",
        request_id = %request_id,
        user_id,
        route = %route,
        status,
        attempts = 0u32,
        latency_ms = ms,
    );
}
