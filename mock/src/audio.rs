//! `POST /v1/audio/speech` (tts-engine): a real WAV (or raw PCM) sine tone, streamed in pieces.

use std::sync::OnceLock;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;

use super::body::{PacedBody, Plan, Tracker};
use super::errors::bad_request;
use super::errors::Rejection;
use super::request::{begin_json, JsonRequest};
use super::settings::{Hang, MockSettings};
use super::state::MockState;

pub const ROUTE: &str = "/v1/audio/speech";

/// OpenAI's PCM output rate.
pub const SAMPLE_RATE: u32 = 24_000;
/// 400 Hz divides 24 kHz evenly, so one period can be tiled.
const TONE_PERIOD_SAMPLES: usize = 60;
const MS_PER_CHAR: u64 = 50;
const MIN_DURATION_MS: u64 = 500;
const MAX_INPUT_CHARS: usize = 4096;

pub async fn speech(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<MockState>,
) -> HttpResponse {
    let request = match begin_json(&req, payload, &state, ROUTE).await {
        Ok(r) => r,
        Err(rejection) => return *rejection,
    };
    match respond(&request, &state) {
        Ok(response) => response,
        Err(rejection) => *rejection,
    }
}

fn content_type(format: &str) -> Option<&'static str> {
    Some(match format {
        "mp3" => "audio/mpeg",
        "opus" => "audio/ogg",
        "aac" => "audio/aac",
        "flac" => "audio/flac",
        "wav" => "audio/wav",
        "pcm" => "audio/pcm",
        _ => return None,
    })
}

fn respond(request: &JsonRequest, state: &web::Data<MockState>) -> Result<HttpResponse, Rejection> {
    request.model()?;
    let input = request
        .body
        .get("input")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("`input` is required and must be a string", Some("input")))?;
    let chars = input.chars().count();
    if chars > MAX_INPUT_CHARS {
        return Err(bad_request(
            format!("`input` must be at most {MAX_INPUT_CHARS} characters"),
            Some("input"),
        )
        .into());
    }
    let format = request.str_field("response_format").unwrap_or("mp3");
    let content_type = content_type(format).ok_or_else(|| {
        bad_request(
            format!("`response_format` `{format}` is not one of mp3, opus, aac, flac, wav, pcm"),
            Some("response_format"),
        )
    })?;
    let duration_ms = (chars as u64 * MS_PER_CHAR).max(MIN_DURATION_MS);
    let pcm = tone_pcm(duration_ms);
    let audio = if format == "pcm" { pcm } else { wav(&pcm) };
    let plan = pieces_plan(audio, &request.settings);
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .streaming(PacedBody::new(plan, Tracker::stream(state.clone()))))
}

/// `tts_chunks` pieces `tts_chunk_interval_ms` apart, with the stream faults applied.
fn pieces_plan(audio: Bytes, s: &MockSettings) -> Plan {
    let count = s.tts_chunks.max(1) as usize;
    let piece = audio.len().div_ceil(count).max(1);
    let mut plan = Plan::new();
    let mut offset = 0;
    let mut sent = 0u32;
    while offset < audio.len() {
        if sent > 0 {
            plan.pause_ms(s.tts_chunk_interval_ms);
        }
        if s.die_after_chunks == Some(sent) {
            plan.die();
            return plan;
        }
        let end = (offset + piece).min(audio.len());
        plan.data(audio.slice(offset..end), 1);
        sent += 1;
        offset = end;
        if sent == 1 && s.hang == Hang::MidStream {
            plan.pause_ms(s.hang_ms);
        }
    }
    plan
}

/// 16-bit little-endian mono samples of a 400 Hz tone.
fn tone_pcm(duration_ms: u64) -> Bytes {
    static PERIOD: OnceLock<Vec<u8>> = OnceLock::new();
    let period = PERIOD.get_or_init(|| {
        (0..TONE_PERIOD_SAMPLES)
            .flat_map(|i| {
                let phase = i as f64 / TONE_PERIOD_SAMPLES as f64 * std::f64::consts::TAU;
                ((phase.sin() * 0.3 * f64::from(i16::MAX)) as i16).to_le_bytes()
            })
            .collect()
    });
    let samples = (duration_ms * u64::from(SAMPLE_RATE) / 1000) as usize;
    let len = samples * 2;
    let mut out = BytesMut::with_capacity(len);
    while out.len() < len {
        let take = (len - out.len()).min(period.len());
        out.extend_from_slice(&period[..take]);
    }
    out.freeze()
}

/// A RIFF/WAVE file around 16-bit mono PCM at [`SAMPLE_RATE`].
fn wav(pcm: &[u8]) -> Bytes {
    let data_len = pcm.len() as u32;
    let mut out = BytesMut::with_capacity(44 + pcm.len());
    out.put_slice(b"RIFF");
    out.put_u32_le(36 + data_len);
    out.put_slice(b"WAVE");
    out.put_slice(b"fmt ");
    out.put_u32_le(16); // fmt chunk size
    out.put_u16_le(1); // PCM
    out.put_u16_le(1); // mono
    out.put_u32_le(SAMPLE_RATE);
    out.put_u32_le(SAMPLE_RATE * 2); // byte rate
    out.put_u16_le(2); // block align
    out.put_u16_le(16); // bits per sample
    out.put_slice(b"data");
    out.put_u32_le(data_len);
    out.put_slice(pcm);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_header_describes_the_data() {
        let pcm = tone_pcm(500);
        assert_eq!(pcm.len(), 24_000);
        let w = wav(&pcm);
        assert_eq!(&w[0..4], b"RIFF");
        assert_eq!(&w[8..12], b"WAVE");
        assert_eq!(
            u32::from_le_bytes([w[4], w[5], w[6], w[7]]) as usize,
            w.len() - 8
        );
        assert_eq!(
            u32::from_le_bytes([w[40], w[41], w[42], w[43]]) as usize,
            pcm.len()
        );
    }
}
