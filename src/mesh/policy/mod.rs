//! Routing policies, as pure functions over plain views of the candidate routes (no actors,
//! no sockets, randomness passed in): `weighted`, `least_load` (the default) and
//! `prefix_cache`, session affinity over any of them, and tiers around them all. The route
//! table (`table.rs`) builds the [`Candidate`]s, asks [`choose`] and takes capacity from the
//! chosen endpoint; a refusal removes the candidate and the policy chooses again.

mod affinity;
mod hints;
mod least_load;
mod prefill_rate;
mod prefix_cache;
mod prefix_tree;
mod slot_model;
mod stats;
mod tiers;
mod weighted;

pub use affinity::stable_id;
pub use hints::RoutingHints;
pub use prefill_rate::{prompt_tokens_of_bytes, PrefillRate};
pub use prefix_tree::{
    PrefixTree, PromptPrefix, CHUNK_BYTES, MAX_PROMPT_BYTES, MAX_TRACKED_ROUTES, NODE_BYTES,
};
pub use slot_model::{
    Loss, SlotModel, SlotTicket, SlotView, MAX_MODELLED_SLOTS, SLOT_PROMPT_SIMILARITY,
};
pub use stats::{count, decision_metrics, DecisionMetrics};
pub use tiers::{by_priority, first_admitted, Placed};

use crate::config::{PolicySettings, RoutingPolicy};

/// One route that may take the request, as the policies see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Index into the model's routes.
    pub route: usize,
    /// Greater than 0 (weight-0 routes are never candidates).
    pub weight: f64,
    /// Requests this router has in flight on the endpoint.
    pub in_flight: u64,
    /// The engine's own queue, when it reports one and the reading is fresh.
    pub engine_waiting: Option<u64>,
    /// The route's stable identity for consistent hashing (the same on every replica).
    pub identity: u64,
    /// Leading prompt chunks the endpoint is believed to hold (`prefix_cache`).
    pub matched_chunks: usize,
    /// How many requests the endpoint computes at once, when known (the engine's slots, the
    /// route's `max_in_flight`, or what a queueing engine runs): beyond it a request queues.
    pub capacity: Option<u64>,
    /// The engine's slots as this router models them (llama.cpp-style engines that report a
    /// slot count, `prefix_cache` with a prompt): `None` keeps the engine-level view.
    pub slots: Option<SlotView>,
}

impl Candidate {
    /// Outstanding work: this router's in-flight requests plus the engine's queue.
    pub fn outstanding(&self) -> u64 {
        self.in_flight
            .saturating_add(self.engine_waiting.unwrap_or(0))
    }

    /// Outstanding work per unit of weight (weights are shares of capacity).
    pub fn load(&self) -> f64 {
        self.outstanding() as f64 / self.weight
    }

    /// Whether one more request would queue here: every slot of a known capacity is taken.
    pub fn saturated(&self) -> bool {
        self.capacity.is_some_and(|cap| self.outstanding() >= cap)
    }

    /// Whether one more request would start at once: a free slot of a known capacity, or,
    /// capacity unknown, nothing outstanding at all.
    pub fn has_room(&self) -> bool {
        match self.capacity {
            Some(cap) => self.outstanding() < cap,
            None => self.outstanding() == 0,
        }
    }
}

/// Why a route was chosen (the `reason` label of the decision counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    CacheHit,
    LoadGuard,
    /// No idle slot holds the prompt's prefix anywhere: the route whose idle slot loses least.
    ColdSlot,
    /// Every route is full: the request queues where most slots hold its prefix.
    PrefixQueue,
    /// No idle slot keeps the prefix, but a busy one does, running a cached request: the
    /// request waits for it (`slot_wait_ms`) rather than start cold elsewhere.
    SlotWait,
    Affinity,
    LeastLoad,
    Weighted,
    /// Every route of a higher tier refused.
    TierOverflow,
    /// A retry after a failed attempt.
    Fallback,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::CacheHit => "cache_hit",
            Reason::LoadGuard => "load_guard",
            Reason::ColdSlot => "cold_slot",
            Reason::PrefixQueue => "prefix_queue",
            Reason::SlotWait => "slot_wait",
            Reason::Affinity => "affinity",
            Reason::LeastLoad => "least_load",
            Reason::Weighted => "weighted",
            Reason::TierOverflow => "tier_overflow",
            Reason::Fallback => "fallback",
        }
    }
}

/// A candidate's index and why it won.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub index: usize,
    pub reason: Reason,
}

/// What a decision needs beyond the candidates.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub policy: RoutingPolicy,
    pub settings: &'a PolicySettings,
    /// The session key's hash, when the request carries one.
    pub session: Option<u64>,
    /// Chunks of the prompt (0 without a prompt).
    pub prompt_chunks: usize,
}

/// Choose among `candidates` (one tier): the session's route when it has one under its load
/// bound, else the policy's pick. `None` only for no candidates.
pub fn choose(
    candidates: &[Candidate],
    ctx: &Context<'_>,
    rng: &mut fastrand::Rng,
) -> Option<Choice> {
    if candidates.is_empty() {
        return None;
    }
    if let Some(session) = ctx.session {
        if let Some(index) =
            affinity::choose(candidates, session, ctx.settings.affinity_load_factor)
        {
            return Some(Choice {
                index,
                reason: Reason::Affinity,
            });
        }
    }
    Some(match ctx.policy {
        RoutingPolicy::Weighted => Choice {
            index: weighted::pick(candidates, rng),
            reason: Reason::Weighted,
        },
        RoutingPolicy::LeastLoad => Choice {
            index: least_load::pick(candidates, rng),
            reason: Reason::LeastLoad,
        },
        RoutingPolicy::PrefixCache => {
            prefix_cache::pick(candidates, ctx.prompt_chunks, ctx.settings, rng)
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Idle candidates with these weights, route `i` at index `i`.
    pub fn candidates(weights: &[f64]) -> Vec<Candidate> {
        weights
            .iter()
            .enumerate()
            .map(|(route, &weight)| Candidate {
                route,
                weight,
                in_flight: 0,
                engine_waiting: None,
                identity: stable_id(&format!("route-{route}")),
                matched_chunks: 0,
                capacity: None,
                slots: None,
            })
            .collect()
    }

    /// The share of `n` draws that came out as `index`.
    pub fn share_of(index: usize, n: u32, mut draw: impl FnMut() -> usize) -> f64 {
        (0..n).filter(|_| draw() == index).count() as f64 / f64::from(n)
    }

    proptest! {
        /// Every policy, with or without a session, returns one of the candidates.
        #[test]
        fn every_policy_chooses_a_candidate(
            weights in proptest::collection::vec(0.01f64..10.0, 1..8),
            loads in proptest::collection::vec(0u64..40, 8),
            session in proptest::option::of(any::<u64>()),
            seed in any::<u64>(),
        ) {
            let mut c = candidates(&weights);
            for (cand, l) in c.iter_mut().zip(&loads) {
                cand.in_flight = *l;
                cand.matched_chunks = (*l % 5) as usize;
            }
            let settings = PolicySettings::default();
            let mut rng = fastrand::Rng::with_seed(seed);
            for policy in RoutingPolicy::ALL {
                let ctx = Context { policy, settings: &settings, session, prompt_chunks: 4 };
                let choice = choose(&c, &ctx, &mut rng);
                prop_assert!(choice.is_some_and(|ch| ch.index < c.len()));
            }
            let empty = Context { policy: RoutingPolicy::LeastLoad, settings: &settings, session, prompt_chunks: 0 };
            prop_assert_eq!(choose(&[], &empty, &mut rng), None);
        }
    }
}
