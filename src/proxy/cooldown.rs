//! The cooldown policy: which upstream answers make catgate try another key, and how long the
//! key that gave them rests (the upstream's `retry-after` hint first, else the configured
//! rest for its kind of failure).

use std::time::Duration;

use http::HeaderMap;

use super::attempt::Attempt;
use crate::config::UpstreamConfig;
use crate::upstream::pool::PoolKey;

/// How long to rest the key before another request may use it, if this answer should be
/// retried on another key; `None` when the answer goes to the client as is.
pub(super) fn rest_after(
    upstream: &UpstreamConfig,
    key: &PoolKey,
    attempt: &Attempt,
) -> Option<Duration> {
    let (status, headers) = match attempt {
        Attempt::Answer(r) => (r.parts.status, &r.parts.headers),
        // No answer at all (connect error, timeout): as for a 5xx without a hint.
        Attempt::Failed(_) => return Some(upstream.cooldown_5xx),
    };
    let hinted = retry_after(headers);
    match status.as_u16() {
        429 => Some(hinted.unwrap_or(upstream.cooldown_429)),
        500..=599 => Some(hinted.unwrap_or(upstream.cooldown_5xx)),
        401 | 403 => {
            tracing::warn!(key_id = key.id, key_name = %key.name, status = status.as_u16(),
                "upstream rejected the key; taking it out of rotation");
            Some(upstream.cooldown_auth)
        }
        _ => None,
    }
}

/// `retry-after-ms`, else `retry-after` in seconds; capped at an hour.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let num = |name: &str| -> Option<f64> {
        headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok()
    };
    let secs = num("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| num("retry-after"))?;
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        h.insert("retry-after-ms", HeaderValue::from_static("nope"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    }
}
