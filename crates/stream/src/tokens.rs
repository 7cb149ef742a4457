//! The token cache: a cached [`Request`] stands behind each URL the Exec,
//! Attach and PortForward RPCs answer with, until the client comes for it
//! once or it expires.
//!
//! Tokens are 144 random bits from the OS (getrandom), URL-safe base64.
//! The cache is bounded: expired entries go first; when every entry is
//! live and the cache is full, [`TokenCache::insert`] refuses rather than
//! grow. Time is tokio's clock, so tests can pause and advance it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::time::Instant;

use crate::backend::Request;

/// How long a token lives by default (containerd's value).
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// How many live tokens the cache holds by default.
pub const DEFAULT_MAX_TOKENS: usize = 4096;
/// Random bytes per token (144 bits: 24 base64 characters).
const TOKEN_BYTES: usize = 18;

/// Why no token was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Every slot holds a live token.
    #[error("the streaming token cache is full ({0} live requests)")]
    Full(usize),
    /// The OS gave no random bytes.
    #[error("no random bytes for a token: {0}")]
    Random(String),
}

struct Entry {
    request: Request,
    expires: Instant,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Tokens in insertion order, hence expiry order (one TTL for all);
    /// may name tokens already taken.
    order: VecDeque<String>,
}

/// Single-use tokens for cached requests, each valid for a TTL.
pub struct TokenCache {
    ttl: Duration,
    max: usize,
    inner: Mutex<Inner>,
}

impl TokenCache {
    /// A cache of at most `max` live tokens (at least 1), each valid `ttl`.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max: max.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Caches `request` and answers its new token.
    pub fn insert(&self, request: Request) -> Result<String, TokenError> {
        let token = new_token()?;
        let now = Instant::now();
        let mut inner = self.lock();
        inner.evict_expired(now);
        if inner.entries.len() >= self.max {
            return Err(TokenError::Full(inner.entries.len()));
        }
        if inner.order.len() >= self.max.saturating_mul(2) {
            let Inner { entries, order } = &mut *inner;
            order.retain(|t| entries.contains_key(t));
        }
        let expires = now + self.ttl;
        inner
            .entries
            .insert(token.clone(), Entry { request, expires });
        inner.order.push_back(token.clone());
        Ok(token)
    }

    /// The request behind `token`, once: `None` for a token unknown,
    /// already taken or expired.
    pub fn take(&self, token: &str) -> Option<Request> {
        let now = Instant::now();
        let mut inner = self.lock();
        let entry = inner.entries.remove(token)?;
        (entry.expires > now).then_some(entry.request)
    }

    /// How many tokens are cached (expired ones not yet evicted included).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no token is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn evict_expired(&mut self, now: Instant) {
        while let Some(front) = self.order.front() {
            match self.entries.get(front) {
                Some(entry) if entry.expires > now => break,
                Some(_) => {
                    self.entries.remove(front);
                }
                None => {}
            }
            self.order.pop_front();
        }
    }
}

fn new_token() -> Result<String, TokenError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::PortForwardRequest;

    fn request(n: u16) -> Request {
        Request::PortForward(PortForwardRequest {
            pod_sandbox_id: format!("pod-{n}"),
            ports: vec![n],
        })
    }

    #[test]
    fn tokens_are_url_safe_and_distinct() {
        let cache = TokenCache::new(DEFAULT_TTL, 100);
        let a = cache.insert(request(1)).expect("a");
        let b = cache.insert(request(2)).expect("b");
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "{a}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_taken_once() {
        let cache = TokenCache::new(DEFAULT_TTL, 100);
        let token = cache.insert(request(1)).expect("token");
        assert_eq!(cache.take("nope"), None);
        assert_eq!(cache.take(&token), Some(request(1)));
        assert_eq!(cache.take(&token), None);
        assert!(cache.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_expires_after_the_ttl() {
        let cache = TokenCache::new(Duration::from_secs(60), 100);
        let early = cache.insert(request(1)).expect("early");
        let late = cache.insert(request(2)).expect("late");
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(cache.take(&early), Some(request(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(cache.take(&late), None, "expired at exactly the TTL");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cache_refuses_until_entries_expire() {
        let cache = TokenCache::new(Duration::from_secs(60), 2);
        let first = cache.insert(request(1)).expect("1");
        tokio::time::advance(Duration::from_secs(30)).await;
        cache.insert(request(2)).expect("2");
        assert_eq!(cache.insert(request(3)), Err(TokenError::Full(2)));
        tokio::time::advance(Duration::from_secs(30)).await;
        // The first expired: its slot is free, the second still lives.
        let third = cache.insert(request(3)).expect("3");
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.take(&first), None);
        assert_eq!(cache.take(&third), Some(request(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn taken_tokens_free_their_slot_and_order_stays_bounded() {
        let cache = TokenCache::new(DEFAULT_TTL, 4);
        for n in 0..100 {
            let token = cache.insert(request(n)).expect("room");
            assert_eq!(cache.take(&token), Some(request(n)));
        }
        assert!(cache.lock().order.len() <= 8);
    }
}
