//! Fault injection shared by every inference path: the gate a request passes before its handler
//! does any work, and the delivery of JSON bodies under `slow_drip_ms` / `hang: mid_stream`.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;

use super::body::{PacedBody, Plan, Tracker};
use super::errors::{injected_error_body, injected_message, openai_error, quoting_credentials};
use super::reset;
use super::settings::{Hang, Health, MockSettings};
use super::state::{Counters, MockState};

/// Bytes per piece when dripping a body.
const DRIP_PIECE: usize = 8;

/// Applies the request-level faults in order: reset, auth, unhealthy refusal, stalls, latency,
/// random failure, invalid JSON. `Some(response)` ends the request there.
pub async fn gate(req: &HttpRequest, s: &MockSettings, state: &MockState) -> Option<HttpResponse> {
    if s.reset_before_headers {
        return Some(reset_connection(req, state));
    }
    if let Some(key) = &s.require_api_key {
        if !bearer_matches(req, key) {
            let message = match echoed_credentials(req, s) {
                Some(given) => quoting_credentials("Refused".to_owned(), Some(&given)),
                None => "Incorrect API key provided.".to_owned(),
            };
            return Some(openai_error(
                401,
                message,
                "invalid_request_error",
                None,
                Some("invalid_api_key"),
            ));
        }
    }
    if s.refuse_when_unhealthy && s.health != Health::Ok {
        let message = match s.health {
            Health::Loading => "Loading model",
            _ => "Engine is down",
        };
        let body = serde_json::json!({
            "error": {"code": 503, "message": message, "type": "unavailable_error"}
        });
        return Some(super::errors::json_response(503, &body));
    }
    if s.hang == Hang::BeforeHeaders {
        sleep_ms(s.hang_ms).await;
    }
    sleep_ms(s.latency_ms).await;
    if s.fail_rate > 0.0 && fastrand::f64() < s.fail_rate {
        return Some(injected_error(req, s, state));
    }
    if s.invalid_json {
        Counters::add(&state.counters.faults_injected, 1);
        return Some(
            HttpResponse::Ok()
                .content_type("application/json")
                .body("mock: this body is not JSON {\"id\":"),
        );
    }
    None
}

/// The configured error (`fail_status`, `error_style`, `retry_after`, `echo_auth_in_errors`,
/// `error_padding_bytes`).
pub fn injected_error(req: &HttpRequest, s: &MockSettings, state: &MockState) -> HttpResponse {
    Counters::add(&state.counters.faults_injected, 1);
    let message = injected_message(
        s.fail_status,
        echoed_credentials(req, s).as_deref(),
        s.error_padding_bytes,
    );
    let body = injected_error_body(s.error_style, s.fail_status, &message);
    let mut response = super::errors::json_response(s.fail_status, &body);
    if let Some(secs) = s.retry_after {
        if let Ok(value) = header::HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}

fn reset_connection(req: &HttpRequest, state: &MockState) -> HttpResponse {
    match reset::close_connection(req) {
        Ok(()) => {
            Counters::add(&state.counters.connections_reset, 1);
            // Never reaches the client: the socket is already shut down.
            HttpResponse::InternalServerError().finish()
        }
        Err(e) => openai_error(
            500,
            format!("mock: reset_before_headers could not close the connection: {e}"),
            "server_error",
            None,
            None,
        ),
    }
}

/// Under `echo_auth_in_errors`, the credential headers the request carried, as an error
/// message would quote them.
pub fn echoed_credentials(req: &HttpRequest, s: &MockSettings) -> Option<String> {
    if !s.echo_auth_in_errors {
        return None;
    }
    let given: Vec<String> = [header::AUTHORIZATION.as_str(), "api-key"]
        .iter()
        .filter_map(|name| {
            let value = req.headers().get(*name)?.to_str().ok()?;
            Some(format!("{name}: {value}"))
        })
        .collect();
    Some(given.join(", "))
}

fn bearer_matches(req: &HttpRequest, key: &str) -> bool {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| given.trim() == key)
}

pub async fn sleep_ms(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Sends a complete (non-streaming) 200 body, honouring `hang: mid_stream` and `slow_drip_ms`.
pub fn deliver(
    state: &web::Data<MockState>,
    s: &MockSettings,
    content_type: &'static str,
    body: Bytes,
) -> HttpResponse {
    let plan = if s.hang == Hang::MidStream {
        Some(Plan::stall_midway(body.clone(), s.hang_ms))
    } else if s.slow_drip_ms > 0 {
        Some(Plan::drip(body.clone(), DRIP_PIECE, s.slow_drip_ms))
    } else {
        None
    };
    let mut builder = HttpResponse::Ok();
    builder.content_type(content_type);
    match plan {
        Some(plan) => builder.streaming(PacedBody::new(plan, Tracker::plain(state.clone()))),
        None => {
            Counters::add(&state.counters.bytes_sent, body.len() as u64);
            builder.body(body)
        }
    }
}
