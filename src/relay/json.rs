//! A non-streamed JSON exchange on one lease: send, read the whole answer with limits, check it
//! is JSON and not an error in disguise, and rewrite `model` to the public id.

use super::error_body::upstream_message;
use super::fallback::Attempt;
use super::shallow::JsonObject;
use actix_web::http::Method;

use super::upstream::{read_body_within, send, Forwarded, Timeouts, UpstreamPath};
use crate::error::{ApiError, ErrorCode};
use crate::mesh::{Lease, Outcome};
use crate::record::Usage;

/// A finished JSON answer, still holding its lease so the caller decides when it ends.
pub struct JsonReply {
    pub lease: Lease,
    /// The answer, `model` already rewritten; nested values are kept as raw JSON.
    pub body: JsonObject,
    pub usage: Option<Usage>,
}

pub async fn call_json<'a>(
    client: &awc::Client,
    lease: Lease,
    path: impl Into<UpstreamPath<'a>>,
    body: impl actix_web::body::MessageBody + 'static,
    fwd: &Forwarded,
    timeouts: &Timeouts,
    max_response: usize,
) -> Attempt<JsonReply> {
    let call = (Method::POST, path, Some(body));
    call_json_with(client, lease, call, fwd, timeouts, max_response).await
}

/// [`call_json`] with any method, and a body only when there is one (`GET`, `DELETE` of a
/// backend's stored object).
pub async fn call_json_with<'a>(
    client: &awc::Client,
    lease: Lease,
    call: (
        Method,
        impl Into<UpstreamPath<'a>>,
        Option<impl actix_web::body::MessageBody + 'static>,
    ),
    fwd: &Forwarded,
    timeouts: &Timeouts,
    max_response: usize,
) -> Attempt<JsonReply> {
    let (mut lease, bytes) =
        match call_for_bytes_with(client, lease, call, fwd, timeouts, max_response).await {
            Attempt::Done(done) => done,
            Attempt::Retry(e) => return Attempt::Retry(e),
            Attempt::Fail(e) => return Attempt::Fail(e),
        };
    let model = lease.model().id.clone();
    let mut body = match JsonObject::parse(&bytes) {
        Ok(v) => v,
        Err(_) => {
            lease.finish(Outcome::Failure);
            return Attempt::Retry(ApiError::new(
                ErrorCode::UpstreamInvalidResponse,
                format!("The backend for model `{model}` returned invalid JSON."),
            ));
        }
    };
    if body.has_non_null("error") {
        // Some servers answer 200 with an error object.
        let (message, _, _) = upstream_message(&bytes, lease.redactor());
        lease.finish(Outcome::Failure);
        return Attempt::Retry(ApiError::new(
            ErrorCode::UpstreamError,
            format!("The backend for model `{model}` reported an error: {message}"),
        ));
    }
    body.replace_string("model", &model);
    let usage = body
        .field::<serde_json::Value>("usage")
        .as_ref()
        .and_then(Usage::from_json);
    if let Some(u) = usage {
        lease.set_actual_tokens(u.total());
    }
    if let Some(report) = cache_report(&body) {
        lease.report_cache(report.prompt_tokens, report.cached_tokens, report.prompt_ms);
    }
    lease.finish(Outcome::Success);
    Attempt::Done(JsonReply { lease, body, usage })
}

/// Send `body` and read the whole successful answer within the route's limits; the lease is
/// still open (the caller judges the answer) unless the call failed.
pub async fn call_for_bytes<'a>(
    client: &awc::Client,
    lease: Lease,
    path: impl Into<UpstreamPath<'a>>,
    body: impl actix_web::body::MessageBody + 'static,
    fwd: &Forwarded,
    timeouts: &Timeouts,
    max_response: usize,
) -> Attempt<(Lease, bytes::Bytes)> {
    let call = (Method::POST, path, Some(body));
    call_for_bytes_with(client, lease, call, fwd, timeouts, max_response).await
}

/// [`call_for_bytes`] with any method, and a body only when there is one.
async fn call_for_bytes_with<'a>(
    client: &awc::Client,
    mut lease: Lease,
    (method, path, body): (
        Method,
        impl Into<UpstreamPath<'a>>,
        Option<impl actix_web::body::MessageBody + 'static>,
    ),
    fwd: &Forwarded,
    timeouts: &Timeouts,
    max_response: usize,
) -> Attempt<(Lease, bytes::Bytes)> {
    let mut upstream = match send(client, &lease, method, path, body, fwd, timeouts).await {
        Ok(u) => u,
        Err(e) => return e.into_attempt(&mut lease),
    };
    let limits = timeouts.for_route(lease.route());
    let total_left = limits.total_left(lease.elapsed());
    match read_body_within(&mut upstream.body, max_response, limits.idle, total_left).await {
        Ok(bytes) => Attempt::Done((lease, bytes)),
        Err(e) => {
            lease.finish(Outcome::Failure);
            Attempt::Retry(e)
        }
    }
}

/// How much of a prompt the backend served from its KV cache, as it reported it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheReport {
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    /// How long the backend took over the uncached tokens (llama.cpp's `timings.prompt_ms`),
    /// when it said; not checked here (the lease's prefill estimator judges it).
    pub prompt_ms: Option<f64>,
}

/// The cache report in an answer (or a stream chunk): llama.cpp's `timings` (`cache_n` of
/// `cache_n + prompt_n`), else `usage.prompt_tokens_details.cached_tokens` of `prompt_tokens`.
/// `None` when neither is there: a backend that does not report its cache has not said "0".
pub fn cache_report(body: &JsonObject) -> Option<CacheReport> {
    #[derive(serde::Deserialize)]
    struct Timings {
        cache_n: u64,
        prompt_n: u64,
        /// Any JSON: a `prompt_ms` that is no number loses the timing, not the cache report.
        #[serde(default)]
        prompt_ms: Option<serde_json::Value>,
    }
    #[derive(serde::Deserialize)]
    struct Details {
        cached_tokens: u64,
    }
    #[derive(serde::Deserialize)]
    struct UsageWithDetails {
        prompt_tokens: u64,
        prompt_tokens_details: Details,
    }
    if let Some(t) = body.field::<Timings>("timings") {
        return Some(CacheReport {
            prompt_tokens: t.cache_n.saturating_add(t.prompt_n),
            cached_tokens: t.cache_n,
            prompt_ms: t.prompt_ms.as_ref().and_then(serde_json::Value::as_f64),
        });
    }
    body.field::<UsageWithDetails>("usage")
        .map(|u| CacheReport {
            prompt_tokens: u.prompt_tokens,
            cached_tokens: u.prompt_tokens_details.cached_tokens,
            prompt_ms: None,
        })
}

#[cfg(test)]
mod cache_report_tests {
    use super::*;

    #[test]
    fn reports_come_from_timings_then_usage_details_and_absence_is_none() {
        let report = |json: &str| cache_report(&JsonObject::parse(json.as_bytes()).unwrap());
        let r = |prompt_tokens, cached_tokens| {
            Some(CacheReport {
                prompt_tokens,
                cached_tokens,
                prompt_ms: None,
            })
        };
        let timed = |prompt_ms| {
            Some(CacheReport {
                prompt_tokens: 40,
                cached_tokens: 30,
                prompt_ms,
            })
        };
        let cases = [
            (r#"{"timings":{"cache_n":30,"prompt_n":10}}"#, r(40, 30)),
            (
                r#"{"usage":{"prompt_tokens":50,"prompt_tokens_details":{"cached_tokens":0}}}"#,
                r(50, 0),
            ),
            (
                r#"{"timings":{"cache_n":1,"prompt_n":1},"usage":{"prompt_tokens":9,"prompt_tokens_details":{"cached_tokens":9}}}"#,
                r(2, 1),
            ),
            (r#"{"usage":{"prompt_tokens":50}}"#, None),
            (
                r#"{"usage":{"prompt_tokens":50,"prompt_tokens_details":null}}"#,
                None,
            ),
            (r#"{"timings":{"cache_n":-1,"prompt_n":1}}"#, None),
            (r#"{}"#, None),
            (
                r#"{"timings":{"cache_n":30,"prompt_n":10,"prompt_ms":12.5}}"#,
                timed(Some(12.5)),
            ),
            (
                r#"{"timings":{"cache_n":30,"prompt_n":10,"prompt_ms":"fast"}}"#,
                timed(None),
            ),
            (
                r#"{"timings":{"cache_n":30,"prompt_n":10,"prompt_ms":null}}"#,
                timed(None),
            ),
            (
                r#"{"timings":{"cache_n":30,"prompt_n":10,"prompt_ms":-1e308}}"#,
                timed(Some(-1e308)),
            ),
        ];
        for (json, want) in cases {
            assert_eq!(report(json), want, "{json}");
        }
    }
}
