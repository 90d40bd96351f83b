//! `POST /v1/messages` and `/v1/messages/count_tokens`: Anthropic's Messages API as llama.cpp
//! and vLLM serve it natively. The text is the chat route's words (`"word{i} "`, cut at
//! `max_tokens`); a `tool_choice` of `any` or `tool` makes a `tool_use` block instead. Streams
//! carry Anthropic's event sequence; `error_event_first` makes a 200 stream whose only event
//! is an Anthropic `error`.

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Value};

use super::body::Plan;
use super::chat::{forced_tool, prompt_words, sse_response, word, TOOL_ARGUMENTS};
use super::errors::{json_response, Rejection};
use super::faults::{deliver, sleep_ms};
use super::request::{begin_json, JsonRequest};
use super::state::{Counters, MockState};

pub const ROUTE: &str = "/v1/messages";
pub const COUNT_ROUTE: &str = "/v1/messages/count_tokens";

fn invalid(message: &str) -> Rejection {
    Box::new(json_response(
        400,
        &json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}}),
    ))
}

/// The prompt's words: `system` plus every message's text.
fn input_tokens(body: &Value) -> u64 {
    let system = match body.get("system") {
        Some(Value::String(s)) => json!([{"role": "system", "content": s}]),
        Some(blocks @ Value::Array(_)) => json!([{"role": "system", "content": blocks}]),
        _ => json!([]),
    };
    let mut all = system.as_array().cloned().unwrap_or_default();
    all.extend(
        body.get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    );
    prompt_words(&all)
}

pub async fn create(
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

pub async fn count_tokens(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<MockState>,
) -> HttpResponse {
    let request = match begin_json(&req, payload, &state, COUNT_ROUTE).await {
        Ok(r) => r,
        Err(rejection) => return *rejection,
    };
    json_response(200, &json!({"input_tokens": input_tokens(&request.body)}))
}

async fn respond(
    request: &JsonRequest,
    state: &web::Data<MockState>,
) -> Result<HttpResponse, Rejection> {
    let s = &request.settings;
    let model = request.model()?;
    let has_messages = request
        .body
        .get("messages")
        .and_then(Value::as_array)
        .is_some_and(|m| !m.is_empty());
    if !has_messages {
        return Err(invalid("messages: Field required"));
    }
    let max_tokens = request
        .body
        .get("max_tokens")
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid("max_tokens: Field required"))?;
    let words = s.chunks.min(u32::try_from(max_tokens).unwrap_or(u32::MAX));
    let tool = forced_tool(&request.body);
    let stop_reason = match (&tool, words < s.chunks) {
        (Some(_), _) => "tool_use",
        (None, true) => "max_tokens",
        (None, false) => "end_turn",
    };
    let words = if tool.is_some() { 0 } else { words };
    let id = format!("msg_mock{:016x}", fastrand::u64(..));
    let input = input_tokens(&request.body);
    let output = u64::from(words) + u64::from(tool.is_some()) * 3;
    let stream = request.body.get("stream").and_then(Value::as_bool) == Some(true);
    if !stream {
        sleep_ms(
            s.ttft_ms.saturating_add(
                s.chunk_interval_ms
                    .saturating_mul(u64::from(words.saturating_sub(1))),
            ),
        )
        .await;
        let content = match &tool {
            Some(name) => json!([{"type": "tool_use", "id": "toolu_mock0", "name": name,
                                  "input": serde_json::from_str::<Value>(&TOOL_ARGUMENTS.concat()).unwrap_or_default()}]),
            None => json!([{"type": "text", "text": (0..words).map(word).collect::<String>()}]),
        };
        let body = json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": input, "output_tokens": output},
        });
        return Ok(deliver(
            state,
            s,
            "application/json",
            Bytes::from(body.to_string()),
        ));
    }
    let mut plan = Plan::new();
    if s.error_event_first {
        Counters::add(&state.counters.faults_injected, 1);
        let error = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        plan.data(format!("event: error\ndata: {error}\n\n"), 0);
        return Ok(sse_response(plan, state, None));
    }
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    plan.data(
        event(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input, "output_tokens": 1},
            }}),
        ),
        0,
    );
    let block = match &tool {
        Some(name) => json!({"type": "tool_use", "id": "toolu_mock0", "name": name, "input": {}}),
        None => json!({"type": "text", "text": ""}),
    };
    plan.data(
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": block}),
        ),
        0,
    );
    plan.data(event("ping", json!({"type": "ping"})), 0);
    let deltas: Vec<Value> = match &tool {
        Some(_) => TOOL_ARGUMENTS
            .iter()
            .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
            .collect(),
        None => (0..words)
            .map(|i| json!({"type": "text_delta", "text": word(i)}))
            .collect(),
    };
    let die_at = s.die_after_chunks.map(|k| k as usize);
    for (i, delta) in deltas.into_iter().enumerate() {
        plan.pause_ms(if i == 0 {
            s.ttft_ms
        } else {
            s.chunk_interval_ms
        });
        plan.data(
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": delta}),
            ),
            1,
        );
        if die_at == Some(i + 1) {
            plan.die();
            return Ok(sse_response(plan, state, None));
        }
    }
    plan.data(
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        0,
    );
    plan.data(
        event(
            "message_delta",
            json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": output}}),
        ),
        0,
    );
    plan.data(event("message_stop", json!({"type": "message_stop"})), 0);
    Ok(sse_response(plan, state, None))
}
