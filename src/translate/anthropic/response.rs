//! A chat completion turned into a Messages answer: the first choice's text as a `text` block,
//! its tool calls as `tool_use` blocks with parsed `input`, `finish_reason` as `stop_reason`,
//! and usage under Anthropic's names (cache reads apart from `input_tokens`, as Anthropic
//! counts them).

use serde_json::{json, Map, Value};

/// `(stop_reason, stop_sequence)` for a chat choice's `finish_reason`. vLLM names the stop
/// string that ended the text in the choice's `stop_reason`; that makes it `stop_sequence`.
pub fn stop_reason(
    finish_reason: Option<&str>,
    matched_stop: Option<&str>,
) -> (&'static str, Option<String>) {
    match finish_reason {
        Some("length") => ("max_tokens", None),
        Some("tool_calls" | "function_call") => ("tool_use", None),
        Some("content_filter") => ("refusal", None),
        Some("stop") if matched_stop.is_some() => {
            ("stop_sequence", matched_stop.map(str::to_string))
        }
        _ => ("end_turn", None),
    }
}

/// A chat `usage` object under Anthropic's names; `None` when the backend sent none.
pub fn usage(chat_usage: Option<&Value>) -> Option<Value> {
    let u = chat_usage?.as_object()?;
    let count = |k: &str| u.get(k).and_then(Value::as_u64);
    let prompt = count("prompt_tokens");
    let completion = count("completion_tokens");
    if prompt.is_none() && completion.is_none() {
        return None;
    }
    let cached = u
        .get("prompt_tokens_details")
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut out = json!({
        "input_tokens": prompt.unwrap_or(0).saturating_sub(cached),
        "output_tokens": completion.unwrap_or(0),
    });
    if cached > 0 {
        out["cache_read_input_tokens"] = json!(cached);
    }
    Some(out)
}

/// A tool call's `arguments` text as the object Anthropic's `input` is: empty text is `{}`,
/// and so is anything that is not a JSON object (chat backends sometimes send broken JSON;
/// Anthropic clients require an object).
pub fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(Map::new()),
    }
}

/// The message id: the chat completion's id behind Anthropic's `msg_` prefix, else
/// `fallback` (the request id).
pub fn message_id(chat_id: Option<&str>, fallback: &str) -> String {
    match chat_id.filter(|id| !id.is_empty()) {
        Some(id) if id.starts_with("msg_") => id.to_string(),
        Some(id) => format!("msg_{id}"),
        None => format!("msg_{fallback}"),
    }
}

/// A tool call's id, or one made from the message id and the call's position.
pub fn tool_use_id(given: Option<&str>, message_id: &str, index: u64) -> String {
    match given.filter(|id| !id.is_empty()) {
        Some(id) => id.to_string(),
        None => format!("toolu_{message_id}_{index}"),
    }
}

/// The Messages answer for a chat completion, `model` set to the public id.
pub fn to_messages_response(chat: &Value, public_model: &str, fallback_id: &str) -> Value {
    let id = message_id(chat.get("id").and_then(Value::as_str), fallback_id);
    let choice = chat.pointer("/choices/0").cloned().unwrap_or(Value::Null);
    let message = choice.get("message").cloned().unwrap_or(Value::Null);
    let mut content = Vec::new();
    if let Some(text) = message.get("content").and_then(Value::as_str) {
        if !text.is_empty() {
            content.push(json!({"type": "text", "text": text}));
        }
    }
    let calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, call) in calls.iter().enumerate() {
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or_default();
        content.push(json!({
            "type": "tool_use",
            "id": tool_use_id(call.get("id").and_then(Value::as_str), &id, i as u64),
            "name": name,
            "input": tool_input(arguments),
        }));
    }
    let (reason, sequence) = stop_reason(
        choice.get("finish_reason").and_then(Value::as_str),
        choice.get("stop_reason").and_then(Value::as_str),
    );
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": public_model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage(chat.get("usage")).unwrap_or_else(|| json!({"input_tokens": 0, "output_tokens": 0})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_tool_calls_become_blocks() {
        let chat = json!({
            "id": "chatcmpl-1",
            "model": "backend-name",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Looking.",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"q\":\"cat\"}"}},
                    {"type": "function", "function": {"name": "broken", "arguments": "{oops"}}
                ]
            }}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 10}}
        });
        let message = to_messages_response(&chat, "public", "req1");
        assert_eq!(
            message,
            json!({
                "id": "msg_chatcmpl-1",
                "type": "message",
                "role": "assistant",
                "model": "public",
                "content": [
                    {"type": "text", "text": "Looking."},
                    {"type": "tool_use", "id": "call_1", "name": "look", "input": {"q": "cat"}},
                    {"type": "tool_use", "id": "toolu_msg_chatcmpl-1_1", "name": "broken", "input": {}}
                ],
                "stop_reason": "tool_use",
                "stop_sequence": null,
                "usage": {"input_tokens": 20, "output_tokens": 7, "cache_read_input_tokens": 10}
            })
        );
    }

    #[test]
    fn finish_reasons_map_to_stop_reasons() {
        let table = [
            (Some("stop"), None, "end_turn", None),
            (Some("stop"), Some("END"), "stop_sequence", Some("END")),
            (Some("length"), None, "max_tokens", None),
            (Some("tool_calls"), None, "tool_use", None),
            (Some("function_call"), None, "tool_use", None),
            (Some("content_filter"), None, "refusal", None),
            (None, None, "end_turn", None),
        ];
        for (finish, matched, reason, sequence) in table {
            assert_eq!(
                stop_reason(finish, matched),
                (reason, sequence.map(str::to_string)),
                "{finish:?}"
            );
        }
    }

    #[test]
    fn odd_answers_still_make_a_message() {
        for chat in [
            json!({}),
            json!({"choices": []}),
            json!({"choices": [{"message": null}]}),
            json!(null),
        ] {
            let message = to_messages_response(&chat, "m", "r");
            assert_eq!(message["type"], "message");
            assert_eq!(message["content"], json!([]));
            assert_eq!(message["usage"]["input_tokens"], 0);
        }
    }
}
