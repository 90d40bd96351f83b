//! `POST /v1/chat/completions`: JSON and SSE replies made of `chunks` words `"word{i} "`.

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
    /// Prompt tokens served from the cost model's prefix cache (`None` without one).
    cached_tokens: Option<u64>,
    /// Until the first content chunk (prefill), and between the next ones (decode).
    first_token: Duration,
    between_tokens: Duration,
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

fn word(i: u32) -> String {
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
    let cost_model = s.cost_model.as_ref();
    // The engine's turn: a slot (after the queue, under the cost model), held until the reply
    // is computed and sent.
    let slot = state.engine.admit(cost_model).await.map_err(|_| {
        Rejection::from(openai_error(
            503,
            "mock: the engine's queue is full".to_owned(),
            "server_error",
            None,
            Some("queue_full"),
        ))
    })?;
    let ms = Duration::from_millis;
    let (prompt_tokens, cached_tokens, first_token, between_tokens) = match cost_model {
        Some(model) => {
            let prompt = render_prompt(messages);
            let cached = state.engine.prefill(model, &prompt);
            let uncached = (prompt.len() as u64).saturating_sub(cached);
            (
                prompt.len() as u64,
                Some(cached),
                ms(s.ttft_ms).saturating_add(model.prefill(uncached)),
                ms(s.chunk_interval_ms).saturating_add(model.decode_per_token()),
            )
        }
        None => (
            prompt_words(messages),
            None,
            ms(s.ttft_ms),
            ms(s.chunk_interval_ms),
        ),
    };
    let reply = Reply {
        id: format!("chatcmpl-mock{:016x}", fastrand::u64(..)),
        created: unix_now(),
        model,
        words,
        finish_reason: if words < s.chunks { "length" } else { "stop" },
        prompt_tokens,
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

/// Words in the text of every message (string content or text parts).
fn prompt_words(messages: &[Value]) -> u64 {
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
    drop(slot);
    let mut body = json!({
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply.content(), "refusal": null},
            "logprobs": null,
            "finish_reason": reply.finish_reason,
        }],
        "usage": reply.usage(),
    });
    if let Some(timings) = reply.timings() {
        body["timings"] = timings;
    }
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
    for i in 0..reply.words {
        plan.pause(if i == 0 {
            reply.first_token
        } else {
            reply.between_tokens
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
    // The usage object, then llama.cpp's `timings` beside it (cost model only).
    let usage = format!("{}{}", reply.usage(), reply.usage_extras());
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

fn sse_response(plan: Plan, state: &web::Data<MockState>, slot: Option<SlotGuard>) -> HttpResponse {
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

    #[test]
    fn events_are_valid_json() {
        let reply = Reply {
            id: "chatcmpl-x".into(),
            created: 1,
            model: "m\"odel".into(),
            words: 2,
            finish_reason: "stop",
            prompt_tokens: 3,
            cached_tokens: None,
            first_token: Duration::ZERO,
            between_tokens: Duration::ZERO,
        };
        let events = Events::new(&reply);
        let line = events.choice(r#"{"content":"a"}"#, "null");
        let json: Value =
            serde_json::from_str(line.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(json["model"], "m\"odel");
        assert_eq!(json["choices"][0]["delta"]["content"], "a");
    }
}
