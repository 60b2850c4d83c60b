//! Token → user, in memory, so no request waits on SQLite to authenticate.
//!
//! Tokens are bucketed by a randomly keyed hash (the bucket reveals nothing an attacker can
//! steer), and the candidate tokens in a bucket are compared in constant time.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use arc_swap::ArcSwap;
use subtle::ConstantTimeEq;

use crate::store::limits::Limits;
use crate::store::users::{User, ROOT_ID};

/// An authenticated caller, with the limits its requests are checked against (cached with
/// the token, so a member without limits costs no database round trip).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: i64,
    pub limits: Limits,
}

impl Caller {
    pub fn is_root(self) -> bool {
        self.user_id == ROOT_ID
    }
}

/// Token bytes and their owner, grouped by keyed hash.
type Buckets = HashMap<u64, Vec<(Box<[u8]>, Caller)>>;

struct Index {
    hasher: RandomState,
    buckets: Buckets,
    any_user: bool,
}

pub struct TokenIndex {
    index: ArcSwap<Index>,
}

impl Default for TokenIndex {
    fn default() -> Self {
        TokenIndex::new()
    }
}

impl TokenIndex {
    pub fn new() -> TokenIndex {
        TokenIndex {
            index: ArcSwap::from_pointee(Index {
                hasher: RandomState::new(),
                buckets: HashMap::new(),
                any_user: false,
            }),
        }
    }

    /// Rebuilds the index from all users (deleted ones are left out but count for `any_user`).
    pub fn replace(&self, users: &[User]) {
        let hasher = RandomState::new();
        let mut buckets = Buckets::new();
        for u in users.iter().filter(|u| !u.is_delete) {
            let caller = Caller {
                user_id: u.id,
                limits: u.limits,
            };
            buckets
                .entry(hasher.hash_one(u.token.as_bytes()))
                .or_default()
                .push((u.token.as_bytes().into(), caller));
        }
        self.index.store(Arc::new(Index {
            hasher,
            buckets,
            any_user: !users.is_empty(),
        }));
    }

    pub fn lookup(&self, token: &str) -> Option<Caller> {
        if token.is_empty() {
            return None;
        }
        let index = self.index.load();
        let bucket = index
            .buckets
            .get(&index.hasher.hash_one(token.as_bytes()))?;
        let mut found = None;
        for (candidate, caller) in bucket {
            if bool::from(candidate.as_ref().ct_eq(token.as_bytes())) {
                found = Some(*caller);
            }
        }
        found
    }

    /// False until root exists (before init every `/1` route but init answers 401).
    pub fn initialized(&self) -> bool {
        self.index.load().any_user
    }
}

/// The bearer token of a request: `Authorization: Bearer <t>`, else `api-key: <t>`.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?.trim();
        let (scheme, rest) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| rest.trim())
            .filter(|t| !t.is_empty());
    }
    headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, token: &str, deleted: bool) -> User {
        User {
            id,
            name: format!("u{id}"),
            token: token.into(),
            is_delete: deleted,
            created_at: String::new(),
            updated_at: String::new(),
            limits: Default::default(),
        }
    }

    #[test]
    fn lookup_live_tokens_only() {
        let idx = TokenIndex::new();
        assert!(!idx.initialized());
        idx.replace(&[user(1, "root-t", false), user(2, "gone", true)]);
        assert!(idx.initialized());
        assert_eq!(idx.lookup("root-t").map(|c| c.user_id), Some(1));
        assert!(idx.lookup("root-t").unwrap().is_root());
        assert_eq!(idx.lookup("gone"), None);
        assert_eq!(idx.lookup("root-"), None);
        assert_eq!(idx.lookup(""), None);
    }

    #[test]
    fn bearer_and_api_key_headers() {
        let mut h = http::HeaderMap::new();
        h.insert("api-key", "abc".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert("authorization", "Bearer xyz".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("xyz"));
        h.insert("authorization", "Basic xyz".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
    }
}
