//! The key pool: an atomically swapped snapshot of the live keys, round-robin selection with
//! one counter per set of providers that can serve a request, and per-key health that
//! survives reloads. What a key's provider accepts is `upstream`'s business.
//!
//! Health has two halves. *Disabled* is the store's (persisted, shared by replicas, loaded on
//! every reload) but is also set here at once when an upstream refuses a key, so concurrent
//! requests stop using it before the write lands. *Cooling* lives only here, per replica.
//!
//! Selection takes no lock: one atomic increment and one snapshot load per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};

use crate::store::keys::{Disabled, Key};
use crate::upstream::mask::Secret;
use crate::upstream::{Provider, ProviderSet};

/// Health shared by all snapshots of one key id.
#[derive(Debug, Default)]
pub struct KeyHealth {
    /// Milliseconds since the pool's epoch until which the key rests; 0 = available.
    cooldown_until_ms: AtomicU64,
    /// Why it rests: [`Cooling::code`].
    cooldown_cause: AtomicU16,
    /// Out of rotation: the stored state as of the last reload, or a rejection just seen.
    disabled: AtomicBool,
    /// When a probe last put the key back (ms since the pool's epoch; 0 = never), and the
    /// wait that came before that probe: a key refused again soon after (a spent quota still
    /// answers `GET /v1/models`) keeps doubling its wait instead of starting over.
    restored_at_ms: AtomicU64,
    restored_after_secs: AtomicU64,
}

/// Why a key cools down; shown as the key's `statusReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cooling {
    /// The upstream answered this status (429, 5xx).
    Status(u16),
    Unreachable,
    Timeout,
}

impl Cooling {
    fn code(self) -> u16 {
        match self {
            Cooling::Status(s) => s,
            Cooling::Unreachable => 1,
            Cooling::Timeout => 2,
        }
    }

    fn from_code(code: u16) -> Cooling {
        match code {
            1 => Cooling::Unreachable,
            2 => Cooling::Timeout,
            s => Cooling::Status(s),
        }
    }

    /// Human text for the admin API and logs.
    pub fn reason(self) -> String {
        match self {
            Cooling::Status(429) => "rate limited by the upstream (429)".into(),
            Cooling::Status(s) => format!("upstream error ({s})"),
            Cooling::Unreachable => "upstream unreachable".into(),
            Cooling::Timeout => "upstream timed out".into(),
        }
    }
}

#[derive(Debug)]
pub struct PoolKey {
    pub id: i64,
    pub name: String,
    pub provider: Provider,
    /// Normalized base URL (no trailing `/`, no `/v1`).
    pub base_url: String,
    /// The ready credential header (`authorization: Bearer …` or Azure's `api-key`), marked
    /// sensitive. Built once per reload; never logged.
    auth: (HeaderName, HeaderValue),
    /// For masking the secret wherever an upstream answer quotes it.
    secret: Arc<Secret>,
    /// The stored health as of the last reload (the probe task reads its schedule).
    pub stored: Option<Disabled>,
    health: Arc<KeyHealth>,
}

impl PoolKey {
    /// The credential header for upstream requests; only the request builder reads it.
    pub fn auth_header(&self) -> (HeaderName, HeaderValue) {
        self.auth.clone()
    }

    pub fn secret(&self) -> &Arc<Secret> {
        &self.secret
    }

    /// The provider's probe for this key (see [`crate::upstream::Provider::probe`]).
    pub fn probe(&self, settings: &crate::upstream::Settings<'_>) -> Option<http::Request<()>> {
        let uri = self.provider.probe_uri(&self.base_url, settings)?;
        Some(crate::upstream::probe_request(uri, self.auth_header()))
    }

    pub fn is_disabled(&self) -> bool {
        self.health.disabled.load(Ordering::Relaxed)
    }
}

pub struct KeyPool {
    keys: ArcSwap<Vec<Arc<PoolKey>>>,
    health: Mutex<HashMap<i64, Arc<KeyHealth>>>,
    /// One round-robin counter per [`ProviderSet`], indexed by [`ProviderSet::index`].
    rr: [AtomicUsize; ProviderSet::COUNT],
    epoch: Instant,
    default_base: String,
}

impl KeyPool {
    pub fn new(default_base: String) -> KeyPool {
        KeyPool {
            keys: ArcSwap::from_pointee(Vec::new()),
            health: Mutex::new(HashMap::new()),
            rr: std::array::from_fn(|_| AtomicUsize::new(0)),
            epoch: Instant::now(),
            default_base,
        }
    }

    /// Replaces the snapshot with `keys` (the live keys in id order); cooldowns carry over,
    /// whether a key is disabled is the store's word.
    pub fn replace(&self, keys: Vec<Key>) {
        let mut health = match self.health.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        let snapshot: Vec<Arc<PoolKey>> = keys
            .into_iter()
            .filter_map(|k| {
                let provider = Provider::from(k.api_type);
                let Some(auth) = provider.auth_header(&k.key) else {
                    tracing::warn!(key_id = k.id, key_name = %k.name,
                        "key holds characters not allowed in a header; it is not used");
                    return None;
                };
                let base_url = provider.base_url(&k.endpoint, &k.name, &self.default_base);
                let h = health.entry(k.id).or_default().clone();
                h.disabled.store(k.disabled.is_some(), Ordering::Relaxed);
                Some(Arc::new(PoolKey {
                    id: k.id,
                    name: k.name,
                    provider,
                    base_url,
                    auth,
                    secret: Arc::new(Secret::new(&k.key)),
                    stored: k.disabled,
                    health: h,
                }))
            })
            .collect();
        health.retain(|id, _| snapshot.iter().any(|k| k.id == *id));
        self.keys.store(Arc::new(snapshot));
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The next key for a request, skipping `tried` and disabled ones and preferring keys not
    /// cooling down. When every candidate is cooling down, the one that recovers first is
    /// returned.
    pub fn next_for(&self, eligible: ProviderSet, tried: &[i64]) -> Option<Arc<PoolKey>> {
        let snapshot = self.keys.load();
        let is_candidate = |k: &PoolKey| {
            eligible.contains(k.provider) && !tried.contains(&k.id) && !k.is_disabled()
        };
        let n = snapshot.iter().filter(|k| is_candidate(k)).count();
        if n == 0 {
            return None;
        }
        let counter = self.rr.get(eligible.index())?;
        let start = counter.fetch_add(1, Ordering::Relaxed) % n;
        let now = self.now_ms();
        // Candidates in rotation order: the start-th candidate first, wrapping around.
        let rotation = snapshot
            .iter()
            .filter(|k| is_candidate(k))
            .skip(start)
            .chain(snapshot.iter().filter(|k| is_candidate(k)).take(start));
        let mut soonest: Option<(&Arc<PoolKey>, u64)> = None;
        for k in rotation {
            let until = k.health.cooldown_until_ms.load(Ordering::Relaxed);
            if until <= now {
                return Some(k.clone());
            }
            if soonest.is_none_or(|(_, s)| until < s) {
                soonest = Some((k, until));
            }
        }
        soonest.map(|(k, _)| k.clone())
    }

    /// Rests `key` for `how_long` (never shortening a longer rest already set).
    pub fn cool_down(&self, key: &PoolKey, how_long: Duration, why: Cooling) {
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(how_long.as_millis()).unwrap_or(u64::MAX));
        let before = key
            .health
            .cooldown_until_ms
            .fetch_max(until, Ordering::Relaxed);
        if until > before {
            key.health
                .cooldown_cause
                .store(why.code(), Ordering::Relaxed);
        }
    }

    /// Takes `key` out of rotation in this process at once; the store write that makes it
    /// last (and reach other replicas) is the caller's.
    pub fn disable(&self, key: &PoolKey) {
        key.health.disabled.store(true, Ordering::Relaxed);
    }

    /// A probe put `key` back after a wait of `after_secs`.
    pub fn note_restored(&self, key: &PoolKey, after_secs: u64) {
        key.health
            .restored_at_ms
            .store(self.now_ms().max(1), Ordering::Relaxed);
        key.health
            .restored_after_secs
            .store(after_secs, Ordering::Relaxed);
    }

    /// If `key` is refused again within twice the wait that preceded its last restoring
    /// probe, that wait (the next one doubles it); else `None` (start the schedule over).
    pub fn relapsed_after(&self, key: &PoolKey) -> Option<u64> {
        let at = key.health.restored_at_ms.load(Ordering::Relaxed);
        let after = key.health.restored_after_secs.load(Ordering::Relaxed);
        let soon = after.saturating_mul(2).saturating_mul(1000);
        (at > 0 && self.now_ms().saturating_sub(at) < soon).then_some(after)
    }

    /// Ends any cooldown of key `id` (an admin enabled it).
    pub fn clear_cooldown(&self, id: i64) {
        if let Some(key) = self.keys.load().iter().find(|k| k.id == id) {
            key.health.cooldown_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Marks `key` healthy again after a success.
    pub fn mark_ok(&self, key: &PoolKey) {
        if key.health.cooldown_until_ms.load(Ordering::Relaxed) != 0 {
            key.health.cooldown_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Remaining cooldown of key `id` and why, if it is resting.
    pub fn cooling(&self, id: i64) -> Option<(Duration, Cooling)> {
        let snapshot = self.keys.load();
        let key = snapshot.iter().find(|k| k.id == id)?;
        self.cooling_of(key)
    }

    fn cooling_of(&self, key: &PoolKey) -> Option<(Duration, Cooling)> {
        let until = key.health.cooldown_until_ms.load(Ordering::Relaxed);
        let now = self.now_ms();
        let why = Cooling::from_code(key.health.cooldown_cause.load(Ordering::Relaxed));
        (until > now).then(|| (Duration::from_millis(until - now), why))
    }

    /// How many live keys are active, cooling and disabled (the `catgate_keys` gauge).
    pub fn status_counts(&self) -> [(&'static str, u64); 3] {
        let (mut active, mut cooling, mut disabled) = (0, 0, 0);
        for key in self.keys.load().iter() {
            if key.is_disabled() {
                disabled += 1;
            } else if self.cooling_of(key).is_some() {
                cooling += 1;
            } else {
                active += 1;
            }
        }
        [
            ("active", active),
            ("cooling", cooling),
            ("disabled", disabled),
        ]
    }

    /// The keys the upstream refused whose next probe is due at `now` (stored form).
    pub fn probes_due(&self, now: &str) -> Vec<Arc<PoolKey>> {
        self.keys
            .load()
            .iter()
            .filter(|k| {
                k.stored
                    .as_ref()
                    .and_then(|d| d.probe.as_ref())
                    .is_some_and(|p| p.at.as_str() <= now)
            })
            .cloned()
            .collect()
    }

    /// Whether some live key, disabled or not, belongs to one of `providers`.
    pub fn has_key_for(&self, providers: ProviderSet) -> bool {
        self.keys
            .load()
            .iter()
            .any(|k| providers.contains(k.provider))
    }

    pub fn is_empty(&self) -> bool {
        self.keys.load().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Route;
    use crate::store::keys::ApiType;

    fn key(id: i64, api: ApiType) -> Key {
        Key {
            id,
            key: format!("sk-{id}"),
            name: format!("k{id}"),
            api_type: api,
            endpoint: if api == ApiType::Azure {
                "res".into()
            } else {
                String::new()
            },
            created_at: String::new(),
            updated_at: String::new(),
            disabled: None,
        }
    }

    #[test]
    fn a_key_refused_soon_after_a_probe_restored_it_keeps_its_wait() {
        let pool = KeyPool::new("http://up".into());
        pool.replace(vec![key(1, ApiType::OpenAi), key(2, ApiType::OpenAi)]);
        let snapshot = pool.keys.load();
        let (k1, k2) = (&snapshot[0], &snapshot[1]);
        assert_eq!(pool.relapsed_after(k1), None, "never restored");
        pool.note_restored(k1, 240);
        assert_eq!(pool.relapsed_after(k1), Some(240), "refused again at once");
        assert_eq!(pool.relapsed_after(k2), None);
        // The note survives a reload, like cooldowns.
        pool.replace(vec![key(1, ApiType::OpenAi)]);
        assert_eq!(pool.relapsed_after(&pool.keys.load()[0]), Some(240));
    }

    #[test]
    fn round_robin_is_even_and_skips_cooling_keys() {
        let pool = KeyPool::new("http://up".into());
        let any = ProviderSet::serving(Route::ChatCompletions, Some("m"));
        let openai_only = ProviderSet::serving(Route::Models, None);
        pool.replace(vec![
            key(1, ApiType::OpenAi),
            key(2, ApiType::OpenAi),
            key(3, ApiType::Azure),
        ]);
        let ids: Vec<i64> = (0..6)
            .map(|_| pool.next_for(any, &[]).unwrap().id)
            .collect();
        assert_eq!(ids, [1, 2, 3, 1, 2, 3]);
        let only_openai: Vec<i64> = (0..4)
            .map(|_| pool.next_for(openai_only, &[]).unwrap().id)
            .collect();
        assert_eq!(only_openai, [1, 2, 1, 2]);
        let k2 = pool.next_for(openai_only, &[1]).unwrap();
        pool.cool_down(&k2, Duration::from_secs(60), Cooling::Status(429));
        assert_eq!(pool.cooling(2).map(|c| c.1), Some(Cooling::Status(429)));
        assert_eq!(
            pool.status_counts(),
            [("active", 2), ("cooling", 1), ("disabled", 0)]
        );
        for _ in 0..4 {
            assert_eq!(pool.next_for(openai_only, &[]).unwrap().id, 1);
        }
        // Everything else tried: the resting key is still better than nothing.
        assert_eq!(pool.next_for(openai_only, &[1]).unwrap().id, 2);
        // Cooldown survives a reload.
        pool.replace(vec![key(1, ApiType::OpenAi), key(2, ApiType::OpenAi)]);
        assert!(pool.cooling(2).is_some());
    }

    #[test]
    fn disabled_keys_leave_rotation_until_the_store_says_otherwise() {
        let pool = KeyPool::new("http://up".into());
        let any = ProviderSet::serving(Route::ChatCompletions, Some("m"));
        pool.replace(vec![key(1, ApiType::OpenAi), key(2, ApiType::OpenAi)]);
        let k1 = pool.next_for(any, &[]).unwrap();
        pool.disable(&k1);
        for _ in 0..3 {
            assert_eq!(pool.next_for(any, &[]).unwrap().id, 2);
        }
        assert!(pool.next_for(any, &[2]).is_none(), "never a disabled key");
        assert!(pool.has_key_for(any));
        assert_eq!(
            pool.status_counts(),
            [("active", 1), ("cooling", 0), ("disabled", 1)]
        );
        // Stored as disabled with a probe due: it stays out and is due for a probe.
        let mut stored = key(1, ApiType::OpenAi);
        stored.disabled = Some(Disabled {
            reason: "r".into(),
            at: "2026-01-01T00:00:00.000000Z".into(),
            probe: Some(crate::store::keys::Probe {
                at: "2026-01-01T00:01:00.000000Z".into(),
                interval_secs: 60,
            }),
        });
        pool.replace(vec![stored, key(2, ApiType::OpenAi)]);
        assert!(pool.next_for(any, &[2]).is_none());
        assert!(pool.probes_due("2026-01-01T00:00:59.999999Z").is_empty());
        assert_eq!(pool.probes_due("2026-01-01T00:01:00.000000Z")[0].id, 1);
        // The store says it is back.
        pool.replace(vec![key(1, ApiType::OpenAi), key(2, ApiType::OpenAi)]);
        assert_eq!(pool.next_for(any, &[2]).unwrap().id, 1);
    }
}
