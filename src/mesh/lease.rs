//! A lease on one route of a model: the right to send one request to its endpoint. Dropping it
//! gives the in-flight slot back and reports the outcome, on every path — success, error,
//! timeout and client disconnect alike (a disconnect drops the response stream that owns it).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::endpoint::{Endpoint, Permit};
use super::outcome::{Finished, Outcome};
use super::policy::{PrefixTree, PromptPrefix, SlotTicket, CHUNK_BYTES, MAX_PROMPT_BYTES};
use crate::config::{ModelDef, RouteDef};
use crate::redact::Redactor;

pub struct Lease {
    model: Arc<ModelDef>,
    route_index: usize,
    endpoint: Arc<Endpoint>,
    permit: Permit,
    est_tokens: u64,
    started: Instant,
    outcome: Option<Outcome>,
    actual_tokens: Option<u64>,
    redactor: Arc<Redactor>,
    /// `prefix_cache` leases: where to correct the tree when the backend says how much of the
    /// prompt it served from its cache.
    cache_feedback: Option<CacheFeedback>,
    /// Whether the backend's cache report was taken (only the first counts).
    cache_reported: bool,
    /// The engine slot the request took in the endpoint's slot model (engines whose slots are
    /// modelled), given back on drop.
    engine_slot: Option<SlotTicket>,
    /// Set when the request chose to wait for one busy slot (`prefix_cache`'s `slot_wait`):
    /// how long it may.
    slot_patience: Option<Duration>,
}

/// What a new lease takes in its endpoint's slot model (engines whose slots are modelled).
#[derive(Default)]
pub(super) struct SlotRequest {
    /// The prompt, when the router looked at it (`None`: the slot then keeps something unknown).
    pub prompt: Option<Arc<PromptPrefix>>,
    /// Wait for this busy slot, at most this long (`prefix_cache`'s `slot_wait`).
    pub wait_for: Option<(usize, Duration)>,
}

/// What a `prefix_cache` decision believed about the chosen route.
pub struct CacheFeedback {
    pub tree: Arc<Mutex<PrefixTree>>,
    pub prompt: Arc<PromptPrefix>,
    pub route: usize,
    /// Prompt chunks the tree said the route held when it was chosen.
    pub predicted_chunks: usize,
}

/// Bytes of prompt text per token, for prompts longer than the hashed head (tokenizers give
/// 3–5 for prose; the lower figure keeps less of the entry).
const BYTES_PER_TOKEN: u64 = 3;

impl CacheFeedback {
    /// The backend served `cached_tokens` of `prompt_tokens` from its cache. When that is less
    /// than the tree predicted, the engine evidently no longer holds (or never keeps) the rest:
    /// the route's entry for this prompt is cut to what the engine had. A prompt the tree
    /// knew nothing about is left alone: its cold start says nothing about the cache.
    fn correct(&self, prompt_tokens: u64, cached_tokens: u64) {
        if self.predicted_chunks == 0 || prompt_tokens == 0 || cached_tokens >= prompt_tokens {
            return;
        }
        let chunks = self.prompt.chunks().len() as u64;
        let kept = if self.prompt.bytes() < MAX_PROMPT_BYTES {
            // The whole prompt was hashed: the cached share maps onto the chunks.
            chunks.saturating_mul(cached_tokens) / prompt_tokens
        } else {
            cached_tokens.saturating_mul(BYTES_PER_TOKEN) / CHUNK_BYTES as u64
        };
        let kept = kept.min(chunks) as usize;
        if kept < self.predicted_chunks {
            self.tree
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .forget_beyond(&self.prompt, self.route, kept);
        }
    }
}

impl Lease {
    pub(super) fn new(
        model: Arc<ModelDef>,
        route_index: usize,
        endpoint: Arc<Endpoint>,
        permit: Permit,
        est_tokens: u64,
        redactor: Arc<Redactor>,
        slot: SlotRequest,
    ) -> Lease {
        // Every request takes a slot of a modelled engine, whatever its policy: they all
        // occupy (and overwrite) one in the engine.
        let SlotRequest { prompt, wait_for } = slot;
        let engine_slot = match wait_for {
            Some((slot, _)) => endpoint.engine_slots.take_waiting_for(prompt, slot),
            None => endpoint.engine_slots.take(prompt),
        };
        Lease {
            model,
            route_index,
            endpoint,
            permit,
            est_tokens,
            started: Instant::now(),
            outcome: None,
            actual_tokens: None,
            redactor,
            cache_feedback: None,
            cache_reported: false,
            engine_slot,
            slot_patience: wait_for.map(|(_, patience)| patience),
        }
    }

    /// Before the request is sent: when it chose to wait for a busy slot keeping its prefix,
    /// until that slot frees or its patience runs out (then it takes what the engine would
    /// give it). At once otherwise; only the first call waits.
    pub async fn wait_for_engine_slot(&mut self) {
        if let (Some(ticket), Some(patience)) = (self.engine_slot, self.slot_patience.take()) {
            self.endpoint
                .engine_slots
                .wait_for_slot(ticket, patience)
                .await;
        }
    }

    pub(super) fn set_cache_feedback(&mut self, feedback: CacheFeedback) {
        self.cache_feedback = Some(feedback);
    }

    /// The backend reported how many prompt tokens it served from its cache
    /// (`usage.prompt_tokens_details.cached_tokens`, llama.cpp's `timings.cache_n`), and how
    /// long it took over the rest (llama.cpp's `timings.prompt_ms`); used to correct the prefix
    /// tree of `prefix_cache` models and to learn the endpoint's prefill speed
    /// (`slot_wait_ms: auto`). Reported once; later calls are ignored.
    pub fn report_cache(&mut self, prompt_tokens: u64, cached_tokens: u64, prompt_ms: Option<f64>) {
        if std::mem::replace(&mut self.cache_reported, true) {
            return;
        }
        if let Some(feedback) = self.cache_feedback.take() {
            feedback.correct(prompt_tokens, cached_tokens);
        }
        if let Some(ms) = prompt_ms {
            self.endpoint
                .engine_slots
                .observe_prefill(prompt_tokens.saturating_sub(cached_tokens), ms);
        }
    }

    pub fn model(&self) -> &Arc<ModelDef> {
        &self.model
    }

    pub fn route(&self) -> &RouteDef {
        &self.model.routes[self.route_index]
    }

    pub fn route_index(&self) -> usize {
        self.route_index
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Takes the router's backend credentials out of text derived from this backend's answers.
    pub fn redactor(&self) -> &Arc<Redactor> {
        &self.redactor
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Record how the request ended; the last call wins.
    pub fn finish(&mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
    }

    /// Record the real token count to settle the tokens/minute bucket.
    pub fn set_actual_tokens(&mut self, tokens: u64) {
        self.actual_tokens = Some(tokens);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.endpoint.release_slot();
        if let Some(ticket) = self.engine_slot.take() {
            self.endpoint.engine_slots.release(ticket);
        }
        self.endpoint.fold_outcome(Finished {
            outcome: self.outcome.unwrap_or(Outcome::Canceled),
            latency: self.started.elapsed(),
            est_tokens: self.est_tokens,
            actual_tokens: self.actual_tokens,
            trial: self.permit.trial,
        });
    }
}
