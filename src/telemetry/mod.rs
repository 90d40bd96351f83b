//! OpenTelemetry traces (issue 18): OTLP export configured by the standard `OTEL_*`
//! variables, W3C trace-context propagation, and the spans a request leaves.
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and
//! neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` says otherwise). When off,
//! no exporter and no subscriber layer exist, [`enabled`] is one relaxed atomic load, and every
//! span the router would build is `Span::none()`: a request pays no attribute formatting, and
//! no `traceparent` goes upstream (the client's own is not passed through either).

mod export;
mod propagation;
mod spans;

use std::sync::atomic::{AtomicBool, Ordering};

pub use export::{init, shutdown, TracingLayer, TracingSetup};
pub use propagation::{extract_parent, inject_current};
pub use spans::{
    attempt_span, genai_operation, job_call_span, job_span, server_span, JobTrace, RequestFacts,
    RequestTrace, SPAN_TARGET,
};

static ENABLED: AtomicBool = AtomicBool::new(false);
static CAPTURE_CONTENT: AtomicBool = AtomicBool::new(false);

/// True when spans are exported: the one check the request path makes before building any.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// `OTEL_GENAI_CAPTURE_CONTENT=true`: prompts and completions are recorded on spans. Off by
/// default: they are the users' data, and may hold secrets.
#[inline]
pub fn capture_content() -> bool {
    enabled() && CAPTURE_CONTENT.load(Ordering::Relaxed)
}

/// What the environment asks for, read once at start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceSettings {
    /// An endpoint is configured and tracing was not disabled.
    pub export: bool,
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL` is `grpc`.
    pub grpc: bool,
    pub capture_content: bool,
}

impl TraceSettings {
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> TraceSettings {
        let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
        let is = |name: &str, value: &str| {
            var(name).is_some_and(|v| v.trim().eq_ignore_ascii_case(value))
        };
        let endpoint =
            set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT");
        let disabled = is("OTEL_SDK_DISABLED", "true") || is("OTEL_TRACES_EXPORTER", "none");
        let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_default();
        TraceSettings {
            export: endpoint && !disabled,
            grpc: protocol.trim().eq_ignore_ascii_case("grpc"),
            capture_content: is("OTEL_GENAI_CAPTURE_CONTENT", "true"),
        }
    }

    pub fn from_env() -> TraceSettings {
        TraceSettings::from_vars(|name| std::env::var(name).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracing_is_on_only_with_an_endpoint_and_not_disabled() {
        let table: &[(&[(&str, &str)], bool)] = &[
            (&[], false),
            (&[("OTEL_SERVICE_NAME", "x")], false),
            (&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")], false),
            (&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")], true),
            (
                &[(
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://c:4318/v1/traces",
                )],
                true,
            ),
            (
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_SDK_DISABLED", "TRUE"),
                ],
                false,
            ),
            (
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_TRACES_EXPORTER", "none"),
                ],
                false,
            ),
        ];
        for (vars, export) in table {
            let settings = TraceSettings::from_vars(|name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            });
            assert_eq!(settings.export, *export, "{vars:?}");
        }
    }

    #[test]
    fn protocol_and_content_capture_are_read() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ("OTEL_GENAI_CAPTURE_CONTENT", "true"),
        ];
        let settings = TraceSettings::from_vars(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        });
        assert!(settings.grpc && settings.capture_content);
    }
}
