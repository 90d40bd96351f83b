//! W3C trace context in and out: the client's `traceparent`/`tracestate` become the server
//! span's parent, and the current span's context goes on every upstream request.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct RequestHeaders<'a>(&'a HeaderMap);

impl Extractor for RequestHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// The client's trace context, if its headers carry a valid one.
pub fn extract_parent(headers: &HeaderMap) -> Option<Context> {
    use opentelemetry::trace::TraceContextExt;
    let cx = TraceContextPropagator::new().extract(&RequestHeaders(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

#[derive(Default)]
struct Collected(Vec<(HeaderName, HeaderValue)>);

impl Injector for Collected {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.push((name, value));
        }
    }
}

/// Put the current span's context on an upstream request (nothing when tracing is off or no
/// span is current: a probe, discovery).
pub fn inject_current(mut req: awc::ClientRequest) -> awc::ClientRequest {
    if !super::enabled() {
        return req;
    }
    let span = tracing::Span::current();
    if span.is_none() {
        return req;
    }
    let mut headers = Collected::default();
    TraceContextPropagator::new().inject_context(&span.context(), &mut headers);
    for header in headers.0 {
        req = req.insert_header(header);
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    #[test]
    fn only_valid_traceparents_are_continued() {
        let table = [
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                true,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                true,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                false,
            ),
            ("garbage", false),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                false,
            ),
        ];
        for (traceparent, valid) in table {
            let mut headers = HeaderMap::new();
            headers.insert(
                HeaderName::from_static("traceparent"),
                HeaderValue::from_static(traceparent),
            );
            assert_eq!(extract_parent(&headers).is_some(), valid, "{traceparent}");
        }
        assert!(extract_parent(&HeaderMap::new()).is_none());
    }
}
