//! `POST /v1/chat/completions` and the legacy `POST /v1/completions`: JSON and SSE replies
//! made of `chunks` words `"word{i} "`, with the same faults, pacing and usage modes.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Value};

use super::body::{PacedBody, Plan, Tracker};
use super::engine::{render_prompt, SlotGuard};
use super::errors::{bad_request, injected_error_body, injected_message, openai_error, Rejection};
use super::faults::deliver;
use super::request::{begin_json, JsonRequest};
use super::settings::{Hang, MockSettings, UsageMode};
use super::state::{Counters, MockState};
use super::util::unix_now;

pub const ROUTE: &str = "/v1/chat/completions";
pub const TEXT_ROUTE: &str = "/v1/completions";

/// Which API a reply is shaped for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavor {
    /// Chat: `messages` in, `message` / `delta` out.
    Chat,
    /// Text completions: `prompt` in, `text` out.
    Text,
}

pub async fn completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<MockState>,
) -> HttpResponse {
    serve(req, payload, state, Flavor::Chat).await
}

pub async fn text_completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<MockState>,
) -> HttpResponse {
    serve(req, payload, state, Flavor::Text).await
}

async fn serve(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<MockState>,
    flavor: Flavor,
) -> HttpResponse {
    let route = match flavor {
        Flavor::Chat => ROUTE,
        Flavor::Text => TEXT_ROUTE,
    };
    let request = match begin_json(&req, payload, &state, route).await {
        Ok(r) => r,
        Err(rejection) => return *rejection,
    };
    match respond(&request, &state, flavor).await {
        Ok(response) => response,
        Err(rejection) => *rejection,
    }
}

/// What one reply consists of, computed from the request and the settings.
struct Reply {
    flavor: Flavor,
    id: String,
    created: u64,
    model: String,
    /// Content chunks, after `max_tokens` truncation.
    words: u32,
    finish_reason: &'static str,
    prompt_tokens: u64,
    /// The function called instead of text, when `tool_choice` demanded one.
    tool: Option<String>,
    /// Prompt tokens served from the cost model's prefix cache (`None` without one).
    cached_tokens: Option<u64>,
    /// Until the first content chunk (prefill), and between the next ones (decode).
    first_token: Duration,
    between_tokens: Duration,
}

/// Arguments of the mock's tool calls, streamed in two pieces.
pub const TOOL_ARGUMENTS: [&str; 2] = ["{\"arg\":", "\"word0\"}"];

/// The function a request makes the model call: the named one for `tool_choice` naming a
/// function, the first tool for `required`, none otherwise (as an engine that always obeys
/// `tool_choice` and never calls a tool on its own would).
pub fn forced_tool(body: &Value) -> Option<String> {
    let first = || {
        body.pointer("/tools/0/function/name")
            .or_else(|| body.pointer("/tools/0/name"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let choice = body.get("tool_choice")?;
    match choice
        .as_str()
        .or_else(|| choice.get("type").and_then(Value::as_str))
    {
        Some("required" | "any") => first(),
        // Chat names it in `function`, Anthropic (`tool`) and Responses beside the type.
        Some("function" | "tool") => choice
            .pointer("/function/name")
            .or_else(|| choice.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

impl Reply {
    fn usage(&self) -> Value {
        let completion = u64::from(self.words);
        let mut usage = json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        });
        if let Some(cached) = self.cached_tokens {
            usage["prompt_tokens_details"] = json!({"cached_tokens": cached});
        }
        usage
    }

    /// llama.cpp's `timings` (its own report of cache reuse), with the cost model only.
    fn timings(&self) -> Option<Value> {
        let cached = self.cached_tokens?;
        Some(json!({
            "cache_n": cached,
            "prompt_n": self.prompt_tokens.saturating_sub(cached),
            "prompt_ms": self.first_token.as_secs_f64() * 1000.0,
            "predicted_n": self.words,
            "predicted_ms": self.between_tokens.as_secs_f64() * 1000.0 * f64::from(self.words.saturating_sub(1)),
        }))
    }

    /// Fields after `"usage"` in the object carrying it: `,"timings":{…}` or nothing.
    fn usage_extras(&self) -> String {
        self.timings()
            .map(|t| format!(r#","timings":{t}"#))
            .unwrap_or_default()
    }

    /// How long the whole reply takes to compute.
    fn compute_time(&self) -> Duration {
        if self.words == 0 {
            return Duration::ZERO;
        }
        self.first_token
            .saturating_add(self.between_tokens.saturating_mul(self.words - 1))
    }

    fn content(&self) -> String {
        (0..self.words).map(word).collect()
    }
}

pub fn word(i: u32) -> String {
    format!("word{i} ")
}

async fn respond(
    request: &JsonRequest,
    state: &web::Data<MockState>,
    flavor: Flavor,
) -> Result<HttpResponse, Rejection> {
    let s = &request.settings;
    let model = request.model()?;
    let messages = match flavor {
        Flavor::Chat => Some(
            request
                .body
                .get("messages")
                .and_then(Value::as_array)
                .filter(|m| !m.is_empty())
                .ok_or_else(|| {
                    bad_request(
                        "`messages` is required and must be a non-empty array",
                        Some("messages"),
                    )
                })?,
        ),
        Flavor::Text => None,
    };
    let plain_prompt_tokens = match messages {
        Some(messages) => prompt_words(messages),
        None => text_prompt_tokens(request.body.get("prompt")).ok_or_else(|| {
            bad_request(
                "`prompt` must be a string, an array of strings or token ids",
                Some("prompt"),
            )
        })?,
    };
    let limit = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| request.body.get(*k).and_then(Value::as_u64));
    let words = match limit {
        Some(l) => s.chunks.min(u32::try_from(l).unwrap_or(u32::MAX)),
        None => s.chunks,
    };
    let tool = forced_tool(&request.body);
    let cost_model = s.cost_model.as_ref();
    // The engine's turn: a slot (after the queue, under the cost model), held until the reply
    // is computed and sent.
    let mut slot = state.engine.admit(cost_model).await.map_err(|_| {
        Rejection::from(openai_error(
            503,
            "mock: the engine's queue is full".to_owned(),
            "server_error",
            None,
            Some("queue_full"),
        ))
    })?;
    let ms = Duration::from_millis;
    // The cost model reads chat prompts; a text prompt is timed as without one.
    let (prompt_tokens, cached_tokens, first_token, between_tokens) = match cost_model.zip(messages)
    {
        Some((model, messages)) => {
            let prompt = render_prompt(messages);
            let cached = state.engine.prefill(model, &prompt, &mut slot);
            let uncached = (prompt.len() as u64).saturating_sub(cached);
            (
                prompt.len() as u64,
                Some(cached),
                ms(s.ttft_ms).saturating_add(model.prefill(uncached)),
                ms(s.chunk_interval_ms).saturating_add(model.decode_per_token()),
            )
        }
        None => (
            plain_prompt_tokens,
            None,
            ms(s.ttft_ms),
            ms(s.chunk_interval_ms),
        ),
    };
    let reply = Reply {
        flavor,
        id: match flavor {
            Flavor::Chat => format!("chatcmpl-mock{:016x}", fastrand::u64(..)),
            Flavor::Text => format!("cmpl-mock{:016x}", fastrand::u64(..)),
        },
        created: unix_now(),
        model,
        words: if tool.is_some() { 0 } else { words },
        finish_reason: match (&tool, words < s.chunks) {
            (Some(_), _) => "tool_calls",
            (None, true) => "length",
            (None, false) => "stop",
        },
        prompt_tokens,
        tool,
        cached_tokens,
        first_token,
        between_tokens,
    };
    let stream = request.body.get("stream").and_then(Value::as_bool) == Some(true);
    if !stream {
        return Ok(non_streaming(&reply, s, state, slot).await);
    }
    if s.error_event_first {
        return Ok(error_event_stream(
            s,
            request.echoed_credentials.as_deref(),
            state,
        ));
    }
    let include_usage = request
        .body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    Ok(sse_response(
        sse_plan(&reply, s, include_usage),
        state,
        Some(slot),
    ))
}

/// A text prompt's size: words of its strings, or its token ids; `None` when it has another
/// shape.
fn text_prompt_tokens(prompt: Option<&Value>) -> Option<u64> {
    let words = |text: &str| text.split_whitespace().count() as u64;
    match prompt? {
        Value::String(text) => Some(words(text)),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Some(words(text)),
                Value::Number(n) if n.is_u64() => Some(1),
                Value::Array(ids) if ids.iter().all(Value::is_u64) => Some(ids.len() as u64),
                _ => None,
            })
            .sum(),
        _ => None,
    }
}

/// Words in the text of every message (string content or text parts).
pub fn prompt_words(messages: &[Value]) -> u64 {
    let words = |text: &str| text.split_whitespace().count() as u64;
    messages
        .iter()
        .map(|m| match m.get("content") {
            Some(Value::String(text)) => words(text),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .map(words)
                .sum(),
            _ => 0,
        })
        .sum()
}

async fn non_streaming(
    reply: &Reply,
    s: &MockSettings,
    state: &web::Data<MockState>,
    slot: SlotGuard,
) -> HttpResponse {
    // A real engine takes as long to generate a reply whether or not it streams it.
    let compute = reply.compute_time();
    if !compute.is_zero() {
        tokio::time::sleep(compute).await;
    }
    let (object, choice) = match reply.flavor {
        Flavor::Chat => {
            let message = match &reply.tool {
                Some(name) => json!({"role": "assistant", "content": null, "tool_calls": [{
                    "id": "call_mock0", "type": "function",
                    "function": {"name": name, "arguments": TOOL_ARGUMENTS.concat()},
                }]}),
                None => {
                    json!({"role": "assistant", "content": reply.content(), "refusal": null})
                }
            };
            (
                "chat.completion",
                json!({
                    "index": 0,
                    "message": message,
                    "logprobs": null,
                    "finish_reason": reply.finish_reason,
                }),
            )
        }
        Flavor::Text => (
            "text_completion",
            json!({
                "index": 0,
                "text": reply.content(),
                "logprobs": null,
                "finish_reason": reply.finish_reason,
            }),
        ),
    };
    drop(slot);
    let mut body = json!({
        "id": reply.id,
        "object": object,
        "created": reply.created,
        "model": reply.model,
        "choices": [choice],
        "usage": reply.usage(),
    });
    if let Some(timings) = reply.timings() {
        body["timings"] = timings;
    }
    deliver(state, s, "application/json", Bytes::from(body.to_string()))
}

/// Renders `data: {...}\n\n` events sharing one id, created and model.
struct Events {
    flavor: Flavor,
    head: String,
}

impl Events {
    fn new(reply: &Reply) -> Self {
        let model = Value::String(reply.model.clone());
        let object = match reply.flavor {
            Flavor::Chat => "chat.completion.chunk",
            Flavor::Text => "text_completion",
        };
        Self {
            flavor: reply.flavor,
            head: format!(
                r#"data: {{"id":"{}","object":"{object}","created":{},"model":{model},"#,
                reply.id, reply.created
            ),
        }
    }

    fn event(&self, rest: &str) -> String {
        format!("{}{rest}}}\n\n", self.head)
    }

    /// One choice carrying `text` (a JSON string) or nothing (`None`), and `finish`.
    fn choice(&self, text: Option<&str>, finish: &str) -> String {
        let content = match (self.flavor, text) {
            (Flavor::Chat, Some(text)) => format!(r#""delta":{{"content":{text}}}"#),
            (Flavor::Chat, None) => r#""delta":{}"#.to_owned(),
            (Flavor::Text, Some(text)) => format!(r#""text":{text}"#),
            (Flavor::Text, None) => r#""text":"""#.to_owned(),
        };
        self.event(&format!(
            r#""choices":[{{"index":0,{content},"logprobs":null,"finish_reason":{finish}}}]"#
        ))
    }
}

fn sse_plan(reply: &Reply, s: &MockSettings, include_usage: bool) -> Plan {
    let events = Events::new(reply);
    let mut plan = Plan::new();
    if reply.flavor == Flavor::Chat {
        plan.data(
            events.event(
                r#""choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
            ),
            0,
        );
    }
    let die_at = s.die_after_chunks.map(|k| k.min(reply.words));
    if die_at == Some(0) {
        plan.die();
        return plan;
    }
    if reply.words == 0 && s.hang == Hang::MidStream {
        plan.pause_ms(s.hang_ms);
    }
    if let Some(name) = &reply.tool {
        plan.pause(reply.first_token);
        for (k, piece) in TOOL_ARGUMENTS.iter().enumerate() {
            let mut call = json!({"index": 0, "function": {"arguments": piece}});
            if k == 0 {
                call["id"] = json!("call_mock0");
                call["type"] = json!("function");
                call["function"]["name"] = json!(name);
            }
            let delta = json!({"tool_calls": [call]}).to_string();
            plan.data(
                events.event(&format!(
                    r#""choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":null}}]"#
                )),
                1,
            );
        }
    }
    for i in 0..reply.words {
        plan.pause(if i == 0 {
            reply.first_token
        } else {
            reply.between_tokens
        });
        let text = Value::String(word(i)).to_string();
        plan.data(events.choice(Some(&text), "null"), 1);
        if i == 0 && s.hang == Hang::MidStream {
            plan.pause_ms(s.hang_ms);
        }
        if die_at == Some(i + 1) {
            plan.die();
            return plan;
        }
    }
    let finish = format!(r#""{}""#, reply.finish_reason);
    // The usage object, then llama.cpp's `timings` beside it (cost model only).
    let usage = format!("{}{}", reply.usage(), reply.usage_extras());
    let last = events.choice(None, &finish);
    if s.usage_mode == UsageMode::OnFinish {
        // The finish chunk with `"usage":…` spliced in before its closing brace.
        let body = last.trim_end().trim_end_matches('}');
        plan.data(format!("{body},\"usage\":{usage}}}\n\n"), 0);
    } else {
        plan.data(last, 0);
    }
    match s.usage_mode {
        UsageMode::Always => {
            plan.data(events.event(&format!(r#""choices":[],"usage":{usage}"#)), 0)
        }
        UsageMode::Auto if include_usage => {
            plan.data(events.event(&format!(r#""choices":[],"usage":{usage}"#)), 0)
        }
        UsageMode::ChoicesNull => plan.data(
            events.event(&format!(r#""choices":null,"usage":{usage}"#)),
            0,
        ),
        _ => {}
    }
    plan.data(Bytes::from_static(b"data: [DONE]\n\n"), 0);
    plan
}

pub fn sse_response(
    plan: Plan,
    state: &web::Data<MockState>,
    slot: Option<SlotGuard>,
) -> HttpResponse {
    let mut body = PacedBody::new(plan, Tracker::stream(state.clone()));
    if let Some(slot) = slot {
        body = body.holding(slot);
    }
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(body)
}

/// `error_event_first`: a 200 stream whose only event is an error, then `[DONE]`.
fn error_event_stream(
    s: &MockSettings,
    credentials: Option<&str>,
    state: &web::Data<MockState>,
) -> HttpResponse {
    Counters::add(&state.counters.faults_injected, 1);
    let message = injected_message(s.fail_status, credentials, s.error_padding_bytes);
    let error = injected_error_body(s.error_style, s.fail_status, &message);
    let mut plan = Plan::new();
    plan.data(format!("data: {error}\n\ndata: [DONE]\n\n"), 0);
    sse_response(plan, state, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_words_counts_strings_and_text_parts() {
        let messages = json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "what is  this"},
                {"type": "image_url", "image_url": {"url": "data:..."}}
            ]},
            {"role": "assistant", "content": null}
        ]);
        assert_eq!(prompt_words(messages.as_array().unwrap()), 5);
    }

    fn reply(flavor: Flavor, model: &str) -> Reply {
        Reply {
            flavor,
            id: "cmpl-x".into(),
            created: 1,
            model: model.into(),
            words: 2,
            finish_reason: "stop",
            prompt_tokens: 3,
            tool: None,
            cached_tokens: None,
            first_token: Duration::ZERO,
            between_tokens: Duration::ZERO,
        }
    }

    #[test]
    fn events_are_valid_json() {
        let reply = reply(Flavor::Chat, "m\"odel");
        let events = Events::new(&reply);
        let line = events.choice(Some(r#""a""#), "null");
        let json: Value =
            serde_json::from_str(line.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(json["model"], "m\"odel");
        assert_eq!(json["choices"][0]["delta"]["content"], "a");
    }

    #[test]
    fn text_events_carry_text_and_every_plan_event_is_json() {
        for flavor in [Flavor::Chat, Flavor::Text] {
            let reply = reply(flavor, "m");
            let events = Events::new(&reply);
            let line = events.choice(Some(r#""a""#), "null");
            let json: Value =
                serde_json::from_str(line.strip_prefix("data: ").unwrap().trim_end()).unwrap();
            let text = match flavor {
                Flavor::Chat => &json["choices"][0]["delta"]["content"],
                Flavor::Text => &json["choices"][0]["text"],
            };
            assert_eq!(text, "a", "{flavor:?}");
            let finish = events.choice(None, r#""stop""#);
            let body = finish.trim_end().trim_end_matches('}');
            let with_usage = format!("{body},\"usage\":{}}}", reply.usage());
            let json: Value = serde_json::from_str(with_usage.strip_prefix("data: ").unwrap())
                .unwrap_or_else(|e| panic!("{flavor:?}: {e}: {with_usage}"));
            assert_eq!(json["usage"]["prompt_tokens"], 3);
        }
    }

    #[test]
    fn text_prompts_count_words_or_token_ids() {
        let cases = [
            (json!("a b c"), Some(3)),
            (json!(["a b", "c"]), Some(3)),
            (json!([1, 2, 3, 4]), Some(4)),
            (json!([[1, 2], [3]]), Some(3)),
            (json!([]), None),
            (json!({"x": 1}), None),
            (json!([true]), None),
        ];
        for (prompt, tokens) in cases {
            assert_eq!(text_prompt_tokens(Some(&prompt)), tokens, "{prompt}");
        }
        assert_eq!(text_prompt_tokens(None), None);
    }
}
