//! The key pool: an atomically swapped snapshot of the live keys, round-robin selection with
//! one counter per set of providers that can serve a request, and per-key cooldowns that
//! survive reloads. What a key's provider accepts is `upstream`'s business.
//!
//! Selection takes no lock: one atomic increment and one snapshot load per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};

use crate::store::keys::Key;
use crate::upstream::mask::Secret;
use crate::upstream::{Provider, ProviderSet};

/// Health shared by all snapshots of one key id.
#[derive(Debug, Default)]
pub struct KeyHealth {
    /// Milliseconds since the pool's epoch until which the key rests; 0 = available.
    cooldown_until_ms: AtomicU64,
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

    /// Replaces the snapshot with `keys` (the live keys in id order); cooldowns carry over.
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
                Some(Arc::new(PoolKey {
                    id: k.id,
                    name: k.name,
                    provider,
                    base_url,
                    auth,
                    secret: Arc::new(Secret::new(&k.key)),
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

    /// The next key for a request, skipping `tried` ones and preferring keys not cooling down.
    /// When every candidate is cooling down, the one that recovers first is returned.
    pub fn next_for(&self, eligible: ProviderSet, tried: &[i64]) -> Option<Arc<PoolKey>> {
        let snapshot = self.keys.load();
        let is_candidate = |k: &PoolKey| eligible.contains(k.provider) && !tried.contains(&k.id);
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
    pub fn cool_down(&self, key: &PoolKey, how_long: Duration) {
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(how_long.as_millis()).unwrap_or(u64::MAX));
        key.health
            .cooldown_until_ms
            .fetch_max(until, Ordering::Relaxed);
    }

    /// Marks `key` healthy again after a success.
    pub fn mark_ok(&self, key: &PoolKey) {
        if key.health.cooldown_until_ms.load(Ordering::Relaxed) != 0 {
            key.health.cooldown_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Remaining cooldown of key `id`, if it is resting.
    pub fn cooldown_left(&self, id: i64) -> Option<Duration> {
        let snapshot = self.keys.load();
        let key = snapshot.iter().find(|k| k.id == id)?;
        let until = key.health.cooldown_until_ms.load(Ordering::Relaxed);
        let now = self.now_ms();
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// Whether some live key belongs to one of `providers`.
    pub fn has_key_for(&self, providers: ProviderSet) -> bool {
        self.keys
            .load()
            .iter()
            .any(|k| providers.contains(k.provider))
    }

    pub fn is_empty(&self) -> bool {
        self.keys.load().is_empty()
    }

    /// Live keys by status (active, cooling, disabled), for `/metrics`. Provisional: cooling =
    /// resting after a failure; nothing is disabled yet (key health replaces this).
    pub fn status_counts(&self) -> [(&'static str, u64); 3] {
        let snapshot = self.keys.load();
        let now = self.now_ms();
        let cooling = snapshot
            .iter()
            .filter(|k| k.health.cooldown_until_ms.load(Ordering::Relaxed) > now)
            .count() as u64;
        let active = snapshot.len() as u64 - cooling;
        [("active", active), ("cooling", cooling), ("disabled", 0)]
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
        }
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
        pool.cool_down(&k2, Duration::from_secs(60));
        assert!(pool.cooldown_left(2).is_some());
        for _ in 0..4 {
            assert_eq!(pool.next_for(openai_only, &[]).unwrap().id, 1);
        }
        // Everything else tried: the resting key is still better than nothing.
        assert_eq!(pool.next_for(openai_only, &[1]).unwrap().id, 2);
        // Cooldown survives a reload.
        pool.replace(vec![key(1, ApiType::OpenAi), key(2, ApiType::OpenAi)]);
        assert!(pool.cooldown_left(2).is_some());
    }
}
