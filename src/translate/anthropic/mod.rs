//! Anthropic's Messages API (`POST /v1/messages`) over chat completions: the request
//! ([`request`]), the non-streamed answer ([`response`]) and the streamed answer as a state
//! machine fed one chat chunk at a time ([`stream`]). Anthropic's error shape and token
//! estimate live here too, so every Messages path answers alike.

pub mod request;
pub mod response;
pub mod stream;

pub use request::{
    count_tokens_facts, estimate_input_tokens, to_chat_request, validate, MessagesFacts,
};
pub use response::{stop_reason, to_messages_response};
pub use stream::{accumulate, MessagesEvent, MessagesStream};

use serde_json::{json, Map, Value};

/// Anthropic's `error.type` for an HTTP status (the SDK picks its exception class from the
/// status, and clients read the type): 400 `invalid_request_error`, 401
/// `authentication_error`, 403 `permission_error`, 404 `not_found_error`, 413
/// `request_too_large`, 429 `rate_limit_error`, 503 and 529 `overloaded_error`, any other 5xx
/// `api_error`; other 4xx (405, 408, 409, 415, …) are `invalid_request_error`.
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// `{"type":"error","error":{"type","message"}}` for a status and message.
pub fn error_body(status: u16, message: &str) -> Value {
    json!({
        "type": "error",
        "error": {"type": error_type(status), "message": message},
    })
}

/// A text's length in bytes, as the router's token estimates count it (about four a token).
pub(crate) fn chars_to_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

/// The string member `key` of `obj`, if it is one.
pub(crate) fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_an_anthropic_type() {
        let table = [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (405, "invalid_request_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (503, "overloaded_error"),
            (504, "api_error"),
            (529, "overloaded_error"),
        ];
        for (status, kind) in table {
            assert_eq!(error_type(status), kind, "{status}");
            assert_eq!(error_body(status, "m")["error"]["type"], kind);
            assert_eq!(error_body(status, "m")["type"], "error");
        }
    }
}
