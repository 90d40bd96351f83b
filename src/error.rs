//! The crate's errors. [`ApiError`] is every error a client sees, in OpenAI's shape
//! `{"error":{"message","type","param","code"}}`; its [`ErrorCode`] decides, in one table
//! ([`ErrorCode::wire`]), the status, the `type`, the `code` string and whether a
//! `Retry-After` header goes with it. [`ConfigError`] is one problem in the operator's
//! configuration files. This module sits at the bottom of the crate: it imports nothing from
//! it, so every layer may use it.

use std::fmt;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

/// What went wrong, as the client is told. Each router-owned code has one status, one OpenAI
/// `type` and one wire `code` string (see [`ErrorCode::wire`]); a backend's own error passed
/// through carries its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    // 400: the request is invalid.
    /// A plain invalid request, sent with `"code": null`.
    InvalidRequest,
    InvalidJson,
    JsonTooComplex,
    InvalidPath,
    InvalidMultipart,
    WrongEndpoint,
    UnsupportedModality,
    /// Tools or reasoning asked of a model whose entry does not declare them.
    UnsupportedCapability,
    UnsupportedVoice,
    StringAboveMaxLength,
    CallbackUrlNotAllowed,
    /// `previous_response_id` names a response no backend of this router stored.
    PreviousResponseNotFound,
    // 401, 403: who is asking.
    InvalidApiKey,
    ModelNotAllowed,
    AdminDisabled,
    AdminKeyRequired,
    // 404, 405: what is asked for.
    ModelNotFound,
    UnknownUrl,
    VideoNotFound,
    /// `GET`/`DELETE /v1/responses/{id}` of a response this router does not know.
    ResponseNotFound,
    MethodNotAllowed,
    // 408: the client was too slow.
    RequestTimeout,
    UploadTimeout,
    UploadTooSlow,
    // 409, 410, 416: the video job's state.
    NoRoutingFile,
    VideoNotCancelable,
    VideoNotDeletable,
    VideoNotReady,
    VideoExpired,
    RangeNotSatisfiable,
    // 413, 415: the body.
    PayloadTooLarge,
    FileTooLarge,
    FieldTooLarge,
    UnsupportedMediaType,
    // 429: slow down.
    RateLimitExceeded,
    /// The key's `budget_usd` for the current period is spent.
    BudgetExceeded,
    CapacityExhausted,
    TooManyUnfinishedJobs,
    UpstreamRateLimited,
    // 500, 501: the router.
    InternalError,
    PersistFailed,
    UnsupportedEndpoint,
    // 502, 504: the backend failed.
    UpstreamError,
    UpstreamUnreachable,
    /// The TLS handshake with the backend failed (untrusted issuer, expired, wrong name, a
    /// client certificate refused or missing).
    UpstreamTlsError,
    UpstreamInvalidResponse,
    UpstreamAuthFailed,
    UpstreamResponseTooLarge,
    UpstreamEmptyResponse,
    UpstreamTimeout,
    // 503: nothing can serve the request right now.
    RouterOverloaded,
    RouterBusy,
    JobStoreUnavailable,
    ModelLoading,
    NoHealthyBackend,
    NoEnabledRoute,
    UpstreamUnavailable,
    /// A backend's own error, passed through.
    Backend(BackendError),
}

/// A backend's own error as the client sees it: the status the router answers with and the
/// backend's `type` and `code`, already redacted of the router's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendError {
    pub status: StatusCode,
    pub error_type: String,
    pub code: Option<String>,
}

/// How an [`ErrorCode`] goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire<'a> {
    pub status: StatusCode,
    /// OpenAI's `type`.
    pub error_type: &'a str,
    /// OpenAI's `code`; `None` is sent as `null`.
    pub code: Option<&'a str>,
    /// Whether the response carries `Retry-After` (every 429 and 503 does).
    pub retry_after: bool,
}

const INVALID_REQUEST: &str = "invalid_request_error";
const PERMISSION: &str = "permission_error";
const RATE_LIMIT: &str = "rate_limit_error";
const SERVER: &str = "server_error";
const NOT_IMPLEMENTED: &str = "not_implemented_error";
const UPSTREAM: &str = "upstream_error";
const UNAVAILABLE: &str = "service_unavailable_error";
const TIMEOUT: &str = "timeout_error";

impl ErrorCode {
    /// The one table from code to status, `type` and wire `code`.
    pub fn wire(&self) -> Wire<'_> {
        use ErrorCode as C;
        use StatusCode as S;
        let (status, error_type, code): (StatusCode, &str, Option<&str>) = match self {
            C::InvalidRequest => (S::BAD_REQUEST, INVALID_REQUEST, None),
            C::InvalidJson => (S::BAD_REQUEST, INVALID_REQUEST, Some("invalid_json")),
            C::JsonTooComplex => (S::BAD_REQUEST, INVALID_REQUEST, Some("json_too_complex")),
            C::InvalidPath => (S::BAD_REQUEST, INVALID_REQUEST, Some("invalid_path")),
            C::InvalidMultipart => (S::BAD_REQUEST, INVALID_REQUEST, Some("invalid_multipart")),
            C::WrongEndpoint => (S::BAD_REQUEST, INVALID_REQUEST, Some("wrong_endpoint")),
            C::UnsupportedModality => (
                S::BAD_REQUEST,
                INVALID_REQUEST,
                Some("unsupported_modality"),
            ),
            C::UnsupportedCapability => (
                S::BAD_REQUEST,
                INVALID_REQUEST,
                Some("unsupported_capability"),
            ),
            C::UnsupportedVoice => (S::BAD_REQUEST, INVALID_REQUEST, Some("unsupported_voice")),
            C::StringAboveMaxLength => (
                S::BAD_REQUEST,
                INVALID_REQUEST,
                Some("string_above_max_length"),
            ),
            C::CallbackUrlNotAllowed => (
                S::BAD_REQUEST,
                INVALID_REQUEST,
                Some("callback_url_not_allowed"),
            ),
            C::PreviousResponseNotFound => (
                S::BAD_REQUEST,
                INVALID_REQUEST,
                Some("previous_response_not_found"),
            ),
            C::InvalidApiKey => (S::UNAUTHORIZED, INVALID_REQUEST, Some("invalid_api_key")),
            C::ModelNotAllowed => (S::FORBIDDEN, PERMISSION, Some("model_not_allowed")),
            C::AdminDisabled => (S::FORBIDDEN, PERMISSION, Some("admin_disabled")),
            C::AdminKeyRequired => (S::FORBIDDEN, PERMISSION, Some("admin_key_required")),
            C::ModelNotFound => (S::NOT_FOUND, INVALID_REQUEST, Some("model_not_found")),
            C::UnknownUrl => (S::NOT_FOUND, INVALID_REQUEST, Some("unknown_url")),
            C::VideoNotFound => (S::NOT_FOUND, INVALID_REQUEST, Some("video_not_found")),
            C::ResponseNotFound => (S::NOT_FOUND, INVALID_REQUEST, Some("response_not_found")),
            C::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                INVALID_REQUEST,
                Some("method_not_allowed"),
            ),
            C::RequestTimeout => (S::REQUEST_TIMEOUT, INVALID_REQUEST, Some("request_timeout")),
            C::UploadTimeout => (S::REQUEST_TIMEOUT, INVALID_REQUEST, Some("upload_timeout")),
            C::UploadTooSlow => (S::REQUEST_TIMEOUT, INVALID_REQUEST, Some("upload_too_slow")),
            C::NoRoutingFile => (S::CONFLICT, INVALID_REQUEST, Some("no_routing_file")),
            C::VideoNotCancelable => (S::CONFLICT, INVALID_REQUEST, Some("video_not_cancelable")),
            C::VideoNotDeletable => (S::CONFLICT, INVALID_REQUEST, Some("video_not_deletable")),
            C::VideoNotReady => (S::CONFLICT, INVALID_REQUEST, Some("video_not_ready")),
            C::VideoExpired => (S::GONE, INVALID_REQUEST, Some("video_expired")),
            C::RangeNotSatisfiable => (
                S::RANGE_NOT_SATISFIABLE,
                INVALID_REQUEST,
                Some("range_not_satisfiable"),
            ),
            C::PayloadTooLarge => (
                S::PAYLOAD_TOO_LARGE,
                INVALID_REQUEST,
                Some("payload_too_large"),
            ),
            C::FileTooLarge => (
                S::PAYLOAD_TOO_LARGE,
                INVALID_REQUEST,
                Some("file_too_large"),
            ),
            C::FieldTooLarge => (
                S::PAYLOAD_TOO_LARGE,
                INVALID_REQUEST,
                Some("field_too_large"),
            ),
            C::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                INVALID_REQUEST,
                Some("unsupported_media_type"),
            ),
            C::RateLimitExceeded => (
                S::TOO_MANY_REQUESTS,
                RATE_LIMIT,
                Some("rate_limit_exceeded"),
            ),
            C::BudgetExceeded => (
                S::TOO_MANY_REQUESTS,
                "insufficient_quota",
                Some("budget_exceeded"),
            ),
            C::CapacityExhausted => (S::TOO_MANY_REQUESTS, RATE_LIMIT, Some("capacity_exhausted")),
            C::TooManyUnfinishedJobs => (
                S::TOO_MANY_REQUESTS,
                RATE_LIMIT,
                Some("too_many_unfinished_jobs"),
            ),
            C::UpstreamRateLimited => (
                S::TOO_MANY_REQUESTS,
                RATE_LIMIT,
                Some("upstream_rate_limited"),
            ),
            C::InternalError => (S::INTERNAL_SERVER_ERROR, SERVER, Some("internal_error")),
            C::PersistFailed => (S::INTERNAL_SERVER_ERROR, SERVER, Some("persist_failed")),
            C::UnsupportedEndpoint => (
                S::NOT_IMPLEMENTED,
                NOT_IMPLEMENTED,
                Some("unsupported_endpoint"),
            ),
            C::UpstreamError => (S::BAD_GATEWAY, UPSTREAM, Some("upstream_error")),
            C::UpstreamUnreachable => (S::BAD_GATEWAY, UPSTREAM, Some("upstream_unreachable")),
            C::UpstreamTlsError => (S::BAD_GATEWAY, UPSTREAM, Some("upstream_tls_error")),
            C::UpstreamInvalidResponse => {
                (S::BAD_GATEWAY, UPSTREAM, Some("upstream_invalid_response"))
            }
            C::UpstreamAuthFailed => (S::BAD_GATEWAY, UPSTREAM, Some("upstream_auth_failed")),
            C::UpstreamResponseTooLarge => (
                S::BAD_GATEWAY,
                UPSTREAM,
                Some("upstream_response_too_large"),
            ),
            C::UpstreamEmptyResponse => (S::BAD_GATEWAY, UPSTREAM, Some("upstream_empty_response")),
            C::UpstreamTimeout => (S::GATEWAY_TIMEOUT, TIMEOUT, Some("upstream_timeout")),
            C::RouterOverloaded => (
                S::SERVICE_UNAVAILABLE,
                UNAVAILABLE,
                Some("router_overloaded"),
            ),
            C::RouterBusy => (S::SERVICE_UNAVAILABLE, UNAVAILABLE, Some("router_busy")),
            C::JobStoreUnavailable => (
                S::SERVICE_UNAVAILABLE,
                UNAVAILABLE,
                Some("job_store_unavailable"),
            ),
            C::ModelLoading => (S::SERVICE_UNAVAILABLE, UNAVAILABLE, Some("model_loading")),
            C::NoHealthyBackend => (
                S::SERVICE_UNAVAILABLE,
                UNAVAILABLE,
                Some("no_healthy_backend"),
            ),
            C::NoEnabledRoute => (
                S::SERVICE_UNAVAILABLE,
                UNAVAILABLE,
                Some("no_enabled_route"),
            ),
            C::UpstreamUnavailable => (
                S::SERVICE_UNAVAILABLE,
                UNAVAILABLE,
                Some("upstream_unavailable"),
            ),
            C::Backend(b) => (b.status, b.error_type.as_str(), b.code.as_deref()),
        };
        Wire {
            status,
            error_type,
            code,
            // OpenAI's clients back off on both; a client told neither when nor how long
            // would retry at once.
            retry_after: matches!(status, S::TOO_MANY_REQUESTS | S::SERVICE_UNAVAILABLE),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub param: Option<String>,
    /// The wait sent in `Retry-After` for codes that carry it (1 s when not set).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// A plain invalid request (`"code": null`).
    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> ApiError {
        let mut e = ApiError::new(ErrorCode::InvalidRequest, message);
        e.param = param.map(str::to_string);
        e
    }

    /// A backend's own error passed through with `status`; `error_type` and `code` must
    /// already be redacted.
    pub fn from_backend(
        status: StatusCode,
        error_type: String,
        code: Option<String>,
        message: impl Into<String>,
    ) -> ApiError {
        let backend = BackendError {
            status,
            error_type,
            code,
        };
        ApiError::new(ErrorCode::Backend(backend), message)
    }

    /// 403 for a key used on a model outside its list.
    pub fn model_not_allowed(model: &str, key_id: &str) -> ApiError {
        ApiError::new(
            ErrorCode::ModelNotAllowed,
            format!("The API key `{key_id}` may not use model `{model}`."),
        )
        .with_param("model")
    }

    pub fn model_not_found(name: &str) -> ApiError {
        ApiError::new(
            ErrorCode::ModelNotFound,
            format!("The model `{name}` does not exist or you do not have access to it."),
        )
        .with_param("model")
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InternalError, message)
    }

    /// The router itself is out of a local resource (file descriptors, local ports): a 503
    /// the client may retry shortly, which says nothing about the backend.
    pub fn router_overloaded() -> ApiError {
        ApiError::new(
            ErrorCode::RouterOverloaded,
            "The router is temporarily out of local resources. Retry shortly.",
        )
        .with_retry_after(Duration::from_secs(1))
    }

    pub fn status(&self) -> StatusCode {
        self.code.wire().status
    }

    /// The `code` string sent to the client, if any.
    pub fn wire_code(&self) -> Option<&str> {
        self.code.wire().code
    }

    /// The OpenAI error object (all four keys present, nullable ones as null).
    pub fn body(&self) -> Value {
        let wire = self.code.wire();
        json!({
            "error": {
                "message": self.message,
                "type": wire.error_type,
                "param": self.param,
                "code": wire.code,
            }
        })
    }

    /// Seconds for the `Retry-After` header: whole seconds, at least 1 (OpenAI's spec);
    /// `None` for codes that carry no `Retry-After`.
    pub fn retry_after_secs(&self) -> Option<u64> {
        if !self.code.wire().retry_after {
            return None;
        }
        let wait = self.retry_after.unwrap_or(Duration::from_secs(1));
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Some(secs.max(1))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status().as_u16(), self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status());
        if let Some(secs) = self.retry_after_secs() {
            resp.insert_header(("retry-after", secs.to_string()));
        }
        resp.json(self.body())
    }
}

/// One problem in the operator's configuration files. `Display` is the line the operator
/// reads: the file, the place in it, then what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {reason}")]
    Unreadable { file: String, reason: String },
    #[error("{file}: file not found")]
    FileNotFound { file: String },
    #[error("{file}: invalid YAML: {reason}")]
    InvalidYaml { file: String, reason: String },
    /// The file's layout is wrong, or a problem names its own place in it.
    #[error("{file}: {problem}")]
    InFile { file: String, problem: String },
    /// A field, by its path in the file.
    #[error("{file}: field `{field}`: {problem}")]
    Field {
        file: String,
        field: String,
        problem: String,
    },
    /// A field of one model entry.
    #[error("{file}: model `{model}` (models[{index}]), field `{field}`: {problem}")]
    ModelField {
        file: String,
        model: String,
        index: usize,
        field: String,
        problem: String,
    },
    /// One model entry as a whole.
    #[error("{file}: model `{model}` (models[{index}]): {problem}")]
    Model {
        file: String,
        model: String,
        index: usize,
        problem: String,
    },
    /// A key the schema does not have (an error unless the load is lenient); the message
    /// names the file and place and suggests the key that was probably meant.
    #[error("{0}")]
    UnknownKey(String),
    /// An environment setting that steers loading has a value it cannot take.
    #[error("{name}={value:?}: expected {expected}")]
    BadSetting {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl ConfigError {
    pub fn in_file(file: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::InFile {
            file: file.to_string(),
            problem: problem.into(),
        }
    }

    pub fn field(file: &str, field: impl Into<String>, problem: impl fmt::Display) -> ConfigError {
        ConfigError::Field {
            file: file.to_string(),
            field: field.into(),
            problem: problem.to_string(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Every router-owned code with the status, `type` and `code` clients have always been
    /// sent for it. The match has no wildcard, so a new variant does not compile until it is
    /// listed here (and in [`ALL`]).
    fn expected(code: &ErrorCode) -> (u16, &'static str, Option<&'static str>) {
        use ErrorCode as C;
        let invalid = "invalid_request_error";
        match code {
            C::InvalidRequest => (400, invalid, None),
            C::InvalidJson => (400, invalid, Some("invalid_json")),
            C::JsonTooComplex => (400, invalid, Some("json_too_complex")),
            C::InvalidPath => (400, invalid, Some("invalid_path")),
            C::InvalidMultipart => (400, invalid, Some("invalid_multipart")),
            C::WrongEndpoint => (400, invalid, Some("wrong_endpoint")),
            C::UnsupportedModality => (400, invalid, Some("unsupported_modality")),
            C::UnsupportedCapability => (400, invalid, Some("unsupported_capability")),
            C::UnsupportedVoice => (400, invalid, Some("unsupported_voice")),
            C::StringAboveMaxLength => (400, invalid, Some("string_above_max_length")),
            C::CallbackUrlNotAllowed => (400, invalid, Some("callback_url_not_allowed")),
            C::PreviousResponseNotFound => (400, invalid, Some("previous_response_not_found")),
            C::InvalidApiKey => (401, invalid, Some("invalid_api_key")),
            C::ModelNotAllowed => (403, "permission_error", Some("model_not_allowed")),
            C::AdminDisabled => (403, "permission_error", Some("admin_disabled")),
            C::AdminKeyRequired => (403, "permission_error", Some("admin_key_required")),
            C::ModelNotFound => (404, invalid, Some("model_not_found")),
            C::UnknownUrl => (404, invalid, Some("unknown_url")),
            C::VideoNotFound => (404, invalid, Some("video_not_found")),
            C::ResponseNotFound => (404, invalid, Some("response_not_found")),
            C::MethodNotAllowed => (405, invalid, Some("method_not_allowed")),
            C::RequestTimeout => (408, invalid, Some("request_timeout")),
            C::UploadTimeout => (408, invalid, Some("upload_timeout")),
            C::UploadTooSlow => (408, invalid, Some("upload_too_slow")),
            C::NoRoutingFile => (409, invalid, Some("no_routing_file")),
            C::VideoNotCancelable => (409, invalid, Some("video_not_cancelable")),
            C::VideoNotDeletable => (409, invalid, Some("video_not_deletable")),
            C::VideoNotReady => (409, invalid, Some("video_not_ready")),
            C::VideoExpired => (410, invalid, Some("video_expired")),
            C::RangeNotSatisfiable => (416, invalid, Some("range_not_satisfiable")),
            C::PayloadTooLarge => (413, invalid, Some("payload_too_large")),
            C::FileTooLarge => (413, invalid, Some("file_too_large")),
            C::FieldTooLarge => (413, invalid, Some("field_too_large")),
            C::UnsupportedMediaType => (415, invalid, Some("unsupported_media_type")),
            C::RateLimitExceeded => (429, "rate_limit_error", Some("rate_limit_exceeded")),
            C::BudgetExceeded => (429, "insufficient_quota", Some("budget_exceeded")),
            C::CapacityExhausted => (429, "rate_limit_error", Some("capacity_exhausted")),
            C::TooManyUnfinishedJobs => (429, "rate_limit_error", Some("too_many_unfinished_jobs")),
            C::UpstreamRateLimited => (429, "rate_limit_error", Some("upstream_rate_limited")),
            C::InternalError => (500, "server_error", Some("internal_error")),
            C::PersistFailed => (500, "server_error", Some("persist_failed")),
            C::UnsupportedEndpoint => (501, "not_implemented_error", Some("unsupported_endpoint")),
            C::UpstreamError => (502, "upstream_error", Some("upstream_error")),
            C::UpstreamUnreachable => (502, "upstream_error", Some("upstream_unreachable")),
            C::UpstreamTlsError => (502, "upstream_error", Some("upstream_tls_error")),
            C::UpstreamInvalidResponse => {
                (502, "upstream_error", Some("upstream_invalid_response"))
            }
            C::UpstreamAuthFailed => (502, "upstream_error", Some("upstream_auth_failed")),
            C::UpstreamResponseTooLarge => {
                (502, "upstream_error", Some("upstream_response_too_large"))
            }
            C::UpstreamEmptyResponse => (502, "upstream_error", Some("upstream_empty_response")),
            C::UpstreamTimeout => (504, "timeout_error", Some("upstream_timeout")),
            C::RouterOverloaded => (503, "service_unavailable_error", Some("router_overloaded")),
            C::RouterBusy => (503, "service_unavailable_error", Some("router_busy")),
            C::JobStoreUnavailable => (
                503,
                "service_unavailable_error",
                Some("job_store_unavailable"),
            ),
            C::ModelLoading => (503, "service_unavailable_error", Some("model_loading")),
            C::NoHealthyBackend => (503, "service_unavailable_error", Some("no_healthy_backend")),
            C::NoEnabledRoute => (503, "service_unavailable_error", Some("no_enabled_route")),
            C::UpstreamUnavailable => (
                503,
                "service_unavailable_error",
                Some("upstream_unavailable"),
            ),
            C::Backend(_) => unreachable!("backend errors carry their own wire form"),
        }
    }

    /// Every router-owned code (all but [`ErrorCode::Backend`]).
    pub(crate) const ALL: [ErrorCode; 57] = {
        use ErrorCode as C;
        [
            C::InvalidRequest,
            C::InvalidJson,
            C::JsonTooComplex,
            C::InvalidPath,
            C::InvalidMultipart,
            C::WrongEndpoint,
            C::UnsupportedModality,
            C::UnsupportedCapability,
            C::UnsupportedVoice,
            C::StringAboveMaxLength,
            C::CallbackUrlNotAllowed,
            C::PreviousResponseNotFound,
            C::InvalidApiKey,
            C::ModelNotAllowed,
            C::AdminDisabled,
            C::AdminKeyRequired,
            C::ModelNotFound,
            C::UnknownUrl,
            C::VideoNotFound,
            C::ResponseNotFound,
            C::MethodNotAllowed,
            C::RequestTimeout,
            C::UploadTimeout,
            C::UploadTooSlow,
            C::NoRoutingFile,
            C::VideoNotCancelable,
            C::VideoNotDeletable,
            C::VideoNotReady,
            C::VideoExpired,
            C::RangeNotSatisfiable,
            C::PayloadTooLarge,
            C::FileTooLarge,
            C::FieldTooLarge,
            C::UnsupportedMediaType,
            C::RateLimitExceeded,
            C::BudgetExceeded,
            C::CapacityExhausted,
            C::TooManyUnfinishedJobs,
            C::UpstreamRateLimited,
            C::InternalError,
            C::PersistFailed,
            C::UnsupportedEndpoint,
            C::UpstreamError,
            C::UpstreamUnreachable,
            C::UpstreamTlsError,
            C::UpstreamInvalidResponse,
            C::UpstreamAuthFailed,
            C::UpstreamResponseTooLarge,
            C::UpstreamEmptyResponse,
            C::UpstreamTimeout,
            C::RouterOverloaded,
            C::RouterBusy,
            C::JobStoreUnavailable,
            C::ModelLoading,
            C::NoHealthyBackend,
            C::NoEnabledRoute,
            C::UpstreamUnavailable,
        ]
    };

    #[test]
    fn every_code_keeps_its_status_type_and_wire_string() {
        for code in &ALL {
            let wire = code.wire();
            let got = (wire.status.as_u16(), wire.error_type, wire.code);
            assert_eq!(got, expected(code), "{code:?}");
        }
    }

    #[test]
    fn wire_code_strings_are_unique() {
        let variants: HashSet<String> = ALL.iter().map(|c| format!("{c:?}")).collect();
        assert_eq!(variants.len(), ALL.len(), "ALL lists a variant twice");
        let mut seen = HashSet::new();
        for code in &ALL {
            if let Some(wire) = code.wire().code {
                assert!(
                    seen.insert(wire),
                    "`{wire}` is the wire code of two variants"
                );
            }
        }
    }

    #[test]
    fn exactly_the_429s_and_503s_carry_retry_after() {
        for code in &ALL {
            let e = ApiError::new(code.clone(), "x");
            let status = e.status().as_u16();
            let header = e.error_response().headers().get("retry-after").cloned();
            assert_eq!(
                header.is_some(),
                status == 429 || status == 503,
                "{code:?} ({status})"
            );
        }
    }

    #[test]
    fn backend_errors_keep_their_status_type_and_code() {
        let e = ApiError::from_backend(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation".into(),
            None,
            "bad",
        );
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            e.body(),
            json!({"error": {"message": "bad", "type": "validation", "param": null, "code": null}})
        );
        assert!(e.retry_after_secs().is_none());
    }

    #[test]
    fn body_has_all_four_keys() {
        let v = ApiError::model_not_found("x").body();
        let e = &v["error"];
        assert_eq!(e["code"], "model_not_found");
        assert_eq!(e["param"], "model");
        assert_eq!(e["type"], "invalid_request_error");
        let v = ApiError::internal("boom").body();
        assert!(v["error"].as_object().unwrap().contains_key("param"));
        let v = ApiError::bad_request("no", None).body();
        assert!(v["error"]["code"].is_null());
    }

    #[test]
    fn config_errors_print_the_line_the_operator_always_read() {
        let file = || "models.yaml".to_string();
        let cases = [
            (
                ConfigError::Unreadable {
                    file: file(),
                    reason: "No such file or directory (os error 2)".into(),
                },
                "models.yaml: cannot read: No such file or directory (os error 2)",
            ),
            (
                ConfigError::FileNotFound { file: file() },
                "models.yaml: file not found",
            ),
            (
                ConfigError::InvalidYaml {
                    file: file(),
                    reason: "bad".into(),
                },
                "models.yaml: invalid YAML: bad",
            ),
            (
                ConfigError::in_file("models.yaml", "models[0] must be a mapping of fields"),
                "models.yaml: models[0] must be a mapping of fields",
            ),
            (
                ConfigError::field("routing.yaml", "weights.m", "invalid type"),
                "routing.yaml: field `weights.m`: invalid type",
            ),
            (
                ConfigError::ModelField {
                    file: file(),
                    model: "m".into(),
                    index: 3,
                    field: "route[0].kind".into(),
                    problem: "must not be empty".into(),
                },
                "models.yaml: model `m` (models[3]), field `route[0].kind`: must not be empty",
            ),
            (
                ConfigError::Model {
                    file: file(),
                    model: "m".into(),
                    index: 0,
                    problem: "has no `route` entries".into(),
                },
                "models.yaml: model `m` (models[0]): has no `route` entries",
            ),
            (
                ConfigError::BadSetting {
                    name: "CONFIG_LENIENT",
                    value: "sometimes".into(),
                    expected: "true or false",
                },
                r#"CONFIG_LENIENT="sometimes": expected true or false"#,
            ),
        ];
        for (error, line) in cases {
            assert_eq!(error.to_string(), line);
        }
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one() {
        let e = ApiError::new(ErrorCode::RateLimitExceeded, "x")
            .with_retry_after(Duration::from_millis(10));
        assert_eq!(e.retry_after_secs(), Some(1));
        let e = ApiError::new(ErrorCode::RateLimitExceeded, "x")
            .with_retry_after(Duration::from_millis(2100));
        assert_eq!(e.retry_after_secs(), Some(3));
    }
}
