//! Relaying an opaque response body (speech audio, transcription text/SRT/VTT, SSE we do not
//! parse) chunk by chunk, as it arrives. Before the first byte the relay is "primed" so that a
//! broken or empty answer can still fall back to another route; after that, a failure aborts the
//! client's response (no terminating chunk), which is the only honest signal left once a 200 and
//! part of the body have gone out.
//!
//! The relay owns the lease and the request's record, like the chat stream relay: both are
//! settled when the body ends or is dropped (client disconnect), exactly once.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;

use super::upstream::BodyStream;
use crate::error::{ApiError, ErrorCode};
use crate::mesh::{Lease, Outcome};
use crate::record::RequestCtx;

/// Counts audio as it passes, to report seconds of audio in the request's record.
#[derive(Debug, Default)]
pub struct AudioMeter {
    /// The body is raw 24 kHz 16-bit mono PCM (OpenAI's `pcm` format).
    pcm: bool,
    /// The first bytes, enough for a WAV header.
    head: Vec<u8>,
    total: u64,
}

const WAV_HEAD_BYTES: usize = 512;
/// OpenAI's PCM: 24 kHz × 2 bytes × 1 channel.
const PCM_BYTES_PER_SECOND: f64 = 48_000.0;

impl AudioMeter {
    pub fn new(pcm: bool) -> AudioMeter {
        AudioMeter {
            pcm,
            ..AudioMeter::default()
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        if self.head.len() < WAV_HEAD_BYTES {
            let take = (WAV_HEAD_BYTES - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
    }

    /// Seconds of audio, when the format tells (WAV header, raw PCM); compressed formats
    /// (mp3, opus, aac, flac) would need decoding and are left unmeasured.
    pub fn seconds(&self) -> Option<f64> {
        if let Some((data_offset, byte_rate)) = wav_layout(&self.head) {
            let data = self.total.saturating_sub(data_offset as u64);
            return Some(round_ms(data as f64 / byte_rate as f64));
        }
        (self.pcm && self.total > 0).then(|| round_ms(self.total as f64 / PCM_BYTES_PER_SECOND))
    }
}

fn round_ms(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

/// `(offset of the sample data, bytes per second)` of a RIFF/WAVE header.
fn wav_layout(head: &[u8]) -> Option<(usize, u32)> {
    if head.len() < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return None;
    }
    let mut at = 12;
    let mut byte_rate = None;
    while at + 8 <= head.len() {
        let id = &head[at..at + 4];
        let size = u32::from_le_bytes([head[at + 4], head[at + 5], head[at + 6], head[at + 7]]);
        let body = at + 8;
        if id == b"fmt " && body + 12 <= head.len() {
            let rate = u32::from_le_bytes([
                head[body + 8],
                head[body + 9],
                head[body + 10],
                head[body + 11],
            ]);
            byte_rate = (rate > 0).then_some(rate);
        }
        if id == b"data" {
            return byte_rate.map(|r| (body, r));
        }
        // Chunks are padded to an even size.
        at = body.checked_add(size as usize + (size as usize & 1))?;
    }
    None
}

pub struct ByteRelay {
    upstream: BodyStream,
    lease: Lease,
    ctx: Option<RequestCtx>,
    idle: Duration,
    /// The attempt's total time limit (`UPSTREAM_TOTAL_TIMEOUT_SECS` / route `timeouts.total`).
    deadline: Option<Instant>,
    /// The chunk read while priming, sent first.
    first: Option<Bytes>,
    /// An empty body is a valid answer (text formats) rather than a failure (audio).
    allow_empty: bool,
    meter: Option<AudioMeter>,
    ended: bool,
    outcome: Option<Outcome>,
    error: Option<String>,
    settled: bool,
}

impl ByteRelay {
    pub fn new(
        upstream: BodyStream,
        lease: Lease,
        idle: Duration,
        meter: Option<AudioMeter>,
        allow_empty: bool,
    ) -> ByteRelay {
        ByteRelay {
            upstream,
            lease,
            ctx: None,
            idle,
            deadline: None,
            first: None,
            allow_empty,
            meter,
            ended: false,
            outcome: None,
            error: None,
            settled: false,
        }
    }

    /// End the body once `left` has passed (what remains of the attempt's total time).
    pub fn with_total_limit(mut self, left: Duration) -> ByteRelay {
        self.deadline = Instant::now().checked_add(left);
        self
    }

    /// The wait allowed for the next chunk: the idle limit, cut short by the total deadline.
    fn next_wait(&self) -> Duration {
        match self.deadline {
            Some(at) => self.idle.min(at.saturating_duration_since(Instant::now())),
            None => self.idle,
        }
    }

    /// Wait for the first byte. An error means nothing reached the client yet, so another
    /// route may be tried; the lease records the failure.
    pub async fn prime(&mut self) -> Result<(), ApiError> {
        let model = self.lease.model().id.clone();
        let fail = |relay: &mut ByteRelay, code, what: &str| {
            relay.lease.finish(Outcome::Failure);
            ApiError::new(code, format!("The backend for model `{model}` {what}"))
        };
        loop {
            match actix_rt::time::timeout(self.next_wait(), self.upstream.next()).await {
                Err(_) => {
                    return Err(fail(
                        self,
                        ErrorCode::UpstreamTimeout,
                        "sent nothing within the time limit.",
                    ))
                }
                Ok(Some(Err(_))) => {
                    return Err(fail(
                        self,
                        ErrorCode::UpstreamError,
                        "broke off before sending anything.",
                    ))
                }
                Ok(Some(Ok(chunk))) if chunk.is_empty() => continue,
                Ok(Some(Ok(chunk))) => {
                    if let Some(m) = self.meter.as_mut() {
                        m.feed(&chunk);
                    }
                    self.first = Some(chunk);
                    return Ok(());
                }
                Ok(None) if self.allow_empty => {
                    self.end(Outcome::Success);
                    return Ok(());
                }
                Ok(None) => {
                    return Err(fail(
                        self,
                        ErrorCode::UpstreamEmptyResponse,
                        "answered with an empty body.",
                    ))
                }
            }
        }
    }

    /// Attach the request's bookkeeping; from here on the body owns it.
    pub fn into_body(
        mut self,
        ctx: RequestCtx,
    ) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
        self.ctx = Some(ctx);
        futures_util::stream::unfold(self, |mut relay| async move {
            relay.next_chunk().await.map(|item| (item, relay))
        })
    }

    async fn next_chunk(&mut self) -> Option<Result<Bytes, actix_web::Error>> {
        if let Some(first) = self.first.take() {
            if let Some(ctx) = self.ctx.as_mut() {
                ctx.mark_first_byte();
            }
            return Some(Ok(first));
        }
        loop {
            if self.ended {
                self.settle();
                return None;
            }
            let why = match actix_rt::time::timeout(self.next_wait(), self.upstream.next()).await {
                Ok(Some(Ok(chunk))) if chunk.is_empty() => continue,
                Ok(Some(Ok(chunk))) => {
                    if let Some(m) = self.meter.as_mut() {
                        m.feed(&chunk);
                    }
                    if let Some(ctx) = self.ctx.as_mut() {
                        ctx.mark_first_byte();
                    }
                    return Some(Ok(chunk));
                }
                Ok(None) => {
                    self.end(Outcome::Success);
                    continue;
                }
                Err(_) => "the backend stopped sending (idle or total time limit)",
                Ok(Some(Err(_))) => "the backend's body broke off",
            };
            // Headers and part of the body are out: aborting the response is the only signal.
            self.error = Some(why.to_string());
            self.end(Outcome::Failure);
            self.settle();
            return Some(Err(actix_web::error::ErrorBadGateway(why)));
        }
    }

    fn end(&mut self, outcome: Outcome) {
        self.ended = true;
        self.outcome.get_or_insert(outcome);
    }

    fn settle(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        let outcome = self.outcome.unwrap_or(Outcome::Canceled);
        self.lease.finish(outcome);
        if let Some(ctx) = self.ctx.as_mut() {
            ctx.record.audio_seconds = self.meter.as_ref().and_then(AudioMeter::seconds);
            ctx.record.error = self.error.take();
            let label = match outcome {
                Outcome::Success => "success",
                Outcome::Canceled => "canceled",
                _ => "error",
            };
            ctx.complete(200, label);
        }
    }
}

impl Drop for ByteRelay {
    fn drop(&mut self) {
        // Reached on client disconnect too: dropping the upstream body with `self` closes the
        // backend connection instead of draining it.
        if self.ctx.is_some() {
            self.settle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav_header(byte_rate: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes()); // PCM
        h.extend_from_slice(&1u16.to_le_bytes()); // mono
        h.extend_from_slice(&24_000u32.to_le_bytes());
        h.extend_from_slice(&byte_rate.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&0u32.to_le_bytes());
        h
    }

    #[test]
    fn wav_seconds_come_from_the_header_and_the_byte_count() {
        let mut m = AudioMeter::new(false);
        let head = wav_header(48_000);
        m.feed(&head[..10]);
        m.feed(&head[10..]);
        m.feed(&vec![0u8; 72_000]);
        assert_eq!(m.seconds(), Some(1.5));
    }

    #[test]
    fn pcm_is_counted_and_compressed_formats_are_not() {
        let mut pcm = AudioMeter::new(true);
        pcm.feed(&[0u8; 24_000]);
        assert_eq!(pcm.seconds(), Some(0.5));
        let mut mp3 = AudioMeter::new(false);
        mp3.feed(b"ID3\x04\x00 not a wav at all");
        assert_eq!(mp3.seconds(), None);
        assert_eq!(wav_layout(b"RIFF\xff\xff\xff\xffWAVEdata"), None);
    }
}
