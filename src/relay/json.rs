//! A non-streamed JSON exchange on one lease: send, read the whole answer with limits, check it
//! is JSON and not an error in disguise, and rewrite `model` to the public id.

use super::error_body::upstream_message;
use super::fallback::Attempt;
use super::shallow::JsonObject;
use actix_web::http::Method;

use super::upstream::{read_body_within, send, Forwarded, Timeouts, UpstreamPath};
use crate::error::{ApiError, ErrorCode};
use crate::mesh::{Lease, Outcome};
use crate::record::usage_json::{read_usage, MaybeF64};
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
    let mut body = match JsonObject::parse_bytes(bytes.clone()) {
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
    let (usage, cache) = answer_counts(&body);
    if let Some(u) = usage {
        lease.set_actual_tokens(u.total());
    }
    if let Some(report) = cache {
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

/// What an answer (or a stream chunk) says it used and how much of its prompt the backend had
/// cached, its `usage` read once for both ([`Usage::from_json`]'s reading is the first).
///
/// The cache report: llama.cpp's `timings` (`cache_n` of `cache_n + prompt_n`), else
/// `usage.prompt_tokens_details.cached_tokens` of `prompt_tokens`. `None` when neither is
/// there: a backend that does not report its cache has not said "0".
pub fn answer_counts(body: &JsonObject) -> (Option<Usage>, Option<CacheReport>) {
    let reading = body.get("usage").map(read_usage).unwrap_or_default();
    let cache = timings_report(body).or_else(|| {
        reading
            .cached_of_prompt
            .map(|(prompt_tokens, cached_tokens)| CacheReport {
                prompt_tokens,
                cached_tokens,
                prompt_ms: None,
            })
    });
    (reading.usage, cache)
}

/// llama.cpp's `timings`, when they say how much of the prompt was cached.
fn timings_report(body: &JsonObject) -> Option<CacheReport> {
    #[derive(serde::Deserialize)]
    struct Timings {
        cache_n: u64,
        prompt_n: u64,
        /// Any JSON: a `prompt_ms` that is no number loses the timing, not the cache report.
        #[serde(default)]
        prompt_ms: MaybeF64,
    }
    let t = serde_json::from_str::<Timings>(body.get("timings")?).ok()?;
    Some(CacheReport {
        prompt_tokens: t.cache_n.saturating_add(t.prompt_n),
        cached_tokens: t.cache_n,
        prompt_ms: t.prompt_ms.0,
    })
}

#[cfg(test)]
mod cache_report_tests {
    use super::*;

    #[test]
    fn reports_come_from_timings_then_usage_details_and_absence_is_none() {
        let report = |json: &str| answer_counts(&JsonObject::parse(json.as_bytes()).unwrap()).1;
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

/// The typed one-pass reading of `usage` and `timings` against the code it replaced, kept
/// here as the oracle: a `Value` for the usage, derived structs for the cache report.
#[cfg(test)]
mod answer_counts_tests {
    use super::*;
    use serde_json::Value;

    fn old_usage(v: &Value) -> Option<Usage> {
        let obj = v.as_object()?;
        let get = |a: &str, b: &str| obj.get(a).or_else(|| obj.get(b)).and_then(Value::as_u64);
        let prompt = get("prompt_tokens", "input_tokens");
        let completion = get("completion_tokens", "output_tokens");
        if prompt.is_none() && completion.is_none() {
            return None;
        }
        let count = |k: &str| obj.get(k).and_then(Value::as_u64);
        let cache_reads = count("cache_read_input_tokens").unwrap_or(0);
        let cache_writes = count("cache_creation_input_tokens").unwrap_or(0);
        let cached = obj
            .get("prompt_tokens_details")
            .or_else(|| obj.get("input_tokens_details"))
            .and_then(|d| d.get("cached_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(cache_reads);
        Some(Usage {
            prompt_tokens: prompt
                .unwrap_or(0)
                .saturating_add(cache_reads)
                .saturating_add(cache_writes),
            completion_tokens: completion.unwrap_or(0),
            cached_tokens: cached,
            estimated: false,
        })
    }

    fn old_cache_report(body: &JsonObject) -> Option<CacheReport> {
        #[derive(serde::Deserialize)]
        struct Timings {
            cache_n: u64,
            prompt_n: u64,
            #[serde(default)]
            prompt_ms: Option<Value>,
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
                prompt_ms: t.prompt_ms.as_ref().and_then(Value::as_f64),
            });
        }
        body.field::<UsageWithDetails>("usage")
            .map(|u| CacheReport {
                prompt_tokens: u.prompt_tokens,
                cached_tokens: u.prompt_tokens_details.cached_tokens,
                prompt_ms: None,
            })
    }

    /// `usage` members: `None` leaves the member out.
    const USAGES: &[Option<&str>] = &[
        None,
        Some("null"),
        Some(r#""12""#),
        Some("12"),
        Some("true"),
        Some("{}"),
        Some("[]"),
        Some(r#"{"prompt_tokens":10,"completion_tokens":2}"#),
        Some(r#"{"input_tokens":6,"output_tokens":3}"#),
        Some(r#"{"completion_tokens":0}"#),
        Some(r#"{"prompt_tokens":"10","input_tokens":6,"completion_tokens":2}"#),
        Some(r#"{"prompt_tokens":null,"input_tokens":6,"output_tokens":1}"#),
        Some(r#"{"completion_tokens":null,"output_tokens":4,"prompt_tokens":1}"#),
        Some(r#"{"prompt_tokens":-1,"completion_tokens":-0}"#),
        Some(r#"{"prompt_tokens":-1,"completion_tokens":3}"#),
        Some(r#"{"prompt_tokens":1.5,"completion_tokens":1.0}"#),
        Some(r#"{"prompt_tokens":1e3,"completion_tokens":2}"#),
        Some(r#"{"prompt_tokens":18446744073709551615,"completion_tokens":18446744073709551616}"#),
        Some(r#"{"prompt_tokens":99999999999999999999999999999,"completion_tokens":1}"#),
        Some(r#"{"prompt_tokens":{"a":1},"completion_tokens":[1,2]}"#),
        Some(r#"{"prompt_tokens":[[[{"a":[1,{"b":"c"}]}]]],"completion_tokens":4}"#),
        Some(r#"{"prompt_tokens":true,"completion_tokens":false}"#),
        Some(r#"{"prompt_tokens":5,"prompt_tokens":7,"completion_tokens":1}"#),
        Some(r#"{"prompt_tokens":5,"completion_tokens":1,"completion_tokens":"x"}"#),
        Some(
            r#"{"prompt_tokens":10,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":4}}"#,
        ),
        Some(
            r#"{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":2}}"#,
        ),
        Some(
            r#"{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":4,"cached_tokens":5}}"#,
        ),
        Some(r#"{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":"4"}}"#),
        Some(r#"{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":null}}"#),
        Some(r#"{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":-4}}"#),
        Some(r#"{"prompt_tokens":10,"prompt_tokens_details":{"audio_tokens":1}}"#),
        Some(
            r#"{"prompt_tokens":10,"prompt_tokens_details":null,"input_tokens_details":{"cached_tokens":3}}"#,
        ),
        Some(r#"{"input_tokens":6,"input_tokens_details":{"cached_tokens":3}}"#),
        Some(
            r#"{"prompt_tokens":6,"input_tokens_details":{"cached_tokens":3},"cache_read_input_tokens":9}"#,
        ),
        Some(r#"{"prompt_tokens":10,"prompt_tokens_details":[4]}"#),
        Some(r#"{"prompt_tokens":10,"prompt_tokens_details":[4,5]}"#),
        Some(r#"{"prompt_tokens":10,"prompt_tokens_details":[]}"#),
        Some(r#"{"prompt_tokens":10,"prompt_tokens_details":["4"]}"#),
        Some(r#"{"prompt_tokens":10,"prompt_tokens_details":"x"}"#),
        Some(
            r#"{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":4},"prompt_tokens_details":{"cached_tokens":5}}"#,
        ),
        Some(
            r#"{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":4},"prompt_tokens_details":null}"#,
        ),
        Some(
            r#"{"prompt_tokens":10,"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":4}}"#,
        ),
        Some(r#"{"prompt_tokens":"10","prompt_tokens_details":{"cached_tokens":4}}"#),
        Some(
            r#"{"input_tokens":6,"output_tokens":3,"cache_read_input_tokens":20,"cache_creation_input_tokens":5}"#,
        ),
        Some(
            r#"{"input_tokens":6,"cache_read_input_tokens":"20","cache_creation_input_tokens":-5}"#,
        ),
        Some(r#"{"input_tokens":1,"cache_read_input_tokens":7}"#),
        Some(r#"{"cache_read_input_tokens":7}"#),
        Some(
            r#"{"prompt_tokens":18446744073709551615,"cache_read_input_tokens":5,"cache_creation_input_tokens":5}"#,
        ),
        Some(
            r#"{"prompt\u005ftokens":9,"completion_tokens":1,"prompt_tokens_details":{"cached\u005ftokens":2}}"#,
        ),
        Some(
            r#"{ "prompt_tokens" : 10 ,"completion_tokens":2 , "prompt_tokens_details" : { "cached_tokens" : 4 } }"#,
        ),
        Some(r#"{"prompt_tokens":50,"prompt_tokens_details":{"cached_tokens":0},"x":"\ud800"}"#),
        Some(r#"{"prompt_tokens":50,"prompt_tokens_details":{"cached_tokens":0,"y":"\udc00"}}"#),
        Some(
            r#"{"prompt_tokens":50,"completion_tokens":1e400,"prompt_tokens_details":{"cached_tokens":1}}"#,
        ),
        Some(
            r#"{"prompt_tokens":50,"completion_tokens":"\ud800","prompt_tokens_details":{"cached_tokens":1}}"#,
        ),
        Some(r#"{"prompt_tokens":"\ud800","prompt_tokens_details":{"cached_tokens":1}}"#),
        Some(r#"{"\ud800":1,"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":1}}"#),
        Some(r#"{"prompt_tokens":50,"prompt_tokens_details":[1,"\ud800"]}"#),
        Some(r#"{"prompt_tokens":50,"prompt_tokens_details":[1e400]}"#),
        Some(r#"{"nested":{"prompt_tokens":5},"completion_tokens":2,"extra":[{"a":[]},null,"s"]}"#),
        Some(r#"[50,{"cached_tokens":3}]"#),
        Some(r#"[50,[3]]"#),
        Some(r#"[50,[3],1]"#),
        Some(r#"[50,{"cached_tokens":3,"x":"\ud800"}]"#),
        Some(r#"[50]"#),
        Some(r#"["50",[3]]"#),
        Some(r#"[-1,[3]]"#),
    ];

    /// `timings` members: `None` leaves the member out.
    const TIMINGS: &[Option<&str>] = &[
        None,
        Some("null"),
        Some(r#"{"cache_n":30,"prompt_n":10}"#),
        Some(r#"{"cache_n":30,"prompt_n":10,"prompt_ms":12.5}"#),
        Some(r#"{"cache_n":30,"prompt_n":10,"prompt_ms":7}"#),
        Some(r#"{"cache_n":30,"prompt_n":10,"prompt_ms":-3}"#),
        Some(r#"{"cache_n":30,"prompt_n":10,"prompt_ms":-1e308}"#),
        Some(r#"{"cache_n":30,"prompt_n":10,"prompt_ms":"fast"}"#),
        Some(r#"{"cache_n":30,"prompt_n":10,"prompt_ms":null}"#),
        Some(r#"{"cache_n":30,"prompt_n":10,"prompt_ms":{"a":[1]}}"#),
        Some(r#"{"cache_n":30,"prompt_n":10,"prompt_ms":{"a":"\ud800"}}"#),
        Some(r#"{"cache_n":30,"prompt_n":10,"prompt_ms":1e400}"#),
        Some(r#"{"cache_n":30,"prompt_n":10,"prompt_ms":1,"prompt_ms":2}"#),
        Some(r#"{"cache_n":30,"prompt_n":10,"other":"\ud800"}"#),
        Some(r#"{"cache_n":-1,"prompt_n":1}"#),
        Some(r#"{"cache_n":1.0,"prompt_n":1}"#),
        Some(r#"{"cache_n":1,"cache_n":2,"prompt_n":1}"#),
        Some(r#"{"cache_n":30}"#),
        Some(r#"{"cache_n":18446744073709551615,"prompt_n":18446744073709551615}"#),
        Some(r#"[30,10]"#),
        Some(r#"[30,10,5]"#),
        Some(r#"[30,10,null]"#),
        Some(r#"[30,10,5,1]"#),
    ];

    #[test]
    fn usage_and_cache_report_read_as_the_value_based_code_read_them() {
        let mut compared = 0;
        for usage in USAGES {
            for timings in TIMINGS {
                let mut text = String::from(r#"{"id":"x""#);
                for (key, member) in [("timings", timings), ("usage", usage)] {
                    if let Some(member) = member {
                        text.push_str(&format!(r#","{key}":{member}"#));
                    }
                }
                text.push('}');
                let body = JsonObject::parse(text.as_bytes()).expect(&text);
                let old_usage = body.field::<Value>("usage").as_ref().and_then(old_usage);
                let old = (old_usage, old_cache_report(&body));
                assert_eq!(answer_counts(&body), old, "{text}");
                assert_eq!(answer_counts(&body).1, old.1, "{text}");
                compared += 1;
            }
            // The `Value` reading shares the implementation: same answers.
            if let Some(v) = usage.and_then(|u| serde_json::from_str::<Value>(u).ok()) {
                assert_eq!(Usage::from_json(&v), old_usage(&v), "{v}");
            }
        }
        assert_eq!(compared, USAGES.len() * TIMINGS.len());
    }

    #[test]
    fn the_table_covers_usages_the_value_refuses_but_the_cache_report_reads() {
        // Guards the table above: these rows only test something if the two readings differ.
        let body = JsonObject::parse(
            br#"{"usage":{"prompt_tokens":50,"prompt_tokens_details":{"cached_tokens":0},"x":"\ud800"}}"#,
        )
        .unwrap();
        let (usage, cache) = answer_counts(&body);
        assert_eq!(usage, None);
        assert_eq!(
            cache.map(|c| (c.prompt_tokens, c.cached_tokens)),
            Some((50, 0))
        );
    }
}
