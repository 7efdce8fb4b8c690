//! The cache of verified disco#info answers ([`CapsCache`]).
//!
//! It holds only answers that verified, keyed by (scheme, algorithm, hash), and is bounded:
//! the hashes come from anyone's presence.

use std::collections::HashMap;
use std::sync::Arc;

use xmpp_parsers::disco::DiscoInfoResult;

use super::input::IllFormed;
use super::key::{Advertised, CapsKey, DiscoAnswer};

/// How many announced hashes a [`CapsCache`] keeps by default: 256 devices' worth of the three a
/// pmn device announces (two ecaps2, one XEP-0115), which share one copy of their answer.
pub const DEFAULT_CACHE_CAPACITY: usize = 768;

/// What [`CapsCache::insert_verified`] did with an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It hashed to at least one announced key and was cached under those that matched.
    Verified,
    /// It hashed to none of them (a forged or buggy answer): not cached.
    Mismatch,
    /// It cannot be hashed: not cached.
    IllFormed(IllFormed),
}

/// Verified disco#info results by announced hash, shared by all devices announcing the same hash.
///
/// Bounded: at most `capacity` entries, the least recently used one evicted first, because the keys
/// are whatever hashes anyone's presence carries.
#[derive(Debug)]
pub struct CapsCache {
    capacity: usize,
    /// The hashes of one answer share it.
    entries: HashMap<CapsKey, (Arc<DiscoInfoResult>, u64)>,
    /// Monotonic use counter: an entry's stamp is its last use.
    clock: u64,
    evicted: u64,
}

impl Default for CapsCache {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CACHE_CAPACITY)
    }
}

impl CapsCache {
    /// A cache of at most `capacity` results (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        CapsCache {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            clock: 0,
            evicted: 0,
        }
    }

    /// The cached result for any of the announced hashes.
    pub fn get(&mut self, caps: &Advertised) -> Option<DiscoInfoResult> {
        self.clock += 1;
        let clock = self.clock;
        caps.keys.iter().find_map(|key| {
            self.entries.get_mut(key).map(|(info, used)| {
                *used = clock;
                DiscoInfoResult::clone(info)
            })
        })
    }

    /// Whether `key` is cached (without counting as a use).
    pub fn contains(&self, key: &CapsKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Verifies `answer` against every announced hash and caches it under those it matches.
    pub fn insert_verified(&mut self, caps: &Advertised, answer: &DiscoAnswer) -> Verdict {
        let mut matched = Vec::new();
        for key in &caps.keys {
            match key.verify(&answer.input) {
                Ok(true) => matched.push(key.clone()),
                Ok(false) => tracing::debug!(?key.scheme, algo = ?key.algo, "caps hash mismatch"),
                Err(e) => return Verdict::IllFormed(e),
            }
        }
        if matched.is_empty() {
            return Verdict::Mismatch;
        }
        let mut plain = answer.info.clone();
        // Answers to a caps query echo node='…#ver'; the cached content is node-independent.
        plain.node = None;
        self.insert(matched, Arc::new(plain));
        Verdict::Verified
    }

    /// Caches `info` under each of `keys`.
    pub(super) fn insert(&mut self, keys: Vec<CapsKey>, info: Arc<DiscoInfoResult>) {
        for key in keys {
            self.insert_one(key, info.clone());
        }
    }

    fn insert_one(&mut self, key: CapsKey, info: Arc<DiscoInfoResult>) {
        self.clock += 1;
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            // O(capacity) scan: fine for a few hundred entries, filled at presence rate.
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
                self.evicted += 1;
                tracing::debug!(
                    evicted = self.evicted,
                    "caps cache full: evicted the least recently used"
                );
            }
        }
        self.entries.insert(key, (info, self.clock));
    }

    /// Every answer with the hashes it is cached under, the most recently used first.
    pub(super) fn answers_by_use(&self) -> Vec<(Vec<CapsKey>, Arc<DiscoInfoResult>)> {
        let mut entries: Vec<_> = self.entries.iter().collect();
        entries.sort_by_key(|(_, (_, used))| std::cmp::Reverse(*used));
        let mut answers: Vec<(Vec<CapsKey>, Arc<DiscoInfoResult>)> = Vec::new();
        let mut index: HashMap<*const DiscoInfoResult, usize> = HashMap::new();
        for (key, (info, _)) in entries {
            match index.get(&Arc::as_ptr(info)) {
                Some(&i) => answers[i].0.push(key.clone()),
                None => {
                    index.insert(Arc::as_ptr(info), answers.len());
                    answers.push((vec![key.clone()], info.clone()));
                }
            }
        }
        answers
    }

    /// Number of cached hashes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The most entries kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many entries were evicted to make room since the cache was made.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}
