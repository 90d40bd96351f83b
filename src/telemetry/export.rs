//! The OTLP exporter and the tracer provider, built from the standard `OTEL_*` variables (the
//! SDK reads endpoint, headers, resource, sampler and `OTEL_BSP_*` itself), and the
//! subscriber layer that turns the router's spans into OpenTelemetry spans.

use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::{Filtered, Targets};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::{TraceSettings, CAPTURE_CONTENT, ENABLED};

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The subscriber layer exporting the router's spans (and only them: its filter lets through
/// the spans of [`super::SPAN_TARGET`], nothing else the process logs).
pub type TracingLayer<S> = Filtered<
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
    Targets,
    S,
>;

/// What `init` set up: the layer to add to the subscriber.
pub struct TracingSetup {
    provider: SdkTracerProvider,
}

impl TracingSetup {
    pub fn layer<S>(&self) -> TracingLayer<S>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        let tracer = self.provider.tracer("switchyard");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            // Source locations and thread names are noise on a request span; busy/idle times
            // cost two clock reads at every poll of every instrumented future.
            .with_tracked_inactivity(false)
            .with_location(false)
            .with_threads(false)
            .with_level(false)
            .with_filter(Targets::new().with_target(super::SPAN_TARGET, tracing::Level::TRACE))
    }
}

/// Build the exporter and the provider when the settings ask for traces; `Ok(None)` when they
/// do not. The error names what was wrong, never a header's value.
pub fn init(settings: &TraceSettings) -> Result<Option<TracingSetup>, String> {
    if !settings.export {
        return Ok(None);
    }
    let exporter = build_exporter(settings.grpc)?;
    let provider = SdkTracerProvider::builder()
        // The batch processor runs on its own thread with its own blocking HTTP client; its
        // queue, batch size and delay come from OTEL_BSP_*.
        .with_batch_exporter(exporter)
        // service.name from OTEL_SERVICE_NAME, else OTEL_RESOURCE_ATTRIBUTES, else ours.
        .with_resource(resource())
        .build();
    let _ = PROVIDER.set(provider.clone());
    CAPTURE_CONTENT.store(settings.capture_content, Ordering::Relaxed);
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some(TracingSetup { provider }))
}

fn resource() -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let builder = Resource::builder();
    let builder = if named {
        builder
    } else {
        builder.with_service_name("switchyard")
    };
    builder
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

fn build_exporter(grpc: bool) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::SpanExporter;
    #[cfg(feature = "otlp-grpc")]
    if grpc {
        return grpc_exporter();
    }
    #[cfg(not(feature = "otlp-grpc"))]
    if grpc {
        tracing::warn!(
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the `otlp-grpc` build feature; exporting over HTTP/protobuf"
        );
    }
    SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("OTLP HTTP exporter: {e}"))
}

/// tonic's channel needs a Tokio runtime of its own, alive as long as the process: one worker
/// thread, off the request path (the batch processor's thread blocks on the export; the
/// channel's I/O runs here). Built before actix starts, so there is no runtime to borrow.
#[cfg(feature = "otlp-grpc")]
fn grpc_exporter() -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::WithExportConfig as _;
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = match RUNTIME.get() {
        Some(runtime) => runtime,
        None => {
            let built = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otlp-grpc")
                .enable_all()
                .build()
                .map_err(|e| format!("OTLP gRPC exporter's runtime: {e}"))?;
            RUNTIME.get_or_init(|| built)
        }
    };
    let _inside = runtime.enter();
    opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_protocol(opentelemetry_otlp::Protocol::Grpc)
        .build()
        .map_err(|e| format!("OTLP gRPC exporter: {e}"))
}

/// Export what is still queued and stop the batch thread (graceful shutdown, after the
/// request contexts, whose drop ends the server spans, are gone).
pub fn shutdown() {
    let Some(provider) = PROVIDER.get() else {
        return;
    };
    ENABLED.store(false, Ordering::Relaxed);
    if let Err(e) = provider.shutdown() {
        tracing::warn!(error = %e, "trace exporter did not flush at shutdown");
    }
}
