//! Every error a client sees, in OpenAI's shape `{"error":{"message","type","param","code"}}`,
//! with one place that decides each status code.

use std::fmt;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::config::ModelType;
use crate::redact::Redactor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    /// The client took too long to send its request.
    RequestTimeout,
    Conflict,
    Gone,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unprocessable,
    RateLimited,
    Internal,
    NotImplemented,
    BadGateway,
    Unavailable,
    GatewayTimeout,
    /// A backend's own 4xx passed through with its status.
    Upstream(u16),
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<String>,
    /// Overrides the default `type` (used when passing a backend's error through).
    pub error_type: Option<String>,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            param: None,
            code: None,
            error_type: None,
            retry_after: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> ApiError {
        let mut e = ApiError::new(ErrorKind::BadRequest, message);
        e.param = param.map(str::to_string);
        e
    }

    pub fn model_not_found(name: &str) -> ApiError {
        ApiError::new(
            ErrorKind::NotFound,
            format!("The model `{name}` does not exist or you do not have access to it."),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Internal, message).with_code("internal_error")
    }

    /// The router itself is out of a local resource (file descriptors, local ports): a 503
    /// the client may retry shortly, which says nothing about the backend.
    pub fn router_overloaded() -> ApiError {
        ApiError::new(
            ErrorKind::Unavailable,
            "The router is temporarily out of local resources. Retry shortly.",
        )
        .with_code("router_overloaded")
        .with_retry_after(Duration::from_secs(1))
    }

    pub fn status(&self) -> StatusCode {
        let code = match self.kind {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::Conflict => 409,
            ErrorKind::Gone => 410,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::Unprocessable => 422,
            ErrorKind::RateLimited => 429,
            ErrorKind::Internal => 500,
            ErrorKind::NotImplemented => 501,
            ErrorKind::BadGateway => 502,
            ErrorKind::Unavailable => 503,
            ErrorKind::GatewayTimeout => 504,
            ErrorKind::Upstream(s) => s,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY)
    }

    fn default_type(&self) -> &'static str {
        match self.kind {
            ErrorKind::BadRequest
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed
            | ErrorKind::RequestTimeout
            | ErrorKind::Conflict
            | ErrorKind::Gone
            | ErrorKind::PayloadTooLarge
            | ErrorKind::UnsupportedMediaType
            | ErrorKind::Unprocessable
            | ErrorKind::Unauthorized
            | ErrorKind::Upstream(_) => "invalid_request_error",
            ErrorKind::Forbidden => "permission_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Internal => "server_error",
            ErrorKind::NotImplemented => "not_implemented_error",
            ErrorKind::BadGateway => "upstream_error",
            ErrorKind::Unavailable => "service_unavailable_error",
            ErrorKind::GatewayTimeout => "timeout_error",
        }
    }

    /// The OpenAI error object (all four keys present, nullable ones as null).
    pub fn body(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.error_type.as_deref().unwrap_or(self.default_type()),
                "param": self.param,
                "code": self.code,
            }
        })
    }

    /// Seconds for the `Retry-After` header: whole seconds, at least 1 (OpenAI's spec).
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
            .map(|s| s.max(1))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status().as_u16(), self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status());
        if let Some(secs) = self.retry_after_secs() {
            resp.insert_header(("retry-after", secs.to_string()));
        }
        resp.json(self.body())
    }
}

pub fn wrong_endpoint(model: &str, model_type: ModelType) -> ApiError {
    ApiError::bad_request(
        format!(
            "Model `{model}` is a {model_type} model; use {} instead.",
            model_type.home_op().public_route()
        ),
        Some("model"),
    )
    .with_code("wrong_endpoint")
}

/// Longest message taken from a backend's error body that is not JSON.
const MAX_TEXT_MESSAGE_CHARS: usize = 500;

/// Turn a backend's error body (any of the runtimes' shapes, contract §1.5) into a message,
/// type and code, with the router's backend credentials taken out of all three.
pub fn upstream_message(
    body: &[u8],
    redactor: &Redactor,
) -> (String, Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (text_message(body, redactor), None, None);
    };
    let (message, kind, code) = json_fields(&v);
    let clean = |s: String| redactor.redact_owned(s);
    (clean(message), kind.map(clean), code.map(clean))
}

/// The start of a body that is not JSON (or was cut at the read limit).
fn text_message(body: &[u8], redactor: &Redactor) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "upstream returned an error without a body".to_string();
    }
    // Cut after redaction, so the cut can never leave part of a key behind.
    shorten(&redactor.redact(text), MAX_TEXT_MESSAGE_CHARS)
}

fn json_fields(v: &Value) -> (String, Option<String>, Option<String>) {
    let err = v.get("error").unwrap_or(v);
    match err {
        // TGI: {"error": "...", "error_type": "..."}
        Value::String(s) => (
            s.clone(),
            v.get("error_type")
                .and_then(Value::as_str)
                .map(str::to_string),
            None,
        ),
        Value::Object(o) => {
            let message = o
                .get("message")
                .and_then(Value::as_str)
                .or_else(|| o.get("detail").and_then(Value::as_str))
                .unwrap_or("upstream error")
                .to_string();
            let kind = o.get("type").and_then(Value::as_str).map(str::to_string);
            // vLLM and llama.cpp send an integer code; OpenAI a string.
            let code = match o.get("code") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            };
            (message, kind, code)
        }
        _ => ("upstream error".to_string(), None, None),
    }
}

/// `text` cut to `max` characters, with an ellipsis when something was cut.
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_all_four_keys() {
        let v = ApiError::model_not_found("x").body();
        let e = &v["error"];
        assert_eq!(e["code"], "model_not_found");
        assert_eq!(e["param"], "model");
        assert_eq!(e["type"], "invalid_request_error");
        let v = ApiError::internal("boom").body();
        assert!(v["error"].as_object().unwrap().contains_key("param"));
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one() {
        let e =
            ApiError::new(ErrorKind::RateLimited, "x").with_retry_after(Duration::from_millis(10));
        assert_eq!(e.retry_after_secs(), Some(1));
        let e = ApiError::new(ErrorKind::RateLimited, "x")
            .with_retry_after(Duration::from_millis(2100));
        assert_eq!(e.retry_after_secs(), Some(3));
    }

    #[test]
    fn normalizes_runtime_error_shapes() {
        let none = Redactor::default();
        assert_eq!(
            upstream_message(br#"{"error":"bad","error_type":"validation"}"#, &none),
            ("bad".into(), Some("validation".into()), None)
        );
        assert_eq!(
            upstream_message(br#"{"error":{"message":"m","type":"t","code":400}}"#, &none),
            ("m".into(), Some("t".into()), None)
        );
        assert_eq!(
            upstream_message(b"  ", &none),
            (
                "upstream returned an error without a body".into(),
                None,
                None
            )
        );
    }

    #[test]
    fn backend_keys_leave_every_field_of_every_shape() {
        const KEY: &str = "sk-BACKEND-test-9f8e7d6c5b4a";
        let redactor = Redactor::new([KEY]);
        let bodies = [
            format!(
                r#"{{"error":{{"message":"Incorrect API key provided: {KEY}","type":"t {KEY}","code":"{KEY}"}}}}"#
            ),
            format!(r#"{{"error":"Bearer {KEY} refused","error_type":"{KEY}"}}"#),
            format!(r#"{{"detail":"api-key {KEY}"}}"#),
            format!("<html>401: Bearer {KEY}</html>"),
            // A key escaped by the backend's JSON encoder and unescaped by ours.
            format!(r#"{{"error":{{"message":"key \u0073{}"}}}}"#, &KEY[1..]),
        ];
        for body in bodies {
            let (message, kind, code) = upstream_message(body.as_bytes(), &redactor);
            let all = format!("{message} {kind:?} {code:?}");
            assert!(!all.contains(KEY), "{body} gave {all}");
            assert!(all.contains("[redacted]"), "{body} gave {all}");
        }
    }

    #[test]
    fn long_text_bodies_are_cut_after_redaction() {
        let key = "sk-BACKEND-straddles-the-cut-0123";
        let body = format!("{}{key} and more", "x".repeat(MAX_TEXT_MESSAGE_CHARS - 10));
        let (message, _, _) = upstream_message(body.as_bytes(), &Redactor::new([key]));
        assert!(!message.contains("sk-BACKEND"), "{message}");
        assert!(message.ends_with('…'), "{message}");
        assert_eq!(message.chars().count(), MAX_TEXT_MESSAGE_CHARS + 1);
    }
}
