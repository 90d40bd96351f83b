//! `POST /v1/chat/completions`: JSON and SSE replies made of `chunks` words `"word{i} "`.

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Value};

use super::body::{PacedBody, Plan, Tracker};
use super::errors::{bad_request, injected_error_body, injected_message, Rejection};
use super::faults::{deliver, sleep_ms};
use super::request::{begin_json, JsonRequest};
use super::settings::{Hang, MockSettings, UsageMode};
use super::state::{Counters, MockState};
use super::util::unix_now;

pub const ROUTE: &str = "/v1/chat/completions";

pub async fn completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<MockState>,
) -> HttpResponse {
    let request = match begin_json(&req, payload, &state, ROUTE).await {
        Ok(r) => r,
        Err(rejection) => return *rejection,
    };
    match respond(&request, &state).await {
        Ok(response) => response,
        Err(rejection) => *rejection,
    }
}

/// What one reply consists of, computed from the request and the settings.
struct Reply {
    id: String,
    created: u64,
    model: String,
    /// Content chunks, after `max_tokens` truncation.
    words: u32,
    finish_reason: &'static str,
    prompt_tokens: u64,
    /// The function called instead of text, when `tool_choice` demanded one.
    tool: Option<String>,
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
        Some("function") => choice
            .pointer("/function/name")
            .and_then(Value::as_str)
            .map(str::to_string),
        Some("tool") => choice
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

impl Reply {
    fn usage(&self) -> Value {
        let completion = u64::from(self.words);
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        })
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
) -> Result<HttpResponse, Rejection> {
    let s = &request.settings;
    let model = request.model()?;
    let messages = request
        .body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            bad_request(
                "`messages` is required and must be a non-empty array",
                Some("messages"),
            )
        })?;
    let limit = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| request.body.get(*k).and_then(Value::as_u64));
    let words = match limit {
        Some(l) => s.chunks.min(u32::try_from(l).unwrap_or(u32::MAX)),
        None => s.chunks,
    };
    let tool = forced_tool(&request.body);
    let reply = Reply {
        id: format!("chatcmpl-mock{:016x}", fastrand::u64(..)),
        created: unix_now(),
        model,
        words: if tool.is_some() { 0 } else { words },
        finish_reason: match (&tool, words < s.chunks) {
            (Some(_), _) => "tool_calls",
            (None, true) => "length",
            (None, false) => "stop",
        },
        prompt_tokens: prompt_words(messages),
        tool,
    };
    let stream = request.body.get("stream").and_then(Value::as_bool) == Some(true);
    if !stream {
        return Ok(non_streaming(&reply, s, state).await);
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
    Ok(sse_response(sse_plan(&reply, s, include_usage), state))
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
) -> HttpResponse {
    // A real engine takes as long to generate a reply whether or not it streams it.
    if reply.words > 0 {
        let rest = s
            .chunk_interval_ms
            .saturating_mul(u64::from(reply.words - 1));
        sleep_ms(s.ttft_ms.saturating_add(rest)).await;
    }
    let message = match &reply.tool {
        Some(name) => json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": "call_mock0", "type": "function",
            "function": {"name": name, "arguments": TOOL_ARGUMENTS.concat()},
        }]}),
        None => json!({"role": "assistant", "content": reply.content(), "refusal": null}),
    };
    let body = json!({
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": reply.finish_reason,
        }],
        "usage": reply.usage(),
    });
    deliver(state, s, "application/json", Bytes::from(body.to_string()))
}

/// Renders `data: {...}\n\n` events sharing one id, created and model.
struct Events {
    head: String,
}

impl Events {
    fn new(reply: &Reply) -> Self {
        let model = Value::String(reply.model.clone());
        Self {
            head: format!(
                r#"data: {{"id":"{}","object":"chat.completion.chunk","created":{},"model":{model},"#,
                reply.id, reply.created
            ),
        }
    }

    fn event(&self, rest: &str) -> String {
        format!("{}{rest}}}\n\n", self.head)
    }

    fn choice(&self, delta: &str, finish: &str) -> String {
        self.event(&format!(
            r#""choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]"#
        ))
    }
}

fn sse_plan(reply: &Reply, s: &MockSettings, include_usage: bool) -> Plan {
    let events = Events::new(reply);
    let mut plan = Plan::new();
    plan.data(
        events.choice(r#"{"role":"assistant","content":""}"#, "null"),
        0,
    );
    let die_at = s.die_after_chunks.map(|k| k.min(reply.words));
    if die_at == Some(0) {
        plan.die();
        return plan;
    }
    if reply.words == 0 && s.hang == Hang::MidStream {
        plan.pause_ms(s.hang_ms);
    }
    if let Some(name) = &reply.tool {
        plan.pause_ms(s.ttft_ms);
        for (k, piece) in TOOL_ARGUMENTS.iter().enumerate() {
            let mut call = json!({"index": 0, "function": {"arguments": piece}});
            if k == 0 {
                call["id"] = json!("call_mock0");
                call["type"] = json!("function");
                call["function"]["name"] = json!(name);
            }
            let delta = json!({"tool_calls": [call]}).to_string();
            plan.data(events.choice(&delta, "null"), 1);
        }
    }
    for i in 0..reply.words {
        plan.pause_ms(if i == 0 {
            s.ttft_ms
        } else {
            s.chunk_interval_ms
        });
        let delta = json!({"content": word(i)}).to_string();
        plan.data(events.choice(&delta, "null"), 1);
        if i == 0 && s.hang == Hang::MidStream {
            plan.pause_ms(s.hang_ms);
        }
        if die_at == Some(i + 1) {
            plan.die();
            return plan;
        }
    }
    let finish = format!(r#""{}""#, reply.finish_reason);
    let usage = reply.usage();
    if s.usage_mode == UsageMode::OnFinish {
        plan.data(
            events.event(&format!(
                r#""choices":[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":{finish}}}],"usage":{usage}"#
            )),
            0,
        );
    } else {
        plan.data(events.choice("{}", &finish), 0);
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

pub fn sse_response(plan: Plan, state: &web::Data<MockState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(PacedBody::new(plan, Tracker::stream(state.clone())))
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
    sse_response(plan, state)
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

    #[test]
    fn events_are_valid_json() {
        let reply = Reply {
            id: "chatcmpl-x".into(),
            created: 1,
            model: "m\"odel".into(),
            words: 2,
            finish_reason: "stop",
            prompt_tokens: 3,
            tool: None,
        };
        let events = Events::new(&reply);
        let line = events.choice(r#"{"content":"a"}"#, "null");
        let json: Value =
            serde_json::from_str(line.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(json["model"], "m\"odel");
        assert_eq!(json["choices"][0]["delta"]["content"], "a");
    }
}
