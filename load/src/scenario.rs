//! Scenarios ready to fire: bodies built once per run (they are identical for every request),
//! and the code that sends one request of each kind and reports how it went.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use awc::error::{PayloadError, SendRequestError};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::spec::{Kind, ScenarioSpec};
use crate::sse::SseScanner;
use crate::stats::{Outcome, StreamTiming};

/// Largest JSON answer read (images with b64, long transcripts).
const BODY_LIMIT: usize = 256 << 20;
/// Piece size for streamed uploads: the generator never copies a whole file per request.
const UPLOAD_PIECE: usize = 64 << 10;

pub struct Prepared {
    pub spec: ScenarioSpec,
    pub name: String,
    /// The request URL on each target, used in turn.
    pub urls: Vec<String>,
    /// `{target}/v1/video/generations` per target (polls go to `{poll_base}/{id}`).
    pub poll_bases: Vec<String>,
    pub content_type: String,
    pub body: Bytes,
    /// With a model pool: one body per model, used in turn.
    pub pool: Vec<Bytes>,
    next: AtomicUsize,
    next_target: AtomicUsize,
}

impl Prepared {
    pub fn new(spec: &ScenarioSpec, targets: &[String]) -> Prepared {
        let (content_type, body) = build_body(spec);
        let pool = match (spec.model_pool, spec.shared_prefixes) {
            (Some(n), _) if spec.kind != Kind::Get => (0..n)
                .map(|i| {
                    let mut s = spec.clone();
                    s.model = format!("{}-{i:05}", spec.model);
                    build_body(&s).1
                })
                .collect(),
            (None, Some(prefixes)) if matches!(spec.kind, Kind::Chat | Kind::ChatStream) => {
                prefixed_pool(spec, prefixes)
            }
            _ => Vec::new(),
        };
        Prepared {
            name: spec.display_name(),
            spec: spec.clone(),
            urls: targets
                .iter()
                .map(|t| format!("{t}{}", spec.path()))
                .collect(),
            poll_bases: targets
                .iter()
                .map(|t| format!("{t}{}", Kind::Video.default_path()))
                .collect(),
            content_type,
            body,
            pool,
            next: AtomicUsize::new(0),
            next_target: AtomicUsize::new(0),
        }
    }

    /// Index of the target for the next request (round robin).
    pub fn pick_target(&self) -> usize {
        if self.urls.len() <= 1 {
            0
        } else {
            self.next_target.fetch_add(1, Ordering::Relaxed) % self.urls.len()
        }
    }

    /// The body of the next request (bodies are refcounted: no copy).
    pub fn body(&self) -> Bytes {
        if self.pool.is_empty() {
            self.body.clone()
        } else {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
            self.pool[i].clone()
        }
    }
}

fn words(n: usize) -> String {
    const W: [&str; 8] = [
        "route", "the", "tokens", "through", "a", "mesh", "of", "actors",
    ];
    (0..n).map(|i| W[i % W.len()]).collect::<Vec<_>>().join(" ")
}

/// Distinct requests in a shared-prefix pool, used in turn (so every run sends the same ones).
const PREFIX_POOL: u32 = 4096;

/// Plain English words, so an engine's tokenizer sees about one token per word.
const VOCABULARY: [&str; 48] = [
    "the", "river", "runs", "past", "old", "stone", "houses", "where", "people", "keep", "small",
    "gardens", "and", "bright", "windows", "every", "morning", "bakers", "open", "doors", "to",
    "sell", "warm", "bread", "while", "children", "walk", "school", "along", "narrow", "streets",
    "under", "green", "trees", "that", "grow", "near", "water", "in", "summer", "light", "falls",
    "on", "quiet", "roofs", "of", "town", "hall",
];

/// SplitMix64's finalizer: a fixed, well-spread pseudo-random value per input.
fn mix(x: u64) -> u64 {
    let mut x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Word `j` of shared system prompt `p`: a fixed pseudo-random pick, different per prompt.
fn prefix_word(p: u32, j: usize) -> &'static str {
    VOCABULARY[(mix(u64::from(p) << 32 | j as u64) % VOCABULARY.len() as u64) as usize]
}

/// Chat bodies with distinct questions, after one of `prefixes` shared system prompts (none
/// when 0). Which prompt request `i` gets is a fixed pseudo-random sequence.
fn prefixed_pool(s: &ScenarioSpec, prefixes: u32) -> Vec<Bytes> {
    let systems: Vec<String> = (0..prefixes)
        .map(|p| {
            let words: Vec<&str> = (0..s.prefix_words).map(|j| prefix_word(p, j)).collect();
            format!("You are assistant number {p}. {}", words.join(" "))
        })
        .collect();
    (0..PREFIX_POOL)
        .map(|i| {
            // The question leads with its number, so no two requests share more than the
            // system prompt (and without one, nothing but the role).
            let question = format!("Q{i}: {}", words(s.prompt_words));
            let mut messages = Vec::new();
            if prefixes > 0 {
                let pick = mix(u64::from(i) | 1 << 63) % u64::from(prefixes);
                let system = &systems[pick as usize];
                messages.push(json!({"role": "system", "content": system}));
            }
            messages.push(json!({"role": "user", "content": question}));
            let mut body = build_body(s).1;
            if let Ok(mut v) = serde_json::from_slice::<Value>(&body) {
                v["messages"] = Value::Array(messages);
                body = Bytes::from(v.to_string());
            }
            body
        })
        .collect()
}

fn build_body(s: &ScenarioSpec) -> (String, Bytes) {
    let json_body = |v: Value| ("application/json".to_string(), Bytes::from(v.to_string()));
    match s.kind {
        Kind::Chat | Kind::ChatStream => {
            let mut v = json!({
                "model": s.model,
                "messages": [{"role": "user", "content": words(s.prompt_words)}],
            });
            if let Some(m) = s.max_tokens {
                v["max_tokens"] = m.into();
            }
            if s.kind == Kind::ChatStream {
                v["stream"] = true.into();
            }
            json_body(v)
        }
        Kind::Embeddings => {
            let input: Vec<String> = (0..s.inputs)
                .map(|i| format!("{} {i}", words(s.prompt_words)))
                .collect();
            json_body(json!({"model": s.model, "input": input}))
        }
        Kind::Speech => json_body(json!({
            "model": s.model,
            "input": words(s.prompt_words),
            "voice": s.voice,
            "response_format": s.response_format.clone().unwrap_or_else(|| "wav".into()),
        })),
        Kind::Images => {
            let mut v = json!({
                "model": s.model,
                "prompt": words(s.prompt_words),
                "n": s.n,
                "response_format": s.response_format.clone().unwrap_or_else(|| "b64_json".into()),
            });
            if let Some(size) = &s.size {
                v["size"] = size.clone().into();
            }
            json_body(v)
        }
        Kind::Video => {
            let mut v = json!({
                "model": s.model,
                "prompt": words(s.prompt_words),
                "seconds": s.seconds,
            });
            if let Some(size) = &s.size {
                v["size"] = size.clone().into();
            }
            json_body(v)
        }
        Kind::Transcription => multipart(s),
        Kind::Get => (String::new(), Bytes::new()),
    }
}

/// A WAV file of `size` bytes (header + quiet 16-bit PCM), generated rather than shipped.
pub fn wav_bytes(size: u64) -> Vec<u8> {
    let size = size.max(44) as usize;
    let data_len = (size - 44) as u32;
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data_len).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes()); // PCM
    v.extend_from_slice(&1u16.to_le_bytes()); // mono
    v.extend_from_slice(&16_000u32.to_le_bytes());
    v.extend_from_slice(&32_000u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    // A low, non-zero pattern so nothing compresses it to nothing on the way.
    v.extend((0..size - 44).map(|i| (i % 7) as u8));
    v
}

pub const BOUNDARY: &str = "switchyard-load-boundary-7MA4YWxkTrZu0gW";

/// Fields first, then the file, as OpenAI's clients send them.
fn multipart(s: &ScenarioSpec) -> (String, Bytes) {
    let mut b = BytesMut::new();
    let mut field = |name: &str, value: &str| {
        b.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    };
    field("model", &s.model);
    field(
        "response_format",
        s.response_format.as_deref().unwrap_or("json"),
    );
    b.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"audio.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
        )
        .as_bytes(),
    );
    b.extend_from_slice(&wav_bytes(s.file_bytes));
    b.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    (
        format!("multipart/form-data; boundary={BOUNDARY}"),
        b.freeze(),
    )
}

fn send_error(e: &SendRequestError) -> &'static str {
    match e {
        SendRequestError::Connect(_) => "connect",
        SendRequestError::Timeout => "timeout",
        SendRequestError::Send(_) => "send",
        SendRequestError::Response(_) => "response",
        _ => "request",
    }
}

fn payload_error(e: &PayloadError) -> &'static str {
    match e {
        PayloadError::Incomplete(_) => "body_incomplete",
        PayloadError::Overflow => "body_too_large",
        _ => "body",
    }
}

fn http_error(status: u16) -> String {
    format!("http_{status}")
}

/// Send one request of this scenario. `sched` is the scheduled send time: every duration in the
/// outcome counts from it.
pub async fn execute(p: &Prepared, client: &awc::Client, sched: Instant) -> Outcome {
    let t = p.pick_target();
    match p.spec.kind {
        Kind::Chat | Kind::Embeddings | Kind::Images => json_call(p, t, client, sched).await,
        Kind::ChatStream => chat_stream(p, t, client, sched).await,
        Kind::Speech => streamed_bytes(p, t, client, sched).await,
        Kind::Transcription => upload(p, t, client, sched).await,
        Kind::Video => video(p, t, client, sched).await,
        Kind::Get => get(p, t, client, sched).await,
    }
}

async fn post(
    p: &Prepared,
    t: usize,
    client: &awc::Client,
) -> Result<awc::ClientResponse, Outcome> {
    client
        .post(&p.urls[t])
        .insert_header(("content-type", p.content_type.as_str()))
        .send_body(p.body())
        .await
        .map_err(|e| Outcome::fail(None, send_error(&e)))
}

async fn get(p: &Prepared, t: usize, client: &awc::Client, sched: Instant) -> Outcome {
    let mut resp = match client.get(&p.urls[t]).send().await {
        Ok(r) => r,
        Err(e) => return Outcome::fail(None, send_error(&e)),
    };
    let first = sched.elapsed();
    let status = resp.status().as_u16();
    match resp.body().limit(BODY_LIMIT).await {
        Ok(b) => Outcome {
            status: Some(status),
            error: (status != 200).then(|| http_error(status)),
            first: Some(first),
            bytes_in: b.len() as u64,
            ..Outcome::default()
        },
        Err(e) => Outcome::fail(Some(status), payload_error(&e)),
    }
}

async fn json_call(p: &Prepared, t: usize, client: &awc::Client, sched: Instant) -> Outcome {
    let mut resp = match post(p, t, client).await {
        Ok(r) => r,
        Err(o) => return o,
    };
    let first = sched.elapsed();
    let status = resp.status().as_u16();
    let body = match resp.body().limit(BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => return Outcome::fail(Some(status), payload_error(&e)),
    };
    Outcome {
        status: Some(status),
        error: (status != 200).then(|| http_error(status)),
        first: Some(first),
        bytes_in: body.len() as u64,
        bytes_out: p.body.len() as u64,
        ..Outcome::default()
    }
}

/// Reads a body to its end, counting bytes and noting when the first one came.
async fn drain_stream<S>(
    resp: &mut awc::ClientResponse<S>,
    sched: Instant,
) -> Result<(u64, Option<std::time::Duration>), &'static str>
where
    S: futures_util::Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let mut n = 0u64;
    let mut first = None;
    while let Some(chunk) = resp.next().await {
        let chunk = chunk.map_err(|e| payload_error(&e))?;
        if first.is_none() && !chunk.is_empty() {
            first = Some(sched.elapsed());
        }
        n += chunk.len() as u64;
    }
    Ok((n, first))
}

async fn streamed_bytes(p: &Prepared, t: usize, client: &awc::Client, sched: Instant) -> Outcome {
    let mut resp = match post(p, t, client).await {
        Ok(r) => r,
        Err(o) => return o,
    };
    let status = resp.status().as_u16();
    match drain_stream(&mut resp, sched).await {
        Ok((n, first)) => Outcome {
            status: Some(status),
            error: (status != 200).then(|| http_error(status)),
            first,
            bytes_in: n,
            bytes_out: p.body.len() as u64,
            ..Outcome::default()
        },
        Err(e) => Outcome::fail(Some(status), e),
    }
}

async fn chat_stream(p: &Prepared, t: usize, client: &awc::Client, sched: Instant) -> Outcome {
    let mut resp = match post(p, t, client).await {
        Ok(r) => r,
        Err(o) => return o,
    };
    let status = resp.status().as_u16();
    if status != 200 {
        let n = drain_stream(&mut resp, sched).await.map_or(0, |(n, _)| n);
        return Outcome {
            bytes_in: n,
            ..Outcome::fail(Some(status), http_error(status))
        };
    }
    let mut scanner = SseScanner::new(4 << 20);
    let mut timing = StreamTiming::default();
    let mut first_content: Option<Instant> = None;
    let mut last_content: Option<Instant> = None;
    let (mut done, mut error_event) = (false, false);
    let mut bytes_in = 0u64;
    while let Some(chunk) = resp.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return Outcome::fail(Some(status), payload_error(&e)),
        };
        let now = Instant::now();
        bytes_in += chunk.len() as u64;
        let ev = scanner.feed(&chunk);
        done |= ev.done;
        error_event |= ev.error;
        if ev.content > 0 {
            timing.content_reads += 1;
            timing.content_events += u64::from(ev.content);
            if ev.content > 1 {
                timing.coalesced_reads += 1;
            }
            if let Some(prev) = last_content {
                timing
                    .gaps_us
                    .push(now.duration_since(prev).as_micros() as u64);
            }
            // Events in one read arrived together: their gaps are zero.
            timing
                .gaps_us
                .extend(std::iter::repeat_n(0, ev.content as usize - 1));
            first_content.get_or_insert(now);
            last_content = Some(now);
        }
    }
    if let (Some(a), Some(b)) = (first_content, last_content) {
        let span = b.duration_since(a).as_secs_f64();
        if timing.content_events > 1 && span > 0.0 {
            timing.tokens_per_s = Some((timing.content_events - 1) as f64 / span);
        }
    }
    let error = if scanner.overflow {
        Some("sse_event_too_large")
    } else if error_event {
        Some("sse_error_event")
    } else if !done {
        Some("stream_incomplete")
    } else if timing.content_events == 0 {
        Some("stream_empty")
    } else {
        None
    };
    Outcome {
        status: Some(status),
        error: error.map(str::to_string),
        first: first_content.map(|t| t.duration_since(sched)),
        stream: Some(timing),
        bytes_in,
        bytes_out: p.body.len() as u64,
        polls: 0,
    }
}

async fn upload(p: &Prepared, t: usize, client: &awc::Client, sched: Instant) -> Outcome {
    let body = p.body.clone();
    let len = body.len();
    let pieces = (0..len.div_ceil(UPLOAD_PIECE)).map(move |i| {
        let end = ((i + 1) * UPLOAD_PIECE).min(len);
        Ok::<Bytes, Infallible>(body.slice(i * UPLOAD_PIECE..end))
    });
    let sized = awc::body::SizedStream::new(len as u64, futures_util::stream::iter(pieces));
    let sent = client
        .post(&p.urls[t])
        .insert_header(("content-type", p.content_type.as_str()))
        .send_body(sized)
        .await;
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => return Outcome::fail(None, send_error(&e)),
    };
    let first = sched.elapsed();
    let status = resp.status().as_u16();
    match resp.body().limit(BODY_LIMIT).await {
        Ok(b) => Outcome {
            status: Some(status),
            error: (status != 200).then(|| http_error(status)),
            first: Some(first),
            bytes_in: b.len() as u64,
            bytes_out: len as u64,
            ..Outcome::default()
        },
        Err(e) => Outcome::fail(Some(status), payload_error(&e)),
    }
}

/// Terminal job states across the vendors' spellings (OpenAI, Replicate, fal, OpenRouter).
fn video_state(status: &str) -> Option<Result<(), String>> {
    match status.to_ascii_lowercase().as_str() {
        "completed" | "succeeded" => Some(Ok(())),
        "failed" | "canceled" | "cancelled" | "expired" => {
            Some(Err(format!("video_{}", status.to_ascii_lowercase())))
        }
        _ => None,
    }
}

async fn video(p: &Prepared, t: usize, client: &awc::Client, sched: Instant) -> Outcome {
    let mut resp = match post(p, t, client).await {
        Ok(r) => r,
        Err(o) => return o,
    };
    let first = sched.elapsed();
    let status = resp.status().as_u16();
    let body = match resp.body().limit(BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => return Outcome::fail(Some(status), payload_error(&e)),
    };
    let mut out = Outcome {
        status: Some(status),
        first: Some(first),
        bytes_out: p.body.len() as u64,
        bytes_in: body.len() as u64,
        ..Outcome::default()
    };
    if !(200..300).contains(&status) {
        out.error = Some(http_error(status));
        return out;
    }
    let job: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(id) = job.get("id").and_then(Value::as_str).map(str::to_string) else {
        out.error = Some("video_no_job_id".into());
        return out;
    };
    let mut state = job
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_string);
    let poll_url = format!("{}/{id}", p.poll_bases[t]);
    loop {
        if let Some(done) = state.as_deref().and_then(video_state) {
            if let Err(e) = done {
                out.error = Some(e);
                return out;
            }
            break;
        }
        actix_rt::time::sleep(p.spec.poll_interval).await;
        out.polls += 1;
        let mut r = match client.get(&poll_url).send().await {
            Ok(r) => r,
            Err(e) => {
                out.error = Some(format!("poll_{}", send_error(&e)));
                return out;
            }
        };
        let code = r.status().as_u16();
        out.status = Some(code);
        let b = match r.body().limit(BODY_LIMIT).await {
            Ok(b) => b,
            Err(e) => {
                out.error = Some(format!("poll_{}", payload_error(&e)));
                return out;
            }
        };
        out.bytes_in += b.len() as u64;
        if code != 200 {
            out.error = Some(format!("poll_http_{code}"));
            return out;
        }
        let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
        state = v.get("status").and_then(Value::as_str).map(str::to_string);
        if state.is_none() {
            out.error = Some("poll_no_status".into());
            return out;
        }
    }
    if p.spec.fetch_content {
        let url = format!("{poll_url}/content");
        match client.get(&url).send().await {
            Ok(mut r) => {
                let code = r.status().as_u16();
                out.status = Some(code);
                match drain_stream(&mut r, sched).await {
                    Ok((n, _)) => out.bytes_in += n,
                    Err(e) => out.error = Some(format!("content_{e}")),
                }
                if code != 200 && out.error.is_none() {
                    out.error = Some(format!("content_http_{code}"));
                }
            }
            Err(e) => out.error = Some(format!("content_{}", send_error(&e))),
        }
    }
    out
}

/// Picks scenarios by weight from a seeded generator, so a mix is reproducible.
pub struct Picker {
    cumulative: Vec<u64>,
    rng: fastrand::Rng,
}

impl Picker {
    pub fn new(weights: &[u32], seed: u64) -> Picker {
        let mut acc = 0u64;
        let cumulative = weights
            .iter()
            .map(|&w| {
                acc += u64::from(w);
                acc
            })
            .collect();
        Picker {
            cumulative,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    pub fn pick(&mut self) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0);
        if total == 0 || self.cumulative.len() == 1 {
            return 0;
        }
        let x = self.rng.u64(0..total);
        self.cumulative.partition_point(|&c| c <= x)
    }
}

/// One line per scenario for the run's header.
pub fn describe(p: &Prepared) -> String {
    let more = match p.urls.len() {
        0 | 1 => String::new(),
        n => format!(" and {} more target(s)", n - 1),
    };
    format!(
        "{} → {}{more} ({} B body)",
        p.name,
        p.urls.first().map_or("", String::as_str),
        p.body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_prefix_pools_share_only_their_system_prompts() {
        let messages = |b: &Bytes| -> Vec<Value> {
            let v: Value = serde_json::from_slice(b).unwrap();
            v["messages"].as_array().unwrap().clone()
        };
        for prefixes in [0u32, 1, 3] {
            let mut spec = ScenarioSpec::new(Kind::ChatStream);
            spec.shared_prefixes = Some(prefixes);
            spec.prefix_words = 50;
            let p = Prepared::new(&spec, &["http://127.0.0.1:1".into()]);
            assert_eq!(p.pool.len(), PREFIX_POOL as usize);
            let mut systems = std::collections::BTreeMap::new();
            let mut questions = std::collections::HashSet::new();
            for body in &p.pool {
                let m = messages(body);
                assert_eq!(m.len(), if prefixes > 0 { 2 } else { 1 });
                if prefixes > 0 {
                    *systems.entry(m[0]["content"].to_string()).or_insert(0u32) += 1;
                }
                assert!(questions.insert(m.last().unwrap()["content"].to_string()));
            }
            assert_eq!(systems.len(), prefixes as usize);
            // Each system prompt gets a fair share of the requests.
            for n in systems.values() {
                let share = f64::from(*n) / f64::from(PREFIX_POOL);
                assert!(
                    (share - 1.0 / f64::from(prefixes)).abs() < 0.05,
                    "{systems:?}"
                );
            }
        }
    }

    #[test]
    fn weighted_picks_follow_weights() {
        let mut p = Picker::new(&[3, 1, 0], 7);
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            counts[p.pick()] += 1;
        }
        assert_eq!(counts[2], 0, "weight 0 is never picked");
        let ratio = f64::from(counts[0]) / f64::from(counts[1]);
        assert!((2.7..3.3).contains(&ratio), "{counts:?}");
        assert_eq!(Picker::new(&[5], 1).pick(), 0);
    }

    #[test]
    fn bodies_match_the_contract_shapes() {
        let mut s = ScenarioSpec::new(Kind::ChatStream);
        s.max_tokens = Some(5);
        let one = ["http://127.0.0.1:1".to_string()];
        let p = Prepared::new(&s, &one);
        assert_eq!(p.urls, ["http://127.0.0.1:1/v1/chat/completions"]);
        let v: Value = serde_json::from_slice(&p.body).expect("json");
        assert_eq!(v["stream"], true);
        assert_eq!(v["max_tokens"], 5);

        let mut t = ScenarioSpec::new(Kind::Transcription);
        t.file_bytes = 100_000;
        let p = Prepared::new(&t, &one);
        assert!(p.content_type.contains(BOUNDARY));
        assert!(p.body.len() > 100_000 && p.body.len() < 101_000);
        assert!(p.body.ends_with(format!("--{BOUNDARY}--\r\n").as_bytes()));
        let wav = wav_bytes(1000);
        assert_eq!(wav.len(), 1000);
        assert_eq!(&wav[..4], b"RIFF");
        let two = ["http://h:1".to_string(), "http://h:2".to_string()];
        let v = Prepared::new(&ScenarioSpec::new(Kind::Video), &two);
        assert_eq!(v.poll_bases[1], "http://h:2/v1/video/generations");
        let picks: Vec<usize> = (0..4).map(|_| v.pick_target()).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
        let mut pooled = ScenarioSpec::new(Kind::Chat);
        pooled.model = "bench".into();
        pooled.model_pool = Some(3);
        let p = Prepared::new(&pooled, &two[..1]);
        let models: Vec<String> = (0..4)
            .map(|_| {
                let v: Value = serde_json::from_slice(&p.body()).expect("json");
                v["model"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        assert_eq!(
            models,
            ["bench-00000", "bench-00001", "bench-00002", "bench-00000"]
        );
    }

    #[test]
    fn video_states() {
        assert_eq!(video_state("completed"), Some(Ok(())));
        assert_eq!(video_state("SUCCEEDED"), Some(Ok(())));
        assert!(video_state("in_progress").is_none());
        assert_eq!(video_state("failed"), Some(Err("video_failed".to_string())));
    }
}
