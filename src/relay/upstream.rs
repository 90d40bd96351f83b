//! One call to one backend: build the request (URL, auth, forwarded headers, timeouts), send
//! it, and sort the answer into "use it", "try another route" or "give up".

use std::time::Duration;

use actix_web::http::header::HeaderMap;
use actix_web::http::Method;
use actix_web::http::StatusCode;
use awc::error::{ConnectError, PayloadError, SendRequestError};
use bytes::Bytes;
use futures_util::stream::{LocalBoxStream, StreamExt};
use tracing::{debug, warn};

use super::error_body::{shorten, upstream_message};
use crate::engines::attach_credentials;
use crate::error::{ApiError, ErrorCode};
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
    /// The router ran out of a local resource before reaching the backend (see
    /// [`is_local_failure`]): a 503 for the client, no verdict on the backend. Not retried on
    /// another route, which would need the same exhausted resource.
    Local { error: ApiError },
}

impl CallError {
    pub fn outcome(&self) -> Outcome {
        match self {
            CallError::Retryable { outcome, .. } | CallError::Fatal { outcome, .. } => *outcome,
            CallError::Local { .. } => Outcome::LocalFailure,
        }
    }
}

/// Where on a backend a call goes: under its API base (`/v1`, nearly everything), or under
/// the server root for engines whose native endpoint lives there (TEI's `/rerank`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamPath<'a> {
    Api(&'a str),
    Root(&'a str),
}

impl<'a> From<&'a str> for UpstreamPath<'a> {
    fn from(path: &'a str) -> UpstreamPath<'a> {
        UpstreamPath::Api(path)
    }
}

impl<'a> From<&'a String> for UpstreamPath<'a> {
    fn from(path: &'a String) -> UpstreamPath<'a> {
        UpstreamPath::Api(path)
    }
}

/// The request id's header name, made once: a name given as text is parsed on every request.
pub static X_REQUEST_ID: actix_web::http::header::HeaderName =
    actix_web::http::header::HeaderName::from_static("x-request-id");

/// Build a request to `path` on the lease's backend.
pub fn request<'a>(
    client: &awc::Client,
    method: actix_web::http::Method,
    lease: &Lease,
    path: impl Into<UpstreamPath<'a>>,
    fwd: &Forwarded,
    timeout: Duration,
) -> awc::ClientRequest {
    let base = &lease.endpoint().base;
    let url = match path.into() {
        UpstreamPath::Api(path) => base.api_url(path),
        UpstreamPath::Root(path) => base.root_url(path),
    };
    // A route with its own connect timeout or TLS/proxy profile needs a connector built with it.
    let client = super::client::for_route(client, lease.route());
    let mut req = attach_credentials(
        client
            .request(method, url)
            .timeout(timeout)
            .insert_header((X_REQUEST_ID.clone(), fwd.request_id.as_str())),
        lease.endpoint().credentials(),
    );
    for (name, value) in &fwd.attribution {
        req = req.insert_header((name.as_str(), value.as_str()));
    }
    // The attempt's (or the job's) span context as `traceparent`, so an engine that traces
    // joins the trace; nothing when tracing is off.
    crate::telemetry::inject_current(req)
}

/// POST a JSON body (a `Bytes`, or a [`SplicedBody`](super::spliced::SplicedBody)) and
/// classify the answer.
pub async fn post_json<'a>(
    client: &awc::Client,
    lease: &Lease,
    path: impl Into<UpstreamPath<'a>>,
    body: impl actix_web::body::MessageBody + 'static,
    fwd: &Forwarded,
    timeouts: &Timeouts,
) -> Result<Upstream, CallError> {
    send(client, lease, Method::POST, path, Some(body), fwd, timeouts).await
}

/// Send `method` to `path` with a JSON body, or with none (`GET`, `DELETE`), and classify the
/// answer.
pub async fn send<'a>(
    client: &awc::Client,
    lease: &Lease,
    method: Method,
    path: impl Into<UpstreamPath<'a>>,
    body: Option<impl actix_web::body::MessageBody + 'static>,
    fwd: &Forwarded,
    timeouts: &Timeouts,
) -> Result<Upstream, CallError> {
    let limits = timeouts.for_route(lease.route());
    let headers_within = limits.headers.min(limits.total_left(lease.elapsed()));
    let req = request(client, method, lease, path, fwd, headers_within);
    let sent = match body {
        Some(body) => req.content_type("application/json").send_body(body).await,
        None => req.send().await,
    };
    classify(lease, sent).await
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
    let body = read_error_body(&mut resp, MAX_ERROR_BODY, ERROR_BODY_WITHIN).await;
    let code = status.as_u16();
    if code == 401 || code == 403 {
        return Err(credentials_refused(lease, code, &body));
    }
    let (mut message, upstream_type, upstream_code) =
        upstream_message(&body.bytes, lease.redactor());
    if body.truncated {
        message.push_str(" (error body truncated)");
    }
    debug!(endpoint = %lease.endpoint().name, status = code, message = %shorten(&message, LOGGED_MESSAGE_CHARS), "upstream error");
    match code {
        429 => Err(CallError::Retryable {
            outcome: Outcome::RateLimited { retry_after },
            error: ApiError::new(
                ErrorCode::UpstreamRateLimited,
                format!("The backend for model `{model}` is rate limiting requests: {message}"),
            )
            .with_retry_after(retry_after.unwrap_or(Duration::from_secs(1))),
        }),
        503 if retry_after.is_some() => Err(CallError::Retryable {
            outcome: Outcome::RateLimited { retry_after },
            error: ApiError::new(
                ErrorCode::UpstreamUnavailable,
                format!("The backend for model `{model}` is overloaded: {message}"),
            )
            .with_retry_after(retry_after.unwrap_or(Duration::from_secs(1))),
        }),
        408 | 504 => Err(CallError::Retryable {
            outcome: Outcome::Failure,
            error: ApiError::new(
                ErrorCode::UpstreamTimeout,
                format!("The backend for model `{model}` timed out (HTTP {code})."),
            ),
        }),
        // The route's model name is wrong: another route may work, and the client did
        // nothing wrong.
        404 => Err(CallError::Retryable {
            outcome: Outcome::Failure,
            error: ApiError::new(
                ErrorCode::UpstreamError,
                format!(
                    "The backend for model `{model}` refused the request (HTTP {code}): {message}"
                ),
            ),
        }),
        400..=499 => {
            let error_type = upstream_type.unwrap_or_else(|| "invalid_request_error".into());
            let error = ApiError::from_backend(status, error_type, upstream_code, message);
            Err(CallError::Fatal {
                outcome: Outcome::ClientError,
                error,
            })
        }
        _ => Err(CallError::Retryable {
            outcome: Outcome::Failure,
            error: ApiError::new(
                ErrorCode::UpstreamError,
                format!("The backend for model `{model}` failed (HTTP {code}): {message}"),
            ),
        }),
    }
}

/// The most of an upstream error body that is read (and held); the rest is never read.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// Longest backend message written to the log.
const LOGGED_MESSAGE_CHARS: usize = 500;

/// How long a backend gets to send its error body.
const ERROR_BODY_WITHIN: Duration = Duration::from_secs(10);

/// The start of an error body.
#[derive(Debug, Default)]
pub struct ErrorBody {
    pub bytes: Bytes,
    /// The body went on past the cap, or stalled or broke before its end.
    pub truncated: bool,
}

/// Read at most `cap` bytes of an error body within `within`. Whatever arrived is kept: a
/// misbehaving backend gets a shortened message, never a blank one, and never more memory.
pub async fn read_error_body<S>(body: &mut S, cap: usize, within: Duration) -> ErrorBody
where
    S: futures_util::Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let mut buf = bytes::BytesMut::new();
    let read = actix_rt::time::timeout(within, async {
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else {
                return true;
            };
            let room = cap - buf.len();
            if chunk.len() > room {
                buf.extend_from_slice(&chunk[..room]);
                return true;
            }
            buf.extend_from_slice(&chunk);
        }
        false
    })
    .await;
    ErrorBody {
        bytes: buf.freeze(),
        truncated: read.unwrap_or(true),
    }
}

/// An upstream 401/403: the backend refused the router's own credentials. The client did
/// nothing wrong and can do nothing about it, so it learns only that; the backend's words
/// (which may quote the key) go to the operator's log, redacted.
fn credentials_refused(lease: &Lease, code: u16, body: &ErrorBody) -> CallError {
    let (message, _, _) = upstream_message(&body.bytes, lease.redactor());
    warn!(
        endpoint = %lease.endpoint().name,
        route = %lease.route().name,
        status = code,
        upstream_message = %shorten(&message, LOGGED_MESSAGE_CHARS),
        "backend refused the router's credentials; check the route's api_key"
    );
    let model = &lease.model().id;
    CallError::Retryable {
        outcome: Outcome::Failure,
        error: ApiError::new(
            ErrorCode::UpstreamAuthFailed,
            format!("The backend for model `{model}` refused the router's credentials (HTTP {code}). This is a router configuration problem, not a problem with the request."),
        ),
    }
}

fn send_error(lease: &Lease, e: SendRequestError) -> CallError {
    let model = &lease.model().id;
    debug!(endpoint = %lease.endpoint().name, error = %e, "upstream send failed");
    if is_local_failure(&e) {
        return CallError::Local {
            error: ApiError::router_overloaded(),
        };
    }
    if let Some(reason) = super::tls_error::tls_failure(&e) {
        return tls_refused(lease, &reason);
    }
    let (code, what) = match &e {
        SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout) => {
            (ErrorCode::UpstreamTimeout, "timed out")
        }
        SendRequestError::Connect(_) => (ErrorCode::UpstreamUnreachable, "could not be reached"),
        _ => (ErrorCode::UpstreamError, "failed before answering"),
    };
    CallError::Retryable {
        outcome: Outcome::Failure,
        error: ApiError::new(code, format!("The backend for model `{model}` {what}.")),
    }
}

/// The TLS handshake with the backend failed: a 502 naming the host and the reason, counted
/// against the endpoint like any failed attempt, and kept as the endpoint's last error.
fn tls_refused(lease: &Lease, reason: &str) -> CallError {
    let host = lease.endpoint().base.host_for_display();
    lease.endpoint().note_error(format!("TLS: {reason}"));
    warn!(endpoint = %lease.endpoint().name, route = %lease.route().name, reason, "TLS handshake with the backend failed");
    CallError::Retryable {
        outcome: Outcome::Failure,
        error: ApiError::new(
            ErrorCode::UpstreamTlsError,
            format!(
                "TLS with the backend for model `{}` ({host}) failed: {reason}.",
                lease.model().id
            ),
        ),
    }
}

/// Whether a failed send is the router's own fault: it could not open a connection because
/// this process or host ran out of something (file descriptors, local ports, socket buffers,
/// memory). Such a failure must not count against the backend's circuit or health, or an
/// overloaded router would eject healthy backends one after another.
pub fn is_local_failure(e: &SendRequestError) -> bool {
    match e {
        SendRequestError::Connect(ConnectError::Io(io)) => is_local_io_error(io),
        // Name resolution opens sockets and files too (tokio's resolver gives an io::Error).
        SendRequestError::Connect(ConnectError::Resolver(inner)) => inner
            .downcast_ref::<std::io::Error>()
            .is_some_and(is_local_io_error),
        _ => false,
    }
}

/// errno values that mean "this host ran out", whatever the destination: no free file
/// descriptor in the process (EMFILE) or system (ENFILE), no free local port or address
/// (EADDRNOTAVAIL, EADDRINUSE on connect), no buffer space or memory (ENOBUFS, ENOMEM), and
/// EAGAIN, which a TCP connect only returns when the local port range is exhausted.
const LOCAL_ERRNOS: [i32; 7] = [
    libc::EMFILE,
    libc::ENFILE,
    libc::EADDRNOTAVAIL,
    libc::EADDRINUSE,
    libc::ENOBUFS,
    libc::ENOMEM,
    libc::EAGAIN,
];

/// [`is_local_failure`] for one I/O error: by errno, or by kind for errors built without one.
pub fn is_local_io_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    e.raw_os_error().is_some_and(|n| LOCAL_ERRNOS.contains(&n))
        || (e.raw_os_error().is_none()
            && matches!(
                e.kind(),
                K::AddrNotAvailable | K::AddrInUse | K::OutOfMemory
            ))
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
                return Err(ApiError::new(ErrorCode::UpstreamTimeout, message));
            }
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(_))) => {
                return Err(ApiError::new(
                    ErrorCode::UpstreamError,
                    "The backend's response was cut off.",
                ))
            }
            Ok(Some(Ok(chunk))) => {
                if buf.len() + chunk.len() > limit {
                    return Err(ApiError::new(
                        ErrorCode::UpstreamResponseTooLarge,
                        "The backend's response is too large.",
                    ));
                }
                buf.extend_from_slice(&chunk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::Cell;
    use std::io;
    use std::rc::Rc;

    /// `chunks` chunks of `size` bytes, counting how many were pulled.
    fn counted_body(chunks: usize, size: usize) -> (BodyStream, Rc<Cell<usize>>) {
        let pulled = Rc::new(Cell::new(0));
        let seen = pulled.clone();
        let body = futures_util::stream::iter(0..chunks)
            .map(move |_| {
                seen.set(seen.get() + 1);
                Ok(Bytes::from(vec![b'x'; size]))
            })
            .boxed_local();
        (body, pulled)
    }

    #[actix_rt::test]
    async fn error_bodies_are_read_up_to_the_cap_and_no_further() {
        let within = Duration::from_secs(5);
        // (chunks, chunk size, bytes kept, truncated)
        let cases = [
            (0, 1, 0, false),
            (3, 1000, 3000, false),
            (8, 8192, MAX_ERROR_BODY, false),
            (9, 8192, MAX_ERROR_BODY, true),
            (1000, 8192, MAX_ERROR_BODY, true),
            (1, 10 * MAX_ERROR_BODY, MAX_ERROR_BODY, true),
        ];
        for (chunks, size, kept, truncated) in cases {
            let (mut body, pulled) = counted_body(chunks, size);
            let read = read_error_body(&mut body, MAX_ERROR_BODY, within).await;
            assert_eq!(read.bytes.len(), kept, "{chunks} x {size}");
            assert_eq!(read.truncated, truncated, "{chunks} x {size}");
            assert!(
                pulled.get() <= MAX_ERROR_BODY / size + 1,
                "read past the cap"
            );
        }
    }

    #[actix_rt::test]
    async fn a_stalled_error_body_keeps_what_arrived() {
        let mut body: BodyStream = futures_util::stream::iter([Ok(Bytes::from_static(b"partial"))])
            .chain(futures_util::stream::pending())
            .boxed_local();
        let read = read_error_body(&mut body, MAX_ERROR_BODY, Duration::from_millis(50)).await;
        assert_eq!(&read.bytes[..], b"partial");
        assert!(read.truncated);
    }

    fn connect_io(e: io::Error) -> SendRequestError {
        SendRequestError::Connect(ConnectError::Io(e))
    }

    /// Which connect failures are the router's own, by errno and by kind.
    #[test]
    fn local_failure_table() {
        let errno = io::Error::from_raw_os_error;
        let table: Vec<(&str, SendRequestError, bool)> = vec![
            ("EMFILE", connect_io(errno(libc::EMFILE)), true),
            ("ENFILE", connect_io(errno(libc::ENFILE)), true),
            (
                "EADDRNOTAVAIL",
                connect_io(errno(libc::EADDRNOTAVAIL)),
                true,
            ),
            ("EADDRINUSE", connect_io(errno(libc::EADDRINUSE)), true),
            ("ENOBUFS", connect_io(errno(libc::ENOBUFS)), true),
            ("ENOMEM", connect_io(errno(libc::ENOMEM)), true),
            ("EAGAIN", connect_io(errno(libc::EAGAIN)), true),
            (
                "kind AddrNotAvailable",
                connect_io(io::ErrorKind::AddrNotAvailable.into()),
                true,
            ),
            (
                "kind OutOfMemory",
                connect_io(io::ErrorKind::OutOfMemory.into()),
                true,
            ),
            (
                "resolver EMFILE",
                SendRequestError::Connect(ConnectError::Resolver(Box::new(errno(libc::EMFILE)))),
                true,
            ),
            // The backend's (or the network's) fault.
            ("ECONNREFUSED", connect_io(errno(libc::ECONNREFUSED)), false),
            ("ECONNRESET", connect_io(errno(libc::ECONNRESET)), false),
            ("ECONNABORTED", connect_io(errno(libc::ECONNABORTED)), false),
            ("EHOSTUNREACH", connect_io(errno(libc::EHOSTUNREACH)), false),
            ("ENETUNREACH", connect_io(errno(libc::ENETUNREACH)), false),
            ("ETIMEDOUT", connect_io(errno(libc::ETIMEDOUT)), false),
            ("EPIPE", connect_io(errno(libc::EPIPE)), false),
            (
                "TLS handshake (InvalidData)",
                connect_io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad certificate",
                )),
                false,
            ),
            (
                "kind ConnectionRefused",
                connect_io(io::ErrorKind::ConnectionRefused.into()),
                false,
            ),
            (
                "message that merely mentions files",
                connect_io(io::Error::other("Too many open files")),
                false,
            ),
            (
                "resolver, not an io::Error",
                SendRequestError::Connect(ConnectError::Resolver("no such host".into())),
                false,
            ),
            (
                "NoRecords",
                SendRequestError::Connect(ConnectError::NoRecords),
                false,
            ),
            (
                "connect timeout",
                SendRequestError::Connect(ConnectError::Timeout),
                false,
            ),
            ("response timeout", SendRequestError::Timeout, false),
            // Once connected, a write error is about that connection, not the host.
            (
                "send EMFILE",
                SendRequestError::Send(errno(libc::EMFILE)),
                false,
            ),
        ];
        for (name, error, local) in &table {
            assert_eq!(is_local_failure(error), *local, "{name}: {error}");
        }
    }

    proptest! {
        /// Any errno: a connect failure is local exactly when its errno is in the list, and a
        /// failure after connecting never is.
        #[test]
        fn local_iff_listed_errno(code in 0i32..256) {
            let listed = LOCAL_ERRNOS.contains(&code);
            let connect = connect_io(io::Error::from_raw_os_error(code));
            prop_assert_eq!(is_local_failure(&connect), listed);
            let send = SendRequestError::Send(io::Error::from_raw_os_error(code));
            prop_assert!(!is_local_failure(&send));
        }
    }
}
