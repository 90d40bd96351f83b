//! `least_load`, the default: power of two choices. Two routes are drawn by weight (without
//! replacement) and the one with less outstanding work per unit of weight wins. Drawing by
//! weight rather than uniformly keeps weights as shares of capacity even when every backend
//! is idle: on a tie the first draw wins, and the first draw follows the weights. Two choices
//! rather than the global minimum keep replicas that see each other's load late (engine
//! readings are a probe interval old) from all piling onto the same idle route.

use super::{weighted, Candidate};

/// The index of the chosen candidate (`candidates` non-empty).
pub fn pick(candidates: &[Candidate], rng: &mut fastrand::Rng) -> usize {
    if candidates.len() == 1 {
        return 0;
    }
    let first = weighted::pick(candidates, rng);
    let second = weighted::pick_among(candidates, |i| i != first, rng);
    if candidates[second].load() < candidates[first].load() {
        second
    } else {
        first
    }
}

/// The candidate with the least load per weight among those `eligible` accepts, ties drawn
/// by weight (the load guard and cache-hit tie-breaks).
pub fn lightest(
    candidates: &[Candidate],
    eligible: impl Fn(usize) -> bool,
    rng: &mut fastrand::Rng,
) -> usize {
    let least = (0..candidates.len())
        .filter(|&i| eligible(i))
        .map(|i| candidates[i].load())
        .fold(f64::INFINITY, f64::min);
    weighted::pick_among(
        candidates,
        |i| eligible(i) && candidates[i].load() <= least,
        rng,
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::{candidates, share_of};
    use super::*;
    use proptest::prelude::*;

    /// Idle, equal backends and one request at a time: the split is the weights' (±5 %).
    #[test]
    fn idle_backends_split_by_weight() {
        for weights in [&[1.0, 1.0][..], &[3.0, 1.0], &[1.0, 2.0, 5.0], &[0.1, 0.9]] {
            let c = candidates(weights);
            let total: f64 = weights.iter().sum();
            let mut rng = fastrand::Rng::with_seed(11);
            for (i, w) in weights.iter().enumerate() {
                let share = share_of(i, 40_000, || pick(&c, &mut rng));
                let want = w / total;
                assert!(
                    (share - want).abs() <= 0.05 * want.max(0.1),
                    "{weights:?}: route {i} got {share}, want {want}"
                );
            }
        }
    }

    #[test]
    fn the_less_loaded_of_two_always_wins() {
        let mut c = candidates(&[1.0, 1.0]);
        c[0].in_flight = 3;
        c[1].engine_waiting = Some(1);
        let mut rng = fastrand::Rng::with_seed(1);
        assert!((0..1000).all(|_| pick(&c, &mut rng) == 1));
        // Load is per unit of weight: 3 in flight on weight 4 is lighter than 1 on weight 1.
        c[0].weight = 4.0;
        c[1].in_flight = 0;
        c[1].engine_waiting = Some(1);
        assert!((0..1000).all(|_| pick(&c, &mut rng) == 0));
    }

    proptest! {
        /// Never the strictly heaviest of several routes, and always a valid index.
        #[test]
        fn never_picks_the_heaviest_when_it_is_unique(
            loads in proptest::collection::vec(0u64..50, 2..8),
            seed in any::<u64>(),
        ) {
            let mut c = candidates(&vec![1.0; loads.len()]);
            for (cand, l) in c.iter_mut().zip(&loads) {
                cand.in_flight = *l;
            }
            let max = *loads.iter().max().unwrap_or(&0);
            let unique = loads.iter().filter(|l| **l == max).count() == 1;
            let mut rng = fastrand::Rng::with_seed(seed);
            for _ in 0..20 {
                let i = pick(&c, &mut rng);
                prop_assert!(i < c.len());
                if unique {
                    prop_assert!(loads[i] < max);
                }
                let j = lightest(&c, |_| true, &mut rng);
                prop_assert_eq!(loads[j], *loads.iter().min().unwrap_or(&0));
            }
        }
    }
}
