//! The two ways a Responses stream ([`crate::translate::responses`]) is relayed, as dialects of
//! the shared stream relay ([`ChatStream`](super::chat_stream::ChatStream)):
//! [`ResponsesFromChat`] reads a chat completion stream and writes `response.*` events through
//! the translation's state machine; [`ResponsesNative`] relays a backend's own `response.*`
//! events, the public model id in their response objects. Both write failures as Responses
//! `error` events, and frame every event with its `event:` name as OpenAI does.

use std::collections::VecDeque;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::Value;

use super::chat_stream::{read_chat_chunk, upstream_error_event, EventCx, Step, StreamDialect};
use super::shallow::JsonObject;
use super::sse::SseEvent;
use crate::error::ApiError;
use crate::record::Usage;
use crate::translate::responses::EventStream;

/// One SSE event as the Responses API frames it: `event:` names the type.
fn push_event(out: &mut VecDeque<Bytes>, kind: &str, data: &[u8]) {
    let mut line = Vec::with_capacity(data.len() + kind.len() + 16);
    line.extend_from_slice(b"event: ");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\ndata: ");
    line.extend_from_slice(data);
    line.extend_from_slice(b"\n\n");
    out.push_back(Bytes::from(line));
}

fn push_events(out: &mut VecDeque<Bytes>, events: Vec<Value>) {
    for event in events {
        let kind = event["type"].as_str().unwrap_or("message").to_string();
        push_event(out, &kind, &serde_json::to_vec(&event).unwrap_or_default());
    }
}

/// A chat completion stream translated to `response.*` events.
pub struct ResponsesFromChat {
    /// Boxed: the translation's state is large beside the native dialect's.
    events: Box<EventStream>,
}

impl ResponsesFromChat {
    pub fn new(events: EventStream) -> ResponsesFromChat {
        ResponsesFromChat {
            events: Box::new(events),
        }
    }
}

impl StreamDialect for ResponsesFromChat {
    fn on_event(&mut self, event: SseEvent, cx: &mut EventCx<'_>) -> Step {
        let Some(data) = event.data else {
            return Step::Continue;
        };
        let data = data.trim();
        if data == "[DONE]" {
            push_events(cx.out, self.events.finish());
            return Step::Done;
        }
        match read_chat_chunk(data, cx) {
            Err(e) => return Step::UpstreamError(e),
            Ok(Some(chunk)) => push_events(cx.out, self.events.feed(&chunk)),
            Ok(None) => {} // not a chunk: nothing to translate
        }
        Step::Continue
    }

    fn failed(&mut self, e: &ApiError, out: &mut VecDeque<Bytes>) {
        push_events(out, self.events.fail(e.wire_code(), &e.message));
    }

    fn closed(&mut self, out: &mut VecDeque<Bytes>) {
        push_events(out, self.events.finish());
    }
}

/// Called once with the id of the response a native backend stores (`store` not `false`).
pub type OnStored = Box<dyn FnOnce(String)>;

/// A backend's own Responses stream, relayed event by event.
pub struct ResponsesNative {
    public_model: String,
    on_stored: Option<OnStored>,
    last_sequence: Option<u64>,
}

/// What one native event is, for the relay's bookkeeping.
#[derive(Debug, Default, PartialEq)]
struct Reading {
    /// The backend generated something: the stream is committed once it is sent.
    content: bool,
    content_chars: usize,
    /// The response is complete (`response.completed`, `response.incomplete`).
    finished: bool,
    usage: Option<Usage>,
    /// The event reports a failure: the error object's raw JSON.
    error: Option<String>,
}

impl ResponsesNative {
    /// `on_stored` hears the id of the stored response as soon as the backend names it.
    pub fn new(public_model: &str, on_stored: Option<OnStored>) -> ResponsesNative {
        ResponsesNative {
            public_model: public_model.to_string(),
            on_stored,
            last_sequence: None,
        }
    }

    fn read(obj: &JsonObject) -> Reading {
        let kind = obj.field::<String>("type").unwrap_or_default();
        let response = || obj.field::<Value>("response").unwrap_or(Value::Null);
        let mut seen = Reading::default();
        match kind.as_str() {
            "error" => seen.error = Some(String::from_utf8_lossy(&obj.to_bytes()).into_owned()),
            "response.failed" => {
                let error = response().get("error").filter(|e| e.is_object()).cloned();
                seen.error = Some(error.map_or_else(
                    || r#"{"message":"the response failed"}"#.into(),
                    |e| e.to_string(),
                ));
            }
            "response.created" | "response.in_progress" | "response.queued" => {}
            "response.completed" | "response.incomplete" => {
                seen.finished = true;
                seen.usage = response().get("usage").and_then(Usage::from_json);
            }
            _ => {
                seen.content = true;
                seen.content_chars = obj.field::<String>("delta").map_or(0, |d| d.len());
            }
        }
        seen
    }

    /// The event as the client gets it: the public model in its response object, and the
    /// stored response's id passed on when `response.created` names it.
    fn forward(&mut self, mut obj: JsonObject, out: &mut VecDeque<Bytes>) {
        let kind = obj.field::<String>("type").unwrap_or_default();
        if let Some(n) = obj.field::<u64>("sequence_number") {
            self.last_sequence = Some(n);
        }
        let nested = obj
            .get("response")
            .and_then(|raw| JsonObject::parse(raw.as_bytes()).ok());
        if let Some(mut response) = nested {
            if kind == "response.created" {
                self.stored(
                    response.field::<String>("id"),
                    response.field::<bool>("store"),
                );
            }
            response.replace_string("model", &self.public_model);
            let text = String::from_utf8_lossy(&response.to_bytes()).into_owned();
            if let Ok(raw) = RawValue::from_string(text) {
                obj.set_raw("response", raw);
            }
        }
        push_event(out, &kind, &obj.to_bytes());
    }

    /// The backend named its response: tell `on_stored` (once) unless it is not stored.
    fn stored(&mut self, id: Option<String>, store: Option<bool>) {
        let (Some(id), Some(on_stored)) = (id, self.on_stored.take()) else {
            return;
        };
        if store != Some(false) {
            on_stored(id);
        }
    }
}

impl StreamDialect for ResponsesNative {
    fn on_event(&mut self, event: SseEvent, cx: &mut EventCx<'_>) -> Step {
        let Some(data) = event.data else {
            return Step::Continue;
        };
        let data = data.trim();
        if data == "[DONE]" {
            return Step::Done; // not part of the Responses API: nothing to relay
        }
        let Ok(obj) = JsonObject::parse(data.as_bytes()) else {
            // Not ours to judge: pass unknown payloads through untouched.
            cx.out.push_back(Bytes::from(format!("data: {data}\n\n")));
            return Step::Continue;
        };
        let seen = ResponsesNative::read(&obj);
        if let Some(err) = &seen.error {
            return Step::UpstreamError(upstream_error_event(err, cx.redactor));
        }
        if seen.usage.is_some() {
            cx.progress.usage = seen.usage;
        }
        cx.progress.content_chars += seen.content_chars;
        cx.progress.content_seen |= seen.content || seen.finished;
        cx.progress.finish_seen |= seen.finished;
        if seen.finished {
            let reason = obj
                .get("response")
                .and_then(|r| crate::translate::responses::finish_reason(r.as_bytes()));
            cx.progress.finish_reasons.extend(reason);
        }
        self.forward(obj, cx.out);
        // The completed (or incomplete) response is the stream's last event.
        if seen.finished {
            Step::Done
        } else {
            Step::Continue
        }
    }

    fn failed(&mut self, error: &ApiError, out: &mut VecDeque<Bytes>) {
        let event = serde_json::json!({
            "type": "error",
            "code": error.wire_code(),
            "message": error.message,
            "param": null,
            "sequence_number": self.last_sequence.map_or(0, |n| n + 1),
        });
        push_event(
            out,
            "error",
            &serde_json::to_vec(&event).unwrap_or_default(),
        );
    }

    /// The backend closed after its completed response: that event was the end.
    fn closed(&mut self, _out: &mut VecDeque<Bytes>) {}
}

/// A Responses stream as the chosen route serves it.
pub enum ResponsesDialect {
    Native(ResponsesNative),
    Translated(ResponsesFromChat),
}

impl StreamDialect for ResponsesDialect {
    fn on_event(&mut self, event: SseEvent, cx: &mut EventCx<'_>) -> Step {
        match self {
            ResponsesDialect::Native(d) => d.on_event(event, cx),
            ResponsesDialect::Translated(d) => d.on_event(event, cx),
        }
    }

    fn failed(&mut self, e: &ApiError, out: &mut VecDeque<Bytes>) {
        match self {
            ResponsesDialect::Native(d) => d.failed(e, out),
            ResponsesDialect::Translated(d) => d.failed(e, out),
        }
    }

    fn closed(&mut self, out: &mut VecDeque<Bytes>) {
        match self {
            ResponsesDialect::Native(d) => d.closed(out),
            ResponsesDialect::Translated(d) => d.closed(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::redact::Redactor;
    use crate::relay::chat_stream::Progress;
    use serde_json::json;
    use std::cell::RefCell;
    use std::rc::Rc;

    fn read(event: Value) -> Reading {
        ResponsesNative::read(&JsonObject::parse(event.to_string().as_bytes()).unwrap())
    }

    fn feed(dialect: &mut impl StreamDialect, event: Value) -> (Vec<String>, Progress, Step) {
        let redactor = Redactor::new(["sk-backend-secret"]);
        let (mut out, mut progress) = (VecDeque::new(), Progress::default());
        let mut cx = EventCx {
            out: &mut out,
            progress: &mut progress,
            redactor: &redactor,
        };
        let event = SseEvent {
            event: event["type"].as_str().map(str::to_string),
            data: Some(event.to_string()),
        };
        let step = dialect.on_event(event, &mut cx);
        let out = out
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        (out, progress, step)
    }

    /// Only what the backend generated commits the stream; its errors, before that, let the
    /// request go to another route; the completed response carries the usage.
    #[test]
    fn native_events_read_as_content_end_usage_or_error() {
        let completed = json!({"type": "response.completed", "response": {"usage":
            {"input_tokens": 5, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 3}}}});
        let cases = [
            (
                json!({"type": "response.created", "response": {}}),
                (false, false, false),
            ),
            (
                json!({"type": "response.in_progress", "response": {}}),
                (false, false, false),
            ),
            (
                json!({"type": "response.output_item.added", "item": {}}),
                (true, false, false),
            ),
            (
                json!({"type": "response.output_text.delta", "delta": "abc"}),
                (true, false, false),
            ),
            (completed.clone(), (false, true, false)),
            (
                json!({"type": "response.incomplete", "response": {}}),
                (false, true, false),
            ),
            (
                json!({"type": "error", "code": "x", "message": "m"}),
                (false, false, true),
            ),
            (
                json!({"type": "response.failed", "response": {"error": {"message": "m"}}}),
                (false, false, true),
            ),
            (
                json!({"type": "response.failed", "response": {}}),
                (false, false, true),
            ),
        ];
        for (event, (content, finished, error)) in cases {
            let seen = read(event.clone());
            assert_eq!(
                (seen.content, seen.finished, seen.error.is_some()),
                (content, finished, error),
                "{event}"
            );
        }
        let usage = read(completed.clone()).usage.unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens
            ),
            (5, 2, 3)
        );
        assert_eq!(
            read(json!({"type": "response.output_text.delta", "delta": "abc"})).content_chars,
            3
        );
        // Through the relay's interface: the completed response ends the stream with its usage.
        let (out, progress, step) = feed(&mut ResponsesNative::new("pub", None), completed);
        assert!(matches!(step, Step::Done) && out.len() == 1);
        assert!(progress.finish_seen && progress.usage.is_some());
        // Its finish reason: why it is incomplete, else its status.
        for (response, reason) in [
            (json!({"status": "completed"}), "completed"),
            (
                json!({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}),
                "max_output_tokens",
            ),
        ] {
            let event = json!({"type": "response.completed", "response": response});
            let (_, progress, _) = feed(&mut ResponsesNative::new("pub", None), event);
            assert_eq!(progress.finish_reasons, [reason]);
        }
    }

    #[test]
    fn native_events_are_relayed_with_their_name_and_the_public_model() {
        let stored = Rc::new(RefCell::new(Vec::new()));
        let heard = stored.clone();
        let on_stored: OnStored = Box::new(move |id| heard.borrow_mut().push(id));
        let mut dialect = ResponsesNative::new("pub", Some(on_stored));
        let event = json!({"type": "response.created", "sequence_number": 4,
                           "response": {"id": "resp_1", "model": "served", "status": "in_progress"}});
        let (out, progress, step) = feed(&mut dialect, event.clone());
        assert!(matches!(step, Step::Continue) && !progress.content_seen);
        let (head, data) = out[0].split_once('\n').unwrap();
        assert_eq!(head, "event: response.created");
        let data: Value =
            serde_json::from_str(data.trim().strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["response"]["model"], "pub");
        assert_eq!(data["response"]["id"], "resp_1");
        feed(&mut dialect, event);
        assert_eq!(*stored.borrow(), ["resp_1"], "remembered once");
        let mut out = VecDeque::new();
        dialect.failed(&ApiError::new(ErrorCode::UpstreamTimeout, "slow"), &mut out);
        let text = String::from_utf8(out.pop_front().unwrap().to_vec()).unwrap();
        assert!(text.starts_with("event: error\n"), "{text}");
        assert!(text.contains("\"sequence_number\":5"), "{text}");
    }

    #[test]
    fn a_response_not_stored_is_not_remembered_and_errors_are_redacted() {
        let stored = Rc::new(RefCell::new(Vec::<String>::new()));
        let heard = stored.clone();
        let on_stored: OnStored = Box::new(move |id| heard.borrow_mut().push(id));
        let mut dialect = ResponsesNative::new("pub", Some(on_stored));
        feed(
            &mut dialect,
            json!({"type": "response.created", "response": {"id": "r", "store": false}}),
        );
        assert!(stored.borrow().is_empty());
        let (out, _, step) = feed(
            &mut dialect,
            json!({"type": "error", "code": "x", "message": "key sk-backend-secret refused"}),
        );
        let Step::UpstreamError(e) = step else {
            panic!("an error event is a failed attempt")
        };
        assert!(out.is_empty() && !e.message.contains("sk-backend-secret"));
    }
}
