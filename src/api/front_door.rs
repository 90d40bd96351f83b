//! The one middleware in front of routing, doing in one pass what three did: refuse a
//! non-canonical path (see [`super::canonical_path`]), give the request its id and tracing
//! span (see [`super::request_id`]), and count it in `switchyard_http_requests_total` by route
//! pattern, method and status. One layer instead of three saves two boxed futures, a boxed
//! body and their bookkeeping on every request (issue 17); the key checks stay on their
//! scopes, so they apply to exactly what routing chose.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderValue;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};

use super::canonical_path::non_canonical_reason;
use super::request_id::{self, RequestId, SpannedBody};
use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;

/// Route label of a request routing never saw (a refused path) or found no resource for.
const UNMATCHED: &str = "unmatched";

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<SpannedBody>, actix_web::Error> {
    let id = request_id::from_headers(req.headers());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = req.method().clone();
    let (mut res, routed) = match non_canonical_reason(req.path()) {
        None => {
            let res = tracing::Instrument::instrument(next.call(req), span.clone()).await?;
            (res.map_into_boxed_body(), true)
        }
        Some(reason) => {
            let error = ApiError::new(
                ErrorCode::InvalidPath,
                format!("The request path is not in canonical form: it contains {reason}."),
            );
            (req.into_response(error.error_response()), false)
        }
    };
    if let Some(m) = metrics {
        // A refused path is not matched again here: `match_pattern` would read the raw path
        // and could name the route the disguise was aimed at.
        let pattern = routed.then(|| res.request().match_pattern()).flatten();
        m.count_http(
            pattern.as_deref().unwrap_or(UNMATCHED),
            &method,
            res.status(),
        );
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(request_id::X_REQUEST_ID.clone(), value);
    }
    Ok(res.map_body(move |_, body| SpannedBody::new(body, span)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test, App, HttpResponse};

    /// Every request, refused or routed, leaves with an id and is counted once, under its
    /// route pattern (never the raw path) or `unmatched`; a refused path never reaches a
    /// handler.
    #[actix_rt::test]
    async fn every_request_gets_an_id_a_count_and_a_canonical_path() {
        let metrics = web::Data::new(Metrics::new());
        let app = test::init_service(
            App::new()
                .app_data(metrics.clone())
                .wrap(actix_web::middleware::from_fn(middleware))
                .route("/v1/models/{id}", web::get().to(HttpResponse::Ok))
                .default_service(web::to(HttpResponse::NotFound)),
        )
        .await;
        // (path, client's X-Request-Id, status, id sent back is the client's, route label)
        let cases = [
            (
                "/v1/models/m1",
                Some("client-id-1"),
                200,
                true,
                "/v1/models/{id}",
            ),
            (
                "/v1/models/m1",
                Some("bad id with spaces"),
                200,
                false,
                "/v1/models/{id}",
            ),
            ("/v1/models/m1", None, 200, false, "/v1/models/{id}"),
            ("/v1/nope", None, 404, false, UNMATCHED),
            ("/v1/models/%61", Some("client-id-2"), 400, true, UNMATCHED),
            ("/v1/models/..", None, 400, false, UNMATCHED),
            ("/v1//models/m1", None, 400, false, UNMATCHED),
        ];
        for (path, client_id, status, echoed, _) in cases {
            let mut req = test::TestRequest::get().uri(path);
            if let Some(id) = client_id {
                req = req.insert_header(("x-request-id", id));
            }
            let resp = test::call_service(&app, req.to_request()).await;
            assert_eq!(resp.status().as_u16(), status, "{path}");
            let id = resp
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            assert!(!id.is_empty(), "{path}: no request id");
            assert_eq!(Some(id.as_str()) == client_id, echoed, "{path}: {id}");
        }
        let exposition = metrics.render(None, None);
        for (route, status, expected) in [
            ("/v1/models/{id}", "200", 3),
            (UNMATCHED, "404", 1),
            (UNMATCHED, "400", 3),
        ] {
            let line = format!(
                "switchyard_http_requests_total{{method=\"GET\",route=\"{route}\",status_code=\"{status}\"}} {expected}"
            );
            assert!(exposition.contains(&line), "{line} in:\n{exposition}");
        }
        assert!(
            !exposition.contains("route=\"/v1/models/m1\""),
            "raw paths are never labels"
        );
    }
}
