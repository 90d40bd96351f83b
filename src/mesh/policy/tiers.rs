//! Tiers (soft offload): routes of a higher `priority` are tried first, and a lower tier is
//! reached only when every route of every higher tier refused the request (saturated, rate
//! limited, circuit open, down or starting). Within a tier the model's policy chooses.

use super::{Candidate, Choice};

/// Candidates grouped by priority, highest first; order within a tier is kept.
pub fn by_priority(mut candidates: Vec<(i32, Candidate)>) -> Vec<Vec<Candidate>> {
    candidates.sort_by_key(|(priority, _)| std::cmp::Reverse(*priority));
    let mut tiers: Vec<(i32, Vec<Candidate>)> = Vec::new();
    for (priority, c) in candidates {
        match tiers.last_mut() {
            Some((p, tier)) if *p == priority => tier.push(c),
            _ => tiers.push((priority, vec![c])),
        }
    }
    tiers.into_iter().map(|(_, tier)| tier).collect()
}

/// What the walk through the tiers settled on.
pub struct Placed<T> {
    pub admitted: T,
    pub candidate: Candidate,
    pub choice: Choice,
    /// 0 for the highest tier.
    pub tier: usize,
}

/// Walk `tiers` from the highest: `choose` picks among a tier's remaining candidates and
/// `admit` tries the pick; a refused candidate leaves the tier and the tier chooses again.
/// `None` when every candidate of every tier refused.
pub fn first_admitted<T>(
    tiers: Vec<Vec<Candidate>>,
    mut choose: impl FnMut(&[Candidate]) -> Option<Choice>,
    mut admit: impl FnMut(&Candidate) -> Option<T>,
) -> Option<Placed<T>> {
    for (tier, mut remaining) in tiers.into_iter().enumerate() {
        while let Some(choice) = choose(&remaining) {
            if choice.index >= remaining.len() {
                break;
            }
            let candidate = remaining.swap_remove(choice.index);
            if let Some(admitted) = admit(&candidate) {
                return Some(Placed {
                    admitted,
                    candidate,
                    choice,
                    tier,
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::tests::candidates;
    use super::super::{least_load, Reason};
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A lower tier is never chosen while a route of a higher tier admits, and the route
        /// chosen always admits.
        #[test]
        fn a_lower_tier_only_takes_what_higher_tiers_refuse(
            routes in proptest::collection::vec((-2i32..3, any::<bool>(), 0u64..5), 1..10),
            seed in any::<u64>(),
        ) {
            let mut c = candidates(&vec![1.0; routes.len()]);
            for (cand, (_, _, load)) in c.iter_mut().zip(&routes) {
                cand.in_flight = *load;
            }
            let tiers = by_priority(routes.iter().map(|r| r.0).zip(c).collect());
            let mut rng = fastrand::Rng::with_seed(seed);
            let placed = first_admitted(
                tiers,
                |remaining| (!remaining.is_empty()).then(|| Choice {
                    index: least_load::pick(remaining, &mut rng),
                    reason: Reason::LeastLoad,
                }),
                |cand| routes[cand.route].1.then_some(()),
            );
            let best_admitting = routes.iter().filter(|r| r.1).map(|r| r.0).max();
            match placed {
                None => prop_assert_eq!(best_admitting, None),
                Some(p) => {
                    prop_assert!(routes[p.candidate.route].1);
                    prop_assert_eq!(Some(routes[p.candidate.route].0), best_admitting);
                }
            }
        }
    }

    #[test]
    fn tiers_are_highest_first_and_keep_order() {
        let c = candidates(&[1.0; 4]);
        let tiers = by_priority(vec![(0, c[0]), (5, c[1]), (0, c[2]), (-1, c[3])]);
        let routes: Vec<Vec<usize>> = tiers
            .iter()
            .map(|t| t.iter().map(|c| c.route).collect())
            .collect();
        assert_eq!(routes, vec![vec![1], vec![0, 2], vec![3]]);
    }
}
