//! The health policy of one attempt: whether its answer goes to the client, or catgate tries
//! another key, and what becomes of the key that gave it. A key the upstream refuses
//! (401/403/402, or a 429 for an exhausted quota) is disabled until a probe finds it working
//! again; a rate limit, a 5xx or no answer at all makes it cool for the upstream's
//! `retry-after` hint, else the configured rest for that kind of failure.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

use super::attempt::{Attempt, Upstream};
use crate::config::UpstreamConfig;
use crate::error::ProxyError;
use crate::route::Route;
use crate::upstream::pool::Cooling;

/// The longest rest a `retry-after` hint can impose: an absurd hint (a date next year) must
/// not take a key out for longer than an hour.
pub const MAX_HINT: Duration = Duration::from_secs(3600);

/// What an attempt's outcome means for the request and the key.
#[derive(Debug, PartialEq)]
pub(super) enum Verdict {
    /// The answer (or error) goes to the client.
    Deliver,
    /// Try another key; this one rests this long.
    Cool(Duration, Cooling),
    /// The upstream refused the key itself: disable it (the reason says why), try another.
    Reject(&'static str),
}

/// What one attempt's outcome means for its key. `route` matters for refusals: a 401/403 on a
/// pass-through route (admin or project endpoints a normal key may lack a scope for) and a 403
/// `model_not_found` (this project may not use that model) are about the request, not the key,
/// so they go to the client and the key stays in rotation — otherwise one member's request
/// could take every key out for the whole team.
pub(super) fn judge(upstream: &UpstreamConfig, route: Route, attempt: &Attempt) -> Verdict {
    let r = match attempt {
        Attempt::Answer(r) => r,
        Attempt::Failed(ProxyError::UpstreamTimeout) => {
            return Verdict::Cool(upstream.cooldown_5xx, Cooling::Timeout)
        }
        Attempt::Failed(ProxyError::UpstreamUnreachable(_)) => {
            return Verdict::Cool(upstream.cooldown_5xx, Cooling::Unreachable)
        }
        // catgate's own trouble (an unreadable spooled body): another key would not help.
        Attempt::Failed(_) => return Verdict::Deliver,
    };
    let status = r.parts.status.as_u16();
    let hinted = retry_after(&r.parts.headers, SystemTime::now());
    match status {
        401 | 403 if route == Route::Other => Verdict::Deliver,
        403 if error_code(r) == Some("model_not_found") => Verdict::Deliver,
        401 => Verdict::Reject("the upstream rejected the key (401)"),
        403 => Verdict::Reject("the upstream refused the key (403)"),
        402 => Verdict::Reject("the upstream wants payment for the key (402)"),
        429 if out_of_quota(r) => {
            Verdict::Reject("the key's upstream quota is used up (insufficient_quota)")
        }
        429 => Verdict::Cool(
            hinted.unwrap_or(upstream.cooldown_429),
            Cooling::Status(status),
        ),
        500..=599 => Verdict::Cool(
            hinted.unwrap_or(upstream.cooldown_5xx),
            Cooling::Status(status),
        ),
        _ => Verdict::Deliver,
    }
}

/// Whether a 429's body (read ahead by `attempt`) says the quota is gone rather than a rate
/// limit: OpenAI's `error.code` or `error.type` `insufficient_quota`.
fn out_of_quota(r: &Upstream) -> bool {
    let Some(body) = error_body(r) else {
        return false;
    };
    ["code", "type"]
        .iter()
        .any(|field| body["error"][field] == "insufficient_quota")
}

/// The start of an error answer (read ahead by `attempt` for 403 and 429) as JSON.
fn error_body(r: &Upstream) -> Option<serde_json::Value> {
    let data = r.first.as_ref().and_then(|f| f.data_ref())?;
    serde_json::from_slice(data).ok()
}

/// OpenAI's `error.code` of an error answer read ahead.
fn error_code(r: &Upstream) -> Option<&'static str> {
    let body = error_body(r)?;
    match body["error"]["code"].as_str()? {
        "model_not_found" => Some("model_not_found"),
        _ => None,
    }
}

/// `retry-after-ms`, else `retry-after` in seconds or as an HTTP date (RFC 7231: IMF-fixdate,
/// and the obsolete forms `httpdate` also reads); capped at [`MAX_HINT`]. A date already past
/// is no hint.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| -> Option<&str> { Some(headers.get(name)?.to_str().ok()?.trim()) };
    let secs = |t: &str| t.parse::<f64>().ok();
    let wait = match text("retry-after-ms").and_then(secs) {
        Some(ms) => ms / 1000.0,
        None => {
            let value = text("retry-after")?;
            match secs(value) {
                Some(s) => s,
                None => {
                    let at = httpdate::parse_http_date(value).ok()?;
                    at.duration_since(now).ok()?.as_secs_f64()
                }
            }
        }
    };
    (wait.is_finite() && wait > 0.0)
        .then(|| Duration::from_secs_f64(wait.min(MAX_HINT.as_secs_f64())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_887_151); // Tue, 15 Nov 1994 08:12:31 GMT
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Tue, 15 Nov 1994 08:12:38 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Tue, 15 Nov 1994 08:12:30 GMT"),
        );
        assert_eq!(retry_after(&h, now), None, "a past date is no hint");
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 15 Nov 1995 08:12:31 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(MAX_HINT), "capped");
        h.insert("retry-after", HeaderValue::from_static("99999999"));
        assert_eq!(retry_after(&h, now), Some(MAX_HINT), "capped");
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
        h.insert("retry-after", HeaderValue::from_static("7"));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(1500)));
        h.insert("retry-after-ms", HeaderValue::from_static("nope"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
    }
}
