//! A chat completion stream turned into Anthropic's event sequence, one chat chunk at a time:
//! `message_start` (and a `ping`) before the first block, `content_block_start` /
//! `content_block_delta` (`text_delta`, `input_json_delta`) / `content_block_stop` per block,
//! then `message_delta` (stop reason, usage) and `message_stop` at the end. Text and each tool
//! call are blocks of their own, in the order they begin; a tool call's arguments may come in
//! any number of pieces.

use serde_json::{json, Value};

use super::chars_to_tokens;
use super::response::{message_id, stop_reason, tool_input, tool_use_id, usage};

/// Tool calls whose block index is remembered (for arguments that arrive after another block
/// began); a backend sending more gets the later ones' stray pieces dropped.
const MAX_TOOL_CALLS: usize = 256;

/// One Anthropic SSE event: its `event:` name and its `data:` object.
#[derive(Debug, Clone, PartialEq)]
pub struct MessagesEvent {
    pub name: &'static str,
    pub data: Value,
}

impl MessagesEvent {
    fn new(name: &'static str, data: Value) -> MessagesEvent {
        MessagesEvent { name, data }
    }

    /// The event as SSE text: `event: name`, `data: {…}`, blank line.
    pub fn to_sse(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        // Serializing a Value cannot fail.
        let _ = serde_json::to_writer(&mut out, &self.data);
        out.extend_from_slice(b"\n\n");
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text { block: u64 },
    Tool { block: u64, call: u64 },
}

/// The translation state of one streamed answer.
#[derive(Debug)]
pub struct MessagesStream {
    public_model: String,
    fallback_id: String,
    input_estimate: u64,
    message_id: Option<String>,
    next_block: u64,
    open: Option<Open>,
    /// Chat tool-call index → its block index.
    tool_blocks: Vec<(u64, u64)>,
    finish: Option<(&'static str, Option<String>)>,
    usage: Option<Value>,
    output_chars: usize,
    ended: bool,
}

impl MessagesStream {
    /// `input_estimate` stands in for `input_tokens` in `message_start` (chat backends report
    /// usage only at the end, where `message_delta` carries the real counts).
    pub fn new(public_model: &str, fallback_id: &str, input_estimate: u64) -> MessagesStream {
        MessagesStream {
            public_model: public_model.to_string(),
            fallback_id: fallback_id.to_string(),
            input_estimate,
            message_id: None,
            next_block: 0,
            open: None,
            tool_blocks: Vec::new(),
            finish: None,
            usage: None,
            output_chars: 0,
            ended: false,
        }
    }

    /// Whether a content block has begun (text or a tool call).
    pub fn has_content(&self) -> bool {
        self.next_block > 0
    }

    /// The events one chat chunk (a `data:` object) makes.
    pub fn push(&mut self, chunk: &Value) -> Vec<MessagesEvent> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        self.start(chunk.get("id").and_then(Value::as_str), &mut out);
        if let Some(u) = usage(chunk.get("usage")) {
            self.usage = Some(u);
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return out;
        };
        if let Some(delta) = choice.get("delta") {
            if let Some(text) = delta.get("content").and_then(Value::as_str) {
                self.text(text, &mut out);
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for (position, call) in calls.iter().enumerate() {
                    self.tool_call(position as u64, call, &mut out);
                }
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(stop_reason(
                Some(finish),
                choice.get("stop_reason").and_then(Value::as_str),
            ));
        }
        out
    }

    /// The closing events, once the chat stream ended (`[DONE]` or a clean close).
    pub fn finish(&mut self) -> Vec<MessagesEvent> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        self.start(None, &mut out);
        self.close_block(&mut out);
        self.ended = true;
        let (reason, sequence) = self.finish.take().unwrap_or(("end_turn", None));
        let usage = self.usage.take().unwrap_or_else(|| {
            json!({
                "input_tokens": self.input_estimate,
                "output_tokens": chars_to_tokens(self.output_chars),
            })
        });
        out.push(MessagesEvent::new(
            "message_delta",
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": sequence},
                "usage": usage,
            }),
        ));
        out.push(MessagesEvent::new(
            "message_stop",
            json!({"type": "message_stop"}),
        ));
        out
    }

    /// An `error` event ending the stream (a failure after the client got bytes).
    pub fn error(&mut self, status: u16, message: &str) -> Vec<MessagesEvent> {
        self.ended = true;
        vec![MessagesEvent::new(
            "error",
            super::error_body(status, message),
        )]
    }

    fn start(&mut self, chat_id: Option<&str>, out: &mut Vec<MessagesEvent>) {
        if self.message_id.is_some() {
            return;
        }
        let id = message_id(chat_id, &self.fallback_id);
        out.push(MessagesEvent::new(
            "message_start",
            json!({
                "type": "message_start",
                "message": {
                    "id": id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.public_model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {"input_tokens": self.input_estimate, "output_tokens": 0},
                },
            }),
        ));
        out.push(MessagesEvent::new("ping", json!({"type": "ping"})));
        self.message_id = Some(id);
    }

    fn text(&mut self, text: &str, out: &mut Vec<MessagesEvent>) {
        if text.is_empty() {
            return;
        }
        let block = match self.open {
            Some(Open::Text { block }) => block,
            _ => {
                self.close_block(out);
                let block = self.begin_block(json!({"type": "text", "text": ""}), out);
                self.open = Some(Open::Text { block });
                block
            }
        };
        self.output_chars += text.len();
        out.push(delta(block, json!({"type": "text_delta", "text": text})));
    }

    fn tool_call(&mut self, position: u64, call: &Value, out: &mut Vec<MessagesEvent>) {
        let call_index = call
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position);
        let known = self
            .tool_blocks
            .iter()
            .find(|(c, _)| *c == call_index)
            .map(|(_, b)| *b);
        let block = match (self.open, known) {
            (Some(Open::Tool { block, call }), _) if call == call_index => block,
            // Arguments of a call whose block is already closed: still on its own index.
            (_, Some(block)) => block,
            _ => {
                self.close_block(out);
                let message_id = self.message_id.clone().unwrap_or_default();
                let id = tool_use_id(
                    call.get("id").and_then(Value::as_str),
                    &message_id,
                    call_index,
                );
                let name = call
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let block = self.begin_block(
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    out,
                );
                self.open = Some(Open::Tool {
                    block,
                    call: call_index,
                });
                if self.tool_blocks.len() < MAX_TOOL_CALLS {
                    self.tool_blocks.push((call_index, block));
                }
                block
            }
        };
        if let Some(arguments) = call.pointer("/function/arguments").and_then(Value::as_str) {
            if !arguments.is_empty() {
                self.output_chars += arguments.len();
                out.push(delta(
                    block,
                    json!({"type": "input_json_delta", "partial_json": arguments}),
                ));
            }
        }
    }

    fn begin_block(&mut self, content_block: Value, out: &mut Vec<MessagesEvent>) -> u64 {
        let block = self.next_block;
        self.next_block += 1;
        out.push(MessagesEvent::new(
            "content_block_start",
            json!({"type": "content_block_start", "index": block, "content_block": content_block}),
        ));
        block
    }

    fn close_block(&mut self, out: &mut Vec<MessagesEvent>) {
        let block = match self.open.take() {
            Some(Open::Text { block } | Open::Tool { block, .. }) => block,
            None => return,
        };
        out.push(MessagesEvent::new(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": block}),
        ));
    }
}

fn delta(block: u64, delta: Value) -> MessagesEvent {
    MessagesEvent::new(
        "content_block_delta",
        json!({"type": "content_block_delta", "index": block, "delta": delta}),
    )
}

/// The message a client builds from an event sequence, as Anthropic's SDKs do: blocks by
/// index, text and `partial_json` appended, `input` parsed at the end, `message_delta`'s
/// fields laid over `message_start`'s. Used by tests here and by the router's own.
pub fn accumulate(events: &[MessagesEvent]) -> Value {
    let mut message = Value::Null;
    let mut partial: Vec<String> = Vec::new();
    for event in events {
        let data = &event.data;
        match event.name {
            "message_start" => message = data["message"].clone(),
            "content_block_start" => {
                if let Some(content) = message["content"].as_array_mut() {
                    content.push(data["content_block"].clone());
                    partial.push(String::new());
                }
            }
            "content_block_delta" => {
                let i = data["index"].as_u64().unwrap_or(u64::MAX) as usize;
                match data["delta"]["type"].as_str() {
                    Some("text_delta") => {
                        if let Some(block) = message["content"].get_mut(i) {
                            let text = format!(
                                "{}{}",
                                block["text"].as_str().unwrap_or_default(),
                                data["delta"]["text"].as_str().unwrap_or_default()
                            );
                            block["text"] = Value::String(text);
                        }
                    }
                    Some("input_json_delta") => {
                        if let Some(p) = partial.get_mut(i) {
                            p.push_str(data["delta"]["partial_json"].as_str().unwrap_or_default());
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                for key in ["stop_reason", "stop_sequence"] {
                    message[key] = data["delta"][key].clone();
                }
                if let Some(usage) = data["usage"].as_object() {
                    for (k, v) in usage {
                        message["usage"][k] = v.clone();
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(content) = message["content"].as_array_mut() {
        for (block, json) in content.iter_mut().zip(&partial) {
            if block["type"] == "tool_use" {
                block["input"] = tool_input(json);
            }
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::response::to_messages_response;
    use super::*;

    fn names(events: &[MessagesEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.name).collect()
    }

    fn run(chunks: &[Value]) -> Vec<MessagesEvent> {
        let mut s = MessagesStream::new("public", "req", 9);
        let mut events: Vec<MessagesEvent> = chunks.iter().flat_map(|c| s.push(c)).collect();
        events.extend(s.finish());
        events
    }

    #[test]
    fn text_then_two_tool_calls_make_three_blocks() {
        let chunks = [
            json!({"id": "c1", "choices": [{"delta": {"role": "assistant", "content": ""}}]}),
            json!({"id": "c1", "choices": [{"delta": {"content": "Hi"}}]}),
            json!({"id": "c1", "choices": [{"delta": {"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "f", "arguments": "{\"a\""}}]}}]}),
            json!({"id": "c1", "choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}}]}),
            json!({"id": "c1", "choices": [{"delta": {"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "g", "arguments": "{}"}}]}}]}),
            json!({"id": "c1", "choices": [{"delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}),
        ];
        let events = run(&chunks);
        assert_eq!(
            names(&events),
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(events[0].data["message"]["id"], "msg_c1");
        assert_eq!(events[0].data["message"]["model"], "public");
        assert_eq!(
            events[5].data["content_block"],
            json!({"type": "tool_use", "id": "call_a", "name": "f", "input": {}})
        );
        assert_eq!(
            events[7].data["delta"],
            json!({"type": "input_json_delta", "partial_json": ":1}"})
        );
        assert_eq!(
            events[12].data,
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"input_tokens": 5, "output_tokens": 3}})
        );
        let sse = String::from_utf8(events[1].to_sse()).unwrap();
        assert_eq!(sse, "event: ping\ndata: {\"type\":\"ping\"}\n\n");
    }

    #[test]
    fn an_empty_stream_still_closes_the_message() {
        let events = run(&[]);
        assert_eq!(
            names(&events),
            ["message_start", "ping", "message_delta", "message_stop"]
        );
        assert_eq!(
            events[2].data["usage"],
            json!({"input_tokens": 9, "output_tokens": 0})
        );
    }

    #[test]
    fn an_error_ends_the_stream() {
        let mut s = MessagesStream::new("m", "r", 1);
        s.push(&json!({"choices": [{"delta": {"content": "x"}}]}));
        let events = s.error(502, "broke");
        assert_eq!(events[0].name, "error");
        assert_eq!(events[0].data["error"]["type"], "api_error");
        assert!(s.finish().is_empty(), "nothing follows an error");
        assert!(s
            .push(&json!({"choices": [{"delta": {"content": "y"}}]}))
            .is_empty());
    }

    /// A chat answer's pieces: text, then tool calls with their arguments.
    #[derive(Debug, Clone)]
    struct Answer {
        text: String,
        calls: Vec<(String, String)>,
        finish: &'static str,
    }

    fn answer() -> impl Strategy<Value = Answer> {
        (
            "[a-z \\n\"é]{0,40}",
            proptest::collection::vec(
                (
                    "[a-z]{1,8}",
                    proptest::collection::btree_map("[a-z]{1,5}", any::<i32>(), 0..4),
                ),
                0..3,
            ),
            prop_oneof![Just("stop"), Just("length"), Just("tool_calls")],
        )
            .prop_map(|(text, calls, finish)| Answer {
                text,
                calls: calls
                    .into_iter()
                    .map(|(name, args)| (name, serde_json::to_string(&args).unwrap_or_default()))
                    .collect(),
                finish,
            })
    }

    /// `s` cut at the given fractions (char boundaries kept).
    fn split(s: &str, cuts: &[usize]) -> Vec<String> {
        let chars: Vec<char> = s.chars().collect();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (chars.len() + 1)).collect();
        points.push(0);
        points.push(chars.len());
        points.sort_unstable();
        points.dedup();
        points
            .windows(2)
            .map(|w| chars[w[0]..w[1]].iter().collect())
            .collect()
    }

    proptest! {
        /// However the backend cuts its answer into chunks, the client builds from the events
        /// the same message the non-streamed translation gives.
        #[test]
        fn any_split_gives_the_non_streamed_message(a in answer(), cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
            let mut chunks = Vec::new();
            for piece in split(&a.text, &cuts) {
                chunks.push(json!({"id": "c9", "choices": [{"delta": {"content": piece}}]}));
            }
            for (i, (name, args)) in a.calls.iter().enumerate() {
                let pieces = split(args, &cuts);
                for (k, piece) in pieces.iter().enumerate() {
                    let mut call = json!({"index": i, "function": {"arguments": piece}});
                    if k == 0 {
                        call["id"] = json!(format!("call_{i}"));
                        call["function"]["name"] = json!(name);
                    }
                    chunks.push(json!({"id": "c9", "choices": [{"delta": {"tool_calls": [call]}}]}));
                }
            }
            chunks.push(json!({"id": "c9", "choices": [{"delta": {}, "finish_reason": a.finish}]}));
            let usage = json!({"prompt_tokens": 11, "completion_tokens": 4});
            chunks.push(json!({"id": "c9", "choices": [], "usage": usage}));

            let tool_calls: Vec<Value> = a.calls.iter().enumerate().map(|(i, (name, args))| json!({
                "id": format!("call_{i}"), "type": "function", "function": {"name": name, "arguments": args}
            })).collect();
            let mut message = json!({"role": "assistant", "content": a.text});
            if !tool_calls.is_empty() {
                message["tool_calls"] = Value::Array(tool_calls);
            }
            let whole = json!({"id": "c9", "choices": [{"message": message, "finish_reason": a.finish}], "usage": usage});

            let streamed = accumulate(&run(&chunks));
            prop_assert_eq!(streamed, to_messages_response(&whole, "public", "req"));
        }

        /// Arbitrary chunk objects never panic and always end with message_stop.
        #[test]
        fn odd_chunks_never_break_the_sequence(chunks in proptest::collection::vec(odd_chunk(), 0..8)) {
            let events = run(&chunks);
            prop_assert_eq!(events.first().map(|e| e.name), Some("message_start"));
            prop_assert_eq!(events.last().map(|e| e.name), Some("message_stop"));
            let starts = events.iter().filter(|e| e.name == "content_block_start").count();
            let stops = events.iter().filter(|e| e.name == "content_block_stop").count();
            prop_assert_eq!(starts, stops);
        }
    }

    fn odd_chunk() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!({})),
            Just(json!({"choices": null})),
            Just(json!({"choices": [{"delta": null}]})),
            Just(json!({"choices": [{"delta": {"content": 5}}]})),
            Just(json!({"choices": [{"delta": {"tool_calls": [{"function": {}}]}}]})),
            Just(json!({"choices": [{"delta": {"tool_calls": "x"}}]})),
            "[a-z]{0,3}".prop_map(|t| json!({"choices": [{"delta": {"content": t}}]})),
            (0u64..4).prop_map(|i| json!({"choices": [{"delta": {"tool_calls": [{"index": i, "function": {"arguments": "{"}}]}}]})),
        ]
    }
}
