//! How a model's routes are chosen: the policy names models.yaml (`policy:`) and routing.yaml
//! (`default_policy:`) accept, and the routing.yaml settings the policies read (`policies:`
//! block). The policies themselves live in `mesh::policy`; this is only what the operator writes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use super::lenient;

/// A model's routing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingPolicy {
    /// Weighted random among the routes that admit the request.
    Weighted,
    /// Power of two choices, scored by outstanding work per unit of weight.
    #[default]
    LeastLoad,
    /// Longest cached prompt prefix, with a load guard.
    PrefixCache,
}

impl RoutingPolicy {
    pub const ALL: [RoutingPolicy; 3] = [
        RoutingPolicy::Weighted,
        RoutingPolicy::LeastLoad,
        RoutingPolicy::PrefixCache,
    ];

    /// The policy named `s` (`least-load` and any case accepted); `None` for unknown names.
    pub fn parse(s: &str) -> Option<RoutingPolicy> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        RoutingPolicy::ALL
            .into_iter()
            .find(|p| p.as_str() == wanted)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RoutingPolicy::Weighted => "weighted",
            RoutingPolicy::LeastLoad => "least_load",
            RoutingPolicy::PrefixCache => "prefix_cache",
        }
    }

    /// The message for a name that is not a policy.
    pub fn unknown(name: &str) -> String {
        let known: Vec<&str> = RoutingPolicy::ALL.iter().map(|p| p.as_str()).collect();
        format!(
            "unknown routing policy {name:?}; expected one of {}",
            known.join(", ")
        )
    }
}

impl fmt::Display for RoutingPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The policies' tunables, from routing.yaml's `policies:` block; every one has a default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicySettings {
    /// The policy of models that name none (routing.yaml `default_policy`).
    pub default_policy: RoutingPolicy,
    /// Memory cap of one model's prefix tree, in bytes.
    pub prefix_tree_max_bytes: u64,
    /// A prefix match counts when it covers at least this share of the prompt (0–1).
    pub prefix_match_threshold: f64,
    /// The load guard trips when the busiest and idlest routes differ by more than this many
    /// outstanding requests…
    pub balance_abs_threshold: u64,
    /// …and the busiest has more than this multiple of the idlest's load.
    pub balance_rel_threshold: f64,
    /// A session stays on its endpoint while that endpoint's load is at most this multiple of
    /// its fair share (consistent hashing with bounded load).
    pub affinity_load_factor: f64,
    /// An endpoint whose engine reports this many queued requests counts as saturated for
    /// tiers: a lower tier takes the request instead.
    pub tier_queue_limit: u64,
    /// `prefix_cache` in front of engines whose slots are modelled: how long a request may wait
    /// for a busy slot keeping its prefix (running a cached request, so soon free) rather than
    /// start cold in another idle slot.
    pub slot_wait_ms: SlotWait,
}

/// `slot_wait_ms`: a fixed bound, or the prompt's cold prefill as the endpoint's engine has
/// reported its prefill speed (`auto`, the default): waiting never costs more than it saves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotWait {
    /// Wait at most the estimated cold prefill of the prompt on that endpoint, capped at
    /// [`MAX_SLOT_WAIT_MS`]; never while nothing has been learned.
    Auto,
    /// Wait at most this many milliseconds; 0 = never wait.
    Fixed(u64),
}

impl SlotWait {
    /// The bound for a prompt of `prompt_tokens` on an endpoint whose engine computes an
    /// uncached prompt token in `ms_per_token` (as learned; `None` = not yet).
    pub fn bound_ms(self, prompt_tokens: u64, ms_per_token: Option<f64>) -> u64 {
        match self {
            SlotWait::Fixed(ms) => ms.min(MAX_SLOT_WAIT_MS),
            SlotWait::Auto => match ms_per_token {
                Some(rate) if rate.is_finite() && rate > 0.0 => {
                    let ms = (prompt_tokens as f64 * rate).ceil();
                    // `as` saturates; the cap keeps an absurd estimate harmless.
                    (ms as u64).min(MAX_SLOT_WAIT_MS)
                }
                _ => 0,
            },
        }
    }
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            default_policy: RoutingPolicy::default(),
            prefix_tree_max_bytes: 8 * 1024 * 1024,
            prefix_match_threshold: 0.5,
            balance_abs_threshold: 32,
            balance_rel_threshold: 1.5,
            affinity_load_factor: 1.25,
            tier_queue_limit: 1,
            slot_wait_ms: SlotWait::Auto,
        }
    }
}

/// routing.yaml's `policies:` block as written.
#[derive(Debug, Default, Deserialize)]
pub struct RawPolicySettings {
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub prefix_tree_max_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub prefix_match_threshold: Option<f64>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub balance_abs_threshold: Option<u64>,
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub balance_rel_threshold: Option<f64>,
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub affinity_load_factor: Option<f64>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub tier_queue_limit: Option<u64>,
    /// `auto` or a number of milliseconds.
    #[serde(default)]
    pub slot_wait_ms: Option<Value>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

/// The keys of [`RawPolicySettings`].
pub const POLICY_SETTING_KEYS: &[&str] = &[
    "prefix_tree_max_bytes",
    "prefix_match_threshold",
    "balance_abs_threshold",
    "balance_rel_threshold",
    "affinity_load_factor",
    "tier_queue_limit",
    "slot_wait_ms",
];

/// The longest `slot_wait_ms` accepted: past this a cold start is surely cheaper.
pub const MAX_SLOT_WAIT_MS: u64 = 60_000;

/// `slot_wait_ms` as written: `auto`, or whole milliseconds up to [`MAX_SLOT_WAIT_MS`]
/// (numbers as strings too, as `${VAR}` substitution produces them).
fn parse_slot_wait(value: &Value) -> Result<SlotWait, String> {
    let number = match value {
        Value::String(s) if s.trim().eq_ignore_ascii_case("auto") => return Ok(SlotWait::Auto),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    };
    match number {
        Some(ms) if ms.is_finite() && ms >= 0.0 && ms.fract() == 0.0 => {
            if ms <= MAX_SLOT_WAIT_MS as f64 {
                Ok(SlotWait::Fixed(ms as u64))
            } else {
                Err(format!("must be at most {MAX_SLOT_WAIT_MS}"))
            }
        }
        _ => Err("must be `auto` or a whole number of milliseconds".into()),
    }
}

/// The smallest tree worth having: a few thousand prompt chunks.
const MIN_TREE_BYTES: u64 = 64 * 1024;
/// A tree larger than this is a typo (and would be a memory hazard).
const MAX_TREE_BYTES: u64 = 4 * 1024 * 1024 * 1024;

impl RawPolicySettings {
    /// Overlay the written values on `base`; each out-of-range value is one problem
    /// (`field`, message).
    pub fn apply(&self, base: &mut PolicySettings) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if let Some(bytes) = self.prefix_tree_max_bytes {
            if (MIN_TREE_BYTES..=MAX_TREE_BYTES).contains(&bytes) {
                base.prefix_tree_max_bytes = bytes;
            } else {
                problems.push((
                    "prefix_tree_max_bytes",
                    format!("must be between {MIN_TREE_BYTES} and {MAX_TREE_BYTES}"),
                ));
            }
        }
        let mut ratio = |value: Option<f64>, field: &'static str, ok: fn(f64) -> bool| {
            value.and_then(|v| {
                if v.is_finite() && ok(v) {
                    Some(v)
                } else {
                    problems.push((field, format!("{v} is out of range")));
                    None
                }
            })
        };
        if let Some(v) = ratio(self.prefix_match_threshold, "prefix_match_threshold", |v| {
            (0.0..=1.0).contains(&v)
        }) {
            base.prefix_match_threshold = v;
        }
        if let Some(v) = ratio(self.balance_rel_threshold, "balance_rel_threshold", |v| {
            (1.0..=1000.0).contains(&v)
        }) {
            base.balance_rel_threshold = v;
        }
        if let Some(v) = ratio(self.affinity_load_factor, "affinity_load_factor", |v| {
            (1.0..=100.0).contains(&v)
        }) {
            base.affinity_load_factor = v;
        }
        if let Some(v) = self.balance_abs_threshold {
            base.balance_abs_threshold = v;
        }
        match self.tier_queue_limit {
            Some(0) => problems.push(("tier_queue_limit", "must be at least 1".into())),
            Some(v) => base.tier_queue_limit = v,
            None => {}
        }
        if let Some(value) = &self.slot_wait_ms {
            match parse_slot_wait(value) {
                Ok(wait) => base.slot_wait_ms = wait,
                Err(message) => problems.push(("slot_wait_ms", message)),
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_round_trip_and_unknown_names_are_refused() {
        for p in RoutingPolicy::ALL {
            assert_eq!(RoutingPolicy::parse(p.as_str()), Some(p));
            assert_eq!(
                RoutingPolicy::parse(&p.as_str().to_uppercase().replace('_', "-")),
                Some(p)
            );
        }
        for bad in ["", "random", "least", "prefix"] {
            assert_eq!(RoutingPolicy::parse(bad), None, "{bad}");
        }
        assert_eq!(RoutingPolicy::default(), RoutingPolicy::LeastLoad);
    }

    #[test]
    fn settings_out_of_range_are_problems_and_change_nothing() {
        let raw = RawPolicySettings {
            prefix_tree_max_bytes: Some(10),
            prefix_match_threshold: Some(1.5),
            balance_rel_threshold: Some(0.5),
            affinity_load_factor: Some(f64::NAN),
            tier_queue_limit: Some(0),
            slot_wait_ms: Some(Value::from(60_001u64)),
            ..RawPolicySettings::default()
        };
        let mut settings = PolicySettings::default();
        let problems = raw.apply(&mut settings);
        assert_eq!(problems.len(), 6, "{problems:?}");
        assert_eq!(settings, PolicySettings::default());
        let raw = RawPolicySettings {
            prefix_match_threshold: Some(0.8),
            tier_queue_limit: Some(3),
            slot_wait_ms: Some(Value::from(1500u64)),
            ..RawPolicySettings::default()
        };
        assert!(raw.apply(&mut settings).is_empty());
        assert_eq!(settings.slot_wait_ms, SlotWait::Fixed(1500));
        assert_eq!(settings.prefix_match_threshold, 0.8);
        assert_eq!(settings.tier_queue_limit, 3);
    }

    #[test]
    fn slot_wait_is_auto_by_default_a_number_or_auto_when_written() {
        assert_eq!(PolicySettings::default().slot_wait_ms, SlotWait::Auto);
        let yaml = |s: &str| serde_yaml::from_str::<Value>(s).unwrap();
        let cases = [
            ("auto", Ok(SlotWait::Auto)),
            ("' AUTO '", Ok(SlotWait::Auto)),
            ("0", Ok(SlotWait::Fixed(0))),
            ("2000", Ok(SlotWait::Fixed(2000))),
            ("'1500'", Ok(SlotWait::Fixed(1500))),
            ("60000", Ok(SlotWait::Fixed(60_000))),
            ("60001", Err(())),
            ("-1", Err(())),
            ("1.5", Err(())),
            (".nan", Err(())),
            ("soon", Err(())),
            ("[1]", Err(())),
            ("true", Err(())),
        ];
        for (written, want) in cases {
            assert_eq!(
                parse_slot_wait(&yaml(written)).map_err(|_| ()),
                want,
                "{written}"
            );
        }
    }

    #[test]
    fn the_auto_bound_is_the_estimated_cold_prefill_capped_and_zero_before_learning() {
        let cases = [
            (SlotWait::Auto, 1000, None, 0),
            (SlotWait::Auto, 1000, Some(0.5), 500),
            (SlotWait::Auto, 1000, Some(0.0001), 1),
            (SlotWait::Auto, 0, Some(2.0), 0),
            (SlotWait::Auto, 1000, Some(f64::NAN), 0),
            (SlotWait::Auto, 1000, Some(f64::INFINITY), 0),
            (SlotWait::Auto, 1000, Some(-3.0), 0),
            (SlotWait::Auto, u64::MAX, Some(1e300), MAX_SLOT_WAIT_MS),
            (SlotWait::Fixed(0), 1000, Some(1.0), 0),
            (SlotWait::Fixed(2000), 1000, None, 2000),
            (SlotWait::Fixed(2000), 1, Some(100.0), 2000),
        ];
        for (wait, tokens, rate, want) in cases {
            assert_eq!(
                wait.bound_ms(tokens, rate),
                want,
                "{wait:?} {tokens} {rate:?}"
            );
        }
    }

    /// What models.yaml and routing.yaml say about policies, tiers and their settings, and
    /// what each mistake is reported as.
    #[test]
    fn files_set_policies_priorities_and_settings() {
        let model = |extra: &str, route_extra: &str| {
            format!("models:\n  - id: m\n    {extra}\n    route:\n      - {{kind: vllm, base_url: \"http://r:1\"{route_extra}}}\n")
        };
        let load = |models: &str, routing: Option<&str>| {
            crate::config::load_str(
                "models.yaml",
                models,
                routing.map(|r| ("routing.yaml", r)),
                &crate::config::test_vars(&[]),
            )
        };
        let ok = load(&model("policy: prefix-cache", ", priority: 2"), None).unwrap();
        assert_eq!(ok.models[0].policy, Some(RoutingPolicy::PrefixCache));
        assert_eq!(ok.models[0].routes[0].priority, 2);
        let plain = model("name: m", "");
        let ok = load(&plain, None).unwrap();
        assert_eq!(ok.models[0].policy, None);
        assert_eq!(ok.models[0].routes[0].priority, 0);
        assert_eq!(ok.mesh.policy, PolicySettings::default());
        let routing = "default_policy: weighted\nmodel_policies: {m: prefix_cache, gone: weighted}\npolicy_settings: {prefix_match_threshold: 0.7}\n";
        let ok = load(&plain, Some(routing)).unwrap();
        assert_eq!(ok.mesh.policy.default_policy, RoutingPolicy::Weighted);
        assert_eq!(ok.mesh.policy.prefix_match_threshold, 0.7);
        assert_eq!(ok.models[0].policy, Some(RoutingPolicy::PrefixCache));
        assert!(ok
            .warnings
            .iter()
            .any(|w| w.contains("model_policies.gone")));

        let refused: &[(String, Option<&str>, &str)] = &[
            (
                model("policy: fastest", ""),
                None,
                "unknown routing policy \"fastest\"",
            ),
            (model("name: m", ", priority: 1.5"), None, "priority"),
            (model("name: m", ", priority: 100000"), None, "priority"),
            (
                plain.clone(),
                Some("default_policy: nope\n"),
                "default_policy",
            ),
            (
                plain.clone(),
                Some("model_policies: {m: nope}\n"),
                "model_policies.m",
            ),
            (
                plain.clone(),
                Some("policy_settings: {balance_rel_threshold: 0.2}\n"),
                "policy_settings.balance_rel_threshold",
            ),
            (
                plain.clone(),
                Some("policy_settings: {tier_queue_limt: 2}\n"),
                "did you mean `tier_queue_limit`",
            ),
        ];
        for (models, routing, needle) in refused {
            let errors = load(models, *routing).unwrap_err().messages().join("\n");
            assert!(errors.contains(needle), "{models}{routing:?}: {errors}");
        }
    }
}
