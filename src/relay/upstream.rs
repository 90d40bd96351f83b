//! One call to one backend: build the request (URL, auth, forwarded headers, timeouts), send
//! it, and sort the answer into "use it", "try another route" or "give up".

use std::time::Duration;

use actix_web::http::header::HeaderMap;
use actix_web::http::StatusCode;
use awc::error::{ConnectError, PayloadError, SendRequestError};
use bytes::Bytes;
use futures_util::stream::{LocalBoxStream, StreamExt};
use tracing::debug;

use crate::api::error::{upstream_message, ApiError, ErrorKind};
use crate::engines::AuthStyle;
use crate::mesh::{Lease, Outcome};

pub type BodyStream = LocalBoxStream<'static, Result<Bytes, PayloadError>>;

/// A successful (2xx) upstream response whose body has not been read yet.
pub struct Upstream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: BodyStream,
}

/// Per-call time limits: router-wide defaults, overridden per route (`timeouts:` in
/// models.yaml). Before the first byte reached the client a timeout is a 504 (after trying the
/// other routes); after it, the stream ends with an error event.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Connection set-up (the outbound client's connector timeout).
    pub connect: Duration,
    /// Until the response headers arrive (for non-streaming calls: the whole generation).
    pub headers: Duration,
    /// Longest silence between two chunks of a streamed body.
    pub idle: Duration,
    /// The whole attempt, from asking the backend to its last byte.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            headers: Duration::from_secs(300),
            idle: Duration::from_secs(120),
            total: Duration::from_secs(1800),
        }
    }
}

impl Timeouts {
    /// These defaults with the route's own limits applied.
    pub fn for_route(&self, route: &crate::config::RouteDef) -> Timeouts {
        let own = &route.timeouts;
        Timeouts {
            connect: own.connect.unwrap_or(self.connect),
            headers: own.headers.unwrap_or(self.headers),
            idle: own.idle.unwrap_or(self.idle),
            total: own.total.unwrap_or(self.total),
        }
    }

    /// What is left of the total budget for an attempt that started `elapsed` ago.
    pub fn total_left(&self, elapsed: Duration) -> Duration {
        self.total.saturating_sub(elapsed)
    }
}

/// Headers passed from the client to the backend. The client's `Authorization` never is.
#[derive(Debug, Clone, Default)]
pub struct Forwarded {
    pub request_id: String,
    /// OpenRouter attribution headers (`HTTP-Referer`, `X-Title`).
    pub attribution: Vec<(String, String)>,
}

/// Why an attempt did not produce a usable response.
#[derive(Debug)]
pub enum CallError {
    /// The route failed before anything reached the client: another route may succeed.
    Retryable { outcome: Outcome, error: ApiError },
    /// The backend judged the request itself bad: the same request fails everywhere.
    Fatal { outcome: Outcome, error: ApiError },
}

impl CallError {
    pub fn outcome(&self) -> Outcome {
        match self {
            CallError::Retryable { outcome, .. } | CallError::Fatal { outcome, .. } => *outcome,
        }
    }
}

/// Build a request to `path` under the lease's API base.
pub fn request(
    client: &awc::Client,
    method: actix_web::http::Method,
    lease: &Lease,
    path: &str,
    fwd: &Forwarded,
    timeout: Duration,
) -> awc::ClientRequest {
    let url = lease.endpoint().base.api_url(path);
    // A route with its own connect timeout needs a connector built with it.
    let client = match lease.route().timeouts.connect {
        Some(connect) => super::client::with_connect_timeout(connect),
        None => client.clone(),
    };
    let mut req = client
        .request(method, url)
        .timeout(timeout)
        .insert_header(("x-request-id", fwd.request_id.as_str()));
    if let Some((style, key)) = &lease.endpoint().auth {
        req = match style {
            AuthStyle::Bearer => {
                req.insert_header(("authorization", format!("Bearer {}", key.expose())))
            }
            AuthStyle::ApiKeyHeader => req.insert_header(("api-key", key.expose())),
        };
    }
    for (name, value) in &fwd.attribution {
        req = req.insert_header((name.as_str(), value.as_str()));
    }
    req
}

/// POST a JSON body (a `Bytes`, or a [`SplicedBody`](super::spliced::SplicedBody)) and
/// classify the answer.
pub async fn post_json(
    client: &awc::Client,
    lease: &Lease,
    path: &str,
    body: impl actix_web::body::MessageBody + 'static,
    fwd: &Forwarded,
    timeouts: &Timeouts,
) -> Result<Upstream, CallError> {
    let limits = timeouts.for_route(lease.route());
    let headers_within = limits.headers.min(limits.total_left(lease.elapsed()));
    let req = request(
        client,
        actix_web::http::Method::POST,
        lease,
        path,
        fwd,
        headers_within,
    )
    .content_type("application/json");
    classify(lease, req.send_body(body).await).await
}

/// Sort a send result into a usable response or a [`CallError`].
pub async fn classify<S>(
    lease: &Lease,
    sent: Result<awc::ClientResponse<S>, SendRequestError>,
) -> Result<Upstream, CallError>
where
    S: futures_util::Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    let model = lease.model().id.as_str();
    let mut resp = match sent {
        Ok(resp) => resp,
        Err(e) => return Err(send_error(lease, e)),
    };
    let status = resp.status();
    if status.is_success() {
        let headers = resp.headers().clone();
        return Ok(Upstream {
            status,
            headers,
            body: resp.boxed_local(),
        });
    }
    let retry_after = retry_after(resp.headers());
    // Error bodies are small; a bounded read with a deadline keeps a misbehaving backend
    // from holding the attempt.
    let body = match actix_rt::time::timeout(Duration::from_secs(10), resp.body().limit(64 * 1024))
        .await
    {
        Ok(Ok(b)) => b,
        _ => Bytes::new(),
    };
    let (message, upstream_type, upstream_code) = upstream_message(&body);
    debug!(endpoint = %lease.endpoint().name, status = status.as_u16(), %message, "upstream error");
    let code = status.as_u16();
    match code {
        429 => Err(CallError::Retryable {
            outcome: Outcome::RateLimited { retry_after },
            error: ApiError::new(
                ErrorKind::RateLimited,
                format!("The backend for model `{model}` is rate limiting requests: {message}"),
            )
            .with_code("upstream_rate_limited")
            .with_retry_after(retry_after.unwrap_or(Duration::from_secs(1))),
        }),
        503 if retry_after.is_some() => Err(CallError::Retryable {
            outcome: Outcome::RateLimited { retry_after },
            error: ApiError::new(
                ErrorKind::Unavailable,
                format!("The backend for model `{model}` is overloaded: {message}"),
            )
            .with_code("upstream_unavailable")
            .with_retry_after(retry_after.unwrap_or(Duration::from_secs(1))),
        }),
        408 | 504 => Err(CallError::Retryable {
            outcome: Outcome::Failure,
            error: ApiError::new(
                ErrorKind::GatewayTimeout,
                format!("The backend for model `{model}` timed out (HTTP {code})."),
            )
            .with_code("upstream_timeout"),
        }),
        // The router's own credentials or the route's model name are wrong: another route
        // may work, and the client did nothing wrong.
        401 | 403 | 404 => Err(CallError::Retryable {
            outcome: Outcome::Failure,
            error: ApiError::new(
                ErrorKind::BadGateway,
                format!(
                    "The backend for model `{model}` refused the request (HTTP {code}): {message}"
                ),
            )
            .with_code("upstream_error"),
        }),
        400..=499 => {
            let mut error = ApiError::new(ErrorKind::Upstream(code), message);
            error.error_type = upstream_type.or_else(|| Some("invalid_request_error".into()));
            error.code = upstream_code;
            Err(CallError::Fatal {
                outcome: Outcome::ClientError,
                error,
            })
        }
        _ => Err(CallError::Retryable {
            outcome: Outcome::Failure,
            error: ApiError::new(
                ErrorKind::BadGateway,
                format!("The backend for model `{model}` failed (HTTP {code}): {message}"),
            )
            .with_code("upstream_error"),
        }),
    }
}

fn send_error(lease: &Lease, e: SendRequestError) -> CallError {
    let model = &lease.model().id;
    debug!(endpoint = %lease.endpoint().name, error = %e, "upstream send failed");
    let (kind, code, what) = match &e {
        SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout) => {
            (ErrorKind::GatewayTimeout, "upstream_timeout", "timed out")
        }
        SendRequestError::Connect(_) => (
            ErrorKind::BadGateway,
            "upstream_unreachable",
            "could not be reached",
        ),
        _ => (
            ErrorKind::BadGateway,
            "upstream_error",
            "failed before answering",
        ),
    };
    CallError::Retryable {
        outcome: Outcome::Failure,
        error: ApiError::new(kind, format!("The backend for model `{model}` {what}."))
            .with_code(code),
    }
}

/// `Retry-After` in seconds (HTTP dates are rare from inference servers: treated as 1 s).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    match value.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => {
            Some(Duration::from_secs_f64(secs.min(3600.0)))
        }
        _ => Some(Duration::from_secs(1)),
    }
}

/// Read a whole (non-streamed) body with a size cap and an idle deadline per chunk.
pub async fn read_body(
    body: &mut BodyStream,
    limit: usize,
    idle: Duration,
) -> Result<Bytes, ApiError> {
    read_body_within(body, limit, idle, Duration::MAX).await
}

/// [`read_body`] that also gives up when `total_left` has passed.
pub async fn read_body_within(
    body: &mut BodyStream,
    limit: usize,
    idle: Duration,
    total_left: Duration,
) -> Result<Bytes, ApiError> {
    let deadline = std::time::Instant::now().checked_add(total_left);
    let mut buf = bytes::BytesMut::new();
    loop {
        let left = deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(std::time::Instant::now())
        });
        match actix_rt::time::timeout(idle.min(left), body.next()).await {
            Err(_) => {
                let message = if left <= idle {
                    "The backend did not finish its response within the total time limit."
                } else {
                    "The backend stopped sending its response."
                };
                return Err(
                    ApiError::new(ErrorKind::GatewayTimeout, message).with_code("upstream_timeout")
                );
            }
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(_))) => {
                return Err(ApiError::new(
                    ErrorKind::BadGateway,
                    "The backend's response was cut off.",
                )
                .with_code("upstream_error"))
            }
            Ok(Some(Ok(chunk))) => {
                if buf.len() + chunk.len() > limit {
                    return Err(ApiError::new(
                        ErrorKind::BadGateway,
                        "The backend's response is too large.",
                    )
                    .with_code("upstream_response_too_large"));
                }
                buf.extend_from_slice(&chunk);
            }
        }
    }
}
