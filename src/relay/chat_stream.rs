//! Relaying a generation stream: SSE events are parsed only to rewrite `model` to the
//! public id, pick up usage, and spot errors; each event is forwarded as soon as it is
//! complete. Before the first content event the stream is "primed" so that an upstream error
//! can still fall back to another route; after that, failures end the stream with an error
//! event in the client's API. What an event means and how the client's bytes look is the
//! stream's [`StreamDialect`]: chat completions relayed ([`OpenAiChat`]), or another API's
//! (`relay/messages_stream.rs`); reading, time limits, priming and bookkeeping are shared.

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
use crate::redact::Redactor;

const DONE: &[u8] = b"data: [DONE]\n\n";

/// How one API's stream reads and writes: what each upstream event means and the bytes the
/// client gets for it.
pub trait StreamDialect {
    /// One upstream event: bytes for the client go to `cx.out`, what it told to `cx.progress`.
    /// `Step::Done` after the dialect wrote its own end of stream.
    fn on_event(&mut self, event: SseEvent, cx: &mut EventCx<'_>) -> Step;
    /// The client's bytes for a failure after its stream began (the stream ends after them).
    fn failed(&mut self, error: &ApiError, out: &mut VecDeque<Bytes>);
    /// The backend closed cleanly after finishing but without its end marker.
    fn closed(&mut self, out: &mut VecDeque<Bytes>);
}

/// What a dialect's event handler may touch.
pub struct EventCx<'a> {
    pub out: &'a mut VecDeque<Bytes>,
    pub progress: &'a mut Progress,
    pub redactor: &'a Redactor,
}

/// How much of a stream's text a trace keeps when content capture is on: a span attribute, not
/// an archive.
pub const MAX_CAPTURED_BYTES: usize = 64 * 1024;

/// What the stream learned so far, whichever API it speaks.
#[derive(Debug, Default)]
pub struct Progress {
    pub usage: Option<Usage>,
    /// Bytes of generated text (and tool-call arguments), for the estimate when no usage came.
    pub content_chars: usize,
    /// Content (or the finish) arrived: from here on nothing can fall back.
    pub content_seen: bool,
    /// The backend said the generation is complete.
    pub finish_seen: bool,
    /// The `finish_reason`s the choices ended with, kept only when tracing is on.
    pub finish_reasons: Vec<String>,
    /// The generated text, kept only when traces capture content (`OTEL_GENAI_CAPTURE_CONTENT`),
    /// up to [`MAX_CAPTURED_BYTES`].
    pub captured: String,
    /// How much of the prompt the backend served from its KV cache, when a chunk said so;
    /// taken by the relay and handed to the lease (it corrects the prefix tree).
    pub cache: Option<super::json::CacheReport>,
}

/// Chat completions relayed as they are: `model` rewritten, the usage chunk shown only to
/// clients that asked for it, `[DONE]` at the end, errors as OpenAI error events.
pub struct OpenAiChat {
    pub public_model: String,
    pub client_wants_usage: bool,
}

pub struct ChatStream<D: StreamDialect = OpenAiChat> {
    upstream: BodyStream,
    parser: SseParser,
    lease: Lease,
    ctx: Option<RequestCtx>,
    dialect: D,
    public_model: String,
    prompt_estimate: u64,
    idle: Duration,
    /// The attempt's total time limit; `None` = only the idle limit applies.
    deadline: Option<Instant>,
    pending: VecDeque<Bytes>,
    progress: Progress,
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
pub enum Step {
    Continue,
    Done,
    UpstreamError(ApiError),
}

impl ChatStream<OpenAiChat> {
    pub fn new(
        upstream: BodyStream,
        lease: Lease,
        public_model: String,
        client_wants_usage: bool,
        prompt_estimate: u64,
        idle: Duration,
        max_event: usize,
    ) -> ChatStream<OpenAiChat> {
        let dialect = OpenAiChat {
            public_model: public_model.clone(),
            client_wants_usage,
        };
        ChatStream::with_dialect(
            upstream,
            lease,
            dialect,
            public_model,
            prompt_estimate,
            idle,
            max_event,
        )
    }
}

impl<D: StreamDialect> ChatStream<D> {
    /// A stream speaking `dialect` to the client.
    pub fn with_dialect(
        upstream: BodyStream,
        lease: Lease,
        dialect: D,
        public_model: String,
        prompt_estimate: u64,
        idle: Duration,
        max_event: usize,
    ) -> ChatStream<D> {
        ChatStream {
            upstream,
            parser: SseParser::new(max_event),
            lease,
            ctx: None,
            dialect,
            public_model,
            prompt_estimate,
            idle,
            deadline: None,
            pending: VecDeque::new(),
            progress: Progress::default(),
            ended: false,
            outcome: None,
            settled: false,
            relay_started: None,
            late_failure: None,
        }
    }

    /// End the attempt once `total` has passed since `started` (the lease's start).
    pub fn with_total_limit(mut self, started_ago: Duration, total: Duration) -> ChatStream<D> {
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
        while !self.progress.content_seen && !self.ended {
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
                    if self.progress.content_seen || self.outcome == Some(Outcome::Success) {
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
                if self.outcome == Some(Outcome::Success) {
                    self.drain_after_end().await;
                }
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
                        if self.progress.finish_seen {
                            // Some servers close after the finish chunk without `[DONE]`.
                            self.dialect.closed(&mut self.pending);
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

    /// After a stream's end marker, read what is left of the upstream body (normally only the
    /// chunked encoding's last chunk), so that its connection goes back to the pool: awc
    /// closes a connection whose body was dropped unread. Without this every stream opened a
    /// new upstream connection (a TCP handshake, or a TLS one for https backends, before each
    /// stream's first token; issue 17). Bounded in time and bytes: a backend that keeps
    /// sending after its end marker, or never ends the body, is cut off as before. The client
    /// already has the whole stream; the record is already made ([`Self::settle`]).
    async fn drain_after_end(&mut self) {
        const DRAIN_WAIT: Duration = Duration::from_millis(20);
        const DRAIN_MAX_BYTES: usize = 64 * 1024;
        let mut drained = 0;
        while drained <= DRAIN_MAX_BYTES {
            match actix_rt::time::timeout(DRAIN_WAIT, self.upstream.next()).await {
                Ok(Some(Ok(chunk))) => drained += chunk.len(),
                _ => return,
            }
        }
    }

    /// Returns true when the stream is over.
    fn handle_post_commit(&mut self, event: SseEvent) -> bool {
        match self.on_event(event) {
            Step::Continue => false,
            Step::Done => true,
            Step::UpstreamError(e) => {
                self.dialect.failed(&e, &mut self.pending);
                self.end(Outcome::Failure);
                self.late_failure.get_or_insert(e);
                true
            }
        }
    }

    fn abort(&mut self, code: ErrorCode, message: &str) {
        let e = ApiError::new(code, message);
        self.dialect.failed(&e, &mut self.pending);
        self.end(Outcome::Failure);
        self.late_failure.get_or_insert(e);
    }

    /// A time limit ran out after the client got bytes: the dialect's error event ends it.
    fn abort_timeout(&mut self, message: &str) {
        let e = ApiError::new(ErrorCode::UpstreamTimeout, message);
        self.dialect.failed(&e, &mut self.pending);
        self.end(Outcome::Failure);
    }

    fn end(&mut self, outcome: Outcome) {
        self.ended = true;
        self.outcome.get_or_insert(outcome);
    }

    fn on_event(&mut self, event: SseEvent) -> Step {
        let mut cx = EventCx {
            out: &mut self.pending,
            progress: &mut self.progress,
            redactor: self.lease.redactor(),
        };
        let step = self.dialect.on_event(event, &mut cx);
        if let Some(report) = self.progress.cache.take() {
            self.lease
                .report_cache(report.prompt_tokens, report.cached_tokens, report.prompt_ms);
        }
        if matches!(step, Step::Done) {
            self.end(Outcome::Success);
            self.progress.content_seen = true;
        }
        step
    }

    /// Final bookkeeping once the stream is over (or dropped).
    fn settle(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        let outcome = self.outcome.unwrap_or(Outcome::Canceled);
        let usage = self.progress.usage.unwrap_or(Usage {
            prompt_tokens: self.prompt_estimate,
            completion_tokens: (self.progress.content_chars as u64).div_ceil(4),
            cached_tokens: 0,
            estimated: true,
        });
        self.lease.set_actual_tokens(usage.total());
        self.lease.finish(outcome);
        if let Some(ctx) = self.ctx.as_mut() {
            ctx.record.usage = Some(usage);
            ctx.record.stream = true;
            if ctx.trace.is_on() {
                ctx.trace.finish_reasons = std::mem::take(&mut self.progress.finish_reasons);
                if !self.progress.captured.is_empty() {
                    let message = serde_json::json!([
                        {"role": "assistant", "content": std::mem::take(&mut self.progress.captured)}
                    ]);
                    ctx.trace.output = Some(message.to_string());
                }
            }
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

impl<D: StreamDialect> Drop for ChatStream<D> {
    fn drop(&mut self) {
        // Reached on client disconnect too: the upstream body is dropped with `self`, which
        // closes the upstream connection instead of draining it.
        if self.ctx.is_some() {
            self.settle();
        }
    }
}

/// What a dialect that translates chat chunks into another API's events reads from one chunk
/// before translating it, as the chat relay reads it: an `error` member (the attempt failed),
/// the usage, and whether content came. `Ok(None)` for data that is not a chunk (nothing to
/// translate); `Ok(Some(chunk))` for the chunk, parsed for the translator.
pub fn read_chat_chunk(
    data: &str,
    cx: &mut EventCx<'_>,
) -> Result<Option<serde_json::Value>, ApiError> {
    let Ok(obj) = JsonObject::parse(data.as_bytes()) else {
        return Ok(None);
    };
    if let Some(err) = obj.non_null("error") {
        return Err(upstream_error_event(err, cx.redactor));
    }
    let (usage, cache) = super::json::answer_counts(&obj);
    if let Some(usage) = usage {
        cx.progress.usage = Some(usage);
    }
    // The engine's word on how much of the prompt it had cached corrects the prefix tree,
    // whichever API the client speaks.
    if let Some(report) = cache {
        cx.progress.cache = Some(report);
    }
    if let Some(raw) = obj.get("choices") {
        cx.progress.inspect_choices(raw);
    }
    Ok(serde_json::from_str(data).ok())
}

/// A backend's `error` member (raw JSON) as the 502 the client is told, the backend's type and
/// code kept, redacted.
pub fn upstream_error_event(error: &str, redactor: &Redactor) -> ApiError {
    let body = format!("{{\"error\":{error}}}");
    let (message, kind, code) = upstream_message(body.as_bytes(), redactor);
    // Sent as a 502 with the backend's own type and code.
    ApiError::from_backend(
        StatusCode::BAD_GATEWAY,
        kind.unwrap_or_else(|| "upstream_error".into()),
        Some(code.unwrap_or_else(|| "upstream_error".into())),
        format!("The backend reported an error: {message}"),
    )
}

impl StreamDialect for OpenAiChat {
    fn on_event(&mut self, event: SseEvent, cx: &mut EventCx<'_>) -> Step {
        let Some(data) = event.data else {
            return Step::Continue; // comments and keep-alives
        };
        let data = data.trim();
        if data == "[DONE]" {
            cx.out.push_back(Bytes::from_static(DONE));
            return Step::Done;
        }
        // One level deep: only `model`, `usage`, `error` and `choices` are looked at, the rest
        // is relayed as the backend wrote it.
        let mut obj = match JsonObject::parse(data.as_bytes()) {
            Ok(obj) => obj,
            Err(_) => {
                // Not ours to judge: pass unknown payloads through untouched.
                cx.out.push_back(Bytes::from(format!("data: {data}\n\n")));
                return Step::Continue;
            }
        };
        if let Some(err) = obj.non_null("error") {
            return Step::UpstreamError(upstream_error_event(err, cx.redactor));
        }
        obj.replace_string("model", &self.public_model);
        let (usage, cache) = super::json::answer_counts(&obj);
        if usage.is_some() {
            cx.progress.usage = usage;
        }
        if let Some(report) = cache {
            cx.progress.cache = Some(report);
        }
        let no_choices = match obj.get("choices") {
            None => true,
            Some(raw) => cx.progress.inspect_choices(raw),
        };
        if no_choices && usage.is_some() {
            // The usage chunk: the router always asks for it, the client sees it only if it
            // asked too, normalised to `choices: []`.
            if self.client_wants_usage {
                if let Ok(empty) = RawValue::from_string("[]".to_owned()) {
                    obj.set_raw("choices", empty);
                }
                cx.out.push_back(sse_data(&obj));
            }
            return Step::Continue;
        }
        if !self.client_wants_usage {
            obj.remove("usage");
        }
        cx.out.push_back(sse_data(&obj));
        Step::Continue
    }

    /// An OpenAI error event, then `[DONE]`.
    fn failed(&mut self, e: &ApiError, out: &mut VecDeque<Bytes>) {
        let mut bytes = b"data: ".to_vec();
        // Serializing a Value cannot fail.
        let _ = serde_json::to_writer(&mut bytes, &e.body());
        bytes.extend_from_slice(b"\n\n");
        out.push_back(Bytes::from(bytes));
        out.push_back(Bytes::from_static(DONE));
    }

    fn closed(&mut self, out: &mut VecDeque<Bytes>) {
        out.push_back(Bytes::from_static(DONE));
    }
}

impl Progress {
    /// Count content and spot finished choices of a chat chunk's `choices`; true when there
    /// are none (`null` or `[]`). Lenient: a part of another shape than OpenAI's is skipped,
    /// never an error.
    pub fn inspect_choices(&mut self, raw: &str) -> bool {
        let Ok(choices) = serde_json::from_str::<Vec<&RawValue>>(raw) else {
            return raw.trim() == "null";
        };
        for choice in &choices {
            let Ok(choice) = serde_json::from_str::<ChoiceView>(choice.get()) else {
                continue;
            };
            let delta = choice
                .delta
                .and_then(|d| serde_json::from_str::<DeltaView>(d.get()).ok());
            let (delta_texts, tool_calls) = match delta {
                Some(d) => ([d.content, d.reasoning_content, d.refusal], d.tool_calls),
                None => ([None; 3], None),
            };
            // A text completion's chunk carries its text on the choice itself.
            for text in delta_texts.into_iter().chain([choice.text]).flatten() {
                // A non-empty JSON string: `"…"` with at least one character inside.
                let text = text.get();
                if text.starts_with('"') && text.len() > 2 {
                    self.content_chars += text.len() - 2;
                    self.content_seen = true;
                    if crate::telemetry::capture_content() {
                        self.capture(text);
                    }
                }
            }
            if let Some(calls) = tool_calls {
                self.content_chars += calls.get().len();
                self.content_seen = true;
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_seen = true;
                self.content_seen = true;
                if crate::telemetry::enabled() {
                    if let Ok(reason) = serde_json::from_str::<String>(reason.get()) {
                        self.finish_reasons.push(reason);
                    }
                }
            }
        }
        choices.is_empty()
    }

    /// Keep a chunk's text (a JSON string) for the trace, within the cap.
    fn capture(&mut self, json_text: &str) {
        let Ok(text) = serde_json::from_str::<String>(json_text) else {
            return;
        };
        let room = MAX_CAPTURED_BYTES.saturating_sub(self.captured.len());
        let mut cut = text.len().min(room);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        self.captured.push_str(&text[..cut]);
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
    /// Text completions (`/v1/completions`) stream `text` instead of a delta.
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
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

    /// The translating dialects (Messages, Responses) read chunks through `read_chat_chunk`:
    /// a cache report in any of the engines' shapes must reach the lease from there too.
    #[test]
    fn a_translated_chunk_s_cache_report_is_kept() {
        use super::super::json::CacheReport;
        let redactor = Redactor::new(["sk-unused"]);
        let cases: &[(&str, Option<CacheReport>)] = &[
            (
                r#"{"choices":[],"timings":{"cache_n":240,"prompt_n":10,"prompt_ms":3.5}}"#,
                Some(CacheReport {
                    prompt_tokens: 250,
                    cached_tokens: 240,
                    prompt_ms: Some(3.5),
                }),
            ),
            (
                r#"{"choices":[],"usage":{"prompt_tokens":50,"completion_tokens":2,"total_tokens":52,"prompt_tokens_details":{"cached_tokens":32}}}"#,
                Some(CacheReport {
                    prompt_tokens: 50,
                    cached_tokens: 32,
                    prompt_ms: None,
                }),
            ),
            (r#"{"choices":[{"index":0,"delta":{"content":"x"}}]}"#, None),
        ];
        for (chunk, want) in cases {
            let (mut out, mut progress) = (VecDeque::new(), Progress::default());
            let mut cx = EventCx {
                out: &mut out,
                progress: &mut progress,
                redactor: &redactor,
            };
            assert!(read_chat_chunk(chunk, &mut cx).is_ok(), "{chunk}");
            assert_eq!(progress.cache, *want, "{chunk}");
        }
    }

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

        // A text completion's chunk: the text on the choice, no delta.
        let text: ChoiceView = serde_json::from_str(
            r#"{"index":0,"text":"Once","logprobs":null,"finish_reason":null}"#,
        )
        .unwrap();
        assert!(text.delta.is_none() && text.finish_reason.is_none());
        assert_eq!(text.text.unwrap().get(), r#""Once""#);
    }
}
