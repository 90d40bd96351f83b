//! A Responses request read ([`ResponsesFacts::read`]) and, for a route that does not serve the
//! API itself, rewritten as a chat completions request ([`to_chat`]).

use serde_json::{json, Map, Value};

use crate::error::{ApiError, ErrorCode};

/// What every path (native or translated) needs to know of a Responses request, checked before
/// any backend is contacted.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsesFacts {
    pub model: String,
    pub stream: bool,
    /// `store`, default true as in OpenAI's API.
    pub store: bool,
    pub previous_response_id: Option<String>,
    pub max_output_tokens: Option<u64>,
    /// Characters of text in `instructions` and `input`, for token estimates.
    pub prompt_chars: usize,
    /// Whether `input` carries an `input_image` part (anywhere, tool outputs included).
    pub uses_image: bool,
    /// Whether `input` carries an `input_audio` part.
    pub uses_audio: bool,
}

/// The longest `previous_response_id` accepted (OpenAI's ids are about 50 characters).
pub const MAX_RESPONSE_ID_BYTES: usize = 256;

fn bad(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::bad_request(message, Some(param))
}

fn optional_bool(body: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(format!("`{key}` must be a boolean."), key)),
    }
}

fn optional_str<'a>(body: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("`{key}` must be a string."), key)),
    }
}

impl ResponsesFacts {
    /// Check the members every backend relies on; the rest is the backend's (native) or the
    /// translation's ([`to_chat`]) to judge.
    pub fn read(body: &Map<String, Value>) -> Result<ResponsesFacts, ApiError> {
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.trim().is_empty() => m.trim().to_string(),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                return Err(bad("Missing required parameter: `model`.", "model"))
            }
            Some(_) => return Err(bad("`model` must be a string.", "model")),
        };
        let mut prompt_chars = optional_str(body, "instructions")?.map_or(0, str::len);
        match body.get("input") {
            Some(Value::String(s)) => prompt_chars += s.len(),
            Some(Value::Array(items)) => {
                prompt_chars += items.iter().map(text_chars).sum::<usize>()
            }
            None | Some(Value::Null) => {
                return Err(bad("Missing required parameter: `input`.", "input"))
            }
            Some(_) => {
                return Err(bad(
                    "`input` must be a string or an array of input items.",
                    "input",
                ))
            }
        }
        let max_output_tokens = match body.get("max_output_tokens") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=u64::from(u32::MAX)).contains(&n) => Some(n),
                _ => {
                    return Err(bad(
                        "`max_output_tokens` must be a positive integer.",
                        "max_output_tokens",
                    ))
                }
            },
        };
        for key in ["temperature", "top_p"] {
            if !matches!(
                body.get(key),
                None | Some(Value::Null) | Some(Value::Number(_))
            ) {
                return Err(bad(format!("`{key}` must be a number."), key));
            }
        }
        if !matches!(
            body.get("tools"),
            None | Some(Value::Null) | Some(Value::Array(_))
        ) {
            return Err(bad("`tools` must be an array.", "tools"));
        }
        let previous_response_id = optional_str(body, "previous_response_id")?;
        if previous_response_id.is_some_and(|id| id.is_empty() || id.len() > MAX_RESPONSE_ID_BYTES)
        {
            return Err(bad(
                "`previous_response_id` must be a response id.",
                "previous_response_id",
            ));
        }
        let input = body.get("input");
        Ok(ResponsesFacts {
            uses_image: input.is_some_and(|v| has_part(v, "input_image")),
            uses_audio: input.is_some_and(|v| has_part(v, "input_audio")),
            model,
            stream: optional_bool(body, "stream")?.unwrap_or(false),
            store: optional_bool(body, "store")?.unwrap_or(true),
            previous_response_id: previous_response_id.map(str::to_string),
            max_output_tokens,
            prompt_chars,
        })
    }
}

/// Whether a content part of type `kind` is anywhere in `value`.
fn has_part(value: &Value, kind: &str) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|v| has_part(v, kind)),
        Value::Object(map) => {
            map.get("type").and_then(Value::as_str) == Some(kind)
                || map.values().any(|v| has_part(v, kind))
        }
        _ => false,
    }
}

/// Characters of text anywhere in one input item (string content, text parts, tool output).
fn text_chars(item: &Value) -> usize {
    match item {
        Value::String(s) => s.len(),
        Value::Array(parts) => parts.iter().map(text_chars).sum(),
        Value::Object(map) => ["content", "text", "output", "arguments"]
            .iter()
            .filter_map(|k| map.get(*k))
            .map(text_chars)
            .sum(),
        _ => 0,
    }
}

/// The chat completions request that asks a chat-only backend what `body` asks. Everything
/// the chat API cannot express is a 400 naming the parameter, never silently dropped when it
/// changes the answer (built-in tools, stored conversation state).
pub fn to_chat(body: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let facts = ResponsesFacts::read(body)?;
    if facts.previous_response_id.is_some() {
        return Err(bad(
            "`previous_response_id` needs a backend that stores responses itself; this model's \
             route serves the Responses API through chat completions, which keeps no state. \
             Send the conversation in `input` instead.",
            "previous_response_id",
        ));
    }
    for key in ["conversation", "background", "prompt"] {
        if body
            .get(key)
            .is_some_and(|v| !v.is_null() && *v != Value::Bool(false))
        {
            return Err(bad(
                format!(
                    "`{key}` is not supported for this model: its route serves the Responses \
                     API through chat completions."
                ),
                key,
            ));
        }
    }
    let mut chat = Map::new();
    chat.insert("model".into(), Value::String(facts.model.clone()));
    let mut messages = Vec::new();
    if let Some(instructions) = optional_str(body, "instructions")? {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    match body.get("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                add_item(&mut messages, i, item)?;
            }
        }
        _ => {}
    }
    if messages.is_empty() {
        return Err(bad("`input` must contain at least one item.", "input"));
    }
    chat.insert("messages".into(), Value::Array(messages));
    if facts.stream {
        chat.insert("stream".into(), Value::Bool(true));
    }
    if let Some(n) = facts.max_output_tokens {
        chat.insert("max_tokens".into(), n.into());
    }
    for key in ["temperature", "top_p", "parallel_tool_calls", "user"] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            chat.insert(key.into(), v.clone());
        }
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        if !tools.is_empty() {
            let tools = tools
                .iter()
                .enumerate()
                .map(|(i, t)| chat_tool(i, t))
                .collect::<Result<Vec<_>, _>>()?;
            chat.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(choice) = body.get("tool_choice").filter(|v| !v.is_null()) {
        chat.insert("tool_choice".into(), chat_tool_choice(choice)?);
    }
    if let Some(format) = body.get("text").and_then(|t| t.get("format")) {
        if let Some(response_format) = chat_response_format(format)? {
            chat.insert("response_format".into(), response_format);
        }
    }
    if let Some(effort) = body
        .get("reasoning")
        .and_then(|r| r.get("effort"))
        .filter(|v| v.is_string())
    {
        chat.insert("reasoning_effort".into(), effort.clone());
    }
    Ok(chat)
}

/// One input item appended to `messages`: a message, a function call (merged into the
/// assistant turn it belongs to) or a function's output.
fn add_item(messages: &mut Vec<Value>, i: usize, item: &Value) -> Result<(), ApiError> {
    let param = format!("input[{i}]");
    let Some(obj) = item.as_object() else {
        return Err(bad(format!("`{param}` must be an object."), &param));
    };
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        // An "easy" message: `{role, content}` without a type.
        None | Some(Value::Null) if obj.contains_key("role") => "message",
        _ => return Err(bad(format!("`{param}.type` is required."), &param)),
    };
    match kind {
        "message" => messages.push(chat_message(&param, obj)?),
        "function_call" => {
            let field = |key: &str| match obj.get(key) {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(bad(
                    format!("`{param}.{key}` is required and must be a string."),
                    &format!("{param}.{key}"),
                )),
            };
            let call = json!({
                "id": field("call_id")?,
                "type": "function",
                "function": {"name": field("name")?, "arguments": field("arguments")?},
            });
            // Consecutive calls are one assistant turn with several tool calls.
            match messages.last_mut() {
                Some(last) if last["role"] == "assistant" && last.get("tool_calls").is_some() => {
                    if let Some(calls) = last["tool_calls"].as_array_mut() {
                        calls.push(call);
                    }
                }
                _ => messages.push(json!({
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [call],
                })),
            }
        }
        "function_call_output" => {
            let Some(Value::String(call_id)) = obj.get("call_id") else {
                return Err(bad(
                    format!("`{param}.call_id` is required and must be a string."),
                    &format!("{param}.call_id"),
                ));
            };
            let output = match obj.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => joined_text(&param, parts)?,
                _ => {
                    return Err(bad(
                        format!("`{param}.output` must be a string or an array of parts."),
                        &format!("{param}.output"),
                    ))
                }
            };
            messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
        }
        // The model's own reasoning from an earlier turn: chat has no place for it.
        "reasoning" => {}
        "item_reference" => {
            return Err(bad(
                format!(
                    "`{param}`: item references need stored responses, which a route \
                     translated to chat completions does not keep."
                ),
                &param,
            ))
        }
        other => {
            return Err(bad(
                format!("`{param}`: input items of type `{other}` are not supported."),
                &format!("{param}.type"),
            ))
        }
    }
    Ok(())
}

fn chat_message(param: &str, obj: &Map<String, Value>) -> Result<Value, ApiError> {
    let role = match obj.get("role").and_then(Value::as_str) {
        Some(r @ ("user" | "assistant" | "system")) => r,
        // Chat backends outside OpenAI rarely know `developer`; it means what `system` means.
        Some("developer") => "system",
        _ => {
            return Err(bad(
                format!("`{param}.role` must be one of user, assistant, system, developer."),
                &format!("{param}.role"),
            ))
        }
    };
    let content = match obj.get("content") {
        Some(Value::String(s)) => Value::String(s.clone()),
        // Chat backends take assistant turns as text.
        Some(Value::Array(parts)) if role == "assistant" => {
            Value::String(joined_text(param, parts)?)
        }
        Some(Value::Array(parts)) => Value::Array(
            parts
                .iter()
                .enumerate()
                .map(|(j, part)| chat_part(&format!("{param}.content[{j}]"), part))
                .collect::<Result<_, _>>()?,
        ),
        _ => {
            return Err(bad(
                format!("`{param}.content` must be a string or an array of content parts."),
                &format!("{param}.content"),
            ))
        }
    };
    Ok(json!({"role": role, "content": content}))
}

/// Text parts (`input_text`, `output_text`) joined; other parts are refused.
fn joined_text(param: &str, parts: &[Value]) -> Result<String, ApiError> {
    let mut text = String::new();
    for (j, part) in parts.iter().enumerate() {
        match part_text(part) {
            Some(t) => text.push_str(t),
            None => {
                return Err(bad(
                    format!("`{param}` may only hold text parts here."),
                    &format!("{param}[{j}]"),
                ))
            }
        }
    }
    Ok(text)
}

fn part_text(part: &Value) -> Option<&str> {
    match part.get("type").and_then(Value::as_str) {
        Some("input_text" | "output_text" | "text") => part.get("text").and_then(Value::as_str),
        Some("refusal") => part.get("refusal").and_then(Value::as_str),
        _ => None,
    }
}

fn chat_part(param: &str, part: &Value) -> Result<Value, ApiError> {
    if let Some(text) = part_text(part) {
        return Ok(json!({"type": "text", "text": text}));
    }
    match part.get("type").and_then(Value::as_str) {
        Some("input_image") => {
            let Some(url) = part.get("image_url").and_then(Value::as_str) else {
                return Err(bad(
                    format!(
                        "`{param}`: images must be given by `image_url` (a URL or a data URL); \
                         uploaded files are not available through this router."
                    ),
                    param,
                ));
            };
            let mut image = json!({"url": url});
            if let Some(detail) = part.get("detail").filter(|d| d.is_string()) {
                image["detail"] = detail.clone();
            }
            Ok(json!({"type": "image_url", "image_url": image}))
        }
        Some(other) => Err(bad(
            format!("`{param}`: content parts of type `{other}` are not supported."),
            param,
        )),
        None => Err(bad(format!("`{param}.type` is required."), param)),
    }
}

/// A Responses function tool (flat: `{type, name, parameters}`) in chat's nested shape.
fn chat_tool(i: usize, tool: &Value) -> Result<Value, ApiError> {
    let param = format!("tools[{i}]");
    match tool.get("type").and_then(Value::as_str) {
        Some("function") => {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                return Err(bad(
                    format!("`{param}.name` is required and must be a string."),
                    &format!("{param}.name"),
                ));
            };
            let mut function = json!({"name": name});
            for key in ["description", "parameters", "strict"] {
                if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
                    function[key] = v.clone();
                }
            }
            Ok(json!({"type": "function", "function": function}))
        }
        Some(other) => Err(bad(
            format!(
                "The built-in tool `{other}` is not available: this model's route serves the \
                 Responses API through chat completions, which runs only function tools."
            ),
            &format!("{param}.type"),
        )),
        None => Err(bad(format!("`{param}.type` is required."), &param)),
    }
}

fn chat_tool_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice {
        Value::String(mode) if matches!(mode.as_str(), "auto" | "none" | "required") => {
            Ok(choice.clone())
        }
        Value::Object(obj) if obj.get("type").and_then(Value::as_str) == Some("function") => {
            match obj.get("name").and_then(Value::as_str) {
                Some(name) => Ok(json!({"type": "function", "function": {"name": name}})),
                None => Err(bad("`tool_choice.name` is required.", "tool_choice")),
            }
        }
        _ => Err(bad(
            "`tool_choice` must be auto, none, required or a function; built-in tools are not \
             available through chat completions.",
            "tool_choice",
        )),
    }
}

/// `text.format` as chat's `response_format`; plain text needs none.
fn chat_response_format(format: &Value) -> Result<Option<Value>, ApiError> {
    match format.get("type").and_then(Value::as_str) {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for key in ["name", "schema", "strict", "description"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    schema.insert(key.into(), v.clone());
                }
            }
            if !schema.contains_key("schema") {
                return Err(bad(
                    "`text.format.schema` is required for json_schema.",
                    "text.format.schema",
                ));
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        Some(other) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("`text.format` of type `{other}` is not supported."),
        )
        .with_param("text.format")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn a_full_request_becomes_the_equivalent_chat_request() {
        let chat = to_chat(&obj(json!({
            "model": "m",
            "instructions": "be brief",
            "input": [
                {"role": "user", "content": "weather?"},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "and this"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "low"}
                ]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "c1", "name": "get", "arguments": "{\"a\":1}"},
                {"type": "function_call", "call_id": "c2", "name": "get", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]},
                {"role": "developer", "content": "use celsius"}
            ],
            "tools": [{"type": "function", "name": "get", "description": "d", "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "get"},
            "parallel_tool_calls": false,
            "max_output_tokens": 50,
            "temperature": 0.2,
            "top_p": 0.9,
            "stream": true,
            "store": true,
            "metadata": {"k": "v"},
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}},
            "reasoning": {"effort": "low"}
        })))
        .unwrap();
        assert_eq!(
            Value::Object(chat),
            json!({
                "model": "m",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "weather?"},
                    {"role": "user", "content": [
                        {"type": "text", "text": "and this"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}}
                    ]},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "get", "arguments": "{\"a\":1}"}},
                        {"id": "c2", "type": "function", "function": {"name": "get", "arguments": "{}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
                    {"role": "tool", "tool_call_id": "c2", "content": "rain"},
                    {"role": "system", "content": "use celsius"}
                ],
                "stream": true,
                "max_tokens": 50,
                "temperature": 0.2,
                "top_p": 0.9,
                "parallel_tool_calls": false,
                "tools": [{"type": "function", "function": {"name": "get", "description": "d", "parameters": {"type": "object"}, "strict": true}}],
                "tool_choice": {"type": "function", "function": {"name": "get"}},
                "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": true}},
                "reasoning_effort": "low"
            })
        );
    }

    #[test]
    fn a_string_input_is_one_user_message_and_plain_text_needs_no_format() {
        let chat = to_chat(&obj(json!({
            "model": "m", "input": "hi", "text": {"format": {"type": "text"}}, "tool_choice": "auto"
        })))
        .unwrap();
        assert_eq!(
            Value::Object(chat),
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "auto"})
        );
    }

    #[test]
    fn facts_default_store_to_true_and_count_prompt_text() {
        let facts = ResponsesFacts::read(&obj(json!({
            "model": " m ", "instructions": "abc", "input": [{"role": "user", "content": [{"type": "input_text", "text": "12345"}]}]
        })))
        .unwrap();
        assert_eq!(facts.model, "m");
        assert!(facts.store && !facts.stream);
        assert_eq!(facts.prompt_chars, 8);
    }

    /// Images and audio are found wherever the input carries them; text alone uses neither.
    #[test]
    fn facts_say_whether_the_input_carries_images_or_audio() {
        let image = json!({"type": "input_image", "image_url": "data:image/png;base64,AA"});
        let audio = json!({"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}});
        let cases = [
            (json!("plain text"), (false, false)),
            (json!([{"role": "user", "content": "hi"}]), (false, false)),
            (json!([{"role": "user", "content": [image]}]), (true, false)),
            (
                json!([{"type": "message", "role": "user", "content": [audio]}]),
                (false, true),
            ),
            (
                json!([{"type": "function_call_output", "call_id": "c", "output": [image]}]),
                (true, false),
            ),
            (
                json!([{"role": "user", "content": [image, audio]}]),
                (true, true),
            ),
        ];
        for (input, expected) in cases {
            let facts = ResponsesFacts::read(&obj(json!({"model": "m", "input": input}))).unwrap();
            assert_eq!((facts.uses_image, facts.uses_audio), expected, "{input}");
        }
    }

    /// Every malformed or untranslatable request is a 400 naming the parameter at fault.
    #[test]
    fn bad_or_untranslatable_requests_are_400s_naming_the_parameter() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({"input": "x"}), "model"),
            (json!({"model": 5, "input": "x"}), "model"),
            (json!({"model": "m"}), "input"),
            (json!({"model": "m", "input": 5}), "input"),
            (json!({"model": "m", "input": []}), "input"),
            (json!({"model": "m", "input": [5]}), "input[0]"),
            (
                json!({"model": "m", "input": [{"content": "x"}]}),
                "input[0]",
            ),
            (
                json!({"model": "m", "input": [{"type": "message", "role": "robot", "content": "x"}]}),
                "input[0].role",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": 5}]}),
                "input[0].content",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
                "input[0].content[0]",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}),
                "input[0].content[0]",
            ),
            (
                json!({"model": "m", "input": [{"role": "assistant", "content": [{"type": "input_image", "image_url": "u"}]}]}),
                "input[0][0]",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
                "input[0].call_id",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]}),
                "input[0].output",
            ),
            (
                json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}),
                "input[0]",
            ),
            (
                json!({"model": "m", "input": [{"type": "computer_call_output"}]}),
                "input[0].type",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
                "tools[0].type",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
                "tools[0].name",
            ),
            (json!({"model": "m", "input": "x", "tools": {}}), "tools"),
            (
                json!({"model": "m", "input": "x", "tool_choice": {"type": "file_search"}}),
                "tool_choice",
            ),
            (
                json!({"model": "m", "input": "x", "max_output_tokens": 0}),
                "max_output_tokens",
            ),
            (
                json!({"model": "m", "input": "x", "max_output_tokens": "5"}),
                "max_output_tokens",
            ),
            (
                json!({"model": "m", "input": "x", "temperature": "hot"}),
                "temperature",
            ),
            (
                json!({"model": "m", "input": "x", "stream": "yes"}),
                "stream",
            ),
            (json!({"model": "m", "input": "x", "store": 1}), "store"),
            (
                json!({"model": "m", "input": "x", "instructions": 1}),
                "instructions",
            ),
            (
                json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
                "previous_response_id",
            ),
            (
                json!({"model": "m", "input": "x", "previous_response_id": 7}),
                "previous_response_id",
            ),
            (
                json!({"model": "m", "input": "x", "background": true}),
                "background",
            ),
            (
                json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}),
                "text.format.schema",
            ),
            (
                json!({"model": "m", "input": "x", "text": {"format": {"type": "grammar"}}}),
                "text.format",
            ),
        ];
        for (body, param) in cases {
            let e = to_chat(&obj(body.clone())).unwrap_err();
            assert_eq!(e.status().as_u16(), 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
        }
    }
}
