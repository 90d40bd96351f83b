//! The common start of every inference request: count, read, record, pass the fault gate.

use std::sync::Arc;

use actix_web::{web, HttpRequest};
use bytes::Bytes;
use serde_json::Value;

use super::errors::{bad_request, openai_error, Rejection};
use super::faults;
use super::settings::MockSettings;
use super::state::MockState;

/// A JSON inference request that passed the gate.
pub struct JsonRequest {
    /// Settings snapshot taken when the request arrived.
    pub settings: Arc<MockSettings>,
    /// The body, a JSON object.
    pub body: Value,
    /// The request's credentials under `echo_auth_in_errors`, for in-band error events.
    pub echoed_credentials: Option<String>,
}

impl JsonRequest {
    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.body.get(name).and_then(Value::as_str)
    }

    /// The `model` field, or the first configured id; 404 under `strict_models`.
    pub fn model(&self) -> Result<String, Rejection> {
        let s = &self.settings;
        match self.str_field("model") {
            Some(m) if s.strict_models && !s.model_ids.iter().any(|id| id == m) => {
                Err(openai_error(
                    404,
                    format!("The model `{m}` does not exist or you do not have access to it."),
                    "invalid_request_error",
                    Some("model"),
                    Some("model_not_found"),
                )
                .into())
            }
            Some(m) => Ok(m.to_owned()),
            None => Ok(s.model_ids.first().cloned().unwrap_or_default()),
        }
    }
}

/// Counts, reads (bounded by `max_body_bytes`), records and gates a JSON request.
pub async fn begin_json(
    req: &HttpRequest,
    payload: web::Payload,
    state: &MockState,
    route: &str,
) -> Result<JsonRequest, Rejection> {
    let settings = state.settings();
    state.count(route);
    let body = read_body(payload, settings.max_body_bytes).await;
    state.record(&settings, req, body.as_ref().ok().cloned());
    if let Some(response) = faults::gate(req, &settings, state).await {
        return Err(response.into());
    }
    let bytes = body?;
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|e| bad_request(format!("Request body is not valid JSON: {e}"), None))?;
    if !body.is_object() {
        return Err(bad_request("Request body must be a JSON object", None).into());
    }
    let echoed_credentials = faults::echoed_credentials(req, &settings);
    Ok(JsonRequest {
        settings,
        body,
        echoed_credentials,
    })
}

/// Counts, records and gates a request whose body the handler reads itself (or that has none).
pub async fn begin_bodyless(
    req: &HttpRequest,
    state: &MockState,
    route: &str,
) -> Result<Arc<MockSettings>, Rejection> {
    let settings = state.settings();
    state.count(route);
    state.record(&settings, req, None);
    match faults::gate(req, &settings, state).await {
        Some(response) => Err(response.into()),
        None => Ok(settings),
    }
}

async fn read_body(payload: web::Payload, limit: usize) -> Result<Bytes, Rejection> {
    match payload.to_bytes_limited(limit).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(bad_request(format!("Could not read request body: {e}"), None).into()),
        Err(_) => Err(openai_error(
            413,
            format!("Request body exceeds {limit} bytes"),
            "invalid_request_error",
            None,
            Some("payload_too_large"),
        )
        .into()),
    }
}
