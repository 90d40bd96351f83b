//! Property tests: the config loader, the keys file, the SSE parser and the usage tap take any
//! input without panicking, and the SSE parser gives the same events however its input is cut.

use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::Value;
use switchyard::auth::KeyStore;
use switchyard::config::load_str;
use switchyard::record::Usage;
use switchyard::relay::sse::{SseEvent, SseParser};

fn no_vars() -> HashMap<String, String> {
    HashMap::new()
}

/// Feed `input` cut at `cuts` and collect every event that carries something.
fn parse_in_pieces(input: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
    let mut parser = SseParser::new(1 << 20);
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut last = 0;
    for p in points.into_iter().chain(std::iter::once(input.len())) {
        parser.push(&input[last..p]);
        last = p;
        while let Ok(Some(e)) = parser.next_event() {
            out.push(e);
        }
    }
    out.extend(parser.finish());
    out.retain(|e| !e.is_empty());
    out
}

fn line_ending() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\n"), Just("\r\n"), Just("\r")]
}

/// Values a YAML field could hold, from sensible to absurd.
fn yaml_scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("http://127.0.0.1:8000".to_string()),
        Just("https://api.example.com/v1".to_string()),
        Just("${MISSING_VAR}".to_string()),
        Just("${X:-http://h:1}".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("null".to_string()),
        Just("-1".to_string()),
        Just("1e308".to_string()),
        Just("\"0.5\"".to_string()),
        Just("true".to_string()),
        Just("vllm".to_string()),
        Just("none".to_string()),
        Just("{connect: 0, total: -3}".to_string()),
        "[a-z0-9./:_-]{0,12}",
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f}")),
    ]
}

const MODEL_FIELDS: &[&str] = &[
    "id",
    "name",
    "type",
    "aliases",
    "base_url",
    "api_key",
    "provider",
    "context_length",
    "supports_tools",
    "pricing",
    "supported_params",
    "input_modalities",
    "bogus",
];
const ROUTE_FIELDS: &[&str] = &[
    "kind",
    "weight",
    "base_url",
    "api_key",
    "provider_model_id",
    "rpm",
    "tpm",
    "max_in_flight",
    "health_path",
    "metrics_path",
    "auth_header",
    "timeouts",
    "allow_private_network",
    "discover",
    "discover_prefix",
    "discover_map",
    "typo",
];

fn yaml_doc() -> impl Strategy<Value = String> {
    let field = |names: &'static [&'static str]| {
        (prop::sample::select(names), yaml_scalar()).prop_map(|(k, v)| format!("{k}: {v}"))
    };
    let route = prop::collection::vec(field(ROUTE_FIELDS), 0..6)
        .prop_map(|fs| format!("      - {{{}}}", fs.join(", ")));
    let model = (
        prop::collection::vec(field(MODEL_FIELDS), 0..6),
        prop::collection::vec(route, 0..3),
    )
        .prop_map(|(fs, routes)| {
            let mut m = format!("  - id: m{}\n", fs.len());
            for f in fs {
                m.push_str(&format!("    {f}\n"));
            }
            if !routes.is_empty() {
                m.push_str("    route:\n");
                for r in routes {
                    m.push_str(&r);
                    m.push('\n');
                }
            }
            m
        });
    prop::collection::vec(model, 0..4).prop_map(|ms| format!("models:\n{}", ms.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn config_loader_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
        let _ = load_str("models.yaml", &text, Some(("routing.yaml", &text)), &no_vars());
    }

    #[test]
    fn config_loader_reports_errors_with_the_file_name(doc in yaml_doc()) {
        match load_str("models.yaml", &doc, None, &no_vars()) {
            Ok(registry) => {
                for m in &registry.models {
                    prop_assert!(!m.id.is_empty());
                    for r in &m.routes {
                        prop_assert!(r.weight.is_finite() && r.weight >= 0.0);
                    }
                }
            }
            Err(errs) => {
                prop_assert!(!errs.errors.is_empty());
                for e in errs.messages() {
                    prop_assert!(e.starts_with("models.yaml"), "{}", e);
                }
            }
        }
    }

    #[test]
    fn keys_file_never_panics(text in "\\PC{0,300}") {
        let _ = KeyStore::from_file_text("keys.yaml", &text, &no_vars());
    }

    #[test]
    fn sse_events_survive_any_chunking_and_line_endings(
        events in prop::collection::vec(prop::collection::vec("[^\r\n]{0,20}", 1..4), 0..8),
        endings in prop::collection::vec(line_ending(), 1..8),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut text = String::new();
        let mut expected = Vec::new();
        for (i, lines) in events.iter().enumerate() {
            let eol = endings[i % endings.len()];
            for line in lines {
                text.push_str("data: ");
                text.push_str(line);
                text.push_str(eol);
            }
            text.push_str(eol);
            expected.push(lines.join("\n"));
        }
        let got: Vec<String> = parse_in_pieces(text.as_bytes(), &cuts)
            .into_iter()
            .filter_map(|e| e.data)
            .collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn sse_parser_is_chunking_invariant_on_arbitrary_bytes(
        bytes in prop::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), Just(b'd'), any::<u8>()],
            0..300,
        ),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = parse_in_pieces(&bytes, &[]);
        let pieces = parse_in_pieces(&bytes, &cuts);
        prop_assert_eq!(whole, pieces);
    }

    #[test]
    fn usage_tap_takes_any_json(v in arb_json()) {
        if let Some(u) = Usage::from_json(&v) {
            // Totals never overflow, whatever a backend claims.
            prop_assert!(u.total() >= u.prompt_tokens.max(u.completion_tokens));
        }
    }

    #[test]
    fn usage_tap_reads_both_spellings(p in any::<u64>(), c in any::<u64>(), newer in any::<bool>()) {
        let v = if newer {
            serde_json::json!({"input_tokens": p, "output_tokens": c})
        } else {
            serde_json::json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": 1})
        };
        let u = Usage::from_json(&v).expect("usage");
        prop_assert_eq!((u.prompt_tokens, u.completion_tokens), (p, c));
        prop_assert_eq!(u.total(), p.saturating_add(c));
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z_]{0,16}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("prompt_tokens".to_string()),
                    Just("completion_tokens".to_string()),
                    Just("input_tokens".to_string()),
                    Just("output_tokens".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
