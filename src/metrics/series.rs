//! Handles of a request's series, kept by the request's labels. Looking each series up in its
//! family (`with_label_values`: SipHash of the label values and the family's lock, six or so
//! times per request) showed in the per-request instruction profile; a request now makes one
//! lookup here (foldhash, one read lock) and uses the handles.
//!
//! A handle is created when the request first needs it, exactly when the lookup in the family
//! was made before, so the exposition shows the same series: a series appears the first time
//! a request adds to it (a zero `cached` token count still creates no series).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use prometheus::{Histogram, IntCounter};

/// Label sets come from the configuration (operations × models × endpoints × outcomes); past
/// this many, a request's series are looked up in their families, as before, uncached.
pub(super) const MAX_CACHED_LABEL_SETS: usize = 4096;

/// The series one request adds to, each created on first use.
#[derive(Default)]
pub(super) struct RequestSeries {
    /// `requests_total{op, model, backend, outcome}`.
    pub requests: OnceLock<IntCounter>,
    /// `request_duration_seconds{op, model, backend}`.
    pub request_duration: OnceLock<Histogram>,
    /// `upstream_duration_seconds{model, backend}`.
    pub upstream_duration: OnceLock<Histogram>,
    /// `overhead_duration_seconds{op}`.
    pub overhead: OnceLock<Histogram>,
    /// `time_to_first_token_seconds{model, backend}`.
    pub time_to_first_token: OnceLock<Histogram>,
    /// `tokens_total{model, backend, type}`, by [`TOKEN_TYPES`].
    pub tokens: [OnceLock<IntCounter>; 3],
}

/// The `type` label of `tokens_total`, in the order of [`RequestSeries::tokens`].
pub(super) const TOKEN_TYPES: [&str; 3] = ["prompt", "completion", "cached"];

struct Entry {
    op: &'static str,
    model: Box<str>,
    backend: Box<str>,
    outcome: &'static str,
    series: Arc<RequestSeries>,
}

#[derive(Default)]
struct Entries {
    /// By the hash of the labels; a bucket holds the label sets whose hashes collide.
    by_hash: HashMap<u64, Vec<Entry>, foldhash::fast::RandomState>,
    len: usize,
}

impl Entries {
    fn find(&self, hash: u64, labels: Labels<'_>) -> Option<&Arc<RequestSeries>> {
        let bucket = self.by_hash.get(&hash)?;
        let (op, model, backend, outcome) = labels;
        bucket
            .iter()
            .find(|e| {
                e.op == op && *e.model == *model && *e.backend == *backend && e.outcome == outcome
            })
            .map(|e| &e.series)
    }
}

/// `(op, model, backend, outcome)`.
pub(super) type Labels<'a> = (&'static str, &'a str, &'a str, &'static str);

pub(super) struct SeriesCache {
    hasher: foldhash::fast::RandomState,
    bound: usize,
    entries: RwLock<Entries>,
}

impl Default for SeriesCache {
    fn default() -> Self {
        SeriesCache::with_bound(MAX_CACHED_LABEL_SETS)
    }
}

impl SeriesCache {
    pub(super) fn with_bound(bound: usize) -> SeriesCache {
        SeriesCache {
            hasher: foldhash::fast::RandomState::default(),
            bound,
            entries: RwLock::default(),
        }
    }

    /// The series of requests labelled `labels`; `None` when the cache is full and the label
    /// set not in it (the caller then looks its series up uncached).
    pub(super) fn get(&self, labels: Labels<'_>) -> Option<Arc<RequestSeries>> {
        let hash = self.hasher.hash_one(labels);
        {
            let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = entries.find(hash, labels) {
                return Some(Arc::clone(series));
            }
            if entries.len >= self.bound {
                return None;
            }
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        // Another request may have added it between the two locks.
        if let Some(series) = entries.find(hash, labels) {
            return Some(Arc::clone(series));
        }
        if entries.len >= self.bound {
            return None;
        }
        let (op, model, backend, outcome) = labels;
        let series = Arc::new(RequestSeries::default());
        entries.by_hash.entry(hash).or_default().push(Entry {
            op,
            model: model.into(),
            backend: backend.into(),
            outcome,
            series: Arc::clone(&series),
        });
        entries.len += 1;
        Some(series)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_whose_hashes_collide_keep_their_own_series() {
        let mut entries = Entries::default();
        let sets: [Labels<'_>; 5] = [
            ("chat", "m", "b", "success"),
            ("chat", "m2", "b", "success"),
            ("chat", "m", "b2", "success"),
            ("chat", "m", "b", "error"),
            ("embed", "m", "b", "success"),
        ];
        for (op, model, backend, outcome) in sets {
            entries.by_hash.entry(0).or_default().push(Entry {
                op,
                model: model.into(),
                backend: backend.into(),
                outcome,
                series: Arc::default(),
            });
        }
        for (i, labels) in sets.iter().enumerate() {
            let found = entries.find(0, *labels).unwrap();
            assert!(
                Arc::ptr_eq(found, &entries.by_hash[&0][i].series),
                "{labels:?}"
            );
        }
        assert!(entries.find(0, ("chat", "m", "b", "canceled")).is_none());
        assert!(entries.find(1, sets[0]).is_none());
    }

    #[test]
    fn past_its_bound_the_cache_answers_none_for_new_label_sets_only() {
        let cache = SeriesCache::with_bound(2);
        let a = cache.get(("chat", "m", "b", "success")).unwrap();
        let b = cache.get(("chat", "m", "b", "error")).unwrap();
        assert!(cache.get(("chat", "m2", "b", "success")).is_none());
        assert!(Arc::ptr_eq(
            &a,
            &cache.get(("chat", "m", "b", "success")).unwrap()
        ));
        assert!(Arc::ptr_eq(
            &b,
            &cache.get(("chat", "m", "b", "error")).unwrap()
        ));
        assert_eq!(cache.len(), 2);
    }
}
