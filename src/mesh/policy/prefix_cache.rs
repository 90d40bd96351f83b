//! `prefix_cache`: cache affinity with a load guard, in the spirit of sglang's cache-aware
//! policy. When the routes' loads are far apart (beyond both the absolute and the relative
//! threshold) the least loaded route wins whatever it caches: a hot prefix must not pile its
//! whole traffic onto one engine. Otherwise the route holding the longest prefix of the prompt
//! wins when that prefix covers enough of the prompt; failing that, `least_load` decides, and
//! the prompt's prefix is then recorded for the route that got it.

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
        return Choice {
            index: least_load::lightest(
                candidates,
                |i| candidates[i].matched_chunks == longest,
                rng,
            ),
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
        // (matched chunks, outstanding) per route, prompt chunks, expected (index, reason)
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

    proptest! {
        /// Under the guard the result is always a least-loaded route; a cache hit always has
        /// the longest match.
        #[test]
        fn hits_are_longest_and_guarded_picks_are_lightest(
            routes in proptest::collection::vec((0usize..20, 0u64..60), 1..6),
            seed in any::<u64>(),
        ) {
            let mut c = candidates(&vec![1.0; routes.len()]);
            for (cand, (matched, load)) in c.iter_mut().zip(&routes) {
                cand.matched_chunks = *matched;
                cand.in_flight = *load;
            }
            let mut rng = fastrand::Rng::with_seed(seed);
            let choice = pick(&c, 20, &settings(), &mut rng);
            let min_load = routes.iter().map(|r| r.1).min().unwrap_or(0);
            let longest = routes.iter().map(|r| r.0).max().unwrap_or(0);
            match choice.reason {
                Reason::LoadGuard => prop_assert_eq!(routes[choice.index].1, min_load),
                Reason::CacheHit => prop_assert_eq!(routes[choice.index].0, longest),
                Reason::LeastLoad => prop_assert!(longest < 10),
                other => prop_assert!(false, "unexpected reason {:?}", other),
            }
        }
    }
}
