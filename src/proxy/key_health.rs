//! Keys the upstream refused: disabled at once (in memory, then in the store, so it lasts
//! across restarts and reaches other replicas through the change marker), then probed with
//! the provider's cheap request after `key_probe_first`, doubling up to `key_probe_max`,
//! until one succeeds and the key is back in rotation. A key an admin disabled has no probe
//! schedule and is never probed.
//!
//! Every store write is guarded ([`HealthGuard`]): replicas probing the same key, a second
//! rejection, or an admin acting meanwhile cannot undo each other, so re-enabling twice is
//! harmless.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::state::App;
use crate::store::keys::{Disabled, HealthGuard, Probe};
use crate::timestamp;
use crate::upload::UpstreamBody;
use crate::upstream::pool::PoolKey;

/// How often the probe task looks for due probes (in memory: no database round trip).
const PROBE_TICK: Duration = Duration::from_millis(250);

/// Longest a probe may take; it is one small `GET`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Takes `key` out of rotation now and persists that with its first probe due. Waits for the
/// write (the admin API then shows it at once) in a task of its own, so a client leaving
/// meanwhile cannot cancel it.
pub(super) async fn reject(app: &App, key: &Arc<PoolKey>, reason: &'static str) {
    app.keys.disable(key);
    let upstream = &app.config.upstream;
    let first = match app.keys.relapsed_after(key) {
        Some(last) => next_wait(last, upstream.key_probe_first, upstream.key_probe_max),
        None => whole_secs(upstream.key_probe_first),
    };
    let now = OffsetDateTime::now_utc();
    let disabled = Disabled {
        reason: reason.to_string(),
        at: timestamp::format(now),
        probe: Some(Probe {
            at: timestamp::format(now + first),
            interval_secs: first.as_secs(),
        }),
    };
    let (app, id) = (app.clone(), key.id);
    let write = tokio::spawn(async move {
        let changed = app
            .store
            .set_key_health(id, HealthGuard::Enabled, Some(&disabled))
            .await;
        match changed {
            Ok(_) => reload(&app).await,
            Err(e) => {
                tracing::error!(key_id = id, error = %e, "cannot store that a key is disabled; it stays out of rotation in this process only");
            }
        }
    });
    let _ = write.await;
}

/// Starts the probe task (with the server, like `AppState::spawn_refresh`); it ends when the
/// app is dropped or the handle aborted.
pub fn spawn_probes(app: &App) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(app);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROBE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Keys probed here and when they may be probed again: a failed store write or reload
        // leaves the old schedule in the snapshot, which must not mean a probe every tick.
        let mut held: HashMap<i64, tokio::time::Instant> = HashMap::new();
        loop {
            tick.tick().await;
            let Some(app) = weak.upgrade() else { break };
            let now = tokio::time::Instant::now();
            held.retain(|_, until| *until > now);
            for key in app.keys.probes_due(&timestamp::now()) {
                if held.contains_key(&key.id) {
                    continue;
                }
                let next = probe(&app, &key).await;
                held.insert(key.id, tokio::time::Instant::now() + next);
            }
        }
    })
}

/// Probes one due key and records the result; returns the wait until its next probe.
async fn probe(app: &App, key: &Arc<PoolKey>) -> Duration {
    let upstream = &app.config.upstream;
    let last = key
        .stored
        .as_ref()
        .and_then(|d| d.probe.as_ref())
        .map_or(0, |p| p.interval_secs);
    let next = next_wait(last, upstream.key_probe_first, upstream.key_probe_max);
    let outcome = send_probe(app, key).await;
    let change = match outcome {
        Ok(()) => None,
        Err(_) => key.stored.clone().map(|mut d| {
            d.probe = Some(Probe {
                at: timestamp::format(OffsetDateTime::now_utc() + next),
                interval_secs: next.as_secs(),
            });
            d
        }),
    };
    let written = app
        .store
        .set_key_health(key.id, HealthGuard::Probed, change.as_ref())
        .await;
    match (&outcome, written) {
        (_, Err(e)) => {
            tracing::warn!(key_id = key.id, key_name = %key.name, error = %e, "cannot store a key probe's result");
            return next;
        }
        // Another replica or an admin got there first.
        (_, Ok(false)) => {}
        (Ok(()), Ok(true)) => {
            app.keys.note_restored(key, last);
            tracing::info!(key_id = key.id, key_name = %key.name, "probe succeeded; key back in rotation");
        }
        (Err(why), Ok(true)) => {
            tracing::info!(key_id = key.id, key_name = %key.name, outcome = %why, next_probe_secs = next.as_secs(), "probe failed; key stays disabled");
        }
    }
    reload(app).await;
    next
}

/// Sends the provider's probe with the key's credential; `Err` names the status or error kind.
async fn send_probe(app: &App, key: &PoolKey) -> Result<(), String> {
    let settings = crate::upstream::Settings::of(&app.config);
    let request = key
        .probe(&settings)
        .ok_or_else(|| "the key's endpoint forms no URL".to_string())?;
    let (parts, ()) = request.into_parts();
    let request = http::Request::from_parts(parts, UpstreamBody::Bytes(None));
    let limit = app.config.upstream.connect_timeout + PROBE_TIMEOUT;
    match tokio::time::timeout(limit, app.client.request(request)).await {
        Ok(Ok(resp)) if key_accepted(resp.status()) => Ok(()),
        Ok(Ok(resp)) => Err(resp.status().as_u16().to_string()),
        Ok(Err(_)) => Err("connect error".into()),
        Err(_) => Err("timeout".into()),
    }
}

/// Whether a probe's answer shows that the upstream took the key: a 2xx, or a 4xx that is not
/// about the credential. An upstream (or gateway, or test double) without the models route
/// answers 404 only after the key got past authentication, so the key must not stay out of
/// rotation for that; refusals (401, 402, 403, 407), 429 and 5xx say nothing good about it.
fn key_accepted(status: http::StatusCode) -> bool {
    status.is_success()
        || (status.is_client_error() && !matches!(status.as_u16(), 401 | 402 | 403 | 407 | 429))
}

/// Reloads the caches so this process sees the write (and the next schedule) now.
async fn reload(app: &App) {
    if let Err(e) = app.refresh(true).await {
        tracing::warn!(error = %e, "reload after a key health change failed");
    }
}

/// The wait after a failed probe that followed a wait of `last_secs`: double, within
/// `[first, max]` (max/min, not clamp: no panic whatever the config says).
fn next_wait(last_secs: u64, first: Duration, max: Duration) -> Duration {
    Duration::from_secs(last_secs.saturating_mul(2))
        .max(whole_secs(first))
        .min(whole_secs(max))
}

/// Schedules are stored in whole seconds; a sub-second setting (tests) rounds up.
fn whole_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_accepts_the_key_unless_the_answer_is_about_the_key_or_the_upstream_failed() {
        let accepted = |code: u16| key_accepted(http::StatusCode::from_u16(code).unwrap());
        for code in [200, 204, 400, 404, 405] {
            assert!(accepted(code), "{code}");
        }
        for code in [301, 401, 402, 403, 407, 429, 500, 502, 503] {
            assert!(!accepted(code), "{code}");
        }
    }

    #[test]
    fn probes_back_off_by_doubling_up_to_the_cap() {
        let (first, max) = (Duration::from_secs(60), Duration::from_secs(3600));
        let mut waits = vec![60];
        for _ in 0..7 {
            let last = *waits.last().unwrap();
            waits.push(next_wait(last, first, max).as_secs());
        }
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        // Sub-second settings (tests) round up to whole seconds; a stored 0 starts at `first`.
        let half = Duration::from_millis(500);
        assert_eq!(next_wait(0, half, half), Duration::from_secs(1));
        assert_eq!(next_wait(u64::MAX, first, max), max);
    }
}
