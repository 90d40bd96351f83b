//! `GET /openapi.yaml`: the OpenAPI 3 description of the router's API (docs/openapi.yaml,
//! embedded at build time so the binary always serves the document it was built with).

use actix_web::HttpResponse;

pub const DOCUMENT: &str = include_str!("../../docs/openapi.yaml");

pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yaml")
        .body(DOCUMENT)
}
