//! How a routing refusal ([`RouteError`]) reads to a client.

use crate::config::ModelType;
use crate::engines::ApiOp;
use crate::error::{ApiError, ErrorCode};

use super::table::{CapacityReason, RouteError};

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> ApiError {
        match e {
            RouteError::UnknownModel(name) => ApiError::model_not_found(&name),
            RouteError::ModelNotAllowed { model, key_id } => {
                ApiError::model_not_allowed(&model, &key_id)
            }
            RouteError::WrongEndpoint { model, model_type } => wrong_endpoint(&model, model_type),
            RouteError::Unsupported { model, kinds, op } => {
                unsupported(&model, &kinds, op).with_param("model")
            }
            RouteError::Exhausted { model } => ApiError::new(
                ErrorCode::UpstreamError,
                format!("Every route of model `{model}` failed for this request."),
            ),
            RouteError::NoCapacity {
                model,
                reason,
                retry_after,
            } => no_capacity(&model, reason).with_retry_after(retry_after),
        }
    }
}

/// The 501 for a model none of whose backends implements `op`; for embeddings, where to
/// get them instead (TGI, the usual case, has no embeddings endpoint at all).
fn unsupported(model: &str, kinds: &[String], op: ApiOp) -> ApiError {
    let kinds = kinds.join(", ");
    let message = match op {
        ApiOp::Embeddings => format!(
            "Model `{model}` is served by backend kind(s) {kinds}, which have no embeddings \
             endpoint. Serve embeddings from a dedicated embeddings server such as \
             text-embeddings-inference (a models.yaml entry of type `embedding` with a route of \
             kind `tei`) and send /v1/embeddings to that model."
        ),
        _ => format!(
            "Model `{model}` is served by backend kind(s) {kinds} that do not implement {}.",
            op.public_route()
        ),
    };
    ApiError::new(ErrorCode::UnsupportedEndpoint, message)
}

fn no_capacity(model: &str, reason: CapacityReason) -> ApiError {
    let (code, message) = match reason {
        CapacityReason::Loading => (
            ErrorCode::ModelLoading,
            format!("Model `{model}` is loading; its backends are not ready yet. Retry shortly."),
        ),
        CapacityReason::Unavailable => (
            ErrorCode::NoHealthyBackend,
            format!("No healthy backend is available for model `{model}` right now."),
        ),
        CapacityReason::NoEnabledRoute => (
            ErrorCode::NoEnabledRoute,
            format!("Model `{model}` has no enabled route (all weights are 0 or disabled)."),
        ),
        CapacityReason::RateLimited => (
            ErrorCode::RateLimitExceeded,
            format!("Rate limit reached for model `{model}`. Retry after the indicated time."),
        ),
        CapacityReason::Saturated => (
            ErrorCode::CapacityExhausted,
            format!("Every backend of model `{model}` is at its concurrency limit. Retry shortly."),
        ),
    };
    ApiError::new(code, message)
}

pub fn wrong_endpoint(model: &str, model_type: ModelType) -> ApiError {
    ApiError::new(
        ErrorCode::WrongEndpoint,
        format!(
            "Model `{model}` is a {model_type} model; use {} instead.",
            model_type.home_op().public_route()
        ),
    )
    .with_param("model")
}
