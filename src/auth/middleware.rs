//! The key check of each access scope, attached to the routes themselves: the `/v1` and
//! `/api/v1` scopes wrap [`client_scope`], the `/admin` scope wraps [`admin_scope`] and
//! `/metrics` wraps [`metrics_scope`]; every other route is open (`/health`, `/openapi.yaml`,
//! the status page). Because the check is part of what routing chose, no spelling of a path
//! can reach a handler under another scope than its own: whatever form the request line took,
//! the handler it routes to runs behind that handler's scope check. (Deciding the scope from
//! the raw path while actix routed on the percent-decoded one let `/%61dmin/backends` through.)

use actix_web::http::header::HeaderName;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};

use super::keys::Lookup;
use super::Auth;
use crate::caller::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::quota::Quotas;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Open,
    Client,
    Admin,
}

/// The `/v1` (and `/api/v1`) scope: a client key when any is configured; per-key rate limits.
pub async fn client_scope<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    enforce(Scope::Client, req, next).await
}

/// The `/admin` scope: an admin key, and no access at all when none is configured.
pub async fn admin_scope<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    enforce(Scope::Admin, req, next).await
}

/// `GET /metrics`: the admin scope unless `METRICS_PUBLIC=true`.
pub async fn metrics_scope<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let public = req
        .app_data::<web::Data<Auth>>()
        .is_some_and(|auth| auth.metrics_public);
    let scope = if public { Scope::Open } else { Scope::Admin };
    enforce(scope, req, next).await
}

async fn enforce<B: MessageBody + 'static>(
    scope: Scope,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let verdict = match req.app_data::<web::Data<Auth>>() {
        Some(auth) => match check(auth, &req, scope) {
            // Limits apply where keys are required (an open router only names callers).
            Ok(Some(caller)) if scope == Scope::Client && auth.store().requires_client_key() => {
                admit(&req, caller).await
            }
            verdict => verdict,
        },
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
            let is_key_error = error.code == ErrorCode::InvalidApiKey;
            // The error stays attached to the response, so a path whose API has its own
            // error shape (`/v1/messages`) can rewrite it.
            let mut response = actix_web::HttpResponse::from_error(error);
            if is_key_error {
                response.headers_mut().insert(
                    actix_web::http::header::WWW_AUTHENTICATE,
                    actix_web::http::header::HeaderValue::from_static("Bearer"),
                );
            }
            // `ServiceRequest::into_response` would drop the attached error on its way
            // through `Response`.
            let (req, _) = req.into_parts();
            Ok(ServiceResponse::new(req, response).map_into_right_body())
        }
    }
}

/// The caller (when a known key was presented) or the error that ends the request.
fn check(auth: &Auth, req: &ServiceRequest, scope: Scope) -> Result<Option<Arc<Caller>>, ApiError> {
    if scope == Scope::Open {
        return Ok(None);
    }
    let store = auth.store();
    let presented = presented_key(req, scope);
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
            match (presented, caller) {
                (None, _) => Err(missing_key()),
                (Some(_), None) => Err(wrong_key()),
                (Some(_), Some(c)) => Ok(Some(c)),
            }
        }
        Scope::Admin => {
            if !store.has_admin_keys() {
                return Err(ApiError::new(
                    ErrorCode::AdminDisabled,
                    "The admin API is disabled: no ADMIN_API_KEY is configured.",
                ));
            }
            match (presented, caller) {
                (None, _) => Err(missing_key()),
                (Some(_), None) => Err(wrong_key()),
                (Some(_), Some(c)) if c.admin => Ok(Some(c)),
                (Some(_), Some(_)) => Err(ApiError::new(
                    ErrorCode::AdminKeyRequired,
                    "This endpoint needs an admin key; client keys may only use /v1.",
                )),
            }
        }
    }
}

/// Anthropic's key header, made once: a name given as text is parsed on every lookup.
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The key the caller presented: `Authorization: Bearer <key>`, or on the client scope
/// Anthropic's `x-api-key: <key>` (what the anthropic SDK sends). Bearer wins when both come.
fn presented_key(req: &ServiceRequest, scope: Scope) -> Option<String> {
    bearer(req).or_else(|| {
        if scope != Scope::Client {
            return None;
        }
        let key = req.headers().get(&X_API_KEY)?.to_str().ok()?.trim();
        (!key.is_empty()).then(|| key.to_string())
    })
}

/// The key's requests/minute (and whether its tokens/minute or budget is already spent), shared
/// by every replica through the quotas registered with the app.
async fn admit(req: &ServiceRequest, caller: Arc<Caller>) -> Result<Option<Arc<Caller>>, ApiError> {
    let limited = caller.rpm.is_some() || caller.tpm.is_some() || caller.budget.is_some();
    if !limited {
        return Ok(Some(caller));
    }
    let Some(quotas) = req.app_data::<web::Data<Quotas>>() else {
        // A limited key and nothing to count it with: refuse rather than run unlimited.
        tracing::error!(key = %caller.key_id, "no quota state registered: refusing a limited key");
        return Err(ApiError::internal("limits are not available"));
    };
    match quotas.admit_key(&caller).await {
        Ok(()) => Ok(Some(caller)),
        Err(refusal) => Err(refusal.into_error(&caller.key_id)),
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
        ErrorCode::InvalidApiKey,
        "You didn't provide an API key. Send it as `Authorization: Bearer <key>` (or `x-api-key: <key>`).",
    )
}

fn wrong_key() -> ApiError {
    ApiError::new(ErrorCode::InvalidApiKey, "Incorrect API key provided.")
}

#[cfg(test)]
mod tests {
    use actix_web::{test, web, App, HttpResponse};

    use super::*;

    /// The scope checks hold on their own, without the canonical-path wall in front: a path
    /// that actix decodes into a protected route still meets that route's check.
    #[actix_rt::test]
    async fn a_disguised_path_meets_the_scope_of_the_route_it_reaches() {
        let vars = crate::config::test_vars(&[
            ("API_KEYS", "sk-client-1234"),
            ("ADMIN_API_KEY", "adm-secret-1234"),
        ]);
        let auth = web::Data::new(Auth::load(&vars, false, None).expect("keys"));
        let ok = || web::get().to(HttpResponse::Ok);
        let app = test::init_service(
            App::new()
                .app_data(auth)
                .service(
                    web::scope("/admin")
                        .wrap(actix_web::middleware::from_fn(admin_scope))
                        .route("/backends", ok()),
                )
                .service(
                    web::resource("/metrics")
                        .wrap(actix_web::middleware::from_fn(metrics_scope))
                        .route(ok()),
                )
                .service(
                    web::scope("/v1")
                        .wrap(actix_web::middleware::from_fn(client_scope))
                        .route("/models", ok()),
                ),
        )
        .await;
        for (path, key, expected) in [
            ("/%61dmin/backends", None, 401),
            ("/%61dmin/backends", Some("sk-client-1234"), 403),
            ("/%61dmin/backends", Some("adm-secret-1234"), 200),
            ("/%6Detrics", None, 401),
            ("/v%31/models", None, 401),
            ("/v%31/models", Some("sk-client-1234"), 200),
        ] {
            let mut req = test::TestRequest::get().uri(path);
            if let Some(key) = key {
                req = req.insert_header(("authorization", format!("Bearer {key}")));
            }
            let resp = test::call_service(&app, req.to_request()).await;
            assert_eq!(resp.status().as_u16(), expected, "{path} {key:?}");
        }
        // Anthropic's header carries a client key on /v1, never an admin key to /admin.
        for (path, key, expected) in [
            ("/v1/models", "sk-client-1234", 200),
            ("/v1/models", "sk-wrong", 401),
            ("/admin/backends", "adm-secret-1234", 401),
        ] {
            let req = test::TestRequest::get()
                .uri(path)
                .insert_header(("x-api-key", key));
            let resp = test::call_service(&app, req.to_request()).await;
            assert_eq!(resp.status().as_u16(), expected, "{path} {key:?}");
        }
    }
}
