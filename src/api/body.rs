//! Reading a JSON request body with a size limit, turning every problem into an OpenAI-shaped
//! 400/413/415 before anything is routed.

use actix_web::{web, HttpMessage, HttpRequest};
use futures_util::StreamExt;
use serde_json::Value;

use super::error::{ApiError, ErrorKind};

/// [`read_json`] for endpoints whose body must be an object (every `/v1` POST but chat, whose
/// validation checks the shape itself).
pub async fn read_json_object(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    match read_json(req, payload, limit).await? {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::bad_request(
            "The request body must be a JSON object.",
            None,
        )),
    }
}

pub async fn read_json(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Value, ApiError> {
    check_json_content_type(req)?;
    if let Some(len) = declared_length(req) {
        if len > limit as u64 {
            // Refuse before reading: a huge body is not worth receiving.
            return Err(too_large(limit));
        }
    }
    // A client that trickles its body (slow loris) is cut off after the body timeout.
    let within = req
        .app_data::<web::Data<crate::state::AppState>>()
        .map_or(std::time::Duration::from_secs(60), |s| {
            s.settings.client_body_timeout
        });
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = web::BytesMut::new();
    loop {
        let next = match tokio::time::timeout_at(deadline, payload.next()).await {
            Ok(next) => next,
            Err(_) => {
                return Err(ApiError::new(
                    ErrorKind::RequestTimeout,
                    format!(
                        "The request body was not received within {} seconds.",
                        within.as_secs_f64()
                    ),
                )
                .with_code("request_timeout"))
            }
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(format!("Could not read the request body: {e}"), None)
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "The request body is empty; expected a JSON object.",
            None,
        ));
    }
    serde_json::from_slice(&buf).map_err(|e| {
        ApiError::bad_request(format!("The request body is not valid JSON: {e}"), None)
            .with_code("invalid_json")
    })
}

/// The body size the client declared in `Content-Length`, if any.
pub fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get("content-length")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorKind::PayloadTooLarge,
        format!("The request body is larger than the limit of {limit} bytes."),
    )
    .with_code("payload_too_large")
}

/// JSON endpoints accept `application/json` (and `+json` types), no Content-Type, and the
/// form/text types curl and some clients send by default; anything else is a 415.
fn check_json_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    if req.headers().get("content-type").is_none() {
        return Ok(());
    }
    let mime = req.content_type().to_ascii_lowercase();
    let ok = mime.is_empty()
        || mime == "application/json"
        || mime.ends_with("+json")
        || mime == "text/plain"
        || mime == "application/x-www-form-urlencoded";
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!("Content-Type `{mime}` is not supported here; send application/json."),
        )
        .with_code("unsupported_media_type"))
    }
}
