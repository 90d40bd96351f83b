//! One video job's life with its backend.
//!
//! 1. **Submit** on a lease from the Router (weighted choice, fallback to other routes, waiting
//!    while every backend is busy, rate limited or loading). The answer decides the mode: JSON
//!    with an `id` is an asynchronous job; `video/*` or other binary is the video itself
//!    (a synchronous backend, whose call the lease covers until the last byte is stored).
//! 2. **Poll** an asynchronous job on its route with a growing interval, mapping the vendor's
//!    status, and **download** the content when it is done. Each poll and the download take a
//!    lease of their own, so rate limits and in-flight caps hold; nothing holds a lease while
//!    waiting between polls.
//!
//! Every write is conditional on the job still being unfinished, so a cancel that lands first
//! wins. A call whose row shows a submission in flight but no backend job id (the router died
//! during a synchronous call, or before it stored an async job's id) is sent once more; a second
//! interruption fails the job.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};
use tracing::{debug, info, warn, Instrument};

use super::content::save;
use super::shared::Shared;
use super::store::{JobRow, StoredContent};
use super::{now_ms, JobStatus};
use crate::config::{ModelType, RouteDef, VideoMode, VideoRouteOptions};
use crate::engines::ApiOp;
use crate::error::ApiError;
use crate::mesh::{Acquire, AcquireRoute, GetTable, Lease, Outcome, RouteError, RoutingHints};
use crate::record::{RequestCtx, ServedBy, VideoJobEnd};
use crate::redact::Redactor;
use crate::relay::error_body::shorten;
use crate::relay::fallback::{run_attempts, Attempt, NoLease};
use crate::relay::upstream::{
    classify, is_local_failure, read_body, request, BodyStream, CallError, Forwarded,
};
use crate::telemetry::{job_call_span, JobTrace};

/// Largest JSON answer (job objects) read from a video backend.
const MAX_JOB_JSON: usize = 1024 * 1024;
const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);

type Db<T> = Result<T, sqlx::Error>;

/// Run a job until it is finished, another runner holds it, or this runner is stopped. With
/// tracing on, the work is one span linked to the request that created the job, and each
/// backend call a child span of it (whose context the call carries upstream).
pub async fn drive(shared: Rc<Shared>, id: String, created_in: Option<JobTrace>) {
    let span = crate::telemetry::job_span(&id, created_in.as_ref());
    let driven = drive_job(&shared, &id).instrument(span).await;
    if let Err(e) = driven {
        // The job keeps its claim and is picked up again by a later maintenance pass.
        warn!(job = %id, error = %e, "video job interrupted by a database error");
        return;
    }
    clean_up_if_ended(&shared, &id).await;
}

/// Once a job has ended, remove what interrupted downloads of it left in storage.
pub async fn clean_up_if_ended(sh: &Shared, id: &str) {
    if let Ok(Some(job)) = sh.store.get(id).await {
        if job.status.is_terminal() {
            super::content::remove_parts(&sh.settings.storage_dir, id).await;
        }
    }
}

async fn drive_job(sh: &Shared, id: &str) -> Db<()> {
    let Some(job) = sh.store.get(id).await? else {
        return Ok(());
    };
    if job.status.is_terminal() {
        return Ok(());
    }
    if job.backend_job_id.is_none() {
        if job.submitted_at.is_some() {
            if job.resubmitted >= 1 {
                fail(
                    sh,
                    &job,
                    "interrupted",
                    "The router stopped twice while the backend was generating this video; it was not sent again.",
                )
                .await?;
                return Ok(());
            }
            info!(job = %id, "resubmitting a video job whose backend call was interrupted");
            sh.store.mark_resubmitted(id, now_ms()).await?;
        }
        if !submit(sh, &job).await? {
            return Ok(());
        }
    }
    let Some(job) = sh.store.get(id).await? else {
        return Ok(());
    };
    if job.status.is_terminal() {
        return Ok(());
    }
    poll(sh, &job).await
}

/// What a submission came to.
enum Submitted {
    /// An asynchronous backend job to poll.
    Async { backend_id: String, answer: Value },
    /// The video itself, stored.
    Video(StoredContent),
    /// Another route may do better.
    Retry { code: String, message: String },
    /// The request itself was refused, or the backend's answer makes no sense.
    Fatal { code: String, message: String },
}

/// Why a submission ended without a backend job to poll.
enum NotSubmitted {
    /// The job failed with this code and message.
    Failed {
        code: String,
        message: String,
    },
    /// Nothing more to do here: the job was canceled, taken over or finished, or the router is
    /// stopping (the job then resumes at the next start).
    Stopped,
    Db(sqlx::Error),
}

impl NotSubmitted {
    fn failed(code: impl Into<String>, message: impl Into<String>) -> NotSubmitted {
        NotSubmitted::Failed {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Submit the job; `Ok(true)` when there is an asynchronous backend job to poll. Routes are
/// tried by the relay's retry executor (attempts, retry budget and back-off as for requests);
/// waiting for capacity while every backend is busy does not count as an attempt.
async fn submit(sh: &Shared, job: &JobRow) -> Db<bool> {
    let mut body: Map<String, Value> = match serde_json::from_str(&job.request_body) {
        Ok(Value::Object(map)) => map,
        _ => {
            fail(
                sh,
                job,
                "invalid_request",
                "The stored request is not a JSON object.",
            )
            .await?;
            return Ok(false);
        }
    };
    // The router's own business: the backend must not call the client back itself.
    body.remove("callback_url");
    let body = &body;
    let submitted = run_attempts(
        &sh.retry,
        &mut (),
        |exclude| lease_for_submission(sh, job, exclude),
        |lease| async move {
            submit_on(sh, job, body, lease)
                .await
                .unwrap_or_else(|e| Attempt::Fail(NotSubmitted::Db(e)))
        },
    )
    .await;
    match submitted {
        Ok(has_backend_job) => Ok(has_backend_job),
        Err(NotSubmitted::Stopped) => Ok(false),
        Err(NotSubmitted::Db(e)) => Err(e),
        Err(NotSubmitted::Failed { code, message }) => {
            fail(sh, job, &code, &message).await?;
            Ok(false)
        }
    }
}

/// A lease on a route not in `exclude` for the job's submission. While every backend is busy
/// the job stays queued, sleeping the Retry-After, until the queue timeout fails it.
async fn lease_for_submission(
    sh: &Shared,
    job: &JobRow,
    exclude: Vec<usize>,
) -> Result<Lease, NoLease<NotSubmitted>> {
    let deadline = job.created_at + sh.settings.queue_timeout.as_millis() as i64;
    loop {
        if !still_unfinished(sh, &job.id)
            .await
            .map_err(|e| NoLease::Stop(NotSubmitted::Db(e)))?
        {
            return Err(NoLease::Stop(NotSubmitted::Stopped));
        }
        let acquired = sh
            .router
            .send(Acquire {
                model: job.model.clone(),
                op: ApiOp::Video,
                est_tokens: 1,
                exclude: exclude.clone(),
                // The key's model list was checked when the job was created.
                caller: None,
                hints: RoutingHints::default(),
            })
            .await;
        match acquired {
            // The router is gone: the system is stopping.
            Err(_) => return Err(NoLease::Stop(NotSubmitted::Stopped)),
            Ok(Ok(lease)) => return Ok(lease),
            Ok(Err(RouteError::NoCapacity { retry_after, .. })) => {
                if now_ms() > deadline {
                    return Err(NoLease::Stop(NotSubmitted::failed(
                        "no_capacity",
                        "No backend could take this job before the queue timeout.",
                    )));
                }
                actix_rt::time::sleep(
                    retry_after.clamp(Duration::from_millis(100), Duration::from_secs(30)),
                )
                .await;
            }
            Ok(Err(RouteError::Exhausted { .. })) => {
                return Err(NoLease::NoRouteLeft(NotSubmitted::failed(
                    "upstream_error",
                    "Every route of the model failed.",
                )))
            }
            Ok(Err(other)) => {
                let e = ApiError::from(other);
                let code = e.wire_code().unwrap_or("model_unavailable").to_string();
                return Err(NoLease::Stop(NotSubmitted::failed(code, e.message)));
            }
        }
    }
}

/// One submission attempt on `lease`: `Done(true)` for an asynchronous backend job to poll,
/// `Done(false)` when the video is stored or the job was canceled meanwhile.
async fn submit_on(
    sh: &Shared,
    job: &JobRow,
    body: &Map<String, Value>,
    lease: Lease,
) -> Db<Attempt<bool, NotSubmitted>> {
    let route = lease.route().clone();
    let sync_declared = route.video.mode == VideoMode::Sync;
    if !sh
        .store
        .mark_submitted(&job.id, &route.name, sync_declared, now_ms())
        .await?
    {
        return Ok(Attempt::Fail(NotSubmitted::Stopped));
    }
    let mut sent = body.clone();
    sent.insert(
        "model".into(),
        Value::String(route.provider_model_id.clone()),
    );
    let call = call_submit(sh, lease, &route, &sent, job);
    Ok(match call.instrument(job_call_span("submit")).await {
        Submitted::Async { backend_id, answer } => {
            if !sh
                .store
                .mark_async(&job.id, &route.name, &backend_id, now_ms())
                .await?
            {
                // Canceled while the submission was in flight: cancel the backend's job too.
                cancel_backend_job(sh, &job.model, &route.name, &backend_id).await;
                return Ok(Attempt::Done(false));
            }
            info!(job = %job.id, route = %route.name, backend_job = %backend_id, "video job accepted by an asynchronous backend");
            apply_progress(sh, &job.id, &answer).await?;
            Attempt::Done(true)
        }
        Submitted::Video(content) => {
            complete(sh, job, &route.name, content, "sync").await?;
            Attempt::Done(false)
        }
        Submitted::Fatal { code, message } => Attempt::Fail(NotSubmitted::Failed { code, message }),
        Submitted::Retry { code, message } => {
            debug!(job = %job.id, route = %route.name, %message, "video submission failed; trying another route");
            Attempt::Retry(NotSubmitted::Failed { code, message })
        }
    })
}

async fn call_submit(
    sh: &Shared,
    mut lease: Lease,
    route: &RouteDef,
    body: &Map<String, Value>,
    job: &JobRow,
) -> Submitted {
    let fwd = forwarded(job);
    // A synchronous backend answers only when the video is done: the whole generation is the
    // time to the response headers.
    let req = request(
        &sh.client,
        actix_web::http::Method::POST,
        &lease,
        &route.video.submit_path,
        &fwd,
        sh.settings.sync_timeout,
    )
    .content_type("application/json");
    let sent = req
        .send_body(Bytes::from(serde_json::to_vec(body).unwrap_or_default()))
        .await;
    let mut upstream = match classify(&lease, sent).await {
        Ok(u) => u,
        Err(CallError::Retryable { outcome, error }) => {
            lease.finish(outcome);
            return Submitted::Retry {
                code: error.wire_code().unwrap_or("upstream_error").to_string(),
                message: error.message,
            };
        }
        // The router's own resources ran out: the job is not at fault, try again later.
        Err(CallError::Local { error }) => {
            lease.finish(Outcome::LocalFailure);
            return Submitted::Retry {
                code: error.wire_code().unwrap_or("router_overloaded").to_string(),
                message: error.message,
            };
        }
        Err(CallError::Fatal { outcome, error }) => {
            lease.finish(outcome);
            return Submitted::Fatal {
                code: error.wire_code().unwrap_or("invalid_request").to_string(),
                message: format!("The backend refused the job: {}", error.message),
            };
        }
    };
    let content_type = header_text(&upstream.headers, "content-type")
        .unwrap_or("application/octet-stream")
        .to_ascii_lowercase();
    let is_json = content_type.starts_with("application/json") || content_type.contains("+json");
    let fatal = |lease: &mut Lease, message: String| {
        lease.finish(Outcome::Failure);
        Submitted::Fatal {
            code: "upstream_invalid_response".into(),
            message,
        }
    };
    match (route.video.mode, is_json) {
        (VideoMode::Sync, true) => {
            return fatal(
                &mut lease,
                "The backend answered JSON, but its route is declared `video_mode: sync`.".into(),
            )
        }
        (VideoMode::Async, false) => {
            return fatal(
                &mut lease,
                format!("The backend answered `{content_type}`, but its route is declared `video_mode: async`."),
            )
        }
        _ => {}
    }
    if is_json {
        let answer = match read_json(&mut upstream.body, sh.timeouts.for_route(route).idle).await {
            Ok(v) => v,
            Err(message) => {
                lease.finish(Outcome::Failure);
                return Submitted::Retry {
                    code: "upstream_invalid_response".into(),
                    message,
                };
            }
        };
        return match backend_job_id(&answer) {
            Some(backend_id) => {
                lease.finish(Outcome::Success);
                Submitted::Async { backend_id, answer }
            }
            None => fatal(
                &mut lease,
                "The backend answered JSON without a job id (`id`).".into(),
            ),
        };
    }
    let stored = save(
        &sh.settings,
        &job.id,
        &mut upstream.body,
        &content_type,
        sh.timeouts.for_route(route).idle,
    )
    .await;
    match stored {
        Ok(content) => {
            lease.finish(Outcome::Success);
            Submitted::Video(content)
        }
        Err(message) => {
            lease.finish(Outcome::Failure);
            Submitted::Retry {
                code: "upstream_error".into(),
                message,
            }
        }
    }
}

/// Poll an asynchronous backend job until it ends, then download its video.
async fn poll(sh: &Shared, job: &JobRow) -> Db<()> {
    let (Some(backend_id), Some(route_name)) = (&job.backend_job_id, &job.route_name) else {
        fail(
            sh,
            job,
            "internal_error",
            "The job has no backend job to follow.",
        )
        .await?;
        return Ok(());
    };
    let mut interval = sh.settings.poll_interval;
    // Failed polls since the last good one (a long job may see scattered failures).
    let mut failing = job.poll_failures > 0;
    loop {
        actix_rt::time::sleep(interval).await;
        interval = interval.mul_f64(1.5).min(sh.settings.poll_max_interval);
        if !still_unfinished(sh, &job.id).await? {
            return Ok(());
        }
        let Some(lease) = route_lease(sh, job, route_name).await? else {
            return Ok(());
        };
        let redactor = lease.redactor().clone();
        let path = VideoRouteOptions::fill(&lease.route().video.poll_path, backend_id);
        let answer = match get_json(sh, lease, &path, job)
            .instrument(job_call_span("poll"))
            .await
        {
            Reply::Ok(v) => {
                if std::mem::take(&mut failing) {
                    sh.store.reset_poll_failures(&job.id).await?;
                }
                v
            }
            Reply::Busy => continue,
            Reply::Gone => {
                fail(
                    sh,
                    job,
                    "backend_job_lost",
                    &format!("The backend no longer knows job `{backend_id}`."),
                )
                .await?;
                return Ok(());
            }
            Reply::Error(message) => {
                failing = true;
                if poll_failed(sh, job, &message).await? {
                    return Ok(());
                }
                continue;
            }
        };
        let status = answer
            .get("status")
            .and_then(Value::as_str)
            .and_then(JobStatus::from_vendor);
        match status {
            Some(JobStatus::Completed) => match download(sh, job, route_name, backend_id)
                .instrument(job_call_span("download"))
                .await?
            {
                Downloaded::Stored(content) => {
                    complete(sh, job, route_name, content, "async").await?;
                    return Ok(());
                }
                Downloaded::NotYet => {}
                Downloaded::Failed(message) => {
                    failing = true;
                    if poll_failed(sh, job, &message).await? {
                        return Ok(());
                    }
                }
                Downloaded::Stop => return Ok(()),
            },
            Some(JobStatus::Failed) => {
                let (code, message) = backend_error(&answer, &redactor);
                fail(sh, job, &code, &message).await?;
                return Ok(());
            }
            Some(JobStatus::Canceled) => {
                finish(
                    sh,
                    job,
                    JobStatus::Canceled,
                    "canceled_by_backend",
                    "The backend canceled the job.",
                )
                .await?;
                return Ok(());
            }
            Some(JobStatus::Expired) => {
                fail(
                    sh,
                    job,
                    "backend_expired",
                    "The backend expired the job before its video was fetched.",
                )
                .await?;
                return Ok(());
            }
            Some(JobStatus::Queued | JobStatus::InProgress) => {
                apply_progress(sh, &job.id, &answer).await?;
            }
            None => {
                let answer = shorten(&redactor.redact(&answer.to_string()), 500);
                debug!(job = %job.id, %answer, "video backend answered an unknown status")
            }
        }
    }
}

/// Count a failed poll; `Ok(true)` when that was one too many and the job is failed.
async fn poll_failed(sh: &Shared, job: &JobRow, message: &str) -> Db<bool> {
    let failures = sh.store.count_poll_failure(&job.id, now_ms()).await?;
    debug!(job = %job.id, failures, %message, "video poll failed");
    if failures >= i64::from(sh.settings.max_poll_failures) {
        fail(sh, job, "upstream_unreachable", message).await?;
        return Ok(true);
    }
    Ok(false)
}

enum Downloaded {
    Stored(StoredContent),
    /// The backend says the content is not ready yet (409): poll again.
    NotYet,
    Failed(String),
    /// The route is gone or the router is stopping.
    Stop,
}

async fn download(sh: &Shared, job: &JobRow, route_name: &str, backend_id: &str) -> Db<Downloaded> {
    let Some(mut lease) = route_lease(sh, job, route_name).await? else {
        return Ok(Downloaded::Stop);
    };
    let path = VideoRouteOptions::fill(&lease.route().video.content_path, backend_id);
    let fwd = forwarded(job);
    let limits = sh.timeouts.for_route(lease.route());
    let req = request(
        &sh.client,
        actix_web::http::Method::GET,
        &lease,
        &path,
        &fwd,
        limits.headers,
    );
    let sent = req.send().await;
    if let Ok(resp) = &sent {
        if resp.status().as_u16() == 409 {
            lease.finish(Outcome::ClientError);
            return Ok(Downloaded::NotYet);
        }
    }
    let mut upstream = match classify(&lease, sent).await {
        Ok(u) => u,
        Err(e) => {
            lease.finish(e.outcome());
            let message = match e {
                CallError::Retryable { error, .. }
                | CallError::Fatal { error, .. }
                | CallError::Local { error } => error.message,
            };
            return Ok(Downloaded::Failed(message));
        }
    };
    let content_type = header_text(&upstream.headers, "content-type")
        .unwrap_or("video/mp4")
        .to_ascii_lowercase();
    match save(
        &sh.settings,
        &job.id,
        &mut upstream.body,
        &content_type,
        limits.idle,
    )
    .await
    {
        Ok(content) => {
            lease.finish(Outcome::Success);
            Ok(Downloaded::Stored(content))
        }
        Err(message) => {
            lease.finish(Outcome::Failure);
            Ok(Downloaded::Failed(message))
        }
    }
}

/// A lease on the route holding the job, waiting out capacity limits; `None` when the route
/// is gone (the job is failed) or the router is stopping.
async fn route_lease(sh: &Shared, job: &JobRow, route_name: &str) -> Db<Option<Lease>> {
    loop {
        let acquired = sh
            .router
            .send(AcquireRoute {
                model: job.model.clone(),
                op: ApiOp::Video,
                route: route_name.to_string(),
                caller: None,
            })
            .await;
        match acquired {
            Err(_) => return Ok(None),
            Ok(Ok(lease)) => return Ok(Some(lease)),
            Ok(Err(RouteError::NoCapacity { retry_after, .. })) => {
                actix_rt::time::sleep(
                    retry_after.clamp(Duration::from_millis(100), Duration::from_secs(30)),
                )
                .await;
                if !still_unfinished(sh, &job.id).await? {
                    return Ok(None);
                }
            }
            Ok(Err(_)) => {
                fail(
                    sh,
                    job,
                    "route_unavailable",
                    &format!("Route `{route_name}` of model `{}`, which holds this job, is no longer configured.", job.model),
                )
                .await?;
                return Ok(None);
            }
        }
    }
}

enum Reply {
    Ok(Value),
    /// The backend is rate limiting: not a failure of the job.
    Busy,
    /// 404: the backend does not know the job.
    Gone,
    Error(String),
}

async fn get_json(sh: &Shared, mut lease: Lease, path: &str, job: &JobRow) -> Reply {
    let fwd = forwarded(job);
    let limits = sh.timeouts.for_route(lease.route());
    let req = request(
        &sh.client,
        actix_web::http::Method::GET,
        &lease,
        path,
        &fwd,
        limits.headers,
    );
    let sent = req.send().await;
    if let Ok(resp) = &sent {
        if resp.status().as_u16() == 404 {
            lease.finish(Outcome::ClientError);
            return Reply::Gone;
        }
    }
    let mut upstream = match classify(&lease, sent).await {
        Ok(u) => u,
        Err(e) => {
            let outcome = e.outcome();
            lease.finish(outcome);
            if matches!(outcome, Outcome::RateLimited { .. }) {
                return Reply::Busy;
            }
            return match e {
                CallError::Retryable { error, .. }
                | CallError::Fatal { error, .. }
                | CallError::Local { error } => Reply::Error(error.message),
            };
        }
    };
    match read_json(&mut upstream.body, limits.idle).await {
        Ok(v) => {
            lease.finish(Outcome::Success);
            Reply::Ok(v)
        }
        Err(message) => {
            lease.finish(Outcome::Failure);
            Reply::Error(message)
        }
    }
}

async fn read_json(body: &mut BodyStream, idle: Duration) -> Result<Value, String> {
    let bytes = read_body(body, MAX_JOB_JSON, idle)
        .await
        .map_err(|e| e.message)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err("The video backend answered something that is not a JSON object.".into()),
    }
}

/// Ask the backend to cancel its job (best effort: the job is canceled for the client anyway).
pub async fn cancel_on_backend(sh: &Shared, job: &JobRow) {
    if let (Some(backend_id), Some(route)) = (&job.backend_job_id, &job.route_name) {
        cancel_backend_job(sh, &job.model, route, backend_id).await;
    }
}

async fn cancel_backend_job(sh: &Shared, model: &str, route_name: &str, backend_id: &str) {
    let acquired = sh
        .router
        .send(AcquireRoute {
            model: model.to_string(),
            op: ApiOp::Video,
            route: route_name.to_string(),
            caller: None,
        })
        .await;
    let Ok(Ok(mut lease)) = acquired else {
        debug!(backend_job = %backend_id, "no lease to cancel the backend's job");
        return;
    };
    let path = VideoRouteOptions::fill(&lease.route().video.cancel_path, backend_id);
    let req = request(
        &sh.client,
        actix_web::http::Method::POST,
        &lease,
        &path,
        &Forwarded::default(),
        CANCEL_TIMEOUT,
    );
    match req.send().await {
        Ok(resp) if resp.status().is_success() => lease.finish(Outcome::Success),
        Ok(resp) => {
            debug!(backend_job = %backend_id, status = resp.status().as_u16(), "backend did not cancel its job");
            lease.finish(Outcome::ClientError);
        }
        Err(e) => {
            debug!(backend_job = %backend_id, error = %e, "could not reach the backend to cancel");
            lease.finish(if is_local_failure(&e) {
                Outcome::LocalFailure
            } else {
                Outcome::Failure
            });
        }
    }
}

/// Record the backend's progress; its queued/in-progress status only ever moves forward.
async fn apply_progress(sh: &Shared, id: &str, answer: &Value) -> Db<()> {
    let Some(job) = sh.store.get(id).await? else {
        return Ok(());
    };
    let reported = answer
        .get("status")
        .and_then(Value::as_str)
        .and_then(JobStatus::from_vendor)
        .unwrap_or(job.status);
    let status = match (job.status, reported) {
        (JobStatus::InProgress, _) | (_, JobStatus::InProgress) => JobStatus::InProgress,
        _ => JobStatus::Queued,
    };
    let progress = answer
        .get("progress")
        .and_then(Value::as_f64)
        .map_or(job.progress, |p| p.clamp(0.0, 100.0) as i64)
        .max(job.progress);
    let seconds = match answer.get("seconds").or_else(|| answer.get("duration")) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    if status != job.status
        || progress != job.progress
        || (job.seconds.is_none() && seconds.is_some())
    {
        sh.store
            .set_progress(id, status, progress, seconds.as_deref(), now_ms())
            .await?;
    }
    Ok(())
}

/// The job still needs work, and from this runner: a runner whose claim ran out (it was
/// paused, or cut off from the database) and was taken over stops at its next step.
async fn still_unfinished(sh: &Shared, id: &str) -> Db<bool> {
    let Some(job) = sh.store.get(id).await? else {
        return Ok(false);
    };
    if job.status.is_terminal() {
        return Ok(false);
    }
    if job.lease_owner.as_deref() != Some(sh.owner.as_str()) {
        info!(job = %id, owner = job.lease_owner.as_deref().unwrap_or("-"), "video job taken over by another runner; stopping here");
        return Ok(false);
    }
    Ok(true)
}

async fn complete(
    sh: &Shared,
    job: &JobRow,
    route: &str,
    content: StoredContent,
    mode: &str,
) -> Db<()> {
    let now = now_ms();
    let expires_at = now + sh.settings.retention.as_millis() as i64;
    if !sh
        .store
        .complete(&job.id, &content, mode, expires_at, now)
        .await?
    {
        // Canceled meanwhile: the video is not wanted.
        super::content::remove(&sh.settings.storage_dir, &content.path).await;
        return Ok(());
    }
    info!(job = %job.id, route, bytes = content.bytes, mode, "video job completed");
    let seconds = sh
        .store
        .get(&job.id)
        .await?
        .and_then(|j| j.seconds)
        .and_then(|s| s.trim().parse::<f64>().ok());
    let mut ctx = job_record(sh, job, route, JobStatus::Completed).await;
    ctx.record.video_seconds = seconds;
    ctx.complete(200, "success");
    Ok(())
}

async fn fail(sh: &Shared, job: &JobRow, code: &str, message: &str) -> Db<()> {
    finish(sh, job, JobStatus::Failed, code, message).await
}

async fn finish(sh: &Shared, job: &JobRow, status: JobStatus, code: &str, message: &str) -> Db<()> {
    if !sh
        .store
        .finish_unsuccessfully(&job.id, status, code, message, now_ms())
        .await?
    {
        return Ok(());
    }
    info!(job = %job.id, status = status.as_str(), code, %message, "video job ended");
    let route = job.route_name.clone().unwrap_or_default();
    let mut ctx = job_record(sh, job, &route, status).await;
    ctx.record.error = Some(message.to_string());
    ctx.record.error_code = Some(code.to_string());
    ctx.complete(502, "error");
    Ok(())
}

/// The record a finished job leaves (its id as request id), carrying the video seconds that
/// are priced by the model and route that made the video; the create request left its own
/// record (202, no units, not priced) when it was accepted.
async fn job_record(sh: &Shared, job: &JobRow, route: &str, ended: JobStatus) -> RequestCtx {
    let mut ctx = RequestCtx::new(job.id.clone(), ApiOp::Video, sh.sink.clone());
    let lived_ms = u64::try_from(now_ms().saturating_sub(job.created_at)).unwrap_or(0);
    ctx.record.video_job = Some(VideoJobEnd {
        status: ended.as_str(),
        duration: Duration::from_millis(lived_ms),
    });
    ctx.record.model = Some(job.model.clone());
    ctx.record.model_type = Some(ModelType::Video);
    ctx.record.route = (!route.is_empty()).then(|| route.to_string());
    ctx.record.api_key_id = job.client_key.clone();
    if let Ok(table) = sh.router.send(GetTable).await {
        if let Some(entry) = table.resolve(&job.model) {
            if let Some(index) = entry.def.routes.iter().position(|r| r.name == route) {
                ctx.record.endpoint = entry.endpoints[index]
                    .as_ref()
                    .map(|h| h.endpoint.name.clone());
                ctx.record.served_by = Some(ServedBy {
                    model: entry.def.clone(),
                    route_index: index,
                });
            }
        }
    }
    ctx
}

fn forwarded(job: &JobRow) -> Forwarded {
    Forwarded {
        request_id: job.request_id.clone().unwrap_or_else(|| job.id.clone()),
        attribution: Vec::new(),
    }
}

fn header_text<'a>(headers: &'a actix_web::http::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The job id in a submission answer: `id`, or fal's `request_id`, or `job_id`.
fn backend_job_id(answer: &Value) -> Option<String> {
    ["id", "request_id", "job_id"]
        .iter()
        .find_map(|key| match answer.get(*key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
}

/// `(code, message)` from a failed job's `error` (a string or `{code, message}`), with the
/// router's backend credentials taken out: both end up in `video_jobs`, webhooks and logs.
fn backend_error(answer: &Value, redactor: &Redactor) -> (String, String) {
    let (code, message) = match answer.get("error") {
        Some(Value::String(s)) => ("generation_failed".into(), s.clone()),
        Some(Value::Object(o)) => (
            o.get("code")
                .map(|c| match c {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| "generation_failed".into()),
            o.get("message")
                .and_then(Value::as_str)
                .unwrap_or("The backend failed to generate the video.")
                .to_string(),
        ),
        _ => (
            "generation_failed".into(),
            "The backend failed to generate the video.".into(),
        ),
    };
    (redactor.redact_owned(code), redactor.redact_owned(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn job_ids_and_errors_in_vendor_shapes() {
        assert_eq!(backend_job_id(&json!({"id": "a"})).as_deref(), Some("a"));
        assert_eq!(
            backend_job_id(&json!({"request_id": "r"})).as_deref(),
            Some("r")
        );
        assert_eq!(backend_job_id(&json!({"id": 42})).as_deref(), Some("42"));
        assert_eq!(backend_job_id(&json!({"data": []})), None);
        let none = Redactor::default();
        assert_eq!(
            backend_error(&json!({"error": "boom"}), &none),
            ("generation_failed".into(), "boom".into())
        );
        assert_eq!(
            backend_error(
                &json!({"error": {"code": "nsfw", "message": "refused"}}),
                &none
            ),
            ("nsfw".into(), "refused".into())
        );
    }

    #[test]
    fn failed_jobs_never_store_a_backend_key() {
        let key = "sk-BACKEND-video-0a1b2c3d4e";
        let redactor = Redactor::new([key]);
        let answers = [
            json!({"error": format!("Incorrect API key provided: {key}")}),
            json!({"error": {"code": key, "message": format!("Bearer {key} refused")}}),
        ];
        for answer in answers {
            let (code, message) = backend_error(&answer, &redactor);
            assert!(
                !code.contains(key) && !message.contains(key),
                "{code} {message}"
            );
        }
    }
}
