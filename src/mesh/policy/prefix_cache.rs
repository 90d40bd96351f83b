//! `prefix_cache`: cache affinity with a load guard, in the spirit of sglang's cache-aware
//! policy. A hot prefix must not pile its whole traffic onto one engine, so the guard sends a
//! request to the least loaded route, whatever it caches, in two cases:
//! - the routes' loads are far apart, beyond both the absolute and the relative threshold
//!   (sglang's guard, sized for GPU engines that batch hundreds and report no capacity);
//! - the route holding the prompt's prefix is full (its outstanding work has reached its known
//!   capacity: the engine's slots, `max_in_flight`, or what a queueing engine runs) while
//!   another route has a free slot. In front of engines with a few slots a fixed count never
//!   trips, and a request queued on a full engine also evicts another prompt from a slot.
//!
//! Otherwise the route holding the longest prefix of the prompt wins when that prefix covers
//! enough of the prompt; failing that, `least_load` decides. Either way the prompt's prefix is
//! then recorded for the route that got it, so a guarded prompt soon lives on two engines and
//! the lighter of them takes it.

use super::{least_load, Candidate, Choice, Reason};
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
    let longest = candidates
        .iter()
        .map(|c| c.matched_chunks)
        .max()
        .unwrap_or(0);
    let enough = longest > 0
        && prompt_chunks > 0
        && longest as f64 >= settings.prefix_match_threshold * prompt_chunks as f64;
    if enough {
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
