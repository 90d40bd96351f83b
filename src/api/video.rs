//! Video generation jobs (OpenAI's `VideoResource` fields, with cancel, 202 + `Location` and
//! signed webhooks as OpenRouter, fal and Replicate offer them). Handlers only read and write job
//! rows and tell the job runner what changed; the runner does all the talking to backends.
//!
//! - `POST /v1/video/generations` → 202 + `Location` + the job object
//! - `GET /v1/video/generations?limit&after&order` → a page of jobs
//! - `GET /v1/video/generations/{id}` → the job object
//! - `GET /v1/video/generations/{id}/content` → the video (Range supported; 409 before
//!   completion, 410 after expiry)
//! - `POST /v1/video/generations/{id}/cancel` → the canceled job, or 409 if it had ended
//! - `DELETE /v1/video/generations/{id}` → the job and its video are deleted (409 while running)
//!
//! With client keys configured, a job belongs to the key that created it: other keys get 404s
//! for it and do not see it in lists (admin keys see every job).

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::new_ctx;
use crate::api::state::AppState;
use crate::caller::Caller;
use crate::engines::ApiOp;
use crate::error::{ApiError, ErrorCode};
use crate::jobs::content::{parse_range, read_range, ByteRange};
use crate::jobs::store::{Canceled, CapReached, Inserted, JobRow, NewJob, UnfinishedCaps};
use crate::jobs::{job_object, now_ms, visible_status, JobCanceled, JobCreated, JobStatus, Jobs};
use crate::mesh::wrong_endpoint;
use crate::mesh::{CapacityReason, Health, RouteError};

const MAX_PROMPT_CHARS: usize = 32_000;
const MAX_SECONDS: f64 = 3600.0;
const MAX_CALLBACK_URL: usize = 2048;
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// What validation learned about a create request.
#[derive(Debug)]
pub struct VideoFacts {
    pub model: String,
    pub prompt: String,
    pub seconds: Option<String>,
    pub size: Option<String>,
    pub callback_url: Option<String>,
}

pub fn validate(obj: &Map<String, Value>) -> Result<VideoFacts, ApiError> {
    let model = super::required_model(obj)?;
    let prompt = match obj.get("prompt") {
        Some(Value::String(p)) if p.is_empty() => {
            return Err(ApiError::bad_request(
                "`prompt` must not be empty.",
                Some("prompt"),
            ))
        }
        Some(Value::String(p)) if p.chars().count() > MAX_PROMPT_CHARS => {
            return Err(ApiError::bad_request(
                format!("`prompt` is longer than {MAX_PROMPT_CHARS} characters."),
                Some("prompt"),
            ))
        }
        Some(Value::String(p)) => p.clone(),
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "Missing required parameter: `prompt`.",
                Some("prompt"),
            ))
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "`prompt` must be a string.",
                Some("prompt"),
            ))
        }
    };
    // OpenAI sends `seconds` as a string, OpenRouter `duration` as an integer.
    let mut seconds = None;
    for key in ["seconds", "duration"] {
        let value = match obj.get(key) {
            None | Some(Value::Null) => continue,
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        match value {
            Some(v) if v > 0.0 && v <= MAX_SECONDS => {
                seconds.get_or_insert_with(|| format_seconds(v));
            }
            _ => {
                return Err(ApiError::bad_request(
                    format!(
                        "`{key}` must be a positive number of seconds (at most {MAX_SECONDS})."
                    ),
                    Some(key),
                ))
            }
        }
    }
    let size = match obj.get("size").or_else(|| obj.get("resolution")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= 32 => {
            Some(s.trim().to_string())
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "`size` must be a string such as `1280x720`.",
                Some("size"),
            ))
        }
    };
    match obj.get("n") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_u64() == Some(1) => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "`n` must be 1: each job generates one video.",
                Some("n"),
            ))
        }
    }
    let callback_url = match obj.get("callback_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => Some(check_callback_url(u)?),
        Some(_) => {
            return Err(ApiError::bad_request(
                "`callback_url` must be a string.",
                Some("callback_url"),
            ))
        }
    };
    Ok(VideoFacts {
        model,
        prompt,
        seconds,
        size,
        callback_url,
    })
}

fn format_seconds(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{}", v as u64)
    } else {
        format!("{v}")
    }
}

fn check_callback_url(raw: &str) -> Result<String, ApiError> {
    let bad = |why: &str| {
        Err(ApiError::bad_request(
            format!("`callback_url` {why}."),
            Some("callback_url"),
        ))
    };
    if raw.len() > MAX_CALLBACK_URL {
        return bad("is too long");
    }
    match url::Url::parse(raw.trim()) {
        Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some() => {
            Ok(u.to_string())
        }
        Ok(_) => bad("must be an http or https URL"),
        Err(_) => bad("is not a valid URL"),
    }
}

/// The API prefix the client used, so links in answers work as given.
fn api_prefix(req: &HttpRequest) -> &'static str {
    if req.path().starts_with("/api/v1") {
        "/api/v1"
    } else {
        "/v1"
    }
}

fn store_error(e: sqlx::Error) -> ApiError {
    tracing::error!(error = %e, "video job store failed");
    ApiError::new(
        ErrorCode::JobStoreUnavailable,
        "The video job store is unavailable; retry shortly.",
    )
    .with_retry_after(Duration::from_secs(5))
}

/// When to try again after a cap on unfinished jobs: generations take minutes, so sooner is
/// pointless, and a client polling its jobs learns earlier when one ends.
const UNFINISHED_CAP_RETRY_AFTER: Duration = Duration::from_secs(30);

fn too_many_unfinished(cap: CapReached) -> ApiError {
    let message = match cap {
        CapReached::PerKey(n) => format!(
            "This key already has {n} unfinished video generation jobs, the most allowed; wait for one to finish or cancel one."
        ),
        CapReached::Overall(n) => format!(
            "The router already holds {n} unfinished video generation jobs, the most allowed; retry later."
        ),
    };
    ApiError::new(ErrorCode::TooManyUnfinishedJobs, message)
        .with_retry_after(UNFINISHED_CAP_RETRY_AFTER)
}

fn job_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::VideoNotFound,
        format!("No video generation job `{id}`."),
    )
    .with_param("id")
}

/// The client key of the request, when keys are configured.
fn caller(req: &HttpRequest) -> Option<Arc<Caller>> {
    req.extensions().get::<Arc<Caller>>().cloned()
}

/// Whose jobs a request may see: `None` = every job (no keys configured, or an admin key).
fn visible_owner(caller: Option<&Caller>) -> Option<&str> {
    caller.filter(|c| !c.admin).map(|c| c.key_id.as_str())
}

/// The job, if it exists and this request may see it (others' jobs are simply not found).
async fn visible_job(req: &HttpRequest, jobs: &Jobs, id: &str) -> Result<JobRow, ApiError> {
    let row = jobs
        .store
        .get(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| job_not_found(id))?;
    let who = caller(req);
    match visible_owner(who.as_deref()) {
        Some(key) if row.client_key.as_deref() != Some(key) => Err(job_not_found(id)),
        _ => Ok(row),
    }
}

/// Check, without taking capacity, that the model exists, is a video model and has a backend
/// that is (or may soon be) able to work: jobs wait in the queue for capacity, not for a
/// backend that is still loading.
async fn check_model(
    state: &AppState,
    name: &str,
    caller: Option<&Caller>,
) -> Result<String, ApiError> {
    let table = super::models::table(state).await?;
    let entry = table
        .resolve(name)
        .ok_or_else(|| ApiError::model_not_found(name))?;
    let def = &entry.def;
    if let Some(c) = caller.filter(|c| !c.may_use(def)) {
        return Err(ApiError::model_not_allowed(name, &c.key_id));
    }
    if !def.accepts(ApiOp::Video) {
        return Err(wrong_endpoint(&def.id, def.model_type));
    }
    if !def.routes.iter().any(|r| r.kind.serves(ApiOp::Video)) {
        let kinds = def.routes.iter().map(|r| r.kind_name.clone()).collect();
        return Err(RouteError::Unsupported {
            model: def.id.clone(),
            kinds,
            op: ApiOp::Video,
        }
        .into());
    }
    let healths: Vec<Health> = def
        .routes
        .iter()
        .zip(&entry.endpoints)
        .filter(|(r, _)| r.weight > 0.0 && r.kind.serves(ApiOp::Video))
        .filter_map(|(_, h)| h.as_ref().map(|h| h.endpoint.health()))
        .collect();
    let unavailable = |reason, secs| {
        Err(ApiError::from(RouteError::NoCapacity {
            model: def.id.clone(),
            reason,
            retry_after: Duration::from_secs(secs),
        }))
    };
    if healths.is_empty() {
        return unavailable(CapacityReason::NoEnabledRoute, 30);
    }
    if healths.iter().all(|h| *h == Health::Starting) {
        return unavailable(CapacityReason::Loading, 5);
    }
    if !healths
        .iter()
        .any(|h| matches!(h, Health::Ready | Health::Degraded))
    {
        return unavailable(CapacityReason::Unavailable, 10);
    }
    Ok(def.id.clone())
}

pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    jobs: web::Data<Jobs>,
) -> Result<HttpResponse, ApiError> {
    let mut ctx = new_ctx(&req, &state, ApiOp::Video);
    let result = async {
        // The permit holds the body's share of the JSON budget as long as the map lives.
        let (map, _permit) =
            super::body::read_json_object(&req, payload, state.settings.max_body_bytes).await?;
        let facts = validate(&map)?;
        let idempotency_key = match req.headers().get("idempotency-key") {
            None => None,
            Some(v) => match v.to_str() {
                Ok(k) if !k.trim().is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY => {
                    Some(k.trim().to_string())
                }
                _ => {
                    return Err(ApiError::bad_request(
                        format!(
                        "`Idempotency-Key` must be 1 to {MAX_IDEMPOTENCY_KEY} visible characters."
                    ),
                        None,
                    ))
                }
            },
        };
        if let Some(url) = &facts.callback_url {
            use crate::jobs::webhook::check_callback;
            use crate::netguard::Refusal;
            if let Err(Refusal::NotPublic(target)) =
                check_callback(url, jobs.settings.webhook_allow_private).await
            {
                return Err(ApiError::new(
                    ErrorCode::CallbackUrlNotAllowed,
                    format!("`callback_url` leads to {target}, a loopback, private or link-local address."),
                )
                .with_param("callback_url"));
            }
        }
        let who = caller(&req);
        let model = check_model(&state, &facts.model, who.as_deref()).await?;
        let client_key = who.as_ref().map(|c| c.key_id.clone());
        ctx.record.model = Some(model.clone());
        ctx.record.model_type = Some(crate::config::ModelType::Video);
        let now = now_ms();
        let job = NewJob {
            id: format!("vgen_{}", uuid::Uuid::now_v7().simple()),
            model,
            prompt: facts.prompt,
            seconds: facts.seconds,
            size: facts.size,
            request_body: Value::Object(map).to_string(),
            request_id: ctx.request_id().to_string(),
            // Scoped to the key: two clients choosing the same idempotency key never meet.
            idempotency_key: idempotency_key
                .map(|k| format!("{}:{k}", client_key.as_deref().unwrap_or("-"))),
            client_key,
            callback_url: facts.callback_url,
            owner: jobs.owner.clone(),
            lease_until: now + jobs.settings.claim.as_millis() as i64,
            now,
        };
        let caps = UnfinishedCaps {
            per_key: jobs.settings.max_unfinished_per_key,
            overall: jobs.settings.max_unfinished,
        };
        let row = match jobs.store.insert(&job, caps).await.map_err(store_error)? {
            Inserted::New(row) => {
                let created_in = crate::telemetry::JobTrace::of(&ctx.trace.span);
                jobs.runner.do_send(JobCreated(row.id.clone(), created_in));
                row
            }
            Inserted::Existing(row) => row,
            Inserted::Refused(cap) => return Err(too_many_unfinished(cap)),
        };
        Ok(row)
    }
    .await;
    match result {
        Ok(row) => {
            ctx.complete(202, "success");
            let prefix = api_prefix(&req);
            let poll_after = jobs.settings.poll_interval.as_secs().max(1);
            Ok(HttpResponse::Accepted()
                .insert_header(("location", format!("{prefix}/video/generations/{}", row.id)))
                .insert_header(("retry-after", poll_after.to_string()))
                .json(job_object(&row, prefix, now_ms())))
        }
        Err(e) => {
            ctx.fail(&e);
            Err(e)
        }
    }
}

pub async fn get(
    req: HttpRequest,
    path: web::Path<String>,
    jobs: web::Data<Jobs>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let row = visible_job(&req, &jobs, &id).await?;
    Ok(HttpResponse::Ok().json(job_object(&row, api_prefix(&req), now_ms())))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<u32>,
    after: Option<String>,
    order: Option<String>,
}

pub async fn list(
    req: HttpRequest,
    query: web::Query<ListQuery>,
    jobs: web::Data<Jobs>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "`limit` must be from 1 to 100.",
            Some("limit"),
        ));
    }
    let ascending = match query.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`order` must be `asc` or `desc`.",
                Some("order"),
            ))
        }
    };
    let after = query.after.as_deref().filter(|a| !a.is_empty());
    let mut rows = jobs
        .store
        .list(
            limit + 1,
            after,
            ascending,
            visible_owner(caller(&req).as_deref()),
        )
        .await
        .map_err(store_error)?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let now = now_ms();
    let prefix = api_prefix(&req);
    let data: Vec<Value> = rows.iter().map(|r| job_object(r, prefix, now)).collect();
    Ok(HttpResponse::Ok().json(json!({
        "object": "list",
        "data": data,
        "first_id": rows.first().map(|r| r.id.clone()),
        "last_id": rows.last().map(|r| r.id.clone()),
        "has_more": has_more,
    })))
}

pub async fn cancel(
    req: HttpRequest,
    path: web::Path<String>,
    jobs: web::Data<Jobs>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    // Another key's job is not found, and so cannot be canceled.
    visible_job(&req, &jobs, &id).await?;
    match jobs
        .store
        .cancel(&id, now_ms())
        .await
        .map_err(store_error)?
    {
        Canceled::Now(row) => {
            jobs.runner.do_send(JobCanceled(id));
            Ok(HttpResponse::Ok().json(job_object(&row, api_prefix(&req), now_ms())))
        }
        Canceled::AlreadyFinished(row) => Err(ApiError::new(
            ErrorCode::VideoNotCancelable,
            format!(
                "Video generation job `{id}` has already ended ({}); it cannot be canceled.",
                visible_status(&row, now_ms()).as_str()
            ),
        )),
        Canceled::NotFound => Err(job_not_found(&id)),
    }
}

pub async fn delete(
    req: HttpRequest,
    path: web::Path<String>,
    jobs: web::Data<Jobs>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let row = visible_job(&req, &jobs, &id).await?;
    if !row.status.is_terminal() {
        return Err(ApiError::new(
            ErrorCode::VideoNotDeletable,
            format!(
                "Video generation job `{id}` is {}; cancel it before deleting it.",
                row.status.as_str()
            ),
        ));
    }
    match jobs.store.delete_finished(&id).await.map_err(store_error)? {
        Some(deleted) => {
            if let Some(name) = &deleted.content_path {
                crate::jobs::content::remove(&jobs.settings.storage_dir, name).await;
            }
            Ok(HttpResponse::Ok()
                .json(json!({"id": id, "object": "video.generation.deleted", "deleted": true})))
        }
        // Deleted meanwhile by another request.
        None => Err(job_not_found(&id)),
    }
}

pub async fn content(
    req: HttpRequest,
    path: web::Path<String>,
    jobs: web::Data<Jobs>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let row = visible_job(&req, &jobs, &id).await?;
    let gone = || {
        ApiError::new(
            ErrorCode::VideoExpired,
            format!("The video of job `{id}` has expired and was deleted."),
        )
    };
    match visible_status(&row, now_ms()) {
        JobStatus::Completed => {}
        JobStatus::Expired => return Err(gone()),
        other => {
            return Err(ApiError::new(
                ErrorCode::VideoNotReady,
                format!(
                "Video generation job `{id}` is {}; its content is available once it is completed.",
                other.as_str()
            ),
            ))
        }
    }
    let Some(name) = row.content_path.as_deref() else {
        return Err(gone());
    };
    let file = match tokio::fs::File::open(jobs.settings.storage_dir.join(name)).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(gone()),
        Err(e) => {
            tracing::error!(job = %id, error = %e, "could not open a stored video");
            return Err(ApiError::internal("The stored video could not be read."));
        }
    };
    let len = file
        .metadata()
        .await
        .map_err(|_| ApiError::internal("The stored video could not be read."))?
        .len();
    let content_type = row.content_type.as_deref().unwrap_or("video/mp4");
    let range = parse_range(
        req.headers().get("range").and_then(|v| v.to_str().ok()),
        len,
    );
    let (mut resp, start, count) = match range {
        ByteRange::Full => (HttpResponse::Ok(), 0, len),
        ByteRange::Part(first, last) => {
            let mut resp = HttpResponse::PartialContent();
            resp.insert_header(("content-range", format!("bytes {first}-{last}/{len}")));
            (resp, first, last - first + 1)
        }
        ByteRange::Unsatisfiable => {
            let e = ApiError::new(
                ErrorCode::RangeNotSatisfiable,
                format!("The requested range is outside the video's {len} bytes."),
            );
            return Ok(HttpResponse::RangeNotSatisfiable()
                .insert_header(("content-range", format!("bytes */{len}")))
                .json(e.body()));
        }
    };
    let body = read_range(file, start, count)
        .await
        .map_err(|_| ApiError::internal("The stored video could not be read."))?;
    Ok(resp
        .content_type(content_type)
        .insert_header(("accept-ranges", "bytes"))
        .body(actix_web::body::SizedStream::new(count, Box::pin(body))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn validation() {
        let f = validate(&obj(json!({"model": "m", "prompt": "p", "seconds": "8"}))).unwrap();
        assert_eq!(f.seconds.as_deref(), Some("8"));
        let f = validate(&obj(
            json!({"model": "m", "prompt": "p", "duration": 5, "resolution": "720p"}),
        ))
        .unwrap();
        assert_eq!(f.seconds.as_deref(), Some("5"));
        assert_eq!(f.size.as_deref(), Some("720p"));
        let f = validate(&obj(
            json!({"model": "m", "prompt": "p", "callback_url": "https://x.example/hook"}),
        ))
        .unwrap();
        assert_eq!(f.callback_url.as_deref(), Some("https://x.example/hook"));
        for bad in [
            json!({"prompt": "p"}),
            json!({"model": "m"}),
            json!({"model": "m", "prompt": ""}),
            json!({"model": "m", "prompt": "p", "seconds": -1}),
            json!({"model": "m", "prompt": "p", "seconds": "soon"}),
            json!({"model": "m", "prompt": "p", "n": 2}),
            json!({"model": "m", "prompt": "p", "callback_url": "ftp://x/y"}),
            json!({"model": "m", "prompt": "p", "callback_url": "not a url"}),
        ] {
            assert_eq!(
                validate(&obj(bad.clone())).unwrap_err().status().as_u16(),
                400,
                "{bad}"
            );
        }
    }
}
