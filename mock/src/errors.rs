//! Error bodies: the OpenAI shape for the mock's own errors, and each backend's shape for
//! injected ones.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::{json, Value};

use super::settings::ErrorStyle;

/// A response that ends a request early (bad input, a fault, auth). Boxed because
/// `HttpResponse` is large and these travel through `Result`s.
pub type Rejection = Box<HttpResponse>;

/// The mock's own errors (bad input, auth, unknown ids) always use the OpenAI 4-key shape.
pub fn openai_error(
    status: u16,
    message: impl Into<String>,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> HttpResponse {
    let body = json!({
        "error": {"message": message.into(), "type": kind, "param": param, "code": code}
    });
    json_response(status, &body)
}

/// 400 `invalid_request_error` naming the offending field.
pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> HttpResponse {
    openai_error(400, message, "invalid_request_error", param, None)
}

pub fn not_found(message: impl Into<String>) -> HttpResponse {
    openai_error(
        404,
        message,
        "invalid_request_error",
        None,
        Some("not_found"),
    )
}

pub fn json_response(status: u16, body: &Value) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body.to_string())
}

/// The message of an injected error: its status, then the request's `credentials` when they are
/// to be echoed, then `padding` filler bytes.
pub fn injected_message(status: u16, credentials: Option<&str>, padding: usize) -> String {
    let mut message = quoting_credentials(format!("mock injected error ({status})"), credentials);
    message.push_str(&".".repeat(padding));
    message
}

/// `message`, followed by the request's credentials the way some providers quote the key they
/// were given (`echo_auth_in_errors`).
pub fn quoting_credentials(message: String, credentials: Option<&str>) -> String {
    match credentials {
        Some(given) => format!("{message}. Incorrect API key provided: {given}"),
        None => message,
    }
}

/// Body of an injected error with `status` and `message`, in the backend dialect `style`.
pub fn injected_error_body(style: ErrorStyle, status: u16, message: &str) -> Value {
    match style {
        ErrorStyle::Openai => {
            let (kind, code) = openai_kind_and_code(status);
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
        ErrorStyle::Vllm => json!({
            "error": {"message": message, "type": vllm_kind(status), "param": null, "code": status}
        }),
        ErrorStyle::Tgi => json!({"error": message, "error_type": tgi_kind(status)}),
        ErrorStyle::Llamacpp => json!({
            "error": {"code": status, "message": message, "type": llamacpp_kind(status)}
        }),
        ErrorStyle::Openrouter => json!({
            "error": {"code": status, "message": message,
                      "metadata": {"error_type": openrouter_kind(status)}}
        }),
    }
}

fn openai_kind_and_code(status: u16) -> (&'static str, Option<&'static str>) {
    match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        400..=499 => ("invalid_request_error", None),
        503 => ("server_error", Some("service_unavailable")),
        _ => ("server_error", None),
    }
}

fn vllm_kind(status: u16) -> &'static str {
    match status {
        404 => "NotFoundError",
        429 => "TooManyRequestsError",
        503 => "ServiceUnavailableError",
        400..=499 => "BadRequestError",
        _ => "InternalServerError",
    }
}

fn tgi_kind(status: u16) -> &'static str {
    match status {
        422 | 400 => "validation",
        429 => "overloaded",
        503 => "overloaded",
        _ => "generation",
    }
}

fn llamacpp_kind(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        404 => "not_found_error",
        503 => "unavailable_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

fn openrouter_kind(status: u16) -> &'static str {
    match status {
        401 => "authentication",
        402 => "payment_required",
        404 => "not_found",
        429 => "rate_limit_exceeded",
        502 => "provider_unavailable",
        503 => "provider_overloaded",
        504 => "timeout",
        400..=499 => "invalid_request",
        _ => "server",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_have_their_shapes() {
        let body = |style, status| injected_error_body(style, status, "m");
        let o = body(ErrorStyle::Openai, 500);
        let keys: Vec<_> = o["error"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["message", "type", "param", "code"]);
        assert_eq!(body(ErrorStyle::Vllm, 503)["error"]["code"], 503);
        let t = body(ErrorStyle::Tgi, 500);
        assert!(t["error"].is_string() && t["error_type"].is_string());
        assert_eq!(
            body(ErrorStyle::Llamacpp, 503)["error"]["type"],
            "unavailable_error"
        );
        assert_eq!(body(ErrorStyle::Openrouter, 429)["error"]["code"], 429);
    }
}
