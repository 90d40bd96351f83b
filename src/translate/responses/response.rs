//! A chat completion turned into a Response object. [`ResponseMeta`] holds what both the JSON
//! answer and the event stream ([`super::stream`]) share, so both build the same object.

use serde_json::{json, Map, Value};

/// A request field a Response echoes, and OpenAI's default when the request left it out.
type Echoed = (&'static str, fn() -> Value);

/// Request fields a Response echoes.
const ECHOED: &[Echoed] = &[
    ("instructions", || Value::Null),
    ("max_output_tokens", || Value::Null),
    ("metadata", || json!({})),
    ("parallel_tool_calls", || Value::Bool(true)),
    ("reasoning", || Value::Null),
    ("temperature", || Value::Null),
    ("text", || json!({"format": {"type": "text"}})),
    ("tool_choice", || json!("auto")),
    ("tools", || json!([])),
    ("top_p", || Value::Null),
    ("user", || Value::Null),
];

/// Who the response is and what it echoes of its request.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseMeta {
    /// `resp_…`, made by the router (a chat backend keeps no response to name).
    pub id: String,
    /// The public model id.
    pub model: String,
    pub created_at: u64,
    echo: Map<String, Value>,
}

impl ResponseMeta {
    pub fn new(id: String, model: String, created_at: u64, request: &Map<String, Value>) -> Self {
        let echo = ECHOED
            .iter()
            .map(|(key, default)| {
                let value = request
                    .get(*key)
                    .filter(|v| !v.is_null())
                    .cloned()
                    .unwrap_or_else(default);
                (key.to_string(), value)
            })
            .collect();
        ResponseMeta {
            id,
            model,
            created_at,
            echo,
        }
    }

    /// The id of the output item at `index`: derived from the response's, so the JSON answer
    /// and the stream name the same items the same way.
    pub fn item_id(&self, prefix: &str, index: usize) -> String {
        let own = self.id.strip_prefix("resp_").unwrap_or(&self.id);
        format!("{prefix}_{own}{index:02}")
    }

    /// The Response object in `status`, with `output` and `usage` as given. `store` is always
    /// false: a translated response exists only in this answer.
    pub fn response(&self, status: &str, output: Vec<Value>, usage: Option<Value>) -> Value {
        let mut obj = Map::new();
        obj.insert("id".into(), Value::String(self.id.clone()));
        obj.insert("object".into(), json!("response"));
        obj.insert("created_at".into(), self.created_at.into());
        obj.insert("status".into(), json!(status));
        obj.insert("error".into(), Value::Null);
        obj.insert("incomplete_details".into(), Value::Null);
        obj.insert("model".into(), Value::String(self.model.clone()));
        obj.insert("output".into(), Value::Array(output));
        obj.insert("previous_response_id".into(), Value::Null);
        obj.insert("store".into(), Value::Bool(false));
        obj.extend(self.echo.clone());
        obj.insert("usage".into(), usage.unwrap_or(Value::Null));
        Value::Object(obj)
    }

    /// The finished Response: `completed`, or `incomplete` with the reason when the chat
    /// backend stopped for length or a content filter.
    pub fn finished(
        &self,
        output: Vec<Value>,
        finish_reason: Option<&str>,
        chat_usage: Option<&Value>,
    ) -> Value {
        let incomplete = match finish_reason {
            Some("length") => Some("max_output_tokens"),
            Some("content_filter") => Some("content_filter"),
            _ => None,
        };
        let status = if incomplete.is_some() {
            "incomplete"
        } else {
            "completed"
        };
        let mut response = self.response(status, output, chat_usage.and_then(usage));
        if let Some(reason) = incomplete {
            response["incomplete_details"] = json!({ "reason": reason });
        }
        response
    }

    pub fn message_item(&self, index: usize, text: &str, status: &str) -> Value {
        json!({
            "type": "message",
            "id": self.item_id("msg", index),
            "status": status,
            "role": "assistant",
            "content": if status == "in_progress" { json!([]) } else { json!([output_text(text)]) },
        })
    }

    pub fn call_item(&self, index: usize, call: &FunctionCall, status: &str) -> Value {
        json!({
            "type": "function_call",
            "id": self.item_id("fc", index),
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
            "status": status,
        })
    }
}

pub fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": []})
}

/// One tool call as chat reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionCall {
    pub call_id: String,
    pub name: String,
    pub arguments: String,
}

/// Chat's usage in the Responses spelling; `None` when the object has no counts.
pub fn usage(chat: &Value) -> Option<Value> {
    let count = |key: &str| chat.get(key).and_then(Value::as_u64);
    let input = count("prompt_tokens");
    let output = count("completion_tokens");
    if input.is_none() && output.is_none() {
        return None;
    }
    let (input, output) = (input.unwrap_or(0), output.unwrap_or(0));
    let detail = |path: &str| chat.pointer(path).and_then(Value::as_u64).unwrap_or(0);
    Some(json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": detail("/prompt_tokens_details/cached_tokens")},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": detail("/completion_tokens_details/reasoning_tokens")},
        "total_tokens": input.saturating_add(output),
    }))
}

/// A message's text: a string, or the text of its parts.
fn message_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// The tool calls of a chat message; a call without a name or arguments is kept with empty
/// ones, as the backend sent it.
fn message_calls(message: &Value) -> Vec<FunctionCall> {
    let Some(calls) = message.get("tool_calls").and_then(Value::as_array) else {
        return Vec::new();
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    calls
        .iter()
        .map(|call| FunctionCall {
            call_id: text(call.get("id")),
            name: text(call.pointer("/function/name")),
            arguments: text(call.pointer("/function/arguments")),
        })
        .collect()
}

/// The Response for a non-streamed chat completion: the message (when it has text, or when
/// there is nothing else), then one `function_call` item per tool call.
pub fn from_chat(meta: &ResponseMeta, chat: &Value) -> Value {
    let choice = chat.pointer("/choices/0").unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let text = message_text(message.get("content"));
    let calls = message_calls(message);
    let mut output = Vec::with_capacity(calls.len() + 1);
    if !text.is_empty() || calls.is_empty() {
        output.push(meta.message_item(0, &text, "completed"));
    }
    for call in &calls {
        let index = output.len();
        output.push(meta.call_item(index, call, "completed"));
    }
    meta.finished(
        output,
        choice.get("finish_reason").and_then(Value::as_str),
        chat.get("usage"),
    )
}

/// A Response's finish reason (for traces): why it is incomplete when it is
/// (`incomplete_details.reason`, e.g. `max_output_tokens`), else its status (`completed`).
pub fn finish_reason(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Details {
        reason: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Finish {
        status: Option<String>,
        incomplete_details: Option<Details>,
    }
    let finish: Finish = serde_json::from_slice(body).ok()?;
    finish
        .incomplete_details
        .and_then(|d| d.reason)
        .or(finish.status)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_response_s_finish_reason_is_its_incomplete_reason_else_its_status() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"status":"completed"}"#, Some("completed")),
            (
                r#"{"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"}}"#,
                Some("max_output_tokens"),
            ),
            (
                r#"{"status":"incomplete","incomplete_details":null}"#,
                Some("incomplete"),
            ),
            (r#"{"output":[]}"#, None),
            ("not json", None),
        ];
        for (body, want) in cases {
            assert_eq!(finish_reason(body.as_bytes()).as_deref(), *want, "{body}");
        }
    }

    use super::*;

    pub fn meta() -> ResponseMeta {
        let request = json!({"instructions": "be brief", "max_output_tokens": 9, "tools": null});
        ResponseMeta::new(
            "resp_abc".into(),
            "pub".into(),
            7,
            request.as_object().unwrap(),
        )
    }

    #[test]
    fn text_and_tool_calls_become_output_items_with_usage() {
        let chat = json!({
            "choices": [{"message": {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{\"c\":\"P\"}"}}
            ]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
                      "prompt_tokens_details": {"cached_tokens": 6}}
        });
        let r = from_chat(&meta(), &chat);
        assert_eq!(r["id"], "resp_abc");
        assert_eq!(r["object"], "response");
        assert_eq!(r["status"], "completed");
        assert_eq!(r["store"], false);
        assert_eq!(r["instructions"], "be brief");
        assert_eq!(r["tools"], json!([]));
        assert_eq!(
            r["output"],
            json!([
                {"type": "message", "id": "msg_abc00", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "Let me check.", "annotations": []}]},
                {"type": "function_call", "id": "fc_abc01", "call_id": "call_1", "name": "get",
                 "arguments": "{\"c\":\"P\"}", "status": "completed"}
            ])
        );
        assert_eq!(
            r["usage"],
            json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 6},
                   "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 0},
                   "total_tokens": 14})
        );
    }

    #[test]
    fn stop_reasons_map_to_status_and_incomplete_details() {
        let cases = [
            (Some("stop"), "completed", Value::Null),
            (None, "completed", Value::Null),
            (
                Some("length"),
                "incomplete",
                json!({"reason": "max_output_tokens"}),
            ),
            (
                Some("content_filter"),
                "incomplete",
                json!({"reason": "content_filter"}),
            ),
        ];
        for (finish, status, details) in cases {
            let chat = json!({"choices": [{"message": {"content": "x"}, "finish_reason": finish}]});
            let r = from_chat(&meta(), &chat);
            assert_eq!(r["status"], status, "{finish:?}");
            assert_eq!(r["incomplete_details"], details, "{finish:?}");
            assert_eq!(r["usage"], Value::Null);
        }
    }

    #[test]
    fn an_empty_or_odd_answer_still_gives_one_message_item() {
        for chat in [
            json!({}),
            json!({"choices": []}),
            json!({"choices": [{"message": {"content": null}}]}),
        ] {
            let r = from_chat(&meta(), &chat);
            assert_eq!(r["output"][0]["type"], "message", "{chat}");
            assert_eq!(r["output"][0]["content"][0]["text"], "", "{chat}");
        }
    }
}
