//! `X-Request-Id`: accepted from the client when it is sane, generated otherwise, stored in the
//! request's extensions for handlers and logs, and returned on every response (all three done
//! by [`super::front_door`]). Each request
//! runs in a `request` tracing span carrying the id, entered while the handler runs and while
//! the response body (a stream too) is produced or dropped, so every log line of the request
//! carries it (`LOG_FORMAT=json` puts it under `span`).

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::http::header::HeaderMap;

#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The header's name, made once (the relay sends it upstream under the same static).
pub use crate::relay::upstream::X_REQUEST_ID;

pub fn generate() -> String {
    format!("req_{}", uuid::Uuid::now_v7().simple())
}

fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The request's id: the client's `X-Request-Id` when it is sane, a new one otherwise.
pub fn from_headers(headers: &HeaderMap) -> String {
    headers
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| acceptable(v))
        .map(str::to_string)
        .unwrap_or_else(generate)
}

/// A response body polled (and dropped) inside its request's span.
pub struct SpannedBody {
    inner: Option<BoxBody>,
    span: tracing::Span,
}

impl SpannedBody {
    pub fn new(body: impl MessageBody + 'static, span: tracing::Span) -> SpannedBody {
        SpannedBody {
            inner: Some(body.boxed()),
            span,
        }
    }
}

impl MessageBody for SpannedBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.inner
            .as_ref()
            .map_or(BodySize::None, MessageBody::size)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<bytes::Bytes, Self::Error>>> {
        let this = self.get_mut();
        let _entered = this.span.enter();
        match this.inner.as_mut() {
            Some(body) => Pin::new(body).poll_next(cx),
            None => Poll::Ready(None),
        }
    }
}

impl Drop for SpannedBody {
    fn drop(&mut self) {
        // A stream cut by a client disconnect writes its record here: keep it in the span.
        let _entered = self.span.enter();
        self.inner.take();
    }
}
