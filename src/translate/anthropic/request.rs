//! A Messages request checked and turned into a chat completions request: `system` first as a
//! system message, content blocks as chat parts (base64 and URL images as `image_url`),
//! `tool_use` blocks as the assistant's `tool_calls`, `tool_result` blocks as `tool` messages,
//! tools as functions, and the sampling fields under their chat names.

use serde_json::{json, Map, Value};

use super::{chars_to_tokens, str_field};
use crate::error::ApiError;

/// What the router needs to know of a valid Messages request, whichever way it is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagesFacts {
    pub model: String,
    pub stream: bool,
    pub max_tokens: u64,
    /// Bytes of text in `system`, messages, tool results and tool definitions.
    pub prompt_chars: usize,
    pub uses_image: bool,
}

impl MessagesFacts {
    /// The prompt's token estimate (about four bytes a token), used for admission and when a
    /// backend reports no usage.
    pub fn prompt_tokens(&self) -> u64 {
        chars_to_tokens(self.prompt_chars).max(1)
    }
}

/// Check a Messages request as Anthropic's API does; the facts on success, a 400 naming the
/// field otherwise.
pub fn validate(body: &Map<String, Value>) -> Result<MessagesFacts, ApiError> {
    to_chat_request(body).map(|(facts, _)| facts)
}

/// `count_tokens`' estimate when no route counts natively: the request's text at about four
/// bytes a token, plus a fixed 85 per image. Anthropic's own count differs by tokenizer; this
/// is an estimate and documented as one.
pub fn estimate_input_tokens(facts: &MessagesFacts, images: usize) -> u64 {
    chars_to_tokens(facts.prompt_chars) + 85 * images as u64
}

/// The chat request for a Messages request (`model` as the client wrote it; the relay puts
/// each route's own id in), with the facts learned on the way.
pub fn to_chat_request(
    body: &Map<String, Value>,
) -> Result<(MessagesFacts, Map<String, Value>), ApiError> {
    convert(body, true)
}

/// The same checks for a `count_tokens` body (no `max_tokens`), and the number of images seen.
pub fn count_tokens_facts(body: &Map<String, Value>) -> Result<(MessagesFacts, usize), ApiError> {
    let (facts, chat) = convert(body, false)?;
    let images = chat
        .get("messages")
        .and_then(Value::as_array)
        .map(|messages| {
            messages
                .iter()
                .filter_map(|m| m.get("content").and_then(Value::as_array))
                .flatten()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("image_url"))
                .count()
        })
        .unwrap_or(0);
    Ok((facts, images))
}

fn bad(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::bad_request(message, Some(param))
}

fn convert(
    body: &Map<String, Value>,
    require_max_tokens: bool,
) -> Result<(MessagesFacts, Map<String, Value>), ApiError> {
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.trim().to_string(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(bad("model: Field required", "model"))
        }
        Some(_) => return Err(bad("model: Input should be a valid string", "model")),
    };
    let max_tokens = match body.get("max_tokens") {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1 && n <= u32::MAX as u64) => {
            n.as_u64().unwrap_or(1)
        }
        None | Some(Value::Null) if !require_max_tokens => 0,
        None | Some(Value::Null) => return Err(bad("max_tokens: Field required", "max_tokens")),
        Some(_) => {
            return Err(bad(
                "max_tokens: Input should be a positive integer",
                "max_tokens",
            ))
        }
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("stream: Input should be a valid boolean", "stream")),
    };
    let mut facts = MessagesFacts {
        model: model.clone(),
        stream,
        max_tokens,
        prompt_chars: 0,
        uses_image: false,
    };
    let mut messages = Vec::new();
    if let Some(system) = system_text(body.get("system"), &mut facts)? {
        messages.push(json!({"role": "system", "content": system}));
    }
    let given = match body.get("messages") {
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(Value::Array(_)) => {
            return Err(bad(
                "messages: at least one message is required",
                "messages",
            ))
        }
        None | Some(Value::Null) => return Err(bad("messages: Field required", "messages")),
        Some(_) => return Err(bad("messages: Input should be a valid list", "messages")),
    };
    for (i, message) in given.iter().enumerate() {
        convert_message(i, message, &mut facts, &mut messages)?;
    }
    let mut chat = Map::new();
    chat.insert("model".into(), Value::String(model));
    chat.insert("messages".into(), Value::Array(messages));
    if max_tokens > 0 {
        chat.insert("max_tokens".into(), json!(max_tokens));
    }
    for key in ["temperature", "top_p"] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(v @ Value::Number(_)) => {
                chat.insert(key.into(), v.clone());
            }
            Some(_) => return Err(bad(format!("{key}: Input should be a valid number"), key)),
        }
    }
    match body.get("top_k") {
        None | Some(Value::Null) => {}
        Some(v @ Value::Number(n)) if n.is_u64() => {
            // Not OpenAI's, but vLLM, llama.cpp, SGLang and TGI read it.
            chat.insert("top_k".into(), v.clone());
        }
        Some(_) => return Err(bad("top_k: Input should be a valid integer", "top_k")),
    }
    if let Some(stop) = stop_sequences(body.get("stop_sequences"))? {
        chat.insert("stop".into(), stop);
    }
    match body.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(meta)) => match meta.get("user_id") {
            None | Some(Value::Null) => {}
            Some(Value::String(user)) => {
                chat.insert("user".into(), Value::String(user.clone()));
            }
            Some(_) => {
                return Err(bad(
                    "metadata.user_id: Input should be a valid string",
                    "metadata.user_id",
                ))
            }
        },
        Some(_) => {
            return Err(bad(
                "metadata: Input should be a valid dictionary",
                "metadata",
            ))
        }
    }
    if let Some(tools) = tools(body.get("tools"), &mut facts)? {
        chat.insert("tools".into(), tools);
    }
    tool_choice(body.get("tool_choice"), &mut chat)?;
    if stream {
        chat.insert("stream".into(), Value::Bool(true));
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok((facts, chat))
}

/// `system` as a string or a list of text blocks, joined.
fn system_text(
    system: Option<&Value>,
    facts: &mut MessagesFacts,
) -> Result<Option<String>, ApiError> {
    let text = match system {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (j, block) in blocks.iter().enumerate() {
                let param = format!("system[{j}]");
                match block_type(block, &param)? {
                    ("text", b) => texts.push(text_of(b, &param)?.to_string()),
                    (other, _) => {
                        return Err(bad(
                            format!("{param}: system blocks must be `text`, found `{other}`"),
                            &param,
                        ))
                    }
                }
            }
            texts.join("\n")
        }
        Some(_) => {
            return Err(bad(
                "system: Input should be a string or a list of text blocks",
                "system",
            ))
        }
    };
    facts.prompt_chars += text.len();
    Ok((!text.is_empty()).then_some(text))
}

/// A block's `type` and the block as an object.
fn block_type<'a>(
    block: &'a Value,
    param: &str,
) -> Result<(&'a str, &'a Map<String, Value>), ApiError> {
    let obj = block.as_object().ok_or_else(|| {
        bad(
            format!("{param}: Input should be a valid dictionary"),
            param,
        )
    })?;
    let kind = str_field(obj, "type")
        .ok_or_else(|| bad(format!("{param}.type: Field required"), param))?;
    Ok((kind, obj))
}

fn text_of<'a>(block: &'a Map<String, Value>, param: &str) -> Result<&'a str, ApiError> {
    str_field(block, "text").ok_or_else(|| {
        bad(
            format!("{param}.text: Input should be a valid string"),
            param,
        )
    })
}

/// An `image` block's source as the URL a chat `image_url` part takes (a data URI for
/// base64).
fn image_url(block: &Map<String, Value>, param: &str) -> Result<String, ApiError> {
    let source = block
        .get("source")
        .and_then(Value::as_object)
        .ok_or_else(|| bad(format!("{param}.source: Field required"), param))?;
    match str_field(source, "type") {
        Some("base64") => {
            let media = str_field(source, "media_type").unwrap_or_default();
            let data = str_field(source, "data").unwrap_or_default();
            if !media.starts_with("image/") || data.is_empty() {
                return Err(bad(
                    format!(
                        "{param}.source: base64 images need an image/* `media_type` and `data`"
                    ),
                    param,
                ));
            }
            Ok(format!("data:{media};base64,{data}"))
        }
        Some("url") => match str_field(source, "url") {
            Some(url) if !url.is_empty() => Ok(url.to_string()),
            _ => Err(bad(format!("{param}.source.url: Field required"), param)),
        },
        _ => Err(bad(
            format!("{param}.source.type: must be `base64` or `url`"),
            param,
        )),
    }
}

fn convert_message(
    i: usize,
    message: &Value,
    facts: &mut MessagesFacts,
    out: &mut Vec<Value>,
) -> Result<(), ApiError> {
    let param = format!("messages[{i}]");
    let obj = message.as_object().ok_or_else(|| {
        bad(
            format!("{param}: Input should be a valid dictionary"),
            &param,
        )
    })?;
    let role = match str_field(obj, "role") {
        Some(r @ ("user" | "assistant")) => r,
        _ => {
            return Err(bad(
                format!("{param}.role: Input should be 'user' or 'assistant'"),
                &param,
            ))
        }
    };
    let blocks = match obj.get("content") {
        Some(Value::String(text)) => {
            facts.prompt_chars += text.len();
            out.push(json!({"role": role, "content": text}));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(bad(
                format!("{param}.content: Input should be a string or a list of blocks"),
                &param,
            ))
        }
    };
    let mut parts: Vec<Value> = Vec::new();
    let mut tool_calls: Vec<Value> = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let param = format!("{param}.content[{j}]");
        match block_type(block, &param)? {
            ("text", b) => {
                let text = text_of(b, &param)?;
                facts.prompt_chars += text.len();
                parts.push(json!({"type": "text", "text": text}));
            }
            ("image", b) if role == "user" => {
                facts.uses_image = true;
                let url = image_url(b, &param)?;
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            ("tool_use", b) if role == "assistant" => {
                let (id, name) = match (str_field(b, "id"), str_field(b, "name")) {
                    (Some(id), Some(name)) => (id, name),
                    _ => {
                        return Err(bad(
                            format!("{param}: tool_use blocks need `id` and `name`"),
                            &param,
                        ))
                    }
                };
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                let arguments = input.to_string();
                facts.prompt_chars += name.len() + arguments.len();
                tool_calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }));
            }
            ("tool_result", b) if role == "user" => {
                // Chat wants a tool's answer as its own message, before the user's next words.
                let id = str_field(b, "tool_use_id")
                    .ok_or_else(|| bad(format!("{param}.tool_use_id: Field required"), &param))?;
                let text = tool_result_text(b, &param, facts, &mut parts)?;
                out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            }
            // Reasoning of an earlier turn: chat has no place for it.
            ("thinking" | "redacted_thinking", _) if role == "assistant" => {}
            (other, _) => {
                return Err(bad(
                    format!("{param}: `{other}` blocks are not supported in {role} messages"),
                    &param,
                ))
            }
        }
    }
    if role == "assistant" {
        let text: Vec<&str> = parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        let mut msg =
            json!({"role": "assistant", "content": (!text.is_empty()).then(|| text.concat())});
        if !tool_calls.is_empty() {
            msg["tool_calls"] = Value::Array(tool_calls);
        }
        out.push(msg);
    } else if !parts.is_empty() {
        out.push(json!({"role": "user", "content": user_content(parts)}));
    }
    Ok(())
}

/// Text-only content as one string (what every chat backend takes), parts when there are
/// images.
fn user_content(parts: Vec<Value>) -> Value {
    if parts.iter().all(|p| p["type"] == "text") {
        let text: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
        Value::String(text.join("\n"))
    } else {
        Value::Array(parts)
    }
}

/// A `tool_result`'s text (images it holds go to the user message that follows it).
fn tool_result_text(
    block: &Map<String, Value>,
    param: &str,
    facts: &mut MessagesFacts,
    images: &mut Vec<Value>,
) -> Result<String, ApiError> {
    let text = match block.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::new();
            for (k, inner) in blocks.iter().enumerate() {
                let param = format!("{param}.content[{k}]");
                match block_type(inner, &param)? {
                    ("text", b) => texts.push(text_of(b, &param)?.to_string()),
                    ("image", b) => {
                        facts.uses_image = true;
                        let url = image_url(b, &param)?;
                        images.push(json!({"type": "image_url", "image_url": {"url": url}}));
                    }
                    (other, _) => {
                        return Err(bad(
                            format!("{param}: `{other}` blocks are not supported in tool results"),
                            &param,
                        ))
                    }
                }
            }
            texts.join("\n")
        }
        Some(_) => {
            return Err(bad(
                format!("{param}.content: Input should be a string or a list of blocks"),
                param,
            ))
        }
    };
    facts.prompt_chars += text.len();
    Ok(text)
}

fn stop_sequences(given: Option<&Value>) -> Result<Option<Value>, ApiError> {
    match given {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => {
            Ok((!list.is_empty()).then(|| Value::Array(list.clone())))
        }
        Some(_) => Err(bad(
            "stop_sequences: Input should be a list of strings",
            "stop_sequences",
        )),
    }
}

/// Anthropic tools (`name`, `description`, `input_schema`) as chat functions.
fn tools(given: Option<&Value>, facts: &mut MessagesFacts) -> Result<Option<Value>, ApiError> {
    let list = match given {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(bad("tools: Input should be a valid list", "tools")),
    };
    let mut functions = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        let param = format!("tools[{i}]");
        let obj = tool.as_object().ok_or_else(|| {
            bad(
                format!("{param}: Input should be a valid dictionary"),
                &param,
            )
        })?;
        let name = match str_field(obj, "name") {
            Some(n) if !n.is_empty() => n,
            _ => return Err(bad(format!("{param}.name: Field required"), &param)),
        };
        let schema = match obj.get("input_schema") {
            Some(s @ Value::Object(_)) => s.clone(),
            _ => {
                return Err(bad(
                    format!(
                        "{param}.input_schema: Field required (server tools are not supported)"
                    ),
                    &param,
                ))
            }
        };
        let mut function = json!({"name": name, "parameters": schema});
        if let Some(description) = str_field(obj, "description") {
            function["description"] = Value::String(description.to_string());
        }
        facts.prompt_chars += function.to_string().len();
        functions.push(json!({"type": "function", "function": function}));
    }
    Ok(Some(Value::Array(functions)))
}

/// `tool_choice`: `auto`, `any` (chat's `required`), `tool` (one named function), `none`;
/// `disable_parallel_tool_use` becomes `parallel_tool_calls: false`.
fn tool_choice(given: Option<&Value>, chat: &mut Map<String, Value>) -> Result<(), ApiError> {
    let obj = match given {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(obj)) => obj,
        Some(_) => {
            return Err(bad(
                "tool_choice: Input should be a valid dictionary",
                "tool_choice",
            ))
        }
    };
    let choice = match (str_field(obj, "type"), str_field(obj, "name")) {
        (Some("auto"), _) => json!("auto"),
        (Some("any"), _) => json!("required"),
        (Some("none"), _) => json!("none"),
        (Some("tool"), Some(name)) => json!({"type": "function", "function": {"name": name}}),
        _ => {
            return Err(bad(
                "tool_choice.type: must be `auto`, `any`, `none` or `tool` (with a `name`)",
                "tool_choice",
            ))
        }
    };
    chat.insert("tool_choice".into(), choice);
    if obj.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
        chat.insert("parallel_tool_calls".into(), Value::Bool(false));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_full_request_becomes_its_chat_equivalent() {
        let body = obj(json!({
            "model": "m",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is here?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "x"},
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "look", "input": {"q": 1}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "a cat"}]},
                    {"type": "text", "text": "And now?"}
                ]}
            ],
            "stop_sequences": ["END"],
            "temperature": 0.5, "top_p": 0.9, "top_k": 40,
            "metadata": {"user_id": "u-1"},
            "tools": [{"name": "look", "description": "Look", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "stream": true
        }));
        let (facts, chat) = to_chat_request(&body).unwrap();
        assert!(facts.stream && facts.uses_image);
        assert_eq!(facts.max_tokens, 100);
        let expected = json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief.\nBe kind."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                ]},
                {"role": "assistant", "content": "Let me look.", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "look", "arguments": "{\"q\":1}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "a cat"},
                {"role": "user", "content": "And now?"}
            ],
            "max_tokens": 100,
            "temperature": 0.5, "top_p": 0.9, "top_k": 40,
            "stop": ["END"],
            "user": "u-1",
            "tools": [{"type": "function", "function": {"name": "look", "parameters": {"type": "object"}, "description": "Look"}}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "stream": true,
            "stream_options": {"include_usage": true}
        });
        assert_eq!(Value::Object(chat), expected);
    }

    #[test]
    fn tool_choice_forms() {
        for (given, expected) in [
            (json!({"type": "auto"}), json!("auto")),
            (json!({"type": "none"}), json!("none")),
            (
                json!({"type": "tool", "name": "f"}),
                json!({"type": "function", "function": {"name": "f"}}),
            ),
        ] {
            let mut chat = Map::new();
            tool_choice(Some(&given), &mut chat).unwrap();
            assert_eq!(chat["tool_choice"], expected, "{given}");
        }
    }

    /// Every malformed request is a 400 naming a parameter, never a panic.
    #[test]
    fn malformed_requests_are_400s() {
        let base = || json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
        let cases: Vec<(&str, Value)> = vec![
            ("model", Value::Null),
            ("model", json!(3)),
            ("model", json!("  ")),
            ("max_tokens", Value::Null),
            ("max_tokens", json!(0)),
            ("max_tokens", json!(-1)),
            ("max_tokens", json!(1.5)),
            ("max_tokens", json!("10")),
            ("messages", json!([])),
            ("messages", json!("hi")),
            ("messages", json!([1])),
            ("messages", json!([{"role": "system", "content": "x"}])),
            ("messages", json!([{"role": "user"}])),
            ("messages", json!([{"role": "user", "content": 5}])),
            (
                "messages",
                json!([{"role": "user", "content": [{"text": "no type"}]}]),
            ),
            (
                "messages",
                json!([{"role": "user", "content": [{"type": "text"}]}]),
            ),
            (
                "messages",
                json!([{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b"}]}]),
            ),
            (
                "messages",
                json!([{"role": "assistant", "content": [{"type": "image", "source": {}}]}]),
            ),
            (
                "messages",
                json!([{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "text/plain", "data": "x"}}]}]),
            ),
            (
                "messages",
                json!([{"role": "user", "content": [{"type": "image"}]}]),
            ),
            (
                "messages",
                json!([{"role": "user", "content": [{"type": "tool_result"}]}]),
            ),
            (
                "messages",
                json!([{"role": "user", "content": [{"type": "document"}]}]),
            ),
            ("system", json!(7)),
            ("system", json!([{"type": "image"}])),
            ("stream", json!("yes")),
            ("temperature", json!("hot")),
            ("top_k", json!(-3)),
            ("stop_sequences", json!("END")),
            ("stop_sequences", json!([1])),
            ("metadata", json!([])),
            ("metadata", json!({"user_id": 1})),
            ("tools", json!({})),
            ("tools", json!([{"name": "x"}])),
            ("tools", json!([{"input_schema": {}}])),
            ("tool_choice", json!("auto")),
            ("tool_choice", json!({"type": "tool"})),
        ];
        for (key, value) in cases {
            let mut body = obj(base());
            body.insert(key.into(), value.clone());
            let err = to_chat_request(&body).expect_err(&format!("{key}={value}"));
            assert_eq!(err.status().as_u16(), 400, "{key}={value}");
            assert!(err.param.is_some(), "{key}={value}");
        }
    }

    #[test]
    fn count_tokens_needs_no_max_tokens_and_counts_images() {
        let body = obj(json!({"model": "m", "system": "abcd", "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "abcdefgh"},
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
            ]}
        ]}));
        let (facts, images) = count_tokens_facts(&body).unwrap();
        assert_eq!(images, 1);
        assert_eq!(estimate_input_tokens(&facts, images), 3 + 85);
        assert!(
            to_chat_request(&body).is_err(),
            "messages.create needs max_tokens"
        );
    }
}
