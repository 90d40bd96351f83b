//! video-engine: `POST /v1/video/generations` as an async job (poll, cancel, fetch content) or
//! as a sync request that answers with the MP4 bytes.
//!
//! A job's status is computed from the time since submission, so no timer runs per job:
//! queued for `video_queue_ms`, then in progress over `video_steps` × `video_step_ms`,
//! then completed (or failed, decided at submission).

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Value};

use super::errors::{
    bad_request, injected_error_body, injected_message, json_response, not_found, openai_error,
    quoting_credentials, Rejection,
};
use super::faults::{deliver, sleep_ms};
use super::request::{begin_bodyless, begin_json, JsonRequest};
use super::settings::{MockSettings, VideoMode, VideoStatusStyle};
use super::state::{lock, Counters, MockState};
use super::util::unix_now;

pub const ROUTE: &str = "/v1/video/generations";
pub const JOB_ROUTE: &str = "/v1/video/generations/{id}";
pub const CONTENT_ROUTE: &str = "/v1/video/generations/{id}/content";
pub const CANCEL_ROUTE: &str = "/v1/video/generations/{id}/cancel";

/// One async job, kept in memory until `/_mock/reset`.
pub struct VideoJob {
    id: String,
    model: String,
    prompt: String,
    seconds: String,
    size: String,
    submitted: Instant,
    created_at: u64,
    queue_ms: u64,
    steps: u32,
    step_ms: u64,
    will_fail: bool,
    /// The failed job's error message (quoting the submission's credentials under
    /// `echo_auth_in_errors`).
    failure_message: String,
    /// Progress at the moment of cancellation.
    canceled: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Queued,
    InProgress(u32),
    Completed,
    Failed,
    Canceled(u32),
}

impl Phase {
    fn is_terminal(self) -> bool {
        matches!(self, Phase::Completed | Phase::Failed | Phase::Canceled(_))
    }

    fn progress(self) -> u32 {
        match self {
            Phase::Queued => 0,
            Phase::InProgress(p) | Phase::Canceled(p) => p,
            Phase::Completed | Phase::Failed => 100,
        }
    }

    fn status(self, style: VideoStatusStyle) -> &'static str {
        use VideoStatusStyle::*;
        match (self, style) {
            (Phase::Queued, Openai) => "queued",
            (Phase::Queued, Openrouter) => "pending",
            (Phase::Queued, Replicate) => "starting",
            (Phase::Queued, Fal) => "IN_QUEUE",
            (Phase::InProgress(_), Replicate) => "processing",
            (Phase::InProgress(_), Fal) => "IN_PROGRESS",
            (Phase::InProgress(_), _) => "in_progress",
            (Phase::Completed, Replicate) => "succeeded",
            (Phase::Completed, Fal) => "COMPLETED",
            (Phase::Completed, _) => "completed",
            (Phase::Failed, Fal) => "FAILED",
            (Phase::Failed, _) => "failed",
            (Phase::Canceled(_), Openrouter) => "cancelled",
            (Phase::Canceled(_), Fal) => "CANCELED",
            (Phase::Canceled(_), _) => "canceled",
        }
    }
}

impl VideoJob {
    fn run_ms(&self) -> u64 {
        u64::from(self.steps).saturating_mul(self.step_ms)
    }

    fn phase(&self, now: Instant) -> Phase {
        if let Some(progress) = self.canceled {
            return Phase::Canceled(progress);
        }
        let elapsed = now.saturating_duration_since(self.submitted).as_millis() as u64;
        if elapsed < self.queue_ms {
            return Phase::Queued;
        }
        let running = elapsed - self.queue_ms;
        if running < self.run_ms() {
            let step = running / self.step_ms.max(1);
            return Phase::InProgress((step * 100 / u64::from(self.steps.max(1))) as u32);
        }
        if self.will_fail {
            Phase::Failed
        } else {
            Phase::Completed
        }
    }

    fn to_json(&self, phase: Phase, style: VideoStatusStyle, base_url: &str) -> Value {
        let path = format!("{ROUTE}/{}", self.id);
        let started_at = (!matches!(phase, Phase::Queued))
            .then(|| self.created_at.saturating_add(self.queue_ms / 1000));
        let finished_at = self
            .created_at
            .saturating_add(self.queue_ms.saturating_add(self.run_ms()) / 1000);
        let error = match (phase, style) {
            (Phase::Failed, VideoStatusStyle::Openrouter) => json!(self.failure_message),
            (Phase::Failed, _) => {
                json!({"code": "generation_failed", "message": self.failure_message})
            }
            _ => Value::Null,
        };
        let output = match phase {
            Phase::Completed => json!({"videos": [{
                "url": format!("{base_url}{path}/content"),
                "content_type": "video/mp4",
                "seconds": self.seconds,
                "size": self.size,
            }]}),
            _ => Value::Null,
        };
        json!({
            "id": self.id,
            "object": "video.generation",
            "model": self.model,
            "status": phase.status(style),
            "progress": phase.progress(),
            "created_at": self.created_at,
            "started_at": started_at,
            "completed_at": matches!(phase, Phase::Completed | Phase::Failed).then_some(finished_at),
            "expires_at": null,
            "prompt": self.prompt,
            "seconds": self.seconds,
            "size": self.size,
            "output": output,
            "error": error,
            "polling_url": path,
            "urls": {
                "get": path,
                "cancel": format!("{path}/cancel"),
                "content": format!("{path}/content"),
            },
        })
    }
}

fn draw_failure(s: &MockSettings) -> bool {
    s.video_fail || (s.video_fail_rate > 0.0 && fastrand::f64() < s.video_fail_rate)
}

pub async fn submit(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<MockState>,
) -> HttpResponse {
    let request = match begin_json(&req, payload, &state, ROUTE).await {
        Ok(r) => r,
        Err(rejection) => return *rejection,
    };
    Counters::add(&state.counters.video_submits, 1);
    let result = match request.settings.video_mode {
        VideoMode::Async => submit_async(&request, &state),
        VideoMode::Sync => submit_sync(&request, &state).await,
    };
    match result {
        Ok(response) => response,
        Err(rejection) => *rejection,
    }
}

fn new_job(request: &JsonRequest) -> Result<VideoJob, Rejection> {
    let s = &request.settings;
    let model = request.model()?;
    let prompt = request
        .str_field("prompt")
        .ok_or_else(|| bad_request("`prompt` is required and must be a string", Some("prompt")))?;
    let seconds = match request.body.get("seconds").or(request.body.get("duration")) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "4".to_owned(),
    };
    let size = request
        .str_field("size")
        .or(request.str_field("resolution"))
        .unwrap_or("1280x720")
        .to_owned();
    Ok(VideoJob {
        id: format!("mockvid_{}", uuid::Uuid::new_v4().simple()),
        model,
        prompt: prompt.to_owned(),
        seconds,
        size,
        submitted: Instant::now(),
        created_at: unix_now(),
        queue_ms: s.video_queue_ms,
        steps: s.video_steps,
        step_ms: s.video_step_ms,
        will_fail: draw_failure(s),
        failure_message: quoting_credentials(
            "mock video generation failed".to_owned(),
            request.echoed_credentials.as_deref(),
        ),
        canceled: None,
    })
}

fn submit_async(
    request: &JsonRequest,
    state: &web::Data<MockState>,
) -> Result<HttpResponse, Rejection> {
    let job = new_job(request)?;
    // The submission answer always shows the queued state, whatever the timings.
    let body = job.to_json(
        Phase::Queued,
        request.settings.video_status_style,
        &state.base_url,
    );
    lock(&state.videos).insert(job.id.clone(), job);
    Ok(deliver(
        state,
        &request.settings,
        "application/json",
        Bytes::from(body.to_string()),
    ))
}

async fn submit_sync(
    request: &JsonRequest,
    state: &web::Data<MockState>,
) -> Result<HttpResponse, Rejection> {
    let s = &request.settings;
    let job = new_job(request)?;
    sleep_ms(job.run_ms()).await;
    if job.will_fail {
        let message = injected_message(500, request.echoed_credentials.as_deref(), 0);
        return Ok(json_response(
            500,
            &injected_error_body(s.error_style, 500, &message),
        ));
    }
    let bytes = mp4_bytes(s.video_bytes);
    Counters::add(&state.counters.bytes_sent, bytes.len() as u64);
    Ok(HttpResponse::Ok().content_type("video/mp4").body(bytes))
}

/// Runs the common start of a request on an existing job.
async fn begin_job(
    req: &HttpRequest,
    state: &MockState,
    route: &str,
) -> Result<(std::sync::Arc<MockSettings>, String), Rejection> {
    let settings = begin_bodyless(req, state, route).await?;
    let id = req.match_info().get("id").unwrap_or_default().to_owned();
    Ok((settings, id))
}

fn unknown_job(id: &str) -> HttpResponse {
    not_found(format!("No video generation with id `{id}`"))
}

pub async fn poll(req: HttpRequest, state: web::Data<MockState>) -> HttpResponse {
    let (s, id) = match begin_job(&req, &state, JOB_ROUTE).await {
        Ok(v) => v,
        Err(rejection) => return *rejection,
    };
    Counters::add(&state.counters.video_polls, 1);
    let body = {
        let jobs = lock(&state.videos);
        let Some(job) = jobs.get(&id) else {
            return unknown_job(&id);
        };
        job.to_json(
            job.phase(Instant::now()),
            s.video_status_style,
            &state.base_url,
        )
    };
    deliver(
        &state,
        &s,
        "application/json",
        Bytes::from(body.to_string()),
    )
}

pub async fn cancel(req: HttpRequest, state: web::Data<MockState>) -> HttpResponse {
    let (s, id) = match begin_job(&req, &state, CANCEL_ROUTE).await {
        Ok(v) => v,
        Err(rejection) => return *rejection,
    };
    Counters::add(&state.counters.video_cancels, 1);
    let body = {
        let mut jobs = lock(&state.videos);
        let Some(job) = jobs.get_mut(&id) else {
            return unknown_job(&id);
        };
        let phase = job.phase(Instant::now());
        if phase.is_terminal() {
            return openai_error(
                409,
                format!("Video generation `{id}` already finished ({:?})", phase),
                "invalid_request_error",
                None,
                Some("video_not_cancelable"),
            );
        }
        job.canceled = Some(phase.progress());
        job.to_json(
            Phase::Canceled(phase.progress()),
            s.video_status_style,
            &state.base_url,
        )
    };
    deliver(
        &state,
        &s,
        "application/json",
        Bytes::from(body.to_string()),
    )
}

pub async fn content(req: HttpRequest, state: web::Data<MockState>) -> HttpResponse {
    let (s, id) = match begin_job(&req, &state, CONTENT_ROUTE).await {
        Ok(v) => v,
        Err(rejection) => return *rejection,
    };
    Counters::add(&state.counters.video_content_fetches, 1);
    let phase = match lock(&state.videos).get(&id) {
        Some(job) => job.phase(Instant::now()),
        None => return unknown_job(&id),
    };
    if phase != Phase::Completed {
        return openai_error(
            409,
            format!("Video generation `{id}` is not completed"),
            "invalid_request_error",
            None,
            Some("video_not_ready"),
        );
    }
    let bytes = mp4_bytes(s.video_bytes);
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| parse_range(v, bytes.len()));
    let len = bytes.len();
    let response = match range {
        Some(RangeRequest::Satisfiable(start, end)) => {
            let part = bytes.slice(start..=end);
            Counters::add(&state.counters.bytes_sent, part.len() as u64);
            HttpResponse::PartialContent()
                .content_type("video/mp4")
                .insert_header((header::ACCEPT_RANGES, "bytes"))
                .insert_header((header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")))
                .body(part)
        }
        Some(RangeRequest::Unsatisfiable) => HttpResponse::RangeNotSatisfiable()
            .insert_header((header::CONTENT_RANGE, format!("bytes */{len}")))
            .finish(),
        Some(RangeRequest::Ignored) | None => {
            Counters::add(&state.counters.bytes_sent, len as u64);
            HttpResponse::Ok()
                .content_type("video/mp4")
                .insert_header((header::ACCEPT_RANGES, "bytes"))
                .body(bytes)
        }
    };
    response
}

#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// Inclusive byte positions.
    Satisfiable(usize, usize),
    Unsatisfiable,
    /// Malformed or multi-range: serve the whole body (RFC 9110 allows ignoring Range).
    Ignored,
}

fn parse_range(value: &str, len: usize) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignored;
    };
    if spec.contains(',') {
        return RangeRequest::Ignored;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeRequest::Ignored;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<usize>().ok();
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parse(last) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(n) if len > 0 => RangeRequest::Satisfiable(len.saturating_sub(n), len - 1),
            Some(_) => RangeRequest::Unsatisfiable,
            None => RangeRequest::Ignored,
        },
        (false, true) => match parse(first) {
            Some(a) if a < len => RangeRequest::Satisfiable(a, len - 1),
            Some(_) => RangeRequest::Unsatisfiable,
            None => RangeRequest::Ignored,
        },
        (false, false) => match (parse(first), parse(last)) {
            (Some(a), Some(b)) if a > b => RangeRequest::Ignored,
            (Some(a), Some(b)) if a < len => RangeRequest::Satisfiable(a, b.min(len - 1)),
            (Some(_), Some(_)) => RangeRequest::Unsatisfiable,
            _ => RangeRequest::Ignored,
        },
        (true, true) => RangeRequest::Ignored,
    }
}

/// A fake MP4 of exactly `len` bytes: a valid `ftyp` box, then one `mdat` box of filler.
/// Cached, since every job of a server serves the same bytes.
fn mp4_bytes(len: usize) -> Bytes {
    static CACHE: OnceLock<Mutex<Bytes>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(Bytes::new()));
    let mut cached = lock(cache);
    if cached.len() != len {
        *cached = build_mp4(len);
    }
    cached.clone()
}

fn build_mp4(len: usize) -> Bytes {
    const FTYP_LEN: usize = 24;
    let len = len.max(FTYP_LEN + 8);
    let mut out = BytesMut::with_capacity(len);
    out.put_u32(FTYP_LEN as u32);
    out.put_slice(b"ftyp");
    out.put_slice(b"isom"); // major brand
    out.put_u32(0x200); // minor version
    out.put_slice(b"isom");
    out.put_slice(b"mp41");
    let mdat_len = len - FTYP_LEN;
    out.put_u32(mdat_len as u32);
    out.put_slice(b"mdat");
    out.extend((0..mdat_len - 8).map(|i| (i % 251) as u8));
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn job(will_fail: bool) -> VideoJob {
        VideoJob {
            id: "mockvid_x".into(),
            model: "m".into(),
            prompt: "p".into(),
            seconds: "4".into(),
            size: "1280x720".into(),
            submitted: Instant::now(),
            created_at: 0,
            queue_ms: 100,
            steps: 4,
            step_ms: 100,
            will_fail,
            failure_message: "mock video generation failed".into(),
            canceled: None,
        }
    }

    #[test]
    fn phases_follow_time() {
        let j = job(false);
        let at = |ms| j.phase(j.submitted + Duration::from_millis(ms));
        assert_eq!(at(0), Phase::Queued);
        assert_eq!(at(150), Phase::InProgress(0));
        assert_eq!(at(250), Phase::InProgress(25));
        assert_eq!(at(450), Phase::InProgress(75));
        assert_eq!(at(500), Phase::Completed);
        let f = job(true);
        assert_eq!(
            f.phase(f.submitted + Duration::from_millis(900)),
            Phase::Failed
        );
    }

    #[test]
    fn status_vocabularies() {
        assert_eq!(
            Phase::Queued.status(VideoStatusStyle::Openrouter),
            "pending"
        );
        assert_eq!(
            Phase::Completed.status(VideoStatusStyle::Replicate),
            "succeeded"
        );
        assert_eq!(
            Phase::Canceled(3).status(VideoStatusStyle::Openrouter),
            "cancelled"
        );
        assert_eq!(
            Phase::InProgress(3).status(VideoStatusStyle::Fal),
            "IN_PROGRESS"
        );
    }

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=0-99", 1000), Satisfiable(0, 99));
        assert_eq!(parse_range("bytes=900-", 1000), Satisfiable(900, 999));
        assert_eq!(parse_range("bytes=-100", 1000), Satisfiable(900, 999));
        assert_eq!(parse_range("bytes=990-2000", 1000), Satisfiable(990, 999));
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 1000), Ignored);
        assert_eq!(parse_range("bytes=0-1,4-5", 1000), Ignored);
        assert_eq!(parse_range("items=0-1", 1000), Ignored);
    }

    #[test]
    fn mp4_starts_with_ftyp_and_has_the_asked_length() {
        let m = build_mp4(4096);
        assert_eq!(m.len(), 4096);
        assert_eq!(&m[4..8], b"ftyp");
        assert_eq!(&m[28..32], b"mdat");
        assert_eq!(
            u32::from_be_bytes([m[24], m[25], m[26], m[27]]) as usize,
            4096 - 24
        );
    }
}
