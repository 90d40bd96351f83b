//! `weighted`: a route drawn at random in proportion to its weight, load ignored. Also the
//! tie-breaker of the other policies, so equal choices still follow the weights.

use super::Candidate;

/// An index into `candidates` drawn by weight (`candidates` non-empty, weights > 0).
pub fn pick(candidates: &[Candidate], rng: &mut fastrand::Rng) -> usize {
    pick_among(candidates, |_| true, rng)
}

/// Like [`pick`], among the candidates `eligible` accepts; the last eligible one when
/// rounding leaves the draw past the end, and 0 when none is eligible.
pub fn pick_among(
    candidates: &[Candidate],
    eligible: impl Fn(usize) -> bool,
    rng: &mut fastrand::Rng,
) -> usize {
    let total: f64 = (0..candidates.len())
        .filter(|&i| eligible(i))
        .map(|i| candidates[i].weight)
        .sum();
    let mut point = rng.f64() * total;
    let mut last = 0;
    for (i, c) in candidates.iter().enumerate().filter(|(i, _)| eligible(*i)) {
        if point < c.weight {
            return i;
        }
        point -= c.weight;
        last = i;
    }
    last
}

#[cfg(test)]
mod tests {
    use super::super::tests::{candidates, share_of};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn follows_weights() {
        let c = candidates(&[3.0, 1.0]);
        let mut rng = fastrand::Rng::with_seed(7);
        let share = share_of(0, 20_000, || pick(&c, &mut rng));
        assert!((share - 0.75).abs() < 0.02, "share {share}");
    }

    proptest! {
        #[test]
        fn only_eligible_candidates_are_drawn(
            weights in proptest::collection::vec(0.01f64..100.0, 1..8),
            mask in any::<u8>(),
            seed in any::<u64>(),
        ) {
            let c = candidates(&weights);
            let eligible = |i: usize| mask & (1 << i) != 0;
            prop_assume!((0..c.len()).any(eligible));
            let mut rng = fastrand::Rng::with_seed(seed);
            for _ in 0..50 {
                let i = pick_among(&c, eligible, &mut rng);
                prop_assert!(eligible(i));
            }
        }
    }
}
