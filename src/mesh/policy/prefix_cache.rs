//! `prefix_cache`: cache affinity with a load guard, in the spirit of sglang's cache-aware
//! policy. A hot prefix must not pile its whole traffic onto one engine, so the guard sends a
//! request to the least loaded route, whatever it caches, when the routes' loads are far apart,
//! beyond both the absolute and the relative threshold (sglang's guard, sized for GPU engines
//! that batch hundreds and report no capacity).
//!
//! Otherwise the decision depends on what the engines cache:
//! - **Per engine** (vLLM, SGLang: paged KV shared by all requests; any engine the router does
//!   not model the slots of): the route holding the longest prefix of the prompt wins when that
//!   prefix covers enough of the prompt — unless it is full (its outstanding work has reached
//!   its known capacity: `max_in_flight`, or what a queueing engine runs) while another route
//!   has room, when the least loaded route with room wins. Failing a match, `least_load`.
//! - **Per slot** (llama.cpp: each slot keeps the prompt it last computed, see
//!   `slot_model.rs`), as soon as one candidate's slots are modelled: a hit is an idle slot
//!   keeping the prefix, and the longest such wins (`cache_hit`). With none, the request is
//!   cold wherever it goes, so it goes where an idle slot loses least (`cold_slot`): an empty
//!   slot or one the prompt extends, then a prompt kept in another slot too, then the only copy
//!   of a prompt; of equal losses the lighter route, then the older prompt. Only when no route
//!   has an idle slot does it queue where most slots keep its prefix (`prefix_queue`), else by
//!   `least_load`. A second concurrent request for one prompt thus takes an idle slot where it
//!   evicts nothing rather than the slot of another hot prompt on the prefix's engine.
//!
//! Either way the prompt's prefix is then recorded for the route that got it (the tree, and
//! the slot it takes), so a guarded prompt soon lives on two engines and the lighter of them
//! takes it.

use super::{least_load, weighted, Candidate, Choice, Loss, Reason};
use crate::config::PolicySettings;

/// Choose among `candidates` (non-empty), whose `matched_chunks` say how much of a prompt of
/// `prompt_chunks` chunks each is believed to hold.
pub fn pick(
    candidates: &[Candidate],
    prompt_chunks: usize,
    settings: &PolicySettings,
    rng: &mut fastrand::Rng,
) -> Choice {
    if unbalanced(candidates, settings) {
        return Choice {
            index: least_load::lightest(candidates, |_| true, rng),
            reason: Reason::LoadGuard,
        };
    }
    if prompt_chunks > 0 && candidates.iter().any(|c| c.slots.is_some()) {
        return by_slots(candidates, prompt_chunks, settings, rng);
    }
    let longest = candidates
        .iter()
        .map(|c| c.matched_chunks)
        .max()
        .unwrap_or(0);
    if enough(longest, prompt_chunks, settings) {
        let holder =
            least_load::lightest(candidates, |i| candidates[i].matched_chunks == longest, rng);
        if candidates[holder].saturated() && candidates.iter().any(Candidate::has_room) {
            return Choice {
                index: least_load::lightest(candidates, |i| candidates[i].has_room(), rng),
                reason: Reason::LoadGuard,
            };
        }
        return Choice {
            index: holder,
            reason: Reason::CacheHit,
        };
    }
    Choice {
        index: least_load::pick(candidates, rng),
        reason: Reason::LeastLoad,
    }
}

/// Whether a match of `matched` chunks covers enough of a prompt of `prompt_chunks`.
fn enough(matched: usize, prompt_chunks: usize, settings: &PolicySettings) -> bool {
    matched > 0
        && prompt_chunks > 0
        && matched as f64 >= settings.prefix_match_threshold * prompt_chunks as f64
}

/// Chunks of the prompt `c` would serve from its cache if the request started there now: an
/// idle slot's (modelled slots), else the tree's unless the route is full.
fn hit_chunks(c: &Candidate) -> usize {
    match c.slots {
        Some(view) if c.has_room() && view.has_idle() => view.idle_match,
        Some(_) => 0,
        None if c.saturated() => 0,
        None => c.matched_chunks,
    }
}

/// Whether a request would start at once on `c`.
fn starts_at_once(c: &Candidate) -> bool {
    c.has_room() && c.slots.is_none_or(|v| v.has_idle())
}

/// The decision when at least one candidate's slots are modelled.
fn by_slots(
    candidates: &[Candidate],
    prompt_chunks: usize,
    settings: &PolicySettings,
    rng: &mut fastrand::Rng,
) -> Choice {
    let best = candidates.iter().map(hit_chunks).max().unwrap_or(0);
    if enough(best, prompt_chunks, settings) {
        return Choice {
            index: least_load::lightest(candidates, |i| hit_chunks(&candidates[i]) == best, rng),
            reason: Reason::CacheHit,
        };
    }
    // A busy slot keeping the prefix frees, on average, sooner than a cold prefill would take
    // (at once, when it computes a cached request), and waiting for it evicts nothing. Only
    // where the endpoint's bound allows a wait (`slot_wait_ms`: with `auto`, the prompt's cold
    // prefill there, so never longer than the start it saves).
    let may_wait = |c: &Candidate, warm_only: bool| {
        c.slots
            .is_some_and(|v| v.wait_slot.is_some() && v.wait_ms > 0 && (v.wait_warm || !warm_only))
    };
    let warm_only = candidates.iter().any(|c| may_wait(c, true));
    if candidates.iter().any(|c| may_wait(c, warm_only)) {
        return Choice {
            index: least_load::lightest(candidates, |i| may_wait(&candidates[i], warm_only), rng),
            reason: Reason::SlotWait,
        };
    }
    if candidates.iter().any(starts_at_once) {
        // What the slot taken loses; an engine whose slots are not modelled evicts nothing in
        // particular.
        let loss = |c: &Candidate| {
            c.slots
                .map_or((Loss::Nothing, 0), |v| (v.loss, v.last_used))
        };
        let least_loss = candidates
            .iter()
            .filter(|c| starts_at_once(c))
            .map(|c| loss(c).0)
            .min()
            .unwrap_or(Loss::Nothing);
        let eligible = |c: &Candidate| starts_at_once(c) && loss(c).0 == least_loss;
        let least_load = candidates
            .iter()
            .filter(|c| eligible(c))
            .map(Candidate::load)
            .fold(f64::INFINITY, f64::min);
        let eligible = |c: &Candidate| eligible(c) && c.load() <= least_load;
        let oldest = candidates
            .iter()
            .filter(|c| eligible(c))
            .map(|c| loss(c).1)
            .min()
            .unwrap_or(0);
        return Choice {
            index: weighted::pick_among(
                candidates,
                |i| eligible(&candidates[i]) && loss(&candidates[i]).1 == oldest,
                rng,
            ),
            reason: Reason::ColdSlot,
        };
    }
    // Every route is full: wait where the first slot to free is likeliest to keep the prefix.
    let keeping = |c: &Candidate| match c.slots {
        Some(view) => view.holding,
        None => u64::from(enough(c.matched_chunks, prompt_chunks, settings)),
    };
    let most = candidates.iter().map(keeping).max().unwrap_or(0);
    if most > 0 {
        return Choice {
            index: least_load::lightest(candidates, |i| keeping(&candidates[i]) == most, rng),
            reason: Reason::PrefixQueue,
        };
    }
    Choice {
        index: least_load::pick(candidates, rng),
        reason: Reason::LeastLoad,
    }
}

/// Whether the busiest and the idlest route differ by more than both thresholds.
fn unbalanced(candidates: &[Candidate], settings: &PolicySettings) -> bool {
    let loads = candidates.iter().map(Candidate::outstanding);
    let (Some(min), Some(max)) = (loads.clone().min(), loads.max()) else {
        return false;
    };
    max - min > settings.balance_abs_threshold
        && max as f64 > min as f64 * settings.balance_rel_threshold
}

#[cfg(test)]
mod tests {
    use super::super::tests::candidates;
    use super::super::SlotView;
    use super::*;
    use proptest::prelude::*;

    fn settings() -> PolicySettings {
        PolicySettings {
            balance_abs_threshold: 4,
            balance_rel_threshold: 1.5,
            prefix_match_threshold: 0.5,
            ..PolicySettings::default()
        }
    }

    #[test]
    fn decisions_by_case() {
        let mut rng = fastrand::Rng::with_seed(3);
        // (matched chunks, outstanding) per route, prompt chunks, expected (index, reason);
        // capacity unknown.
        type Case = (&'static [(usize, u64)], usize, usize, Reason);
        let cases: &[Case] = &[
            (&[(8, 0), (0, 0)], 10, 0, Reason::CacheHit),
            (&[(0, 0), (8, 3)], 10, 1, Reason::CacheHit),
            // The longer match wins, even if a bit busier.
            (&[(5, 0), (9, 2)], 10, 1, Reason::CacheHit),
            // Equal matches: the lighter one.
            (&[(6, 2), (6, 1)], 10, 1, Reason::CacheHit),
            // Too short a match: least load.
            (&[(4, 2), (0, 0)], 10, 1, Reason::LeastLoad),
            // Unbalanced beyond both thresholds: the idlest, cache or not.
            (&[(10, 9), (0, 1)], 10, 1, Reason::LoadGuard),
            // Beyond the absolute threshold only (15 is not over 1.5 × 10): cache wins.
            (&[(10, 15), (0, 10)], 10, 0, Reason::CacheHit),
            // Beyond the relative threshold only (3 vs 0 is within 4): cache wins.
            (&[(10, 3), (0, 0)], 10, 0, Reason::CacheHit),
        ];
        for (routes, prompt, want, reason) in cases {
            let mut c = candidates(&vec![1.0; routes.len()]);
            for (cand, (matched, load)) in c.iter_mut().zip(routes.iter()) {
                cand.matched_chunks = *matched;
                cand.in_flight = *load;
            }
            let choice = pick(&c, *prompt, &settings(), &mut rng);
            assert_eq!(
                (choice.index, choice.reason),
                (*want, *reason),
                "{routes:?}"
            );
        }
    }

    #[test]
    fn a_full_holder_gives_way_to_a_route_with_a_free_slot() {
        let mut rng = fastrand::Rng::with_seed(5);
        // (matched chunks, outstanding, capacity) per route; expected (index, reason).
        type Case = (&'static [(usize, u64, Option<u64>)], usize, Reason);
        let cases: &[Case] = &[
            // Two slots, both taken on the holder, the other idle: the guard trips (the
            // count-based guard, threshold 4, would not).
            (&[(10, 2, Some(2)), (0, 0, Some(2))], 1, Reason::LoadGuard),
            (&[(10, 2, Some(2)), (0, 1, Some(2))], 1, Reason::LoadGuard),
            // A free slot on the holder: the cache wins.
            (&[(10, 1, Some(2)), (0, 0, Some(2))], 0, Reason::CacheHit),
            // Everyone full: queueing where the prefix is beats queueing cold.
            (&[(10, 3, Some(2)), (0, 2, Some(2))], 0, Reason::CacheHit),
            // Of two holders the lighter is tried first; it has room.
            (
                &[(10, 2, Some(2)), (10, 1, Some(2)), (0, 0, Some(2))],
                1,
                Reason::CacheHit,
            ),
            // Holder full; of the others, the one with room, not the busier unknown one.
            (
                &[(10, 4, Some(4)), (0, 3, None), (0, 1, Some(2))],
                2,
                Reason::LoadGuard,
            ),
            // Capacity unknown everywhere: only the count-based guard applies.
            (&[(10, 3, None), (0, 0, None)], 0, Reason::CacheHit),
            // Holder's capacity unknown: never "full".
            (&[(10, 3, None), (0, 0, Some(2))], 0, Reason::CacheHit),
            // Holder full, the other's capacity unknown but idle: that one has room.
            (&[(10, 1, Some(1)), (0, 0, None)], 1, Reason::LoadGuard),
        ];
        for (routes, want, reason) in cases {
            let mut c = candidates(&vec![1.0; routes.len()]);
            for (cand, (matched, load, capacity)) in c.iter_mut().zip(routes.iter()) {
                cand.matched_chunks = *matched;
                cand.in_flight = *load;
                cand.capacity = *capacity;
            }
            let choice = pick(&c, 10, &settings(), &mut rng);
            assert_eq!(
                (choice.index, choice.reason),
                (*want, *reason),
                "{routes:?}"
            );
        }
    }

    /// A modelled engine: `slots` slots, `busy` of them computing, and what the idle slot the
    /// request would take keeps.
    fn engine(
        slots: u64,
        busy: u64,
        idle_match: usize,
        holding: u64,
        loss: Loss,
        last_used: u64,
    ) -> (u64, Option<u64>, Option<SlotView>) {
        (
            busy,
            Some(slots),
            Some(SlotView {
                slots,
                idle: slots.saturating_sub(busy),
                idle_match,
                holding,
                loss,
                last_used,
                wait_slot: None,
                wait_warm: false,
                wait_ms: 0,
            }),
        )
    }

    #[test]
    fn with_modelled_slots_only_an_idle_slot_keeping_the_prefix_is_a_hit() {
        let mut rng = fastrand::Rng::with_seed(7);
        // (in flight, capacity, slots) per route, the tree's match per route; expected
        // (index, reason). Prompts of 10 chunks; route 0 is where the tree says the prefix is.
        type Route = (u64, Option<u64>, Option<SlotView>);
        type Case = (&'static str, Vec<Route>, [usize; 2], usize, Reason);
        use Loss::*;
        let cases: Vec<Case> = vec![
            (
                "an idle slot keeps the prefix: hit",
                vec![
                    engine(2, 1, 10, 1, Nothing, 0),
                    engine(2, 0, 0, 0, Nothing, 0),
                ],
                [10, 0],
                0,
                Reason::CacheHit,
            ),
            (
                "the holder's slot keeping it is busy; its idle slot keeps B (the only copy), \
                 the other engine has an empty slot: go there",
                vec![
                    engine(2, 1, 0, 1, Unique, 5),
                    engine(2, 1, 0, 0, Nothing, 0),
                ],
                [10, 0],
                1,
                Reason::ColdSlot,
            ),
            (
                "both would evict: a prompt kept elsewhere too beats the only copy",
                vec![engine(2, 1, 0, 1, Unique, 1), engine(2, 1, 0, 0, Copy, 9)],
                [10, 0],
                1,
                Reason::ColdSlot,
            ),
            (
                "equal losses and loads: the older prompt goes",
                vec![engine(2, 1, 0, 1, Unique, 9), engine(2, 1, 0, 0, Unique, 3)],
                [10, 0],
                1,
                Reason::ColdSlot,
            ),
            (
                "equal losses: the lighter engine, whatever the age",
                vec![engine(2, 0, 0, 0, Unique, 9), engine(2, 1, 0, 0, Unique, 3)],
                [0, 0],
                0,
                Reason::ColdSlot,
            ),
            (
                "the tree claims route 1, but none of its slots keeps the prefix any more",
                vec![
                    engine(2, 0, 10, 1, Nothing, 0),
                    engine(2, 0, 0, 0, Unique, 4),
                ],
                [0, 10],
                0,
                Reason::CacheHit,
            ),
            (
                "every engine full: queue where most slots keep the prefix",
                vec![
                    engine(2, 2, 0, 1, Nothing, 0),
                    engine(2, 2, 0, 2, Nothing, 0),
                ],
                [10, 10],
                1,
                Reason::PrefixQueue,
            ),
            (
                "every engine full, the prefix nowhere: least load",
                vec![
                    engine(2, 3, 0, 0, Nothing, 0),
                    engine(2, 2, 0, 0, Nothing, 0),
                ],
                [0, 0],
                1,
                Reason::LeastLoad,
            ),
            (
                "a route whose slots are not modelled, idle: a hit by the tree",
                vec![engine(2, 1, 0, 1, Unique, 1), (0, None, None)],
                [0, 10],
                1,
                Reason::CacheHit,
            ),
            (
                "an unmodelled route with room loses nothing in particular",
                vec![engine(2, 1, 0, 0, Unique, 1), (0, None, None)],
                [0, 0],
                1,
                Reason::ColdSlot,
            ),
            (
                "an unmodelled route that is full is no hit",
                vec![engine(2, 0, 0, 0, Unique, 1), (3, Some(3), None)],
                [0, 10],
                0,
                Reason::ColdSlot,
            ),
        ];
        for (what, routes, tree, want, reason) in cases {
            let mut c = candidates(&vec![1.0; routes.len()]);
            for (k, (cand, (busy, capacity, slots))) in c.iter_mut().zip(routes).enumerate() {
                cand.in_flight = busy;
                cand.capacity = capacity;
                cand.slots = slots;
                cand.matched_chunks = tree[k];
            }
            let choice = pick(&c, 10, &settings(), &mut rng);
            assert_eq!((choice.index, choice.reason), (want, reason), "{what}");
        }
    }

    #[test]
    fn with_slot_wait_a_request_waits_for_a_busy_cached_slot_rather_than_start_cold() {
        let mut rng = fastrand::Rng::with_seed(9);
        // The bound each route's view carries (`slot_wait_ms`, per endpoint with `auto`).
        let waiting = [1000, 1000];
        let with_warm = |busy: u64, warm: Option<usize>| {
            let (in_flight, capacity, view) = engine(2, busy, 0, 1, Loss::Unique, 3);
            (
                in_flight,
                capacity,
                view.map(|v| SlotView {
                    wait_slot: warm,
                    wait_warm: warm.is_some(),
                    ..v
                }),
            )
        };
        type Route = (u64, Option<u64>, Option<SlotView>);
        /// What the case is, each route's wait bound, the routes, the route and reason wanted.
        type Case = (&'static str, [u64; 2], Vec<Route>, usize, Reason);
        let cases: Vec<Case> = vec![
            (
                "a busy cached slot keeps the prefix on route 1: wait there",
                waiting,
                vec![with_warm(1, None), with_warm(2, Some(0))],
                1,
                Reason::SlotWait,
            ),
            (
                "waiting is off (or nothing learned yet): start cold where the least is lost",
                [0, 0],
                vec![with_warm(1, None), with_warm(2, Some(0))],
                0,
                Reason::ColdSlot,
            ),
            (
                "only where the route's bound allows a wait: route 1's engine is not learned yet",
                [1000, 0],
                vec![with_warm(1, None), with_warm(2, Some(0))],
                0,
                Reason::ColdSlot,
            ),
            (
                "a hit still wins over waiting",
                waiting,
                vec![engine(2, 1, 10, 1, Loss::Nothing, 0), with_warm(1, Some(0))],
                0,
                Reason::CacheHit,
            ),
        ];
        for (what, wait_ms, routes, want, reason) in cases {
            let mut c = candidates(&vec![1.0; routes.len()]);
            for ((cand, (busy, capacity, slots)), wait_ms) in c.iter_mut().zip(routes).zip(wait_ms)
            {
                cand.in_flight = busy;
                cand.capacity = capacity;
                cand.slots = slots.map(|v| SlotView { wait_ms, ..v });
            }
            let choice = pick(&c, 10, &settings(), &mut rng);
            assert_eq!((choice.index, choice.reason), (want, reason), "{what}");
        }
    }

    proptest! {
        /// With modelled slots: a hit is always an idle slot keeping enough of the prompt, the
        /// longest such; a cold choice always starts at once and loses no more than any other
        /// route that would; a queued one happens only when no route has an idle slot.
        #[test]
        fn slot_decisions_are_consistent(
            routes in proptest::collection::vec(
                (1u64..4, 0u64..5, 0usize..12, 0u64..3, 0u8..3, 0u64..20, 0usize..12, any::<bool>()),
                1..5,
            ),
            seed in any::<u64>(),
        ) {
            let mut c = candidates(&vec![1.0; routes.len()]);
            for (cand, &(slots, busy, idle_match, holding, loss, last_used, tree, modelled)) in c.iter_mut().zip(&routes) {
                let busy = busy.min(slots + 1);
                cand.in_flight = busy;
                cand.capacity = Some(slots);
                cand.matched_chunks = tree;
                if modelled {
                    let loss = [Loss::Nothing, Loss::Copy, Loss::Unique][usize::from(loss)];
                    cand.slots = Some(SlotView {
                        slots,
                        idle: slots.saturating_sub(busy),
                        idle_match,
                        holding,
                        loss,
                        last_used,
                        wait_slot: None,
                        wait_warm: false,
                        wait_ms: 0,
                    });
                }
            }
            if c.iter().all(|x| x.slots.is_none()) {
                c[0].slots = Some(SlotView { slots: 1, idle: 1, idle_match: 0, holding: 0, loss: Loss::Nothing, last_used: 0, wait_slot: None, wait_warm: false, wait_ms: 0 });
                c[0].in_flight = 0;
                c[0].capacity = Some(1);
            }
            let mut rng = fastrand::Rng::with_seed(seed);
            let choice = pick(&c, 10, &settings(), &mut rng);
            let chosen = &c[choice.index];
            match choice.reason {
                Reason::CacheHit => {
                    prop_assert!(starts_at_once(chosen));
                    prop_assert!(hit_chunks(chosen) >= 5);
                    prop_assert!(c.iter().all(|x| hit_chunks(x) <= hit_chunks(chosen)));
                }
                Reason::ColdSlot => {
                    prop_assert!(starts_at_once(chosen));
                    prop_assert!(c.iter().all(|x| hit_chunks(x) < 5));
                    let loss = |x: &Candidate| x.slots.map_or(Loss::Nothing, |v| v.loss);
                    prop_assert!(c.iter().filter(|x| starts_at_once(x)).all(|x| loss(x) >= loss(chosen)));
                }
                Reason::SlotWait => prop_assert!(false, "no view allows a wait"),
                Reason::PrefixQueue | Reason::LeastLoad => {
                    prop_assert!(!c.iter().any(starts_at_once));
                }
                Reason::LoadGuard => prop_assert!(unbalanced(&c, &settings())),
                other => prop_assert!(false, "unexpected reason {:?}", other),
            }
        }
    }

    proptest! {
        /// Under the guard the result is always a least-loaded route; a cache hit always has
        /// the longest match.
        #[test]
        fn hits_are_longest_and_guarded_picks_are_lightest(
            routes in proptest::collection::vec(
                (0usize..20, 0u64..60, proptest::option::of(1u64..8)),
                1..6,
            ),
            seed in any::<u64>(),
        ) {
            let mut c = candidates(&vec![1.0; routes.len()]);
            for (cand, (matched, load, capacity)) in c.iter_mut().zip(&routes) {
                cand.matched_chunks = *matched;
                cand.in_flight = *load;
                cand.capacity = *capacity;
            }
            let mut rng = fastrand::Rng::with_seed(seed);
            let choice = pick(&c, 20, &settings(), &mut rng);
            let longest = routes.iter().map(|r| r.0).max().unwrap_or(0);
            let chosen = &c[choice.index];
            match choice.reason {
                // The lightest overall (count guard) or the lightest with room (capacity
                // guard, which trips only when some route has room).
                Reason::LoadGuard => {
                    let min_load = routes.iter().map(|r| r.1).min().unwrap_or(0);
                    let min_with_room = c.iter().filter(|x| x.has_room()).map(|x| x.in_flight).min();
                    prop_assert!(
                        chosen.in_flight == min_load
                            || (chosen.has_room() && Some(chosen.in_flight) == min_with_room)
                    );
                }
                Reason::CacheHit => prop_assert_eq!(routes[choice.index].0, longest),
                Reason::LeastLoad => prop_assert!(longest < 10),
                other => prop_assert!(false, "unexpected reason {:?}", other),
            }
        }
    }
}
