//! The two ways a Messages stream ([`crate::translate::anthropic`]) is relayed, as dialects of
//! the shared stream relay ([`ChatStream`](super::chat_stream::ChatStream)):
//! [`MessagesFromChat`] reads a chat completion stream and writes Anthropic's events through
//! the translation state machine; [`MessagesNative`] relays a backend's own Messages events,
//! `model` rewritten in `message_start`. Both write failures as Anthropic `error` events.

use std::collections::VecDeque;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::chat_stream::{read_chat_chunk, upstream_error_event, EventCx, Step, StreamDialect};
use super::sse::SseEvent;
use crate::error::ApiError;
use crate::record::Usage;
use crate::translate::anthropic::{self, MessagesEvent, MessagesStream};

fn push_events(out: &mut VecDeque<Bytes>, events: Vec<MessagesEvent>) {
    out.extend(events.into_iter().map(|e| Bytes::from(e.to_sse())));
}

/// An Anthropic `error` event for a failure after the client's stream began.
fn error_event(e: &ApiError) -> Bytes {
    let data = anthropic::error_body(e.status().as_u16(), &e.message);
    let mut out = b"event: error\ndata: ".to_vec();
    // Serializing a Value cannot fail.
    let _ = serde_json::to_writer(&mut out, &data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// A chat completion stream translated to Anthropic's events.
pub struct MessagesFromChat {
    translator: MessagesStream,
}

impl MessagesFromChat {
    /// `request_id` names the message when the backend gives no id; `input_estimate` stands
    /// in for the input tokens until the backend's usage arrives.
    pub fn new(public_model: &str, request_id: &str, input_estimate: u64) -> MessagesFromChat {
        MessagesFromChat {
            translator: MessagesStream::new(public_model, request_id, input_estimate),
        }
    }
}

impl StreamDialect for MessagesFromChat {
    fn on_event(&mut self, event: SseEvent, cx: &mut EventCx<'_>) -> Step {
        let Some(data) = event.data else {
            return Step::Continue;
        };
        let data = data.trim();
        if data == "[DONE]" {
            push_events(cx.out, self.translator.finish());
            return Step::Done;
        }
        match read_chat_chunk(data, cx) {
            Err(e) => return Step::UpstreamError(e),
            Ok(Some(chunk)) => push_events(cx.out, self.translator.push(&chunk)),
            Ok(None) => {} // not a chunk: nothing to translate
        }
        Step::Continue
    }

    fn failed(&mut self, e: &ApiError, out: &mut VecDeque<Bytes>) {
        push_events(out, self.translator.error(e.status().as_u16(), &e.message));
    }

    fn closed(&mut self, out: &mut VecDeque<Bytes>) {
        push_events(out, self.translator.finish());
    }
}

/// The usage counts of Anthropic's `message_start` and `message_delta`.
const USAGE_KEYS: &[&str] = &[
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
];

/// A backend's own Messages stream, relayed event by event.
pub struct MessagesNative {
    public_model: String,
    /// `message_start`'s usage with `message_delta`'s laid over it.
    usage: Map<String, Value>,
}

impl MessagesNative {
    pub fn new(public_model: &str) -> MessagesNative {
        MessagesNative {
            public_model: public_model.to_string(),
            usage: Map::new(),
        }
    }

    fn take_usage(&mut self, usage: Option<&Value>, cx: &mut EventCx<'_>) {
        if let Some(Value::Object(fields)) = usage {
            // Only Anthropic's four counts: a backend cannot grow this map.
            for key in USAGE_KEYS {
                if let Some(v) = fields.get(*key).filter(|v| v.is_u64()) {
                    self.usage.insert((*key).to_string(), v.clone());
                }
            }
            if let Some(u) = Usage::from_json(&Value::Object(self.usage.clone())) {
                cx.progress.usage = Some(u);
            }
        }
    }
}

impl StreamDialect for MessagesNative {
    fn on_event(&mut self, event: SseEvent, cx: &mut EventCx<'_>) -> Step {
        let Some(data) = event.data else {
            return Step::Continue;
        };
        let Ok(mut value) = serde_json::from_str::<Value>(data.trim()) else {
            return Step::Continue; // not an Anthropic event
        };
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or_default()
            .to_string();
        match kind.as_str() {
            "error" => {
                let error = value.get("error").cloned().unwrap_or(Value::Null);
                return Step::UpstreamError(upstream_error_event(&error.to_string(), cx.redactor));
            }
            "message_start" => {
                if let Some(message) = value.get_mut("message").and_then(Value::as_object_mut) {
                    message.insert("model".into(), Value::String(self.public_model.clone()));
                }
                self.take_usage(value.pointer("/message/usage"), cx);
            }
            "content_block_delta" => {
                let delta = value.get("delta");
                let text = ["text", "partial_json", "thinking"]
                    .iter()
                    .find_map(|k| delta.and_then(|d| d.get(*k)).and_then(Value::as_str));
                cx.progress.content_chars += text.map_or(0, str::len);
                cx.progress.content_seen = true;
            }
            "message_delta" => {
                self.take_usage(value.get("usage"), cx);
                if let Some(reason) = value.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    cx.progress.finish_reasons.push(reason.to_string());
                }
                cx.progress.finish_seen = true;
                cx.progress.content_seen = true;
            }
            _ => {}
        }
        let mut out = format!("event: {kind}\ndata: ").into_bytes();
        let _ = serde_json::to_writer(&mut out, &value);
        out.extend_from_slice(b"\n\n");
        cx.out.push_back(Bytes::from(out));
        if kind == "message_stop" {
            return Step::Done;
        }
        Step::Continue
    }

    fn failed(&mut self, e: &ApiError, out: &mut VecDeque<Bytes>) {
        out.push_back(error_event(e));
    }

    fn closed(&mut self, out: &mut VecDeque<Bytes>) {
        out.push_back(Bytes::from_static(
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ));
    }
}

/// A Messages stream as the chosen route serves it.
pub enum MessagesDialect {
    Native(MessagesNative),
    Translated(MessagesFromChat),
}

impl StreamDialect for MessagesDialect {
    fn on_event(&mut self, event: SseEvent, cx: &mut EventCx<'_>) -> Step {
        match self {
            MessagesDialect::Native(d) => d.on_event(event, cx),
            MessagesDialect::Translated(d) => d.on_event(event, cx),
        }
    }

    fn failed(&mut self, e: &ApiError, out: &mut VecDeque<Bytes>) {
        match self {
            MessagesDialect::Native(d) => d.failed(e, out),
            MessagesDialect::Translated(d) => d.failed(e, out),
        }
    }

    fn closed(&mut self, out: &mut VecDeque<Bytes>) {
        match self {
            MessagesDialect::Native(d) => d.closed(out),
            MessagesDialect::Translated(d) => d.closed(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::Redactor;
    use crate::relay::chat_stream::Progress;

    fn feed(
        dialect: &mut impl StreamDialect,
        events: &[(&str, Value)],
    ) -> (Vec<String>, Progress, Option<ApiError>) {
        let redactor = Redactor::new(["sk-backend-secret"]);
        let mut out = VecDeque::new();
        let mut progress = Progress::default();
        let mut failure = None;
        for (name, data) in events {
            let event = SseEvent {
                event: Some(name.to_string()),
                data: Some(data.to_string()),
            };
            let mut cx = EventCx {
                out: &mut out,
                progress: &mut progress,
                redactor: &redactor,
            };
            match dialect.on_event(event, &mut cx) {
                Step::UpstreamError(e) => failure = Some(e),
                Step::Done | Step::Continue => {}
            }
        }
        let text = out
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        (text, progress, failure)
    }

    #[test]
    fn native_events_get_the_public_model_and_their_usage_is_read() {
        let mut native = MessagesNative::new("public");
        let (out, progress, failure) = feed(
            &mut native,
            &[
                ("message_start", json_start()),
                (
                    "content_block_delta",
                    serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hello"}}),
                ),
                (
                    "message_delta",
                    serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7, "junk": 1}}),
                ),
                ("message_stop", serde_json::json!({"type": "message_stop"})),
            ],
        );
        assert!(failure.is_none());
        assert!(
            out[0].starts_with("event: message_start\ndata: "),
            "{}",
            out[0]
        );
        assert!(out[0].contains("\"model\":\"public\"") && !out[0].contains("backend-name"));
        let usage = progress.usage.expect("usage");
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens
            ),
            (3 + 10, 7, 10)
        );
        assert!(progress.content_seen && progress.finish_seen);
        assert_eq!(progress.finish_reasons, ["end_turn"]);
        assert_eq!(progress.content_chars, 5);
        assert_eq!(
            native.usage.len(),
            3,
            "only Anthropic's counts are kept: {:?}",
            native.usage
        );
    }

    fn json_start() -> Value {
        serde_json::json!({"type": "message_start", "message": {"id": "m1", "model": "backend-name",
            "usage": {"input_tokens": 3, "output_tokens": 1, "cache_read_input_tokens": 10}}})
    }

    #[test]
    fn error_events_are_failed_attempts_with_secrets_redacted() {
        let error = serde_json::json!({"type": "error", "error": {"type": "overloaded_error", "message": "key sk-backend-secret overloaded"}});
        let (_, _, failure) = feed(&mut MessagesNative::new("m"), &[("error", error)]);
        let failure = failure.expect("an upstream error");
        assert_eq!(failure.status().as_u16(), 502);
        assert!(
            !failure.message.contains("sk-backend-secret"),
            "{}",
            failure.message
        );
        let chat_error = serde_json::json!({"error": {"message": "sk-backend-secret broke", "type": "server_error"}});
        let (out, _, failure) = feed(&mut MessagesFromChat::new("m", "r", 1), &[("", chat_error)]);
        assert!(
            out.is_empty(),
            "nothing is sent for a failed attempt: {out:?}"
        );
        assert!(!failure
            .expect("an upstream error")
            .message
            .contains("sk-backend-secret"));
    }

    #[test]
    fn late_failures_are_anthropic_error_events() {
        let e = ApiError::new(crate::error::ErrorCode::UpstreamTimeout, "too slow");
        for mut dialect in [
            MessagesDialect::Native(MessagesNative::new("m")),
            MessagesDialect::Translated(MessagesFromChat::new("m", "r", 1)),
        ] {
            let mut out = VecDeque::new();
            dialect.failed(&e, &mut out);
            let text = String::from_utf8_lossy(&out[0]).into_owned();
            assert!(text.starts_with("event: error\ndata: "), "{text}");
            assert!(
                text.contains("\"type\":\"api_error\"") && text.contains("too slow"),
                "{text}"
            );
        }
    }
}
