//! The engine the mock pretends to be, when `cost_model` is set: a fixed number of slots that
//! compute requests, a bounded queue in front of them, and a prefix cache, so a request's time
//! depends on the engine's load and on whether its prompt's prefix was seen before — the two
//! things a load- or cache-aware router exploits. Times are exact (no noise), so tests and
//! benchmarks are deterministic.
//!
//! Without a cost model every request starts at once; the running count is still kept, so the
//! metrics page shows the mock's real state either way.

use std::collections::hash_map::DefaultHasher;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::state::lock;

/// Opt-in cost model (`cost_model` in the settings; `null` = off).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostModel {
    /// Requests computed at once (llama.cpp `--parallel`); the rest wait in the queue.
    pub slots: u32,
    /// Requests that may wait for a slot; one more is refused with 503, as a full engine does.
    pub max_queue: u32,
    /// Prefill time per prompt token not served from the prefix cache, in microseconds.
    pub prefill_us_per_token: u64,
    /// Decode time per output token, in microseconds (the gap between content chunks).
    pub decode_us_per_token: u64,
    /// Tokens the prefix cache holds, over whole prompts, least recently used evicted first;
    /// 0 = no cache. With `cache: slot`, what each slot keeps.
    pub cache_tokens: u64,
    /// Where prompts are cached: `engine` (one cache shared by every request, as vLLM's and
    /// SGLang's paged KV) or `slot` (each slot keeps the prompt it last computed, and a request
    /// gets an idle slot as llama.cpp gives it: the one keeping the longest common prefix if
    /// that is more than half the kept prompt, else the least recently used).
    pub cache: CacheScope,
}

/// Where the mock engine keeps computed prompts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheScope {
    #[default]
    Engine,
    Slot,
}

impl Default for CostModel {
    fn default() -> Self {
        Self {
            slots: 2,
            max_queue: 256,
            prefill_us_per_token: 1_000,
            decode_us_per_token: 10_000,
            cache_tokens: 16_384,
            cache: CacheScope::Engine,
        }
    }
}

/// Bounds that keep the model's own memory and work small whatever the settings say.
const MAX_SLOTS: u32 = 4_096;
const MAX_QUEUE: u32 = 100_000;
const MAX_CACHE_TOKENS: u64 = 16 * 1024 * 1024;
/// Prompts kept at once, however short: bounds the cost of one lookup.
const MAX_CACHE_ENTRIES: usize = 1_024;
/// Longest time one token may cost (so `tokens × time` cannot overflow a sleep).
const MAX_US_PER_TOKEN: u64 = 10_000_000;

impl CostModel {
    pub fn validate(&self) -> Result<(), String> {
        if self.slots == 0 || self.slots > MAX_SLOTS {
            return Err(format!("cost_model.slots must be within 1..{MAX_SLOTS}"));
        }
        if self.max_queue > MAX_QUEUE {
            return Err(format!("cost_model.max_queue must be at most {MAX_QUEUE}"));
        }
        if self.cache_tokens > MAX_CACHE_TOKENS {
            return Err(format!(
                "cost_model.cache_tokens must be at most {MAX_CACHE_TOKENS}"
            ));
        }
        if self.prefill_us_per_token > MAX_US_PER_TOKEN
            || self.decode_us_per_token > MAX_US_PER_TOKEN
        {
            return Err(format!(
                "cost_model times per token must be at most {MAX_US_PER_TOKEN} µs"
            ));
        }
        Ok(())
    }

    /// Prefill time for `uncached` prompt tokens.
    pub fn prefill(&self, uncached: u64) -> Duration {
        Duration::from_micros(self.prefill_us_per_token.saturating_mul(uncached))
    }

    pub fn decode_per_token(&self) -> Duration {
        Duration::from_micros(self.decode_us_per_token)
    }
}

/// A prompt as the engine sees it: one token per whitespace word of each message's text, each
/// message opened by a token naming its role (as a chat template renders it), so prompts that
/// share words but not turns do not share a prefix.
pub fn render_prompt(messages: &[serde_json::Value]) -> Vec<u64> {
    let mut tokens = Vec::new();
    for m in messages {
        let role = m.get("role").and_then(|r| r.as_str()).unwrap_or("");
        tokens.push(token_id(&["\u{0}role", role]));
        let mut words = |text: &str| {
            tokens.extend(text.split_whitespace().map(|w| token_id(&[w])));
        };
        match m.get("content") {
            Some(serde_json::Value::String(text)) => words(text),
            Some(serde_json::Value::Array(parts)) => {
                for text in parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
                {
                    words(text)
                }
            }
            _ => {}
        }
    }
    tokens
}

fn token_id(parts: &[&str]) -> u64 {
    // SipHash with fixed keys: the same word is the same token in every run.
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// Prompts the engine computed recently, least recently used last. A lookup's answer is the
/// longest common prefix with any of them, as a radix-tree cache (vLLM, SGLang) or a slot's
/// kept context (llama.cpp) would serve.
#[derive(Debug, Default)]
pub struct PrefixCache {
    entries: VecDeque<Vec<u64>>,
    tokens: u64,
}

impl PrefixCache {
    /// Tokens of `prompt` already held; the entry that held them becomes the most recent.
    pub fn lookup(&mut self, prompt: &[u64]) -> u64 {
        let best = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, common_prefix(e, prompt)))
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)));
        match best {
            Some((i, n)) if n > 0 => {
                if let Some(entry) = self.entries.remove(i) {
                    self.entries.push_front(entry);
                }
                n as u64
            }
            _ => 0,
        }
    }

    /// Keep `prompt` (its first `capacity` tokens), evicting the least recently used prompts
    /// until everything fits. Prompts it extends are dropped: it holds them already.
    pub fn insert(&mut self, prompt: &[u64], capacity: u64) {
        let keep = usize::try_from(capacity)
            .unwrap_or(usize::MAX)
            .min(prompt.len());
        let prompt = &prompt[..keep];
        if prompt.is_empty() {
            // Nothing to keep (the capacity may still have shrunk).
        } else if let Some(i) = self.entries.iter().position(|e| e.starts_with(prompt)) {
            if let Some(entry) = self.entries.remove(i) {
                self.entries.push_front(entry);
            }
        } else {
            self.entries.retain(|e| !prompt.starts_with(e));
            self.entries.push_front(prompt.to_vec());
            self.tokens = self.entries.iter().map(|e| e.len() as u64).sum();
        }
        while self.tokens > capacity || self.entries.len() > MAX_CACHE_ENTRIES {
            match self.entries.pop_back() {
                Some(old) => self.tokens -= old.len() as u64,
                None => break,
            }
        }
    }

    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.tokens = 0;
    }
}

fn common_prefix(a: &[u64], b: &[u64]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The engine's live state, shared by every worker of one mock server.
#[derive(Default)]
pub struct Engine {
    running: Arc<AtomicU64>,
    waiting: Arc<AtomicU64>,
    /// The slot semaphore and the slot count it was made for (rebuilt when `slots` changes;
    /// requests holding the old one finish on it).
    slots: Mutex<Option<(u32, Arc<Semaphore>)>>,
    pub cache: Mutex<PrefixCache>,
    /// `cache: slot`: what each slot keeps (sized on first use to the slot count).
    slot_caches: Arc<Mutex<SlotCaches>>,
}

/// llama.cpp-style per-slot caches: each slot keeps the prompt it last computed.
#[derive(Debug, Default)]
pub struct SlotCaches {
    slots: Vec<KeptSlot>,
    clock: u64,
}

#[derive(Debug, Default, Clone)]
struct KeptSlot {
    prompt: Vec<u64>,
    busy: bool,
    /// When it was last released (0: never).
    last_used: u64,
}

/// llama-server's default `--slot-prompt-similarity`.
const SLOT_PROMPT_SIMILARITY: f64 = 0.5;

impl SlotCaches {
    /// Take the idle slot llama-server would give `prompt` (sized to `slots` first); its index
    /// and the tokens of `prompt` it keeps. `None` with no idle slot.
    pub fn take(&mut self, slots: usize, prompt: &[u64], keep: u64) -> Option<(usize, u64)> {
        if self.slots.len() != slots {
            self.slots.resize_with(slots, KeptSlot::default);
        }
        let idle = || self.slots.iter().enumerate().filter(|(_, s)| !s.busy);
        let mut best: Option<(usize, usize)> = None;
        for (i, slot) in idle() {
            let common = common_prefix(&slot.prompt, prompt);
            let similar =
                common > 0 && common as f64 > SLOT_PROMPT_SIMILARITY * slot.prompt.len() as f64;
            if similar && best.is_none_or(|(_, b)| common > b) {
                best = Some((i, common));
            }
        }
        let chosen = match best {
            Some((i, _)) => i,
            None => {
                // Least recently used; of equals the last, as llama.cpp's `<=` picks.
                let mut lru: Option<(usize, u64)> = None;
                for (i, slot) in idle() {
                    if lru.is_none_or(|(_, t)| slot.last_used <= t) {
                        lru = Some((i, slot.last_used));
                    }
                }
                lru?.0
            }
        };
        let slot = &mut self.slots[chosen];
        let cached = common_prefix(&slot.prompt, prompt) as u64;
        let keep = usize::try_from(keep)
            .unwrap_or(usize::MAX)
            .min(prompt.len());
        slot.prompt = prompt[..keep].to_vec();
        slot.busy = true;
        Some((chosen, cached.min(keep as u64)))
    }

    /// The request in slot `i` is done.
    pub fn release(&mut self, i: usize) {
        self.clock += 1;
        if let Some(slot) = self.slots.get_mut(i) {
            slot.busy = false;
            slot.last_used = self.clock;
        }
    }

    pub fn tokens(&self) -> u64 {
        self.slots.iter().map(|s| s.prompt.len() as u64).sum()
    }

    pub fn clear(&mut self) {
        for slot in &mut self.slots {
            slot.prompt.clear();
            slot.last_used = 0;
        }
    }
}

/// What the metrics page shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineState {
    pub running: u64,
    pub waiting: u64,
    /// Fraction of the prefix cache in use (0 without a cost model).
    pub kv_cache_usage: f64,
}

/// A computing request; the slot is given back when it drops (end of the reply, or the client
/// went away mid-stream).
pub struct SlotGuard {
    running: Arc<AtomicU64>,
    /// `cache: slot`: the slot whose kept prompt this request computes into.
    kept: Option<(Arc<Mutex<SlotCaches>>, usize)>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Relaxed);
        // Before the permit is returned (fields drop after this), so the next request to get
        // it finds this slot idle.
        if let Some((caches, i)) = self.kept.take() {
            lock(&caches).release(i);
        }
    }
}

/// Counts a request as waiting until it gets a slot or gives up (its future dropped).
struct Waiting(Arc<AtomicU64>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// The queue is full.
#[derive(Debug)]
pub struct QueueFull;

impl Engine {
    /// A slot for one request: at once without a cost model, else after waiting its turn.
    pub async fn admit(&self, model: Option<&CostModel>) -> Result<SlotGuard, QueueFull> {
        let Some(model) = model else {
            self.running.fetch_add(1, Relaxed);
            return Ok(SlotGuard {
                running: self.running.clone(),
                kept: None,
                _permit: None,
            });
        };
        let semaphore = self.semaphore(model.slots);
        let permit = match semaphore.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Relaxed) >= u64::from(model.max_queue) {
                    self.waiting.fetch_sub(1, Relaxed);
                    return Err(QueueFull);
                }
                let _waiting = Waiting(self.waiting.clone());
                semaphore.acquire_owned().await.map_err(|_| QueueFull)?
            }
        };
        self.running.fetch_add(1, Relaxed);
        Ok(SlotGuard {
            running: self.running.clone(),
            kept: None,
            _permit: Some(permit),
        })
    }

    fn semaphore(&self, slots: u32) -> Arc<Semaphore> {
        let mut current = lock(&self.slots);
        match &*current {
            Some((n, s)) if *n == slots => s.clone(),
            _ => {
                let s = Arc::new(Semaphore::new(slots as usize));
                *current = Some((slots, s.clone()));
                s
            }
        }
    }

    /// Prompt tokens served from the cache, then the prompt remembered (its prefill starts).
    /// With per-slot caches the request's `slot` is given the slot llama-server would give it.
    pub fn prefill(&self, model: &CostModel, prompt: &[u64], slot: &mut SlotGuard) -> u64 {
        if model.cache_tokens == 0 {
            return 0;
        }
        if model.cache == CacheScope::Slot {
            if slot.kept.is_some() {
                return 0;
            }
            let taken =
                lock(&self.slot_caches).take(model.slots as usize, prompt, model.cache_tokens);
            return match taken {
                Some((i, cached)) => {
                    slot.kept = Some((self.slot_caches.clone(), i));
                    cached
                }
                None => 0,
            };
        }
        let mut cache = lock(&self.cache);
        let cached = cache.lookup(prompt);
        cache.insert(prompt, model.cache_tokens);
        cached
    }

    pub fn state(&self, model: Option<&CostModel>) -> EngineState {
        let kv_cache_usage = match model {
            Some(m) if m.cache_tokens > 0 && m.cache == CacheScope::Slot => {
                let room = m.cache_tokens.saturating_mul(u64::from(m.slots)).max(1);
                (lock(&self.slot_caches).tokens() as f64 / room as f64).min(1.0)
            }
            Some(m) if m.cache_tokens > 0 => {
                (lock(&self.cache).tokens() as f64 / m.cache_tokens as f64).min(1.0)
            }
            _ => 0.0,
        };
        EngineState {
            running: self.running.load(Relaxed),
            waiting: self.waiting.load(Relaxed),
            kv_cache_usage,
        }
    }

    /// Forget cached prompts (`POST /_mock/reset`).
    pub fn reset(&self) {
        lock(&self.cache).clear();
        lock(&self.slot_caches).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_longest_shared_prefix_is_served_and_lru_evicts() {
        let mut cache = PrefixCache::default();
        cache.insert(&[1, 2, 3, 4], 8);
        cache.insert(&[1, 2, 9], 8);
        assert_eq!(cache.lookup(&[1, 2, 3, 7]), 3);
        assert_eq!(cache.lookup(&[1, 2, 9, 9]), 3);
        assert_eq!(cache.lookup(&[5]), 0);
        // [1,2,9] is the most recent now; adding 4 tokens evicts [1,2,3,4].
        cache.insert(&[6, 6, 6, 6], 8);
        assert_eq!(cache.tokens(), 7);
        assert_eq!(cache.lookup(&[1, 2, 3, 4]), 2);
        // An extension replaces the prompt it extends.
        cache.insert(&[6, 6, 6, 6, 7], 8);
        assert_eq!(cache.tokens(), 8);
        assert_eq!(cache.lookup(&[6, 6, 6, 6, 7]), 5);
    }

    #[test]
    fn slots_keep_their_own_prompt_as_llama_cpp_gives_them_out() {
        let mut slots = SlotCaches::default();
        // Two slots: A then B computed, both released (A first).
        assert_eq!(slots.take(2, &[1, 1, 1, 7], 100), Some((1, 0)));
        assert_eq!(slots.take(2, &[2, 2, 2, 7], 100), Some((0, 0)));
        slots.release(1);
        slots.release(0);
        // A again finds A's slot; meanwhile another A gets B's slot (cold, evicting B).
        assert_eq!(slots.take(2, &[1, 1, 1, 8], 100), Some((1, 3)));
        assert_eq!(slots.take(2, &[1, 1, 1, 9], 100), Some((0, 0)));
        assert_eq!(slots.take(2, &[2, 2, 2, 9], 100), None, "no idle slot");
        slots.release(0);
        assert_eq!(
            slots.take(2, &[2, 2, 2, 9], 100),
            Some((0, 0)),
            "B was evicted"
        );
        slots.release(0);
        slots.release(1);
        // Nothing similar: the least recently used idle slot (0 was released before 1).
        assert_eq!(slots.take(2, &[3], 100), Some((0, 0)));
        assert!(slots.tokens() <= 8);
    }

    #[test]
    fn roles_separate_turns() {
        let a = serde_json::json!([{"role": "system", "content": "a b"}, {"role": "user", "content": "c"}]);
        let b = serde_json::json!([{"role": "system", "content": "a"}, {"role": "user", "content": "b c"}]);
        let (a, b) = (
            render_prompt(a.as_array().unwrap()),
            render_prompt(b.as_array().unwrap()),
        );
        assert_eq!(a.len(), 5);
        assert_eq!(common_prefix(&a, &b), 2);
    }

    proptest! {
        #[test]
        fn the_cache_stays_within_its_bounds(
            prompts in proptest::collection::vec(proptest::collection::vec(0u64..4, 0..40), 1..60),
            capacity in 0u64..200,
        ) {
            let mut cache = PrefixCache::default();
            for p in &prompts {
                let cached = cache.lookup(p);
                prop_assert!(cached <= p.len() as u64);
                cache.insert(p, capacity);
                prop_assert!(cache.tokens() <= capacity);
                prop_assert_eq!(cache.tokens(), cache.entries.iter().map(|e| e.len() as u64).sum::<u64>());
                prop_assert!(cache.entries.len() <= MAX_CACHE_ENTRIES);
                // What was just computed is served next time, as far as it fits.
                let fits = (p.len() as u64).min(capacity);
                prop_assert!(cache.lookup(p) >= fits);
            }
        }
    }
}
