//! Session affinity: weighted rendezvous (highest random weight) hashing of the session key
//! over the routes' stable identities, with bounded load. Every replica with the same
//! configuration computes the same order without sharing any state, and removing or adding a
//! route moves only the sessions that route held or now wins. A session skips its first route
//! while that route holds more than `factor` times its weighted share of the outstanding work
//! (consistent hashing with bounded loads), so one heavy session cannot overload an endpoint.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::Candidate;

/// The route `session` sticks to among `candidates` (non-empty, weights > 0): the best
/// rendezvous score among the routes under their load bound. `None` only for no candidates.
pub fn choose(candidates: &[Candidate], session: u64, factor: f64) -> Option<usize> {
    let total_weight: f64 = candidates.iter().map(|c| c.weight).sum();
    // This request included, so an idle fleet always has room.
    let total_load = candidates
        .iter()
        .map(Candidate::outstanding)
        .fold(1u64, u64::saturating_add) as f64;
    let mut best: Option<(usize, f64)> = None;
    for (i, c) in candidates.iter().enumerate() {
        let bound = (factor * total_load * c.weight / total_weight).ceil();
        if c.outstanding() as f64 >= bound {
            continue;
        }
        let score = score(session, c.identity, c.weight);
        if best.is_none_or(|(_, s)| score < s) {
            best = Some((i, score));
        }
    }
    // The bounds add up to more than the load, so some route is under its bound; the first
    // candidate covers float rounding.
    best.map(|(i, _)| i)
        .or_else(|| (!candidates.is_empty()).then_some(0))
}

/// Weighted rendezvous score, lower wins: `-ln(u) / weight` with `u` uniform in (0, 1] from
/// the hash, so a route wins a share of sessions proportional to its weight.
fn score(session: u64, identity: u64, weight: f64) -> f64 {
    let h = xxh3_64_with_seed(&identity.to_le_bytes(), session);
    let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    -u.ln() / weight
}

/// A stable 64-bit id of a session key or a route name: the same on every replica and
/// every build (xxh3 is specified, unlike std's hasher).
pub fn stable_id(text: &str) -> u64 {
    xxh3_64_with_seed(text.as_bytes(), 0x5e55_10aa)
}

#[cfg(test)]
mod tests {
    use super::super::tests::candidates;
    use super::*;
    use proptest::prelude::*;

    fn named(names: &[&str]) -> Vec<Candidate> {
        let mut c = candidates(&vec![1.0; names.len()]);
        for (cand, name) in c.iter_mut().zip(names) {
            cand.identity = stable_id(name);
        }
        c
    }

    #[test]
    fn sessions_spread_by_weight() {
        let mut c = named(&["a", "b"]);
        c[0].weight = 3.0;
        let mut on_a = 0;
        for s in 0..20_000u64 {
            if choose(&c, stable_id(&s.to_string()), 1.25) == Some(0) {
                on_a += 1;
            }
        }
        let share = on_a as f64 / 20_000.0;
        assert!((share - 0.75).abs() < 0.02, "{share}");
    }

    #[test]
    fn an_overloaded_route_hands_its_sessions_on() {
        let mut c = named(&["a", "b", "c"]);
        let session = (0..)
            .map(|s: u64| stable_id(&s.to_string()))
            .find(|s| choose(&c, *s, 1.25) == Some(0))
            .unwrap_or(0);
        c[0].in_flight = 10;
        let moved = choose(&c, session, 1.25);
        assert!(moved.is_some_and(|i| i != 0), "{moved:?}");
        // Within its bound it stays.
        c[0].in_flight = 1;
        c[1].in_flight = 1;
        c[2].in_flight = 1;
        assert_eq!(choose(&c, session, 1.25), Some(0));
    }

    proptest! {
        /// Consistent hashing's promise: changing routes a session does not use (removing
        /// one, adding one, reordering) never moves it, unless the added route wins it.
        #[test]
        fn unrelated_route_changes_keep_a_session(
            session in any::<u64>(),
            n in 2usize..8,
            extra in "[a-z]{1,8}",
            rotate in 0usize..8,
        ) {
            let names: Vec<String> = (0..n).map(|i| format!("route-{i}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let c = named(&refs);
            let Some(home) = choose(&c, session, 1.25) else { unreachable!() };
            let home_id = c[home].identity;
            let mut rotated = c.clone();
            rotated.rotate_left(rotate % n);
            let again = choose(&rotated, session, 1.25).map(|i| rotated[i].identity);
            prop_assert_eq!(again, Some(home_id));
            let other = (home + 1) % n;
            let mut fewer = c.clone();
            fewer.remove(other);
            let again = choose(&fewer, session, 1.25).map(|i| fewer[i].identity);
            prop_assert_eq!(again, Some(home_id));
            let mut more = c.clone();
            let mut added = named(&[extra.as_str()]);
            added[0].route = 99;
            more.push(added[0]);
            let now = choose(&more, session, 1.25).map(|i| more[i].identity);
            prop_assert!(now == Some(home_id) || now == Some(added[0].identity));
        }
    }
}
