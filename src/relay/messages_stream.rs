//! The two ways a Messages stream ([`crate::translate::anthropic`]) is relayed, as dialects of
//! the shared stream relay ([`ChatStream`](super::chat_stream::ChatStream)):
//! [`MessagesFromChat`] reads a chat completion stream and writes Anthropic's events through
//! the translation state machine; [`MessagesNative`] relays a backend's own Messages events,
//! `model` rewritten in `message_start`. Both write failures as Anthropic `error` events.

use std::collections::VecDeque;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::chat_stream::{upstream_error_event, EventCx, Step, StreamDialect};
use super::shallow::JsonObject;
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
        // Shallow first, as the chat relay reads it: errors, usage, content seen.
        let Ok(obj) = JsonObject::parse(data.as_bytes()) else {
            return Step::Continue; // not a chunk: nothing to translate
        };
        if let Some(err) = obj.non_null("error") {
            return Step::UpstreamError(upstream_error_event(err.get(), cx.redactor));
        }
        if let Some(usage) = obj
            .field::<Value>("usage")
            .as_ref()
            .and_then(Usage::from_json)
        {
            cx.progress.usage = Some(usage);
        }
        if let Some(raw) = obj.get("choices") {
            cx.progress.inspect_choices(raw);
        }
        if let Ok(chunk) = serde_json::from_str::<Value>(data) {
            push_events(cx.out, self.translator.push(&chunk));
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
