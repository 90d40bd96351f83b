//! Counters of routing decisions, by policy and reason, and the prefix match lengths of
//! `prefix_cache` decisions. Kept here (the mesh knows no HTTP and no metrics module) as
//! Prometheus collectors that `metrics` registers and renders.

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};

use super::Reason;
use crate::config::RoutingPolicy;

/// Bytes of prompt matched, from one chunk to the longest prompt looked at.
const MATCH_BUCKETS: &[f64] = &[
    0.0, 64.0, 256.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0,
];

pub struct DecisionMetrics {
    /// `switchyard_routing_decisions_total{policy, reason}`.
    pub decisions: IntCounterVec,
    /// `switchyard_routing_prefix_match_bytes`.
    pub prefix_match: Histogram,
}

static METRICS: LazyLock<DecisionMetrics> = LazyLock::new(|| DecisionMetrics {
    decisions: IntCounterVec::new(
        Opts::new(
            "switchyard_routing_decisions_total",
            "Routing decisions by the model's policy and the reason the route was chosen.",
        ),
        &["policy", "reason"],
    )
    .expect("valid metric definition"),
    prefix_match: Histogram::with_opts(
        HistogramOpts::new(
            "switchyard_routing_prefix_match_bytes",
            "Prompt bytes the chosen route was believed to hold, per prefix_cache decision.",
        )
        .buckets(MATCH_BUCKETS.to_vec()),
    )
    .expect("valid metric definition"),
});

/// The process's decision metrics (one set, whatever number of routers run in it).
pub fn decision_metrics() -> &'static DecisionMetrics {
    &METRICS
}

/// Count one decision.
pub fn count(policy: RoutingPolicy, reason: Reason) {
    METRICS
        .decisions
        .with_label_values(&[policy.as_str(), reason.as_str()])
        .inc();
}
