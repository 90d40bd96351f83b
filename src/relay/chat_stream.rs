//! Relaying a chat completion stream: SSE events are parsed only to rewrite `model` to the
//! public id, pick up usage, and spot errors; each event is forwarded as soon as it is
//! complete. Before the first content event the stream is "primed" so that an upstream error
//! can still fall back to another route; after that, failures end the stream with an error
//! event and `[DONE]`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::shallow::JsonObject;

use super::error_body::upstream_message;
use super::sse::{SseEvent, SseParser};
use super::upstream::BodyStream;
use crate::error::{ApiError, ErrorCode};
use crate::mesh::{Lease, Outcome};
use crate::record::{RequestCtx, Usage};

const DONE: &[u8] = b"data: [DONE]\n\n";

pub struct ChatStream {
    upstream: BodyStream,
    parser: SseParser,
    lease: Lease,
    ctx: Option<RequestCtx>,
    public_model: String,
    client_wants_usage: bool,
    prompt_estimate: u64,
    idle: Duration,
    /// The attempt's total time limit; `None` = only the idle limit applies.
    deadline: Option<Instant>,
    pending: VecDeque<Bytes>,
    usage: Option<Usage>,
    content_chars: usize,
    content_seen: bool,
    finish_seen: bool,
    /// No more upstream reads; whatever is pending is the rest of the stream.
    ended: bool,
    outcome: Option<Outcome>,
    settled: bool,
    /// When the relay phase began (after priming): from here on the stream waits on the
    /// backend, which the record counts as upstream time.
    relay_started: Option<std::time::Instant>,
    /// A failure after the client got bytes, for the record.
    late_failure: Option<ApiError>,
}

/// One read from the upstream body, with both time limits applied.
enum Read {
    Chunk(Bytes),
    Broken,
    End,
    IdleTimeout,
    TotalTimeout,
}

/// What one upstream event turned out to be.
enum Step {
    Continue,
    Done,
    UpstreamError(ApiError),
}

impl ChatStream {
    pub fn new(
        upstream: BodyStream,
        lease: Lease,
        public_model: String,
        client_wants_usage: bool,
        prompt_estimate: u64,
        idle: Duration,
        max_event: usize,
    ) -> ChatStream {
        ChatStream {
            upstream,
            parser: SseParser::new(max_event),
            lease,
            ctx: None,
            public_model,
            client_wants_usage,
            prompt_estimate,
            idle,
            deadline: None,
            pending: VecDeque::new(),
            usage: None,
            content_chars: 0,
            content_seen: false,
            finish_seen: false,
            ended: false,
            outcome: None,
            settled: false,
            relay_started: None,
            late_failure: None,
        }
    }

    /// End the attempt once `total` has passed since `started` (the lease's start).
    pub fn with_total_limit(mut self, started_ago: Duration, total: Duration) -> ChatStream {
        self.deadline = Instant::now().checked_add(total.saturating_sub(started_ago));
        self
    }

    async fn read(&mut self) -> Read {
        let left = self.deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        });
        match actix_rt::time::timeout(self.idle.min(left), self.upstream.next()).await {
            Err(_) if left <= self.idle => Read::TotalTimeout,
            Err(_) => Read::IdleTimeout,
            Ok(Some(Ok(chunk))) => Read::Chunk(chunk),
            Ok(Some(Err(_))) => Read::Broken,
            Ok(None) => Read::End,
        }
    }

    /// Read until the first content-bearing event. An error here means nothing has been sent
    /// to the client, so the caller may try another route; the lease records the failure.
    pub async fn prime(&mut self) -> Result<(), ApiError> {
        while !self.content_seen && !self.ended {
            let chunk = match self.read().await {
                Read::IdleTimeout => {
                    return Err(self.prime_failed(
                        ErrorCode::UpstreamTimeout,
                        "The backend sent no tokens before the idle timeout.",
                    ))
                }
                Read::TotalTimeout => {
                    return Err(self.prime_failed(
                        ErrorCode::UpstreamTimeout,
                        "The backend sent no tokens within the total time limit.",
                    ))
                }
                Read::Chunk(chunk) => chunk,
                Read::Broken => {
                    return Err(self.prime_failed(
                        ErrorCode::UpstreamError,
                        "The backend's stream broke before any content.",
                    ))
                }
                Read::End => {
                    if let Some(event) = self.parser.finish() {
                        if let Step::UpstreamError(e) = self.on_event(event) {
                            return Err(self.prime_error(e));
                        }
                    }
                    if self.content_seen || self.outcome == Some(Outcome::Success) {
                        break;
                    }
                    return Err(self.prime_failed(
                        ErrorCode::UpstreamError,
                        "The backend's stream ended before any content.",
                    ));
                }
            };
            self.parser.push(&chunk);
            loop {
                match self.parser.next_event() {
                    Ok(Some(event)) => match self.on_event(event) {
                        Step::UpstreamError(e) => return Err(self.prime_error(e)),
                        Step::Done => break,
                        Step::Continue => {}
                    },
                    Ok(None) => break,
                    Err(_) => {
                        return Err(self.prime_failed(
                            ErrorCode::UpstreamError,
                            "The backend sent an oversized stream event.",
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    fn prime_failed(&mut self, code: ErrorCode, message: &str) -> ApiError {
        self.lease.finish(Outcome::Failure);
        let model = &self.public_model;
        ApiError::new(code, format!("Model `{model}`: {message}"))
    }

    fn prime_error(&mut self, e: ApiError) -> ApiError {
        self.lease.finish(Outcome::Failure);
        e
    }

    /// Attach the request's bookkeeping; from here on the stream owns it.
    pub fn into_body(
        mut self,
        ctx: RequestCtx,
    ) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
        self.ctx = Some(ctx);
        self.relay_started = Some(std::time::Instant::now());
        futures_util::stream::unfold(self, |mut relay| async move {
            relay.next_chunk().await.map(|b| (Ok(b), relay))
        })
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(bytes) = self.pending.pop_front() {
                if let Some(ctx) = self.ctx.as_mut() {
                    ctx.mark_first_byte();
                }
                return Some(bytes);
            }
            if self.ended {
                self.settle();
                return None;
            }
            match self.read().await {
                Read::IdleTimeout => {
                    self.abort_timeout("The backend stopped sending tokens (idle timeout).")
                }
                Read::TotalTimeout => {
                    self.abort_timeout("The backend did not finish within the total time limit.")
                }
                Read::Broken => {
                    self.abort(ErrorCode::UpstreamError, "The backend's stream broke off.")
                }
                Read::End => {
                    if let Some(event) = self.parser.finish() {
                        self.handle_post_commit(event);
                    }
                    if !self.ended {
                        if self.finish_seen {
                            // Some servers close after the finish chunk without `[DONE]`.
                            self.pending.push_back(Bytes::from_static(DONE));
                            self.end(Outcome::Success);
                        } else {
                            self.abort(
                                ErrorCode::UpstreamError,
                                "The backend's stream ended unexpectedly.",
                            );
                        }
                    }
                }
                Read::Chunk(chunk) => {
                    self.parser.push(&chunk);
                    loop {
                        match self.parser.next_event() {
                            Ok(Some(event)) => {
                                if self.handle_post_commit(event) {
                                    break;
                                }
                            }
                            Ok(None) => break,
                            Err(_) => {
                                self.abort(
                                    ErrorCode::UpstreamError,
                                    "The backend sent an oversized stream event.",
                                );
                                break;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Returns true when the stream is over.
    fn handle_post_commit(&mut self, event: SseEvent) -> bool {
        match self.on_event(event) {
            Step::Continue => false,
            Step::Done => true,
            Step::UpstreamError(e) => {
                self.push_error(&e);
                self.pending.push_back(Bytes::from_static(DONE));
                self.end(Outcome::Failure);
                self.late_failure.get_or_insert(e);
                true
            }
        }
    }

    fn abort(&mut self, code: ErrorCode, message: &str) {
        let e = ApiError::new(code, message);
        self.push_error(&e);
        self.pending.push_back(Bytes::from_static(DONE));
        self.end(Outcome::Failure);
        self.late_failure.get_or_insert(e);
    }

    /// A time limit ran out after the client got bytes: an SSE error event, then `[DONE]`.
    fn abort_timeout(&mut self, message: &str) {
        let e = ApiError::new(ErrorCode::UpstreamTimeout, message);
        self.push_error(&e);
        self.pending.push_back(Bytes::from_static(DONE));
        self.end(Outcome::Failure);
    }

    fn push_error(&mut self, e: &ApiError) {
        let mut out = b"data: ".to_vec();
        // Serializing a Value cannot fail.
        let _ = serde_json::to_writer(&mut out, &e.body());
        out.extend_from_slice(b"\n\n");
        self.pending.push_back(Bytes::from(out));
    }

    fn end(&mut self, outcome: Outcome) {
        self.ended = true;
        self.outcome.get_or_insert(outcome);
    }

    fn on_event(&mut self, event: SseEvent) -> Step {
        let Some(data) = event.data else {
            return Step::Continue; // comments and keep-alives
        };
        let data = data.trim();
        if data == "[DONE]" {
            self.pending.push_back(Bytes::from_static(DONE));
            self.end(Outcome::Success);
            self.content_seen = true;
            return Step::Done;
        }
        // One level deep: only `model`, `usage`, `error` and `choices` are looked at, the rest
        // is relayed as the backend wrote it.
        let mut obj = match JsonObject::parse(data.as_bytes()) {
            Ok(obj) => obj,
            Err(_) => {
                // Not ours to judge: pass unknown payloads through untouched.
                self.pending
                    .push_back(Bytes::from(format!("data: {data}\n\n")));
                return Step::Continue;
            }
        };
        if let Some(err) = obj.non_null("error") {
            let body = format!("{{\"error\":{}}}", err.get());
            let (message, kind, code) = upstream_message(body.as_bytes(), self.lease.redactor());
            // Sent as a 502 with the backend's own type and code.
            return Step::UpstreamError(ApiError::from_backend(
                StatusCode::BAD_GATEWAY,
                kind.unwrap_or_else(|| "upstream_error".into()),
                Some(code.unwrap_or_else(|| "upstream_error".into())),
                format!("The backend reported an error: {message}"),
            ));
        }
        obj.replace_string("model", &self.public_model);
        let usage = obj
            .field::<serde_json::Value>("usage")
            .as_ref()
            .and_then(Usage::from_json);
        if usage.is_some() {
            self.usage = usage;
        }
        if let Some(report) = super::json::cache_report(&obj) {
            self.lease
                .report_cache(report.prompt_tokens, report.cached_tokens);
        }
        let no_choices = match obj.get("choices") {
            None => true,
            Some(raw) => self.inspect_choices(raw),
        };
        if no_choices && usage.is_some() {
            // The usage chunk: the router always asks for it, the client sees it only if it
            // asked too, normalised to `choices: []`.
            if self.client_wants_usage {
                if let Ok(empty) = RawValue::from_string("[]".to_owned()) {
                    obj.set_raw("choices", empty);
                }
                self.pending.push_back(sse_data(&obj));
            }
            return Step::Continue;
        }
        if !self.client_wants_usage {
            obj.remove("usage");
        }
        self.pending.push_back(sse_data(&obj));
        Step::Continue
    }

    /// Count content and spot finished choices; true when there are none (`null` or `[]`).
    /// Lenient: a part of another shape than OpenAI's is skipped, never an error.
    fn inspect_choices(&mut self, raw: &RawValue) -> bool {
        let Ok(choices) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
            return raw.get().trim() == "null";
        };
        for choice in &choices {
            let Ok(choice) = serde_json::from_str::<ChoiceView>(choice.get()) else {
                continue;
            };
            let delta = choice
                .delta
                .and_then(|d| serde_json::from_str::<DeltaView>(d.get()).ok());
            if let Some(delta) = delta {
                for text in [delta.content, delta.reasoning_content, delta.refusal]
                    .into_iter()
                    .flatten()
                {
                    // A non-empty JSON string: `"…"` with at least one character inside.
                    let text = text.get();
                    if text.starts_with('"') && text.len() > 2 {
                        self.content_chars += text.len() - 2;
                        self.content_seen = true;
                    }
                }
                if let Some(calls) = delta.tool_calls {
                    self.content_chars += calls.get().len();
                    self.content_seen = true;
                }
            }
            if choice.finish_reason.is_some() {
                self.finish_seen = true;
                self.content_seen = true;
            }
        }
        choices.is_empty()
    }

    /// Final bookkeeping once the stream is over (or dropped).
    fn settle(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        let outcome = self.outcome.unwrap_or(Outcome::Canceled);
        let usage = self.usage.unwrap_or(Usage {
            prompt_tokens: self.prompt_estimate,
            completion_tokens: (self.content_chars as u64).div_ceil(4),
            cached_tokens: 0,
            estimated: true,
        });
        self.lease.set_actual_tokens(usage.total());
        self.lease.finish(outcome);
        if let Some(ctx) = self.ctx.as_mut() {
            ctx.record.usage = Some(usage);
            ctx.record.stream = true;
            if let Some(started) = self.relay_started {
                ctx.record.upstream_time += started.elapsed();
            }
            if let Some(e) = &self.late_failure {
                let endpoint = &self.lease.endpoint().name;
                ctx.record
                    .upstream_errors
                    .extend(crate::record::UpstreamFailure::classify(endpoint, e));
                ctx.record.error = Some(e.message.clone());
                ctx.record.error_code = e.wire_code().map(str::to_string);
            }
            let label = match outcome {
                Outcome::Success => "success",
                Outcome::Canceled => "canceled",
                _ => "error",
            };
            ctx.complete(200, label);
        }
        self.outcome = Some(outcome);
    }
}

impl Drop for ChatStream {
    fn drop(&mut self) {
        // Reached on client disconnect too: the upstream body is dropped with `self`, which
        // closes the upstream connection instead of draining it.
        if self.ctx.is_some() {
            self.settle();
        }
    }
}

/// What the relay reads of one streamed choice, borrowed from the event's text; a `null`
/// field reads as `None`.
#[derive(Deserialize)]
struct ChoiceView<'a> {
    #[serde(borrow, default)]
    delta: Option<&'a RawValue>,
    #[serde(borrow, default)]
    finish_reason: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct DeltaView<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reasoning_content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    refusal: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_calls: Option<&'a RawValue>,
}

fn sse_data(obj: &JsonObject) -> Bytes {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"data: ");
    obj.write_to(&mut out);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_fields_read_as_absent_and_other_shapes_are_kept_raw() {
        let choice: ChoiceView = serde_json::from_str(
            r#"{"index":0,"delta":{"content":"hi","refusal":null},"finish_reason":null}"#,
        )
        .unwrap();
        assert!(choice.finish_reason.is_none());
        let delta: DeltaView = serde_json::from_str(choice.delta.unwrap().get()).unwrap();
        assert_eq!(delta.content.unwrap().get(), r#""hi""#);
        assert!(delta.refusal.is_none() && delta.tool_calls.is_none());

        let done: ChoiceView =
            serde_json::from_str(r#"{"delta":{},"finish_reason":"stop"}"#).unwrap();
        assert_eq!(done.finish_reason.unwrap().get(), r#""stop""#);
    }
}
