//! A request body made of shared byte slices, sent in pieces. `awc` copies each body chunk
//! into its write buffer before sending: a body handed over as one 20 MiB `Bytes` is held
//! twice while it is sent, and a body assembled into one buffer is held three times. Pieces
//! of at most [`PIECE_BYTES`] keep that copy small, and the slices share the client's
//! request buffer instead of copying it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use bytes::Bytes;

/// Largest piece handed to the HTTP writer at a time.
pub const PIECE_BYTES: usize = 64 * 1024;

/// A body of known length (sent with `Content-Length`) made of `parts` in order.
#[derive(Clone, Debug, Default)]
pub struct SplicedBody {
    parts: VecDeque<Bytes>,
    len: u64,
}

impl SplicedBody {
    pub fn new(parts: impl IntoIterator<Item = Bytes>) -> SplicedBody {
        let parts: VecDeque<Bytes> = parts.into_iter().filter(|p| !p.is_empty()).collect();
        let len = parts.iter().map(|p| p.len() as u64).sum();
        SplicedBody { parts, len }
    }

    /// The whole body in one buffer (tests and small bodies).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len as usize);
        for part in &self.parts {
            out.extend_from_slice(part);
        }
        out
    }
}

impl MessageBody for SplicedBody {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.len)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Infallible>>> {
        let this = self.get_mut();
        let Some(front) = this.parts.front_mut() else {
            return Poll::Ready(None);
        };
        let piece = if front.len() > PIECE_BYTES {
            front.split_to(PIECE_BYTES)
        } else {
            let whole = std::mem::take(front);
            this.parts.pop_front();
            whole
        };
        this.len -= piece.len() as u64;
        Poll::Ready(Some(Ok(piece)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn sends_every_byte_in_order_in_bounded_pieces() {
        let big = Bytes::from(vec![b'x'; PIECE_BYTES * 2 + 5]);
        let body = SplicedBody::new([
            Bytes::from_static(b"{\"a\":\""),
            big,
            Bytes::new(),
            Bytes::from_static(b"\"}"),
        ]);
        let expected = body.to_vec();
        assert_eq!(body.size(), BodySize::Sized(expected.len() as u64));
        let pieces: Vec<Bytes> = futures_util::stream::unfold(body, |mut b| async move {
            let next = std::future::poll_fn(|cx| Pin::new(&mut b).poll_next(cx)).await;
            next.and_then(Result::ok).map(|piece| (piece, b))
        })
        .collect()
        .await;
        assert!(pieces
            .iter()
            .all(|p| !p.is_empty() && p.len() <= PIECE_BYTES));
        assert_eq!(pieces.concat(), expected);
    }
}
