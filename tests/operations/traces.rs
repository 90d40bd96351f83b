//! OpenTelemetry traces (issue 18) against the real binary: an in-test OTLP/HTTP collector
//! decodes what the router exports; the mock engine shows what reached the backend.

use crate::common;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span};
use prost::Message;
use serde_json::{json, Value};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const SERVER: i32 = 2;
const CLIENT: i32 = 3;

/// An OTLP/HTTP collector on loopback, on its own thread (the tests block theirs while the
/// router shuts down, which is when it flushes).
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
    services: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind collector");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let services: Arc<Mutex<Vec<String>>> = Arc::default();
        let (into_spans, into_services) = (spans.clone(), services.clone());
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let spans = web::Data::new(into_spans);
                let services = web::Data::new(into_services);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(spans.clone())
                        .app_data(services.clone())
                        .app_data(web::PayloadConfig::new(16 << 20))
                        .route("/v1/traces", web::post().to(receive))
                })
                .workers(1)
                .listen(listener)
                .expect("listen")
                .run();
                let _ = server.await;
            });
        });
        Collector {
            url,
            spans,
            services,
        }
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Wait until the spans received satisfy `done`.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "collector never saw {what}; got {:#?}",
                names(&spans)
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    body: web::Bytes,
    spans: web::Data<Arc<Mutex<Vec<Span>>>>,
    services: web::Data<Arc<Mutex<Vec<String>>>>,
) -> HttpResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return HttpResponse::BadRequest().finish();
    };
    for resource_spans in request.resource_spans {
        if let Some(resource) = &resource_spans.resource {
            if let Some(name) = text(&resource.attributes, "service.name") {
                services.lock().unwrap().push(name);
            }
        }
        for scope in resource_spans.scope_spans {
            spans.lock().unwrap().extend(scope.spans);
        }
    }
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .finish()
}

fn names(spans: &[Span]) -> Vec<String> {
    spans.iter().map(|s| s.name.clone()).collect()
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attribute(attributes, key)? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key)? {
        any_value::Value::IntValue(n) => Some(*n),
        _ => None,
    }
}

fn texts(attributes: &[KeyValue], key: &str) -> Vec<String> {
    match attribute(attributes, key) {
        Some(any_value::Value::ArrayValue(array)) => array
            .values
            .iter()
            .filter_map(|v| match v.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn server_spans(spans: &[Span]) -> Vec<&Span> {
    spans.iter().filter(|s| s.kind == SERVER).collect()
}

fn attempts_of<'a>(spans: &'a [Span], server: &Span) -> Vec<&'a Span> {
    let mut attempts: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == CLIENT && s.parent_span_id == server.span_id)
        .collect();
    attempts.sort_by_key(|s| int(&s.attributes, "switchyard.attempt"));
    attempts
}

/// The environment that points the router at `collector`, exporting every 100 ms.
fn otel_env(collector: &Collector) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.clone()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ("OTEL_SERVICE_NAME", "router-under-test".into()),
        // A secret in the headers: it must reach the collector's requests only.
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20otlp-secret-123".into(),
        ),
    ]
}

fn traceparent() -> String {
    format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
}

/// The trace id and parent span id of a `traceparent` header.
fn parts(traceparent: &str) -> (String, String) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    (fields[1].to_string(), fields[2].to_string())
}

async fn post_traced(url: &str, body: &Value, traceparent: Option<&str>) -> (u16, String) {
    let mut req = client()
        .post(url)
        .insert_header(("content-type", "application/json"));
    if let Some(tp) = traceparent {
        req = req.insert_header(("traceparent", tp));
    }
    let mut resp = req.send_body(body.to_string()).await.expect("request");
    let bytes = resp.body().limit(1 << 20).await.expect("body");
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

async fn mock_traceparent(mock: &Proc) -> Option<String> {
    mock_stats(mock).await["last_request"]["headers"]["traceparent"]
        .as_str()
        .map(str::to_string)
}

#[actix_rt::test]
async fn server_span_has_genai_attributes_and_continues_the_client_trace() {
    let collector = Collector::start();
    let mock = start_mock(json!({}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let log_router = start_router_logged(router_opts(&yaml, otel_env(&collector)));
    let router = &log_router.url;
    wait_ready(router, 1).await;
    // Streamed and not: both end with usage and a finish reason on the server span.
    for stream in [false, true] {
        collector.spans.lock().unwrap().clear();
        let url = format!("{router}/v1/chat/completions");
        let (status, body) = post_traced(&url, &chat_body("m", stream), Some(&traceparent())).await;
        assert_eq!(status, 200, "{body}");
        let spans = collector
            .wait_for("a server span", |s| !server_spans(s).is_empty())
            .await;
        let server = server_spans(&spans)[0].clone();
        let a = &server.attributes;
        assert_eq!(
            hex::encode(&server.trace_id),
            CLIENT_TRACE,
            "stream={stream}"
        );
        assert_eq!(hex::encode(&server.parent_span_id), CLIENT_SPAN);
        assert_eq!(server.name, "chat m");
        let expected_texts = [
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.request.model", "m"),
            ("gen_ai.response.model", "upstream-m"),
            ("gen_ai.provider.name", "vllm"),
            ("gen_ai.system", "vllm"),
            ("switchyard.route", "vllm"),
            ("http.route", "POST /v1/chat/completions"),
        ];
        for (key, value) in expected_texts {
            assert_eq!(
                text(a, key).as_deref(),
                Some(value),
                "{key} stream={stream}"
            );
        }
        assert!(text(a, "switchyard.endpoint").is_some_and(|e| e.starts_with("vllm@")));
        assert!(text(a, "switchyard.request_id").is_some_and(|id| !id.is_empty()));
        assert!(text(a, "switchyard.policy").is_some());
        assert_eq!(int(a, "gen_ai.request.max_tokens"), Some(16));
        assert_eq!(int(a, "switchyard.attempts"), Some(1));
        assert_eq!(int(a, "http.response.status_code"), Some(200));
        assert!(int(a, "gen_ai.usage.input_tokens").is_some_and(|n| n > 0));
        assert!(int(a, "gen_ai.usage.output_tokens").is_some_and(|n| n > 0));
        assert!(
            !texts(a, "gen_ai.response.finish_reasons").is_empty(),
            "stream={stream}"
        );
        // Content is not captured unless asked for.
        assert!(text(a, "gen_ai.input.messages").is_none());
        // The time to first token is an event of streams (a JSON answer has no first token).
        assert_eq!(
            server.events.iter().any(|e| e.name == "gen_ai.first_token"),
            stream,
            "stream={stream}: first-token event"
        );
        // One attempt span under the server span, and the engine got its context.
        let attempts = attempts_of(&spans, &server);
        assert_eq!(attempts.len(), 1, "{:#?}", names(&spans));
        let sent = mock_traceparent(&mock).await.expect("traceparent upstream");
        let (trace, parent) = parts(&sent);
        assert_eq!(trace, CLIENT_TRACE);
        assert_eq!(parent, hex::encode(&attempts[0].span_id));
    }
    assert!(collector
        .services
        .lock()
        .unwrap()
        .iter()
        .all(|s| s == "router-under-test"));
    // The exporter's headers are a secret: nothing the router logs shows them.
    assert!(!router_log(&log_router).contains("otlp-secret-123"));
}

/// The APIs that are not chat carry the same GenAI facts: the client's output cap and why the
/// answer ended (Messages' `stop_reason`; a Response's incomplete reason or status).
#[actix_rt::test]
async fn messages_and_responses_spans_carry_max_tokens_and_finish_reasons() {
    let collector = Collector::start();
    let mock = start_mock(json!({}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let router = start_router(router_opts(&yaml, otel_env(&collector)));
    wait_ready(&router.url, 1).await;
    let cases = [
        (
            "/v1/messages",
            json!({"model": "m", "max_tokens": 12, "messages": [{"role": "user", "content": "hi"}]}),
            12,
        ),
        (
            "/v1/responses",
            json!({"model": "m", "max_output_tokens": 20, "input": "hi", "store": false}),
            20,
        ),
    ];
    for (path, body, max_tokens) in cases {
        collector.spans.lock().unwrap().clear();
        let (status, answer) = post_traced(&format!("{}{path}", router.url), &body, None).await;
        assert_eq!(status, 200, "{path}: {answer}");
        let spans = collector
            .wait_for("a server span", |s| !server_spans(s).is_empty())
            .await;
        let a = &server_spans(&spans)[0].attributes;
        assert_eq!(
            int(a, "gen_ai.request.max_tokens"),
            Some(max_tokens),
            "{path}"
        );
        assert!(
            !texts(a, "gen_ai.response.finish_reasons").is_empty(),
            "{path}: no finish reason"
        );
    }
}

#[actix_rt::test]
async fn a_fallback_leaves_two_attempt_spans_the_first_failed() {
    let collector = Collector::start();
    let mock = start_mock(json!({}));
    let dead = dead_url();
    let yaml = format!(
        "models:\n  - id: m\n    route:\n      - {{name: first, kind: vllm, priority: 2, base_url: \"{dead}\", health_path: none, provider_model_id: up-m}}\n      - {{name: second, kind: vllm, priority: 1, base_url: \"{}\", provider_model_id: up-m}}\n",
        mock.url
    );
    // Not probed, the dead route looks ready, and its higher tier is always tried first.
    let router = start_router_ready(router_opts(&yaml, otel_env(&collector)), 2).await;
    let url = format!("{}/v1/chat/completions", router.url);
    let (status, body) = post_traced(&url, &chat_body("m", false), None).await;
    assert_eq!(status, 200, "{body}");
    let spans = collector
        .wait_for("a request with two attempts", |spans| {
            server_spans(spans)
                .iter()
                .any(|s| int(&s.attributes, "switchyard.attempts") == Some(2))
        })
        .await;
    let server = server_spans(&spans)
        .into_iter()
        .find(|s| int(&s.attributes, "switchyard.attempts") == Some(2))
        .unwrap()
        .clone();
    assert_eq!(
        text(&server.attributes, "switchyard.route").as_deref(),
        Some("second")
    );
    let attempts = attempts_of(&spans, &server);
    assert_eq!(attempts.len(), 2, "{:#?}", names(&spans));
    let routes: Vec<Option<String>> = attempts
        .iter()
        .map(|a| text(&a.attributes, "switchyard.route"))
        .collect();
    assert_eq!(routes, [Some("first".into()), Some("second".into())]);
    let statuses: Vec<i32> = attempts
        .iter()
        .map(|a| a.status.as_ref().map_or(0, |s| s.code))
        .collect();
    assert_eq!(statuses[0], StatusCode::Error as i32);
    assert_ne!(statuses[1], StatusCode::Error as i32);
    assert!(text(&attempts[0].attributes, "error.type").is_some());
}

/// What reaches the collector and the engine: nothing traced when tracing is off or sampled
/// out; everything, flushed at shutdown, when the batch delay is longer than the run.
#[actix_rt::test]
async fn off_sampled_out_and_flushed_at_shutdown() {
    struct Case {
        name: &'static str,
        env: fn(&Collector) -> Vec<(&'static str, String)>,
        spans: bool,
        traceparent_upstream: bool,
    }
    let cases = [
        Case {
            name: "unset",
            env: |_| vec![],
            spans: false,
            traceparent_upstream: false,
        },
        Case {
            name: "disabled",
            env: |c| {
                let mut env = otel_env(c);
                env.push(("OTEL_SDK_DISABLED", "true".into()));
                env
            },
            spans: false,
            traceparent_upstream: false,
        },
        Case {
            name: "ratio 0",
            env: |c| {
                let mut env = otel_env(c);
                env.push(("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".into()));
                env.push(("OTEL_TRACES_SAMPLER_ARG", "0".into()));
                env
            },
            spans: false,
            // The context still travels (unsampled), as W3C asks of a participant.
            traceparent_upstream: true,
        },
        Case {
            name: "flushed at shutdown",
            env: |c| {
                let mut env = otel_env(c);
                env.retain(|(k, _)| *k != "OTEL_BSP_SCHEDULE_DELAY");
                env.push(("OTEL_BSP_SCHEDULE_DELAY", "600000".into()));
                env
            },
            spans: true,
            traceparent_upstream: true,
        },
    ];
    let mock = start_mock(json!({}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    for case in cases {
        let collector = Collector::start();
        let mut router = start_router_ready(router_opts(&yaml, (case.env)(&collector)), 1).await;
        let url = format!("{}/v1/chat/completions", router.url);
        let (status, body) = post_traced(&url, &chat_body("m", false), None).await;
        assert_eq!(status, 200, "{}: {body}", case.name);
        assert_eq!(
            mock_traceparent(&mock).await.is_some(),
            case.traceparent_upstream,
            "{}",
            case.name
        );
        actix_rt::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            router.terminate(Duration::from_secs(15)),
            Some(0),
            "{}",
            case.name
        );
        let spans = collector.spans();
        assert_eq!(
            !server_spans(&spans).is_empty(),
            case.spans,
            "{}: {:?}",
            case.name,
            names(&spans)
        );
    }
}

#[actix_rt::test]
async fn prompts_and_completions_are_recorded_only_when_opted_in() {
    let mock = start_mock(json!({}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    for (setting, captured) in [(None, false), (Some("false"), false), (Some("true"), true)] {
        let collector = Collector::start();
        let mut env = otel_env(&collector);
        if let Some(value) = setting {
            env.push(("OTEL_GENAI_CAPTURE_CONTENT", value.into()));
        }
        let router = start_router_ready(router_opts(&yaml, env), 1).await;
        let url = format!("{}/v1/chat/completions", router.url);
        // JSON answers and streams alike.
        for stream in [false, true] {
            collector.spans.lock().unwrap().clear();
            let (status, _) = post_traced(&url, &chat_body("m", stream), None).await;
            assert_eq!(status, 200);
            let spans = collector
                .wait_for("a server span", |s| !server_spans(s).is_empty())
                .await;
            let a = &server_spans(&spans)[0].attributes;
            let input = text(a, "gen_ai.input.messages");
            let output = text(a, "gen_ai.output.messages");
            assert_eq!(input.is_some(), captured, "{setting:?} stream={stream}");
            assert_eq!(output.is_some(), captured, "{setting:?} stream={stream}");
            if captured {
                assert!(input.unwrap().contains("Hello there"));
                assert!(output.is_some_and(|o| o.len() > 20), "stream={stream}");
            }
        }
    }
}

#[actix_rt::test]
async fn video_job_spans_link_to_the_creating_trace() {
    let collector = Collector::start();
    let mock = start_mock(
        json!({"video_queue_ms": 50, "video_steps": 2, "video_step_ms": 50, "video_bytes": 4096}),
    );
    let yaml = format!(
        "models:\n  - id: vid\n    type: video\n    route:\n      - name: engine\n        kind: video-engine\n        base_url: \"{}\"\n        provider_model_id: Wan-AI/Wan2.1-T2V-1.3B\n",
        mock.url
    );
    let mut env = otel_env(&collector);
    env.push(("VIDEO_POLL_INTERVAL_MS", "50".into()));
    env.push(("VIDEO_POLL_MAX_INTERVAL_MS", "100".into()));
    let router = start_router_ready(router_opts(&yaml, env), 1).await;
    let url = format!("{}/v1/video/generations", router.url);
    let body = json!({"model": "vid", "prompt": "a train"});
    let (status, answer) = post_traced(&url, &body, Some(&traceparent())).await;
    assert_eq!(status, 202, "{answer}");
    let spans = collector
        .wait_for("a finished video job", |spans| {
            spans.iter().any(|s| s.name == "video job")
                && spans.iter().any(|s| s.name == "video download")
        })
        .await;
    let job = spans.iter().find(|s| s.name == "video job").unwrap();
    // The job is a trace of its own, linked to the request that created it.
    assert_ne!(hex::encode(&job.trace_id), CLIENT_TRACE);
    assert!(job.parent_span_id.is_empty());
    let creator = server_spans(&spans)
        .into_iter()
        .find(|s| hex::encode(&s.trace_id) == CLIENT_TRACE)
        .expect("the create request's span")
        .clone();
    assert!(
        job.links
            .iter()
            .any(|l| l.trace_id == creator.trace_id && l.span_id == creator.span_id),
        "links: {:?}",
        job.links
    );
    for work in ["video submit", "video poll", "video download"] {
        let call = spans.iter().find(|s| s.name == work);
        let call = call.unwrap_or_else(|| panic!("no {work} span in {:?}", names(&spans)));
        assert_eq!(call.trace_id, job.trace_id, "{work}");
        assert_eq!(call.parent_span_id, job.span_id, "{work}");
    }
    // The engine's last request (the download) carried the job's trace.
    let sent = mock_traceparent(&mock).await.expect("traceparent upstream");
    assert_eq!(parts(&sent).0, hex::encode(&job.trace_id));
}
