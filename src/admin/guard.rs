//! Admin access until client/admin keys exist: `Authorization: Bearer $ADMIN_API_KEY`.
//! Everything admin-specific about authentication is in [`require_admin`], so the security
//! issue's scope middleware replaces exactly this function.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};

use super::Observability;
use crate::api::error::{ApiError, ErrorKind};

/// Compare without leaking the position of the first difference through timing.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer(req: &ServiceRequest) -> Option<&str> {
    let value = req.headers().get("authorization")?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub async fn require_admin(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let expected = req
        .app_data::<web::Data<Observability>>()
        .and_then(|o| o.admin_key.clone());
    let refusal = match (&expected, bearer(&req)) {
        (None, _) => Some(
            ApiError::new(
                ErrorKind::Forbidden,
                "The admin API is disabled: set ADMIN_API_KEY to enable it.",
            )
            .with_code("admin_api_disabled"),
        ),
        (Some(_), None) => Some(
            ApiError::new(
                ErrorKind::Unauthorized,
                "Admin endpoints need `Authorization: Bearer <ADMIN_API_KEY>`.",
            )
            .with_code("missing_api_key"),
        ),
        (Some(key), Some(given)) if !same_secret(key.expose().as_bytes(), given.as_bytes()) => {
            Some(
                ApiError::new(ErrorKind::Unauthorized, "Invalid admin API key.")
                    .with_code("invalid_api_key"),
            )
        }
        _ => None,
    };
    match refusal {
        Some(e) => Ok(req.into_response(e.error_response())),
        None => Ok(next.call(req).await?.map_into_boxed_body()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_exactly() {
        assert!(super::same_secret(b"abc", b"abc"));
        assert!(!super::same_secret(b"abc", b"abd"));
        assert!(!super::same_secret(b"abc", b"abcd"));
    }
}
