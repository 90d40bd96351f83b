//! An engine's own load (running and queued requests, KV-cache use) from what it exposes: the
//! Prometheus metrics of vLLM, SGLang, llama.cpp and TGI, or llama.cpp's `/slots` list.
//!
//! Every engine names these counters differently; each family below is one engine's names.
//! The endpoint's own kind is tried first, then the others, so a `custom` route pointed at any
//! of these engines (or the mock, which speaks vLLM's and llama.cpp's names) is understood.
//! Samples of one name are summed over their label sets (one per model, or per data-parallel
//! rank); the KV-cache fraction takes the fullest set instead, since a sum of fractions means
//! nothing.

use serde_json::Value;

use super::prom_text;
use crate::engines::BackendKind;
use crate::mesh::EngineLoad;

/// The most of a metrics page or slot list the router reads; a larger answer gives no reading.
pub const MAX_SIGNAL_BYTES: usize = 256 * 1024;

/// The largest queue length believed; a larger (hostile or broken) value is clamped to it.
const MAX_COUNT: f64 = 1_000_000.0;

/// One engine's metric names. Where a name changed between releases, the newer comes first.
struct Family {
    kind: BackendKind,
    running: &'static str,
    waiting: &'static str,
    kv_usage: &'static [&'static str],
}

const FAMILIES: &[Family] = &[
    Family {
        kind: BackendKind::Vllm,
        running: "vllm:num_requests_running",
        waiting: "vllm:num_requests_waiting",
        kv_usage: &["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],
    },
    Family {
        kind: BackendKind::Sglang,
        running: "sglang:num_running_reqs",
        waiting: "sglang:num_queue_reqs",
        kv_usage: &["sglang:token_usage"],
    },
    Family {
        kind: BackendKind::Llamacpp,
        running: "llamacpp:requests_processing",
        waiting: "llamacpp:requests_deferred",
        kv_usage: &["llamacpp:kv_cache_usage_ratio"],
    },
    Family {
        kind: BackendKind::Tgi,
        running: "tgi_batch_current_size",
        waiting: "tgi_queue_size",
        kv_usage: &[],
    },
];

/// A metric folded over its label sets.
#[derive(Debug, Clone, Copy, Default)]
struct Folded {
    sum: f64,
    max: f64,
    seen: bool,
}

/// The load a metrics page reports, in the first family (the kind's own first) that has a
/// running or waiting count; `None` when no family's counts are there.
pub fn load_from_metrics(kind: BackendKind, text: &str) -> Option<EngineLoad> {
    let names: Vec<&str> = FAMILIES
        .iter()
        .flat_map(|f| {
            [f.running, f.waiting]
                .into_iter()
                .chain(f.kv_usage.iter().copied())
        })
        .collect();
    let mut folded = vec![Folded::default(); names.len()];
    for (name, value) in prom_text::samples(text) {
        // NaN and infinities say nothing about a count or a fraction.
        if !value.is_finite() {
            continue;
        }
        if let Some(i) = names.iter().position(|n| *n == name) {
            let f = &mut folded[i];
            f.max = if f.seen { f.max.max(value) } else { value };
            f.sum += value;
            f.seen = true;
        }
    }
    let get = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .map(|i| folded[i])
            .filter(|f| f.seen)
    };
    let own_first = FAMILIES
        .iter()
        .filter(|f| f.kind == kind)
        .chain(FAMILIES.iter().filter(|f| f.kind != kind));
    own_first.into_iter().find_map(|family| {
        let (running, waiting) = (get(family.running), get(family.waiting));
        if running.is_none() && waiting.is_none() {
            return None;
        }
        Some(EngineLoad {
            running: count(running),
            waiting: count(waiting),
            kv_cache_usage: family
                .kv_usage
                .iter()
                .find_map(|name| get(name))
                .map(|f| f.max.clamp(0.0, 1.0)),
            slots: None,
        })
    })
}

fn count(folded: Option<Folded>) -> u64 {
    // In range after the clamp, so the cast neither wraps nor saturates.
    folded.map_or(0, |f| f.sum.clamp(0.0, MAX_COUNT).round() as u64)
}

/// The load llama.cpp's `/slots` list shows: slots processing now, and how many slots there
/// are (the engine's capacity, which its metrics do not report). The list has no queue, so
/// `waiting` is 0 (llama.cpp started with `--metrics` reports it through `/metrics`).
pub fn load_from_slots(body: &[u8]) -> Option<EngineLoad> {
    let slots: Vec<Value> = serde_json::from_slice(body).ok()?;
    let busy = |slot: &Value| match slot.get("is_processing") {
        Some(v) => v.as_bool() == Some(true),
        // Releases before `is_processing` gave `state`: 0 idle, anything else busy.
        None => slot
            .get("state")
            .and_then(Value::as_u64)
            .is_some_and(|s| s != 0),
    };
    Some(EngineLoad {
        running: slots.iter().filter(|s| busy(s)).count() as u64,
        waiting: 0,
        kv_cache_usage: None,
        slots: Some(slots.len() as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn load(running: u64, waiting: u64, kv: Option<f64>) -> Option<EngineLoad> {
        Some(EngineLoad {
            running,
            waiting,
            kv_cache_usage: kv,
            slots: None,
        })
    }

    fn slot_list(running: u64, slots: u64) -> Option<EngineLoad> {
        load(running, 0, None).map(|l| EngineLoad {
            slots: Some(slots),
            ..l
        })
    }

    #[test]
    fn each_engine_s_names_are_read() {
        let cases: &[(BackendKind, &str, Option<EngineLoad>)] = &[
            (
                BackendKind::Vllm,
                "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\"} 2.0\nvllm:num_requests_waiting{model_name=\"m\"} 5.0\nvllm:kv_cache_usage_perc{model_name=\"m\"} 0.25\n",
                load(2, 5, Some(0.25)),
            ),
            (
                BackendKind::Vllm,
                "vllm:num_requests_running 1\nvllm:num_requests_waiting 0\nvllm:gpu_cache_usage_perc 0.5\n",
                load(1, 0, Some(0.5)),
            ),
            (
                BackendKind::Sglang,
                "sglang:num_running_reqs{tp_rank=\"0\"} 3\nsglang:num_queue_reqs{tp_rank=\"0\"} 4\nsglang:token_usage{tp_rank=\"0\"} 0.75\n",
                load(3, 4, Some(0.75)),
            ),
            (
                BackendKind::Llamacpp,
                "llamacpp:requests_processing 2\nllamacpp:requests_deferred 7\n",
                load(2, 7, None),
            ),
            (
                BackendKind::Tgi,
                "tgi_queue_size 6\ntgi_batch_current_size 8\n",
                load(8, 6, None),
            ),
            // A custom route in front of vLLM: the names still tell.
            (
                BackendKind::Custom,
                "vllm:num_requests_waiting 9\n",
                load(0, 9, None),
            ),
            // The kind's own family wins over another one on the same page.
            (
                BackendKind::Llamacpp,
                "vllm:num_requests_running 1\nllamacpp:requests_processing 4\n",
                load(4, 0, None),
            ),
            (BackendKind::Vllm, "process_cpu_seconds_total 12\n", None),
            (BackendKind::Vllm, "", None),
            (BackendKind::Vllm, "<html>not metrics</html>", None),
        ];
        for (kind, text, expected) in cases {
            assert_eq!(
                load_from_metrics(*kind, text),
                *expected,
                "{kind:?} {text:?}"
            );
        }
    }

    #[test]
    fn label_sets_are_summed_and_hostile_values_bounded() {
        let text = "vllm:num_requests_running{engine=\"0\"} 2\nvllm:num_requests_running{engine=\"1\"} 3\n\
                    vllm:num_requests_waiting{engine=\"0\"} NaN\nvllm:num_requests_waiting{engine=\"1\"} 1e300\n\
                    vllm:kv_cache_usage_perc{engine=\"0\"} 0.2\nvllm:kv_cache_usage_perc{engine=\"1\"} 7\n";
        assert_eq!(
            load_from_metrics(BackendKind::Vllm, text),
            load(5, 1_000_000, Some(1.0))
        );
        let negative = "vllm:num_requests_running -3\nvllm:kv_cache_usage_perc -0.5\n";
        assert_eq!(
            load_from_metrics(BackendKind::Vllm, negative),
            load(0, 0, Some(0.0))
        );
    }

    #[test]
    fn slots_count_the_busy_ones() {
        let cases: &[(&str, Option<EngineLoad>)] = &[
            (
                r#"[{"id":0,"is_processing":true},{"id":1,"is_processing":false}]"#,
                slot_list(1, 2),
            ),
            (
                r#"[{"id":0,"state":1},{"id":1,"state":0},{"id":2,"state":0}]"#,
                slot_list(1, 3),
            ),
            ("[]", slot_list(0, 0)),
            (r#"{"error":{"code":501}}"#, None),
            ("not json", None),
        ];
        for (body, expected) in cases {
            assert_eq!(load_from_slots(body.as_bytes()), *expected, "{body}");
        }
    }

    proptest! {
        #[test]
        fn any_metrics_text_gives_a_bounded_reading_or_none(text in "\\PC{0,300}", n in -1e20f64..1e20) {
            let page = format!("{text}\nvllm:num_requests_running {n}\n{text}");
            for kind in [BackendKind::Vllm, BackendKind::Llamacpp, BackendKind::Remote] {
                if let Some(l) = load_from_metrics(kind, &page) {
                    prop_assert!(l.running as f64 <= MAX_COUNT && l.waiting as f64 <= MAX_COUNT);
                    prop_assert!(l.kv_cache_usage.is_none_or(|kv| (0.0..=1.0).contains(&kv)));
                }
            }
        }
    }
}
