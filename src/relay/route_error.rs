//! How the mesh's routing refusals read to a client. The mesh decides *that* a request cannot
//! be routed; the status, code and message a client sees are decided here, above it.

use crate::api::error::{wrong_endpoint, ApiError, ErrorKind};
use crate::mesh::{CapacityReason, RouteError};

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> ApiError {
        match e {
            RouteError::UnknownModel(name) => ApiError::model_not_found(&name),
            RouteError::WrongEndpoint { model, model_type } => wrong_endpoint(&model, model_type),
            RouteError::Unsupported { model, kinds } => ApiError::new(
                ErrorKind::NotImplemented,
                format!(
                    "Model `{model}` is served by backend kind(s) {} that do not implement this endpoint.",
                    kinds.join(", ")
                ),
            )
            .with_param("model")
            .with_code("unsupported_endpoint"),
            RouteError::Exhausted { model } => ApiError::new(
                ErrorKind::BadGateway,
                format!("Every route of model `{model}` failed for this request."),
            )
            .with_code("upstream_error"),
            RouteError::NoCapacity {
                model,
                reason,
                retry_after,
            } => {
                let (kind, code, message) = match reason {
                    CapacityReason::Loading => (
                        ErrorKind::Unavailable,
                        "model_loading",
                        format!("Model `{model}` is loading; its backends are not ready yet. Retry shortly."),
                    ),
                    CapacityReason::Unavailable => (
                        ErrorKind::Unavailable,
                        "no_healthy_backend",
                        format!("No healthy backend is available for model `{model}` right now."),
                    ),
                    CapacityReason::NoEnabledRoute => (
                        ErrorKind::Unavailable,
                        "no_enabled_route",
                        format!("Model `{model}` has no enabled route (all weights are 0 or disabled)."),
                    ),
                    CapacityReason::RateLimited => (
                        ErrorKind::RateLimited,
                        "rate_limit_exceeded",
                        format!("Rate limit reached for model `{model}`. Retry after the indicated time."),
                    ),
                    CapacityReason::Saturated => (
                        ErrorKind::RateLimited,
                        "capacity_exhausted",
                        format!("Every backend of model `{model}` is at its concurrency limit. Retry shortly."),
                    ),
                };
                ApiError::new(kind, message)
                    .with_code(code)
                    .with_retry_after(retry_after)
            }
        }
    }
}
