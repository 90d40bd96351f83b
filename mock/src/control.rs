//! `/_mock/*`: read and change settings, read and reset statistics. Never faulted or counted.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::errors::{bad_request, json_response, openai_error};
use super::state::MockState;

const MAX_PATCH_BYTES: usize = 1024 * 1024;

pub async fn get_config(state: web::Data<MockState>) -> HttpResponse {
    settings_response(&state)
}

/// `PATCH` and `PUT /_mock/config`: a partial update; unknown fields are rejected.
pub async fn patch_config(payload: web::Payload, state: web::Data<MockState>) -> HttpResponse {
    let bytes = match payload.to_bytes_limited(MAX_PATCH_BYTES).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => return bad_request(format!("Could not read body: {e}"), None),
        Err(_) => {
            return openai_error(
                413,
                "Settings patch too large",
                "invalid_request_error",
                None,
                None,
            )
        }
    };
    let patch: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("Settings patch is not valid JSON: {e}"), None),
    };
    match state.patch_settings(patch) {
        Ok(_) => settings_response(&state),
        Err(message) => bad_request(message, None),
    }
}

fn settings_response(state: &MockState) -> HttpResponse {
    match serde_json::to_value(&*state.settings()) {
        Ok(v) => json_response(200, &v),
        Err(e) => openai_error(500, e.to_string(), "server_error", None, None),
    }
}

pub async fn stats(state: web::Data<MockState>) -> HttpResponse {
    match serde_json::to_value(state.snapshot()) {
        Ok(v) => json_response(200, &v),
        Err(e) => openai_error(500, e.to_string(), "server_error", None, None),
    }
}

/// Zeroes statistics and forgets video jobs and image URLs; settings are kept.
pub async fn reset(state: web::Data<MockState>) -> HttpResponse {
    state.reset();
    json_response(200, &json!({"reset": true}))
}
