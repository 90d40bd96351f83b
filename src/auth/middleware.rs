//! The scope check every request passes, decided by path so that routes added later are
//! covered without registering anything: `/v1/*` and `/api/v1/*` are the client scope,
//! `/admin/*` and `/metrics` (unless `METRICS_PUBLIC=true`) the admin scope, the rest is open
//! (`/health`, `/openapi.yaml`, the status page).

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};

use super::keys::{Caller, Lookup};
use super::Auth;
use crate::api::error::{ApiError, ErrorKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Open,
    Client,
    Admin,
}

impl Scope {
    pub fn of_path(path: &str, metrics_public: bool) -> Scope {
        let under = |prefix: &str| {
            path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        if under("/v1") || under("/api/v1") {
            Scope::Client
        } else if under("/admin") || (path == "/metrics" && !metrics_public) {
            Scope::Admin
        } else {
            Scope::Open
        }
    }
}

pub async fn middleware<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let verdict = match req.app_data::<web::Data<Auth>>() {
        Some(auth) => check(auth, &req),
        // No auth state registered (unit setups): nothing to enforce.
        None => Ok(None),
    };
    match verdict {
        Ok(caller) => {
            if let Some(caller) = caller {
                req.extensions_mut().insert(caller);
            }
            next.call(req)
                .await
                .map(ServiceResponse::map_into_left_body)
        }
        Err(error) => {
            let mut response = error.error_response();
            if error.kind == ErrorKind::Unauthorized {
                response.headers_mut().insert(
                    actix_web::http::header::WWW_AUTHENTICATE,
                    actix_web::http::header::HeaderValue::from_static("Bearer"),
                );
            }
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

/// The caller (when a known key was presented) or the error that ends the request.
fn check(auth: &Auth, req: &ServiceRequest) -> Result<Option<Arc<Caller>>, ApiError> {
    let scope = Scope::of_path(req.path(), auth.metrics_public);
    if scope == Scope::Open {
        return Ok(None);
    }
    let store = auth.store();
    let presented = bearer(req);
    let caller = match presented.as_deref().map(|k| store.lookup(k)) {
        Some(Lookup::Known(c)) => Some(c),
        Some(Lookup::Unknown) => None,
        None => None,
    };
    match scope {
        Scope::Open => Ok(None),
        Scope::Client => {
            if !store.requires_client_key() {
                // Open router: a known key still names the caller in records.
                return Ok(caller);
            }
            let caller = match (presented, caller) {
                (None, _) => return Err(missing_key()),
                (Some(_), None) => return Err(wrong_key()),
                (Some(_), Some(c)) => c,
            };
            if let Err(wait) = auth.limiter.admit(&caller, Instant::now()) {
                return Err(ApiError::new(
                    ErrorKind::RateLimited,
                    format!(
                        "Rate limit reached for API key `{}`. Retry after the indicated time.",
                        caller.key_id
                    ),
                )
                .with_code("rate_limit_exceeded")
                .with_retry_after(wait));
            }
            Ok(Some(caller))
        }
        Scope::Admin => {
            if !store.has_admin_keys() {
                return Err(ApiError::new(
                    ErrorKind::Forbidden,
                    "The admin API is disabled: no ADMIN_API_KEY is configured.",
                )
                .with_code("admin_disabled"));
            }
            match (presented, caller) {
                (None, _) => Err(missing_key()),
                (Some(_), None) => Err(wrong_key()),
                (Some(_), Some(c)) if c.admin => Ok(Some(c)),
                (Some(_), Some(_)) => Err(ApiError::new(
                    ErrorKind::Forbidden,
                    "This endpoint needs an admin key; client keys may only use /v1.",
                )
                .with_code("admin_key_required")),
            }
        }
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(req: &ServiceRequest) -> Option<String> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

fn missing_key() -> ApiError {
    ApiError::new(
        ErrorKind::Unauthorized,
        "You didn't provide an API key. Send it as `Authorization: Bearer <key>`.",
    )
    .with_code("invalid_api_key")
}

fn wrong_key() -> ApiError {
    ApiError::new(ErrorKind::Unauthorized, "Incorrect API key provided.")
        .with_code("invalid_api_key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_by_path() {
        assert_eq!(Scope::of_path("/v1/chat/completions", false), Scope::Client);
        assert_eq!(Scope::of_path("/v1", false), Scope::Client);
        assert_eq!(Scope::of_path("/api/v1/models", false), Scope::Client);
        assert_eq!(Scope::of_path("/v10/x", false), Scope::Open);
        assert_eq!(Scope::of_path("/admin/reload", false), Scope::Admin);
        assert_eq!(Scope::of_path("/administrator", false), Scope::Open);
        assert_eq!(Scope::of_path("/metrics", false), Scope::Admin);
        assert_eq!(Scope::of_path("/metrics", true), Scope::Open);
        assert_eq!(Scope::of_path("/health", false), Scope::Open);
        assert_eq!(Scope::of_path("/openapi.yaml", false), Scope::Open);
    }
}
