//! What a request asks of its model beyond text in and text out (images, audio, tool calling,
//! reasoning), and the one check of that against the model's entry. Every chat-like API —
//! chat, text completions, Messages, Responses — reads its body into a [`Uses`] with
//! [`Uses::read`] (the API's own spelling of each capability is in the tables below), and the
//! fallback executor ([`super::with_fallback_on`]) checks it on every lease before the
//! attempt runs. Native or translated, no route of any API can reach an engine with what its
//! model refuses, and no API can drift from the others: one table, one check.

use crate::config::ModelDef;
use crate::engines::ApiOp;
use crate::error::{ApiError, ErrorCode};

/// What one request uses, read from its body; the default uses nothing the check refuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uses {
    /// The body member that carries the input, named by a modality refusal.
    pub input: &'static str,
    pub image: bool,
    pub audio: bool,
    /// The body key that asks for tool calling, when one does.
    pub tools: Option<&'static str>,
    /// The body key that asks for reasoning, when one does.
    pub reasoning: Option<&'static str>,
}

/// Per API: the member with the input, the keys that ask for tools, those that ask for
/// reasoning.
struct Spelling {
    input: &'static str,
    tools: &'static [&'static str],
    reasoning: &'static [&'static str],
}

/// The keys of chat's tool calling (the current ones and the deprecated `functions`); a model
/// that does not support tools has them filtered out of chat bodies.
pub const CHAT_TOOL_KEYS: &[&str] = &[
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
];

/// Chat (and text completions, which share its extensions): OpenAI's and OpenRouter's keys.
const CHAT: Spelling = Spelling {
    input: "messages",
    tools: CHAT_TOOL_KEYS,
    reasoning: &["reasoning", "reasoning_effort", "include_reasoning"],
};
const COMPLETIONS: Spelling = Spelling {
    input: "prompt",
    ..CHAT
};
/// Anthropic's Messages API: extended thinking is `thinking`.
const MESSAGES: Spelling = Spelling {
    input: "messages",
    tools: &["tools", "tool_choice"],
    reasoning: &["thinking"],
};
/// OpenAI's Responses API: the input is `input`, reasoning is `reasoning: {effort, summary}`.
const RESPONSES: Spelling = Spelling {
    input: "input",
    tools: &["tools", "tool_choice", "parallel_tool_calls"],
    reasoning: &["reasoning"],
};

fn spelling(op: ApiOp) -> Option<&'static Spelling> {
    match op {
        ApiOp::ChatCompletions => Some(&CHAT),
        ApiOp::Completions => Some(&COMPLETIONS),
        ApiOp::Messages => Some(&MESSAGES),
        ApiOp::Responses => Some(&RESPONSES),
        _ => None,
    }
}

impl Uses {
    /// What a request of `op` uses: `asks(key)` says whether the body sends `key` with a
    /// value that asks for something (present, not `null`, not a "disabled" switch); `image`
    /// and `audio` are what its input carries. An operation with no such capabilities uses
    /// nothing.
    pub fn read(op: ApiOp, asks: impl Fn(&str) -> bool, image: bool, audio: bool) -> Uses {
        let Some(spelling) = spelling(op) else {
            return Uses::default();
        };
        let first = |keys: &'static [&'static str]| keys.iter().copied().find(|k| asks(k));
        Uses {
            input: spelling.input,
            image,
            audio,
            tools: first(spelling.tools),
            reasoning: first(spelling.reasoning),
        }
    }

    /// The 400 for a model that cannot take this request, naming the member the client sent:
    /// images or audio its `input_modalities` do not list, or tools or reasoning a model whose
    /// entry must declare them (the vLLM-compatible providers of seed 004: a local model id
    /// says nothing about what it can do) does not. A clear 400 here beats an engine's own
    /// error, or a silently ignored parameter.
    pub fn check(&self, def: &ModelDef) -> Result<(), ApiError> {
        let accepts = |m: &str| {
            def.input_modalities
                .iter()
                .any(|x| x.eq_ignore_ascii_case(m))
        };
        for (used, modality) in [(self.image, "image"), (self.audio, "audio")] {
            if used && !accepts(modality) {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedModality,
                    format!("Model `{}` does not accept {modality} input.", def.id),
                )
                .with_param(self.input));
            }
        }
        let Some(declared) = def.declared else {
            return Ok(());
        };
        let refused = [
            (declared.tools, self.tools, "tool calling"),
            (declared.reasoning, self.reasoning, "reasoning"),
        ];
        for (allowed, key, what) in refused {
            if let (false, Some(key)) = (allowed, key) {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedCapability,
                    format!(
                        "Model `{}` does not declare {what} support; declare it in the model's provider entry to use `{key}`.",
                        def.id
                    ),
                )
                .with_param(key));
            }
        }
        Ok(())
    }
}

/// Whether a JSON value sent for `key` asks for its capability: `null` does not, and neither
/// does Anthropic's `"thinking": {"type": "disabled"}`.
pub fn json_asks(key: &str, value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => false,
        v if key == "thinking" => v.get("type").and_then(|t| t.as_str()) != Some("disabled"),
        _ => true,
    }
}

/// [`json_asks`] for a member kept as raw JSON text (the chat-like bodies).
pub fn raw_json_asks(key: &str, raw: &[u8]) -> bool {
    match serde_json::from_slice::<serde_json::Value>(raw) {
        Ok(value) => json_asks(key, &value),
        // Not JSON the router can read: the body's own validation decides; asking is assumed.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, Declared};
    use serde_json::json;
    use std::collections::HashMap;

    fn model(modalities: &[&str], declared: Option<Declared>) -> ModelDef {
        let yaml = "models:\n  - id: m\n    route: [{kind: vllm, base_url: \"http://127.0.0.1:9\", health_path: none}]\n";
        let registry = load_str("m.yaml", yaml, None, &HashMap::new()).expect("load");
        let mut def = registry.models[0].clone();
        def.input_modalities = modalities.iter().map(|m| m.to_string()).collect();
        def.declared = declared;
        def
    }

    /// (operation, keys sent, image, audio) → the error code and param, or `None` for allowed.
    #[test]
    fn every_api_is_refused_alike_naming_its_own_member() {
        let undeclared = model(
            &["text"],
            Some(Declared {
                tools: false,
                reasoning: false,
            }),
        );
        type Case = (
            ApiOp,
            &'static [&'static str],
            bool,
            bool,
            Option<(&'static str, &'static str)>,
        );
        let cases: &[Case] = &[
            (ApiOp::ChatCompletions, &[], false, false, None),
            (
                ApiOp::ChatCompletions,
                &["tools"],
                false,
                false,
                Some(("unsupported_capability", "tools")),
            ),
            (
                ApiOp::ChatCompletions,
                &["reasoning_effort"],
                false,
                false,
                Some(("unsupported_capability", "reasoning_effort")),
            ),
            (
                ApiOp::ChatCompletions,
                &[],
                true,
                false,
                Some(("unsupported_modality", "messages")),
            ),
            (
                ApiOp::ChatCompletions,
                &[],
                false,
                true,
                Some(("unsupported_modality", "messages")),
            ),
            (
                ApiOp::Completions,
                &["tool_choice"],
                false,
                false,
                Some(("unsupported_capability", "tool_choice")),
            ),
            (
                ApiOp::Completions,
                &[],
                true,
                false,
                Some(("unsupported_modality", "prompt")),
            ),
            (
                ApiOp::Messages,
                &["tools"],
                false,
                false,
                Some(("unsupported_capability", "tools")),
            ),
            (
                ApiOp::Messages,
                &["thinking"],
                false,
                false,
                Some(("unsupported_capability", "thinking")),
            ),
            (ApiOp::Messages, &["reasoning_effort"], false, false, None),
            (
                ApiOp::Messages,
                &[],
                true,
                false,
                Some(("unsupported_modality", "messages")),
            ),
            (
                ApiOp::Responses,
                &["tools"],
                false,
                false,
                Some(("unsupported_capability", "tools")),
            ),
            (
                ApiOp::Responses,
                &["reasoning"],
                false,
                false,
                Some(("unsupported_capability", "reasoning")),
            ),
            (
                ApiOp::Responses,
                &[],
                true,
                false,
                Some(("unsupported_modality", "input")),
            ),
            (
                ApiOp::Responses,
                &[],
                false,
                true,
                Some(("unsupported_modality", "input")),
            ),
            (ApiOp::Embeddings, &["tools"], true, false, None),
        ];
        for (op, keys, image, audio, expected) in cases {
            let uses = Uses::read(*op, |k| keys.contains(&k), *image, *audio);
            let got = uses.check(&undeclared).err().map(|e| {
                (
                    e.wire_code().unwrap_or("").to_string(),
                    e.param.clone().unwrap_or_default(),
                )
            });
            let expected = expected.map(|(c, p)| (c.to_string(), p.to_string()));
            assert_eq!(got, expected, "{op:?} {keys:?} image={image} audio={audio}");
        }
    }

    #[test]
    fn declared_capabilities_and_listed_modalities_pass() {
        let able = model(
            &["text", "image", "audio"],
            Some(Declared {
                tools: true,
                reasoning: true,
            }),
        );
        let undeclared_entry = model(&["text", "image"], None);
        for op in [
            ApiOp::ChatCompletions,
            ApiOp::Completions,
            ApiOp::Messages,
            ApiOp::Responses,
        ] {
            let all = Uses::read(op, |_| true, true, true);
            assert_eq!(able.id, "m");
            assert!(all.check(&able).is_ok(), "{op:?}");
            // A model whose entry need not declare: tools and reasoning pass unchecked.
            let tools = Uses::read(op, |_| true, true, false);
            assert!(tools.check(&undeclared_entry).is_ok(), "{op:?}");
        }
    }

    #[test]
    fn null_and_disabled_values_ask_for_nothing() {
        let cases = [
            ("tools", json!(null), false),
            ("tools", json!([]), true),
            ("thinking", json!({"type": "disabled"}), false),
            (
                "thinking",
                json!({"type": "enabled", "budget_tokens": 1024}),
                true,
            ),
            ("reasoning", json!({"effort": "low"}), true),
        ];
        for (key, value, asks) in cases {
            assert_eq!(json_asks(key, &value), asks, "{key}: {value}");
            assert_eq!(
                raw_json_asks(key, value.to_string().as_bytes()),
                asks,
                "{key}: {value}"
            );
        }
    }
}
