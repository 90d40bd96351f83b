//! Anthropic's error shape on the Messages paths. Every error a client of `/v1/messages` (and
//! `/v1/messages/count_tokens`, under `/api/v1` too) receives — the handler's, the key check's
//! 401/429, a 405 — leaves as `{"type":"error","error":{"type","message"}}` with Anthropic's
//! type for its status (`translate::anthropic::error_type`). This middleware wraps the whole
//! `/v1` scope, outside the key check, and is the one place the mapping happens: the errors
//! stay attached to their responses (`HttpResponse::from_error`), so it rewrites them whatever
//! produced them. Status and headers (`Retry-After`, `WWW-Authenticate`, `Allow`) are kept.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::middleware::Next;
use actix_web::HttpResponse;

use crate::error::ApiError;
use crate::translate::anthropic;

/// Whether `path` is one of the Messages API's, under any of the API's prefixes (`/v1`,
/// OpenRouter's `/api/v1`, the self-hosted platform's `/api/v1/ai`).
pub fn speaks_anthropic(path: &str) -> bool {
    let rest = ["/api/v1/ai", "/api/v1", "/v1"]
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix));
    matches!(rest, Some("/messages" | "/messages/count_tokens"))
}

/// The scope middleware: Messages paths get their errors in Anthropic's shape.
pub async fn anthropic_errors<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    if !speaks_anthropic(req.path()) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let res = next.call(req).await?;
    let Some(error) = res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
        .cloned()
    else {
        return Ok(res.map_into_left_body());
    };
    let status = res.status();
    let mut reshaped = HttpResponse::build(status);
    for (name, value) in res.headers() {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            reshaped.append_header((name.clone(), value.clone()));
        }
    }
    let body = anthropic::error_body(status.as_u16(), &error.message);
    let reshaped = reshaped.json(body);
    Ok(res.into_response(reshaped).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_messages_paths_speak_anthropic() {
        for (path, expected) in [
            ("/v1/messages", true),
            ("/api/v1/messages", true),
            ("/v1/messages/count_tokens", true),
            ("/api/v1/messages/count_tokens", true),
            ("/api/v1/ai/messages", true),
            ("/api/v1/ai/messages/count_tokens", true),
            ("/api/v2/messages", false),
            ("/messages", false),
            ("/v1/chat/completions", false),
            ("/v1/messages/other", false),
            ("/v1/messagesx", false),
        ] {
            assert_eq!(speaks_anthropic(path), expected, "{path}");
        }
    }
}
