//! `POST /v1/responses`: OpenAI's Responses API as vLLM and llama.cpp serve it natively. The
//! answer is `chunks` words, or a call of the function `tool_choice` demands (as the chat mock
//! makes one: [`super::chat::forced_tool`]). Stored responses (`store`, default true) are
//! remembered in memory (bounded), so `previous_response_id` works on the mock that made the
//! response and is a 400 `previous_response_not_found` on any other.

use std::collections::{HashMap, VecDeque};

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Value};

use super::body::{PacedBody, Plan, Tracker};
use super::chat::{forced_tool, TOOL_ARGUMENTS};
use super::errors::{
    injected_error_body, injected_message, json_response, not_found, openai_error, Rejection,
};
use super::faults::{deliver, sleep_ms};
use super::request::{begin_json, JsonRequest};
use super::state::{lock, Counters, MockState};
use super::util::unix_now;

pub const ROUTE: &str = "/v1/responses";

/// Most responses one mock remembers; the oldest are forgotten first.
const MAX_STORED: usize = 10_000;

/// Stored responses by id, and their ids oldest first.
#[derive(Default)]
pub struct StoredResponses {
    by_id: HashMap<String, Value>,
    order: VecDeque<String>,
}

impl StoredResponses {
    fn insert(&mut self, id: String, response: Value) {
        if self.order.len() >= MAX_STORED {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
        self.by_id.insert(id.clone(), response);
        self.order.push_back(id);
    }

    fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    pub fn clear(&mut self) {
        self.by_id.clear();
        self.order.clear();
    }
}

pub const ONE_ROUTE: &str = "/v1/responses/{id}";

/// `GET /v1/responses/{id}`: a stored response, or 404.
pub async fn get(req: HttpRequest, state: web::Data<MockState>) -> HttpResponse {
    let id = req.match_info().get("id").unwrap_or_default().to_string();
    state.count(ONE_ROUTE);
    match lock(&state.responses).by_id.get(&id) {
        Some(response) => json_response(200, response),
        None => not_found(format!("Response with id '{id}' not found.")),
    }
}

/// `DELETE /v1/responses/{id}`: forget a stored response.
pub async fn delete(req: HttpRequest, state: web::Data<MockState>) -> HttpResponse {
    let id = req.match_info().get("id").unwrap_or_default().to_string();
    state.count(ONE_ROUTE);
    let mut stored = lock(&state.responses);
    match stored.by_id.remove(&id) {
        Some(_) => {
            stored.order.retain(|kept| *kept != id);
            json_response(
                200,
                &json!({"id": id, "object": "response", "deleted": true}),
            )
        }
        None => not_found(format!("Response with id '{id}' not found.")),
    }
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

/// What one answer holds.
struct Answer {
    id: String,
    model: String,
    /// Words of text, or the tool to call.
    words: u32,
    call: Option<String>,
    incomplete: bool,
    input_tokens: u64,
    previous: Option<String>,
    store: bool,
}

impl Answer {
    fn text(&self) -> String {
        (0..self.words).map(|i| format!("word{i} ")).collect()
    }

    fn output_tokens(&self) -> u64 {
        if self.call.is_some() {
            4
        } else {
            u64::from(self.words)
        }
    }

    fn usage(&self) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.input_tokens / 2},
            "output_tokens": self.output_tokens(),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + self.output_tokens(),
        })
    }

    fn item(&self, done: bool) -> Value {
        let status = if done { "completed" } else { "in_progress" };
        match &self.call {
            Some(name) => json!({
                "type": "function_call", "id": format!("fc_{}", self.id), "call_id": format!("call_{}", self.id),
                "name": name, "arguments": if done { TOOL_ARGUMENTS.concat() } else { String::new() }, "status": status,
            }),
            None => json!({
                "type": "message", "id": format!("msg_{}", self.id), "status": status, "role": "assistant",
                "content": if done { json!([{"type": "output_text", "text": self.text(), "annotations": []}]) } else { json!([]) },
            }),
        }
    }

    fn response(&self, status: &str, output: Vec<Value>, usage: Value) -> Value {
        json!({
            "id": self.id, "object": "response", "created_at": unix_now(), "status": status,
            "error": null,
            "incomplete_details": if status == "incomplete" { json!({"reason": "max_output_tokens"}) } else { Value::Null },
            "model": self.model, "output": output, "previous_response_id": self.previous,
            "store": self.store, "usage": usage,
        })
    }

    fn final_status(&self) -> &'static str {
        if self.incomplete {
            "incomplete"
        } else {
            "completed"
        }
    }
}

async fn respond(
    request: &JsonRequest,
    state: &web::Data<MockState>,
) -> Result<HttpResponse, Rejection> {
    let s = &request.settings;
    let body = &request.body;
    let model = request.model()?;
    let previous = body
        .get("previous_response_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(id) = &previous {
        if !lock(&state.responses).contains(id) {
            return Err(openai_error(
                400,
                format!("Previous response with id '{id}' not found."),
                "invalid_request_error",
                Some("previous_response_id"),
                Some("previous_response_not_found"),
            )
            .into());
        }
    }
    let input = match body.get("input") {
        Some(Value::String(text)) => vec![json!({"role": "user", "content": text})],
        Some(Value::Array(items)) => items.clone(),
        _ => return Err(super::errors::bad_request("`input` is required", Some("input")).into()),
    };
    let forced = forced_tool(body);
    let limit = body.get("max_output_tokens").and_then(Value::as_u64);
    let words = limit.map_or(s.chunks, |l| {
        s.chunks.min(u32::try_from(l).unwrap_or(u32::MAX))
    });
    let answer = Answer {
        id: format!("resp_mock{:016x}", fastrand::u64(..)),
        model,
        words,
        incomplete: forced.is_none() && words < s.chunks,
        call: forced,
        input_tokens: input_words(&input),
        previous,
        store: body.get("store").and_then(Value::as_bool) != Some(false),
    };
    let response = answer.response(
        answer.final_status(),
        vec![answer.item(true)],
        answer.usage(),
    );
    if answer.store {
        lock(&state.responses).insert(answer.id.clone(), response.clone());
    }
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    if !stream {
        sleep_ms(s.ttft_ms).await;
        return Ok(deliver(
            state,
            s,
            "application/json",
            Bytes::from(response.to_string()),
        ));
    }
    if s.error_event_first {
        Counters::add(&state.counters.faults_injected, 1);
        let message = injected_message(s.fail_status, request.echoed_credentials.as_deref(), 0);
        let error = injected_error_body(s.error_style, s.fail_status, &message);
        let mut event = error.get("error").cloned().unwrap_or(error);
        event["type"] = json!("error");
        event["sequence_number"] = json!(0);
        let mut plan = Plan::new();
        plan.data(format!("event: error\ndata: {event}\n\n"), 0);
        return Ok(sse_response(plan, state));
    }
    Ok(sse_response(
        event_plan(&answer, s.ttft_ms, s.chunk_interval_ms),
        state,
    ))
}

/// Words in the text of every input item.
fn input_words(items: &[Value]) -> u64 {
    let words = |v: &Value| {
        v.as_str()
            .map_or(0, |t| t.split_whitespace().count() as u64)
    };
    items
        .iter()
        .map(|item| match item.get("content") {
            Some(Value::Array(parts)) => parts.iter().map(|p| words(&p["text"])).sum(),
            Some(text) => words(text),
            None => words(&item["output"]),
        })
        .sum()
}

/// The `response.*` events of one answer, numbered.
fn event_plan(answer: &Answer, ttft_ms: u64, interval_ms: u64) -> Plan {
    let mut plan = Plan::new();
    let mut sequence = 0u64;
    let mut event = |plan: &mut Plan, kind: &str, mut data: Value, chunks: u64| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(sequence);
        sequence += 1;
        plan.data(format!("event: {kind}\ndata: {data}\n\n"), chunks);
    };
    let shell = answer.response("in_progress", vec![], Value::Null);
    event(&mut plan, "response.created", json!({"response": shell}), 0);
    event(
        &mut plan,
        "response.in_progress",
        json!({"response": shell}),
        0,
    );
    plan.pause_ms(ttft_ms);
    event(
        &mut plan,
        "response.output_item.added",
        json!({"output_index": 0, "item": answer.item(false)}),
        0,
    );
    let item_id = answer.item(false)["id"].clone();
    match &answer.call {
        Some(_) => {
            let [head, tail] = TOOL_ARGUMENTS;
            for piece in [head, tail] {
                event(
                    &mut plan,
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": 0, "delta": piece}),
                    1,
                );
            }
            event(
                &mut plan,
                "response.function_call_arguments.done",
                json!({"item_id": item_id, "output_index": 0, "arguments": TOOL_ARGUMENTS.concat()}),
                0,
            );
        }
        None => {
            let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
            event(
                &mut plan,
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": part("")}),
                0,
            );
            for i in 0..answer.words {
                if i > 0 {
                    plan.pause_ms(interval_ms);
                }
                event(
                    &mut plan,
                    "response.output_text.delta",
                    json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": format!("word{i} ")}),
                    1,
                );
            }
            let text = answer.text();
            event(
                &mut plan,
                "response.output_text.done",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": text}),
                0,
            );
            event(
                &mut plan,
                "response.content_part.done",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": part(&text)}),
                0,
            );
        }
    }
    let item = answer.item(true);
    event(
        &mut plan,
        "response.output_item.done",
        json!({"output_index": 0, "item": item}),
        0,
    );
    let status = answer.final_status();
    let done = answer.response(status, vec![item], answer.usage());
    event(
        &mut plan,
        &format!("response.{status}"),
        json!({"response": done}),
        0,
    );
    plan
}

fn sse_response(plan: Plan, state: &web::Data<MockState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(PacedBody::new(plan, Tracker::stream(state.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_forgets_the_oldest_beyond_its_bound() {
        let mut stored = StoredResponses::default();
        for i in 0..=MAX_STORED {
            stored.insert(format!("r{i}"), Value::Null);
        }
        assert!(!stored.contains("r0"));
        assert!(stored.contains("r1") && stored.contains(&format!("r{MAX_STORED}")));
        assert_eq!(stored.order.len(), MAX_STORED);
    }

    #[test]
    fn input_words_count_strings_parts_and_tool_outputs() {
        let items = json!([
            {"role": "user", "content": "a b"},
            {"role": "user", "content": [{"type": "input_text", "text": "c d e"}]},
            {"type": "function_call_output", "call_id": "x", "output": "f"}
        ]);
        assert_eq!(input_words(items.as_array().unwrap()), 6);
    }
}
