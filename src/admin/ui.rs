//! The live status page: one HTML page, its script and stylesheet, compiled into the binary
//! (no CDN, no build step). The page is public but holds no data; it reads `/admin/status`
//! with the admin key the operator types in (kept in the tab's sessionStorage).

use actix_web::HttpResponse;

const PAGE: &str = include_str!("../ui/status.html");
const SCRIPT: &str = include_str!("../ui/status.js");
const STYLE: &str = include_str!("../ui/status.css");

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-content-type-options", "nosniff"))
        .body(body)
}

pub async fn page() -> HttpResponse {
    let mut resp = asset("text/html; charset=utf-8", PAGE);
    resp.headers_mut().insert(
        actix_web::http::header::CONTENT_SECURITY_POLICY,
        actix_web::http::header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'",
        ),
    );
    resp
}

pub async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}
