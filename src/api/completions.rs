//! `POST /v1/completions`: the legacy text completions API, relayed to backends that serve it
//! natively through the chat relay ([`super::chat::serve`]): same fallback, limits, usage,
//! record and SSE relay, with its own validation ([`super::completions_request`]).

use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::state::AppState;
use crate::engines::ApiOp;
use crate::error::ApiError;

pub async fn completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    super::chat::serve(
        req,
        payload,
        state,
        client,
        ApiOp::Completions,
        super::completions_request::parse,
    )
    .await
}
