//! The spans a request leaves: one server span (continuing the client's trace), one client
//! span per upstream attempt, and root spans for a video job's backend work linked to the
//! request that created the job. Every constructor answers `Span::none()` when tracing is off,
//! before it formats anything.

use actix_web::http::header::HeaderMap;
use opentelemetry::trace::{SpanContext, Status, TraceContextExt};
use opentelemetry::KeyValue;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{enabled, extract_parent};

/// The target of every span the router exports; the export layer lets only these through and
/// the log layer leaves them out.
pub const SPAN_TARGET: &str = "switchyard_otel";

/// The server span of a request to `route` (the router's own route, e.g.
/// `POST /v1/chat/completions`), child of the client's span when its headers carry one.
pub fn server_span(route: &'static str, headers: &HeaderMap) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "request",
        otel.kind = "server",
        http.route = route,
    );
    if let Some(parent) = extract_parent(headers) {
        // Fails only for a span already started elsewhere; this one was just made.
        let _ = span.set_parent(parent);
    }
    span
}

/// A child span of `parent` for one upstream attempt (a client span: the backend's own
/// span, when it traces, becomes its child through the `traceparent` we send).
pub fn attempt_span(
    parent: &Span,
    attempt: u32,
    route: &str,
    endpoint: &str,
    provider: &str,
) -> Span {
    if parent.is_none() {
        return Span::none();
    }
    tracing::info_span!(
        target: SPAN_TARGET,
        parent: parent,
        "upstream attempt",
        otel.kind = "client",
        switchyard.attempt = attempt,
        switchyard.route = route,
        switchyard.endpoint = endpoint,
        gen_ai.provider.name = provider,
    )
}

/// Mark an attempt span failed, with the router's error code as `error.type`.
pub fn attempt_failed(span: &Span, error_type: &str, message: &str) {
    if span.is_none() {
        return;
    }
    span.set_attribute("error.type", error_type.to_string());
    span.set_status(Status::error(message.to_string()));
}

/// The trace a video job was created in, kept (in memory) so the job's backend work can link
/// to it: a job outlives its request, so its spans are roots of their own traces.
#[derive(Debug, Clone)]
pub struct JobTrace(SpanContext);

impl JobTrace {
    /// The context of `span` (the creating request's server span), if it is being traced.
    pub fn of(span: &Span) -> Option<JobTrace> {
        if span.is_none() {
            return None;
        }
        let context = span.context().span().span_context().clone();
        context.is_valid().then_some(JobTrace(context))
    }
}

/// The root span of a job's backend work, linked to the span of the request that created
/// the job (the job outlives that request: it is a trace of its own).
pub fn job_span(job_id: &str, created_in: Option<&JobTrace>) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        parent: None,
        "video job",
        otel.kind = "internal",
        gen_ai.operation.name = "video",
        switchyard.job_id = job_id,
    );
    if let Some(JobTrace(context)) = created_in {
        span.add_link_with_attributes(
            context.clone(),
            vec![KeyValue::new("switchyard.link", "created_by")],
        );
    }
    span
}

/// A child of the current (job) span for one backend call: `submit`, `poll`, `download`.
pub fn job_call_span(work: &'static str) -> Span {
    if !enabled() || Span::current().is_none() {
        return Span::none();
    }
    tracing::info_span!(
        target: SPAN_TARGET,
        "video backend call",
        otel.name = format!("video {work}"),
        otel.kind = "client",
        switchyard.work = work,
    )
}

/// A request's tracing state, carried by its record context: the server span, the attempt in
/// progress, and the GenAI facts the record itself does not keep. Everything here is inert
/// (`Span::none()`, `None`) when tracing is off.
pub struct RequestTrace {
    pub span: Span,
    /// The sampler kept this trace: only then are attempt spans made and attributes set (a
    /// sampled-out request still passes its unsampled context upstream).
    sampled: bool,
    attempt: Span,
    /// `max_tokens` (or `max_completion_tokens`, `max_output_tokens`) as the client asked.
    pub max_tokens: Option<u64>,
    /// The `finish_reason`s of the answer's choices, in order.
    pub finish_reasons: Vec<String>,
    /// The prompt and the completion, only with `OTEL_GENAI_CAPTURE_CONTENT=true`.
    pub input: Option<String>,
    pub output: Option<String>,
}

impl Default for RequestTrace {
    fn default() -> Self {
        RequestTrace::new(Span::none())
    }
}

/// What the record knows at the end of a request, as the server span's attributes.
pub struct RequestFacts<'a> {
    pub op: &'static str,
    pub request_id: &'a str,
    pub model: Option<&'a str>,
    pub response_model: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub policy: Option<&'a str>,
    pub route: Option<&'a str>,
    pub endpoint: Option<&'a str>,
    pub attempts: u32,
    pub status: u16,
    pub outcome: &'a str,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub stream: bool,
    pub error_code: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// The GenAI semantic conventions' `gen_ai.operation.name` of one of the router's operations
/// (`ApiOp::as_str`); operations the conventions do not name keep the router's name.
pub fn genai_operation(op: &'static str) -> &'static str {
    match op {
        "chat_completions" | "messages" | "responses" => "chat",
        "completions" => "text_completion",
        "embeddings" => "embeddings",
        other => other,
    }
}

impl RequestTrace {
    pub fn new(span: Span) -> RequestTrace {
        // Asking for the context makes the sampling decision now rather than at the end.
        let sampled = !span.is_none() && span.context().span().span_context().is_sampled();
        RequestTrace {
            span,
            sampled,
            attempt: Span::none(),
            max_tokens: None,
            finish_reasons: Vec::new(),
            input: None,
            output: None,
        }
    }

    /// Tracing is on and this request is sampled: worth recording facts for.
    pub fn is_on(&self) -> bool {
        self.sampled
    }

    /// Open the span of attempt `n` (the previous one, if any, has ended).
    pub fn attempt_started(&mut self, n: u32, route: &str, endpoint: &str, provider: &str) {
        if self.is_on() {
            self.attempt = attempt_span(&self.span, n, route, endpoint, provider);
        }
    }

    /// The span the attempt's future runs in (its upstream request carries its context): the
    /// attempt's own, or for a sampled-out request the server span, whose context says so.
    pub fn attempt(&self) -> Span {
        if self.sampled {
            self.attempt.clone()
        } else {
            self.span.clone()
        }
    }

    /// End the current attempt's span; `failure` is its error code and message.
    pub fn attempt_ended(&mut self, failure: Option<(&str, &str)>) {
        let span = std::mem::replace(&mut self.attempt, Span::none());
        if let Some((code, message)) = failure {
            attempt_failed(&span, code, message);
        }
    }

    /// The time to first token, as an event on the server span.
    pub fn first_token(&self, after: std::time::Duration) {
        if self.is_on() {
            self.span.add_event(
                "gen_ai.first_token",
                vec![KeyValue::new(
                    "gen_ai.server.time_to_first_token",
                    after.as_secs_f64(),
                )],
            );
        }
    }

    /// Set the server span's attributes from the finished request; the span ends when the
    /// trace is dropped right after.
    pub fn finish(&mut self, facts: RequestFacts<'_>) {
        if !self.is_on() {
            return;
        }
        let span = &self.span;
        let operation = genai_operation(facts.op);
        let name = match facts.model {
            Some(model) => format!("{operation} {model}"),
            None => operation.to_string(),
        };
        // The span has started by now (its context went upstream), so its name changes through
        // the OpenTelemetry span itself: `otel.name` is read only while it is being built.
        span.context().span().update_name(name);
        let mut attributes = vec![
            KeyValue::new("gen_ai.operation.name", operation),
            KeyValue::new("switchyard.operation", facts.op),
            KeyValue::new("switchyard.request_id", facts.request_id.to_string()),
            KeyValue::new("switchyard.attempts", i64::from(facts.attempts)),
            KeyValue::new("switchyard.outcome", facts.outcome.to_string()),
            KeyValue::new("switchyard.stream", facts.stream),
            KeyValue::new("http.response.status_code", i64::from(facts.status)),
        ];
        let texts = [
            ("gen_ai.request.model", facts.model),
            ("gen_ai.response.model", facts.response_model),
            ("gen_ai.provider.name", facts.provider),
            // The attribute's older name, which most back-ends still index.
            ("gen_ai.system", facts.provider),
            ("switchyard.policy", facts.policy),
            ("switchyard.route", facts.route),
            ("switchyard.endpoint", facts.endpoint),
            ("error.type", facts.error_code),
        ];
        for (key, value) in texts {
            if let Some(value) = value {
                attributes.push(KeyValue::new(key, value.to_string()));
            }
        }
        let counts = [
            ("gen_ai.usage.input_tokens", facts.input_tokens),
            ("gen_ai.usage.output_tokens", facts.output_tokens),
            ("gen_ai.request.max_tokens", self.max_tokens),
        ];
        for (key, value) in counts {
            if let Some(value) = value {
                attributes.push(KeyValue::new(key, i64::try_from(value).unwrap_or(i64::MAX)));
            }
        }
        if !self.finish_reasons.is_empty() {
            let reasons: Vec<opentelemetry::StringValue> = self
                .finish_reasons
                .iter()
                .map(|r| r.clone().into())
                .collect();
            attributes.push(KeyValue::new(
                "gen_ai.response.finish_reasons",
                opentelemetry::Value::Array(reasons.into()),
            ));
        }
        if super::capture_content() {
            if let Some(input) = self.input.take() {
                attributes.push(KeyValue::new("gen_ai.input.messages", input));
            }
            if let Some(output) = self.output.take() {
                attributes.push(KeyValue::new("gen_ai.output.messages", output));
            }
        }
        for attribute in attributes {
            span.set_attribute(attribute.key, attribute.value);
        }
        // Server spans are errors for 5xx only: a 4xx is the client's mistake, not ours.
        if facts.status >= 500 {
            span.set_status(Status::error(facts.error.unwrap_or("").to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_get_their_genai_names() {
        let table = [
            ("chat_completions", "chat"),
            ("messages", "chat"),
            ("responses", "chat"),
            ("completions", "text_completion"),
            ("embeddings", "embeddings"),
            ("speech", "speech"),
            ("video", "video"),
            ("rerank", "rerank"),
        ];
        for (op, name) in table {
            assert_eq!(genai_operation(op), name, "{op}");
        }
    }

    #[test]
    fn with_tracing_off_nothing_is_built_or_recorded() {
        // No layer is installed in unit tests and `init` was not called: tracing is off.
        assert!(!enabled());
        assert!(server_span("POST /v1/chat/completions", &HeaderMap::new()).is_none());
        assert!(job_span("vid_1", None).is_none());
        assert!(job_call_span("poll").is_none());
        let mut trace = RequestTrace::default();
        assert!(!trace.is_on());
        trace.attempt_started(1, "r", "e", "vllm");
        assert!(trace.attempt().is_none());
    }
}
