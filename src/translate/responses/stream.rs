//! Chat completion chunks in, the Responses API's `response.*` events out: a state machine fed
//! one chunk at a time, so each event can go to the client as soon as the chunk that caused it
//! arrived. Its final `response.completed` carries the same Response [`super::from_chat`]
//! builds from the whole answer (the property tests hold it to that).

use serde_json::{json, Value};

use super::response::{output_text, FunctionCall, ResponseMeta};

/// The message item being written.
struct OpenText {
    index: usize,
    text: String,
}

/// A tool call being written; `chat_index` is chat's `tool_calls[].index`.
struct OpenCall {
    chat_index: u64,
    index: usize,
    call: FunctionCall,
}

pub struct EventStream {
    meta: ResponseMeta,
    sequence: u64,
    started: bool,
    /// Finished items, in output order.
    output: Vec<Value>,
    text: Option<OpenText>,
    /// Open calls in output order; several stay open because chat may interleave them.
    calls: Vec<OpenCall>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    over: bool,
}

impl EventStream {
    pub fn new(meta: ResponseMeta) -> EventStream {
        EventStream {
            meta,
            sequence: 0,
            started: false,
            output: Vec::new(),
            text: None,
            calls: Vec::new(),
            finish_reason: None,
            usage: None,
            over: false,
        }
    }

    fn emit(&mut self, out: &mut Vec<Value>, kind: &str, mut event: Value) {
        event["type"] = json!(kind);
        event["sequence_number"] = self.sequence.into();
        self.sequence += 1;
        out.push(event);
    }

    fn start(&mut self, out: &mut Vec<Value>) {
        if self.started {
            return;
        }
        self.started = true;
        let shell = self.meta.response("in_progress", Vec::new(), None);
        self.emit(out, "response.created", json!({ "response": shell }));
        let shell = self.meta.response("in_progress", Vec::new(), None);
        self.emit(out, "response.in_progress", json!({ "response": shell }));
    }

    fn next_index(&self) -> usize {
        self.output.len() + usize::from(self.text.is_some()) + self.calls.len()
    }

    /// The events one chat chunk gives (none for role-only or usage-only chunks).
    pub fn feed(&mut self, chunk: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        if self.over {
            return out;
        }
        self.start(&mut out);
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return out;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            if !text.is_empty() {
                self.text_delta(&mut out, text);
            }
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for (position, call) in calls.iter().enumerate() {
                self.call_delta(&mut out, position as u64, call);
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_string());
        }
        out
    }

    fn text_delta(&mut self, out: &mut Vec<Value>, delta: &str) {
        if self.text.is_none() {
            // Text after tool calls starts a new message item after them.
            self.close_calls(out);
            let index = self.next_index();
            let item = self.meta.message_item(index, "", "in_progress");
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            );
            let item_id = self.meta.item_id("msg", index);
            self.emit(
                out,
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": index, "content_index": 0,
                       "part": output_text("")}),
            );
            self.text = Some(OpenText {
                index,
                text: String::new(),
            });
        }
        let Some(open) = self.text.as_mut() else {
            return;
        };
        open.text.push_str(delta);
        let index = open.index;
        let item_id = self.meta.item_id("msg", index);
        self.emit(
            out,
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": index, "content_index": 0,
                   "delta": delta, "logprobs": []}),
        );
    }

    fn call_delta(&mut self, out: &mut Vec<Value>, position: u64, delta: &Value) {
        let chat_index = delta
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position);
        let piece = |key: &str| delta.pointer(key).and_then(Value::as_str).unwrap_or("");
        let (id, name, arguments) = (
            piece("/id"),
            piece("/function/name"),
            piece("/function/arguments"),
        );
        let at = match self.calls.iter().position(|c| c.chat_index == chat_index) {
            Some(at) => at,
            None => {
                self.close_text(out);
                let index = self.next_index();
                let call = FunctionCall {
                    call_id: id.to_string(),
                    name: name.to_string(),
                    arguments: String::new(),
                };
                let item = self.meta.call_item(index, &call, "in_progress");
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": index, "item": item}),
                );
                self.calls.push(OpenCall {
                    chat_index,
                    index,
                    call,
                });
                self.calls.len() - 1
            }
        };
        let Some(open) = self.calls.get_mut(at) else {
            return;
        };
        // Some servers repeat the id and name on every delta, others send them once or split.
        if !id.is_empty() && open.call.call_id != id {
            open.call.call_id.push_str(id);
        }
        if !name.is_empty() && open.call.name != name {
            open.call.name.push_str(name);
        }
        if arguments.is_empty() {
            return;
        }
        open.call.arguments.push_str(arguments);
        let index = open.index;
        let item_id = self.meta.item_id("fc", index);
        self.emit(
            out,
            "response.function_call_arguments.delta",
            json!({"item_id": item_id, "output_index": index, "delta": arguments}),
        );
    }

    fn close_text(&mut self, out: &mut Vec<Value>) {
        let Some(open) = self.text.take() else {
            return;
        };
        let (index, text) = (open.index, open.text);
        let item_id = self.meta.item_id("msg", index);
        self.emit(
            out,
            "response.output_text.done",
            json!({"item_id": item_id, "output_index": index, "content_index": 0,
                   "text": text, "logprobs": []}),
        );
        self.emit(
            out,
            "response.content_part.done",
            json!({"item_id": item_id, "output_index": index, "content_index": 0,
                   "part": output_text(&text)}),
        );
        let item = self.meta.message_item(index, &text, "completed");
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
        self.output.push(item);
    }

    fn close_calls(&mut self, out: &mut Vec<Value>) {
        for open in std::mem::take(&mut self.calls) {
            let item_id = self.meta.item_id("fc", open.index);
            self.emit(
                out,
                "response.function_call_arguments.done",
                json!({"item_id": item_id, "output_index": open.index,
                       "name": open.call.name, "arguments": open.call.arguments}),
            );
            let item = self.meta.call_item(open.index, &open.call, "completed");
            self.emit(
                out,
                "response.output_item.done",
                json!({"output_index": open.index, "item": item}),
            );
            self.output.push(item);
        }
    }

    /// The chat stream ended well: close what is open and send `response.completed` (or
    /// `response.incomplete` when the backend stopped for length or a filter).
    pub fn finish(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        if self.over {
            return out;
        }
        self.start(&mut out);
        if self.output.is_empty() && self.text.is_none() && self.calls.is_empty() {
            // An answer with nothing in it is still one (empty) message, as in the JSON form.
            let index = self.next_index();
            let item = self.meta.message_item(index, "", "in_progress");
            self.emit(
                &mut out,
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            );
            self.text = Some(OpenText {
                index,
                text: String::new(),
            });
        }
        self.close_text(&mut out);
        self.close_calls(&mut out);
        self.over = true;
        let response = self.meta.finished(
            std::mem::take(&mut self.output),
            self.finish_reason.as_deref(),
            self.usage.as_ref(),
        );
        let kind = if response["status"] == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.emit(&mut out, kind, json!({ "response": response }));
        out
    }

    /// The backend failed after the client got events: an `error` event, then
    /// `response.failed` with what was produced so far.
    pub fn fail(&mut self, code: Option<&str>, message: &str) -> Vec<Value> {
        let mut out = Vec::new();
        if self.over {
            return out;
        }
        self.start(&mut out);
        self.over = true;
        self.emit(
            &mut out,
            "error",
            json!({"code": code, "message": message, "param": null}),
        );
        let mut response = self.meta.response(
            "failed",
            std::mem::take(&mut self.output),
            self.usage.as_ref().and_then(super::response::usage),
        );
        response["error"] = json!({"code": code.unwrap_or("server_error"), "message": message});
        self.emit(&mut out, "response.failed", json!({ "response": response }));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::response::from_chat;
    use super::*;
    use proptest::prelude::*;

    fn meta() -> ResponseMeta {
        let request = json!({"instructions": "i", "max_output_tokens": 20});
        ResponseMeta::new(
            "resp_t".into(),
            "pub".into(),
            1,
            request.as_object().unwrap(),
        )
    }

    fn chunk(delta: Value, finish: Option<&str>) -> Value {
        json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    }

    fn run(chunks: &[Value]) -> Vec<Value> {
        let mut stream = EventStream::new(meta());
        let mut events: Vec<Value> = chunks.iter().flat_map(|c| stream.feed(c)).collect();
        events.extend(stream.finish());
        events
    }

    fn kinds(events: &[Value]) -> Vec<&str> {
        events.iter().filter_map(|e| e["type"].as_str()).collect()
    }

    #[test]
    fn text_then_two_split_tool_calls_give_openai_s_event_sequence() {
        let chunks = [
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": "Hi"}), None),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "c0", "type": "function", "function": {"name": "get", "arguments": "{\"a\""}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "c1", "function": {"name": "put", "arguments": "{}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}}),
        ];
        let events = run(&chunks);
        assert_eq!(
            kinds(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let numbers: Vec<u64> = events
            .iter()
            .filter_map(|e| e["sequence_number"].as_u64())
            .collect();
        assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
        let done = events.last().unwrap();
        assert_eq!(done["response"]["output"][1]["arguments"], "{\"a\":1}");
        assert_eq!(done["response"]["output"][2]["output_index"], Value::Null);
        assert_eq!(done["response"]["output"][2]["call_id"], "c1");
        assert_eq!(done["response"]["usage"]["total_tokens"], 8);
        assert_eq!(events[0]["response"]["status"], "in_progress");
    }

    #[test]
    fn length_ends_incomplete_and_failure_ends_failed() {
        let events = run(&[chunk(json!({"content": "a"}), Some("length"))]);
        let last = events.last().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );

        let mut stream = EventStream::new(meta());
        stream.feed(&chunk(json!({"content": "a"}), None));
        let failed = stream.fail(Some("upstream_error"), "broke");
        assert_eq!(kinds(&failed), ["error", "response.failed"]);
        assert_eq!(failed[1]["response"]["status"], "failed");
        assert!(stream.finish().is_empty(), "nothing after the end");
    }

    /// A tool call: id, name, arguments.
    type Call = (String, String, String);

    /// A chat answer: text, tool calls, finish reason, prompt and completion tokens.
    fn answer() -> impl Strategy<Value = (String, Vec<Call>, String, u64, u64)> {
        (
            "[a-zé ✓\"\\\\]{0,24}",
            prop::collection::vec(
                ("c[0-9]{1,3}", "[a-z_]{1,8}", "[{}\":a-z0-9, ]{0,30}"),
                0..4,
            ),
            prop::sample::select(vec![
                "stop".to_string(),
                "length".into(),
                "tool_calls".into(),
            ]),
            0u64..5000,
            0u64..5000,
        )
    }

    /// `text` cut at the given fractions (on character boundaries).
    fn pieces(text: &str, cuts: &[usize]) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (chars.len() + 1)).collect();
        at.push(0);
        at.push(chars.len());
        at.sort_unstable();
        at.dedup();
        let split: Vec<String> = at
            .windows(2)
            .map(|w| chars[w[0]..w[1]].iter().collect())
            .collect();
        // An empty text still comes as one (empty) piece, as a backend sends it.
        if split.is_empty() {
            vec![String::new()]
        } else {
            split
        }
    }

    proptest! {
        /// However a backend splits its answer into chunks, the stream's final Response is
        /// the one the JSON translation gives, and the deltas add up to the text and arguments.
        #[test]
        fn any_split_of_chunks_gives_the_non_streamed_response(
            (text, calls, finish, prompt, completion) in answer(),
            cuts in prop::collection::vec(0usize..64, 0..6),
        ) {
            let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion,
                               "prompt_tokens_details": {"cached_tokens": prompt / 2}});
            let tool_calls: Vec<Value> = calls.iter().map(|(id, name, args)| json!({
                "id": id, "type": "function", "function": {"name": name, "arguments": args}
            })).collect();
            let mut message = json!({"role": "assistant", "content": text});
            if !tool_calls.is_empty() {
                message["tool_calls"] = json!(tool_calls);
            }
            let whole = json!({"choices": [{"message": message, "finish_reason": finish}], "usage": usage});

            let mut chunks = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
            for piece in pieces(&text, &cuts) {
                chunks.push(chunk(json!({"content": piece}), None));
            }
            for (i, (id, name, args)) in calls.iter().enumerate() {
                for (j, piece) in pieces(args, &cuts).into_iter().enumerate() {
                    let mut call = json!({"index": i, "function": {"arguments": piece}});
                    if j == 0 {
                        call["id"] = json!(id);
                        call["function"]["name"] = json!(name);
                    }
                    chunks.push(chunk(json!({"tool_calls": [call]}), None));
                }
            }
            chunks.push(chunk(json!({}), Some(&finish)));
            chunks.push(json!({"choices": [], "usage": usage}));

            let events = run(&chunks);
            let last = events.last().unwrap();
            prop_assert_eq!(&last["response"], &from_chat(&meta(), &whole));
            let streamed: String = events.iter()
                .filter(|e| e["type"] == "response.output_text.delta")
                .filter_map(|e| e["delta"].as_str()).collect();
            prop_assert_eq!(streamed, text);
            let numbers: Vec<u64> = events.iter().filter_map(|e| e["sequence_number"].as_u64()).collect();
            prop_assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
        }
    }
}
