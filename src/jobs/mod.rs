//! Durable video generation jobs: `POST /v1/video/generations` answers 202, the work runs here.
//!
//! - [`store`]: the `video_jobs` table (SQLite or PostgreSQL through sqlx).
//! - [`runner`]: the [`JobRunner`] actor, the only part that talks to video backends: it
//!   submits jobs, polls asynchronous backends, holds synchronous calls, downloads videos,
//!   expires them and sends webhooks. It resumes every unfinished job when the router starts.
//! - [`drive`]: one job's life with a backend (submission, polling, download).
//! - `shared`: what every job's future shares (table, router, clients, settings).
//! - [`webhook`]: signed callbacks with retries.
//! - [`content`]: videos on disk and byte ranges.
//!
//! HTTP handlers (`api/video.rs`) only read and write rows and tell the runner what changed.

pub mod content;
mod drive;
pub mod runner;
mod shared;
pub mod store;
pub mod webhook;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix::{Actor, Addr, Arbiter};
use serde_json::{json, Value};

pub use runner::{JobCanceled, JobCreated, JobRunner};
pub use store::{JobRow, JobStore};

use crate::media::VideoSettings;
use crate::mesh::RouterActor;
use crate::record::RecordSink;
use crate::relay::{RetryPolicy, Timeouts};

/// A job's public status: OpenAI's four video states plus `canceled` and `expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    InProgress,
    Completed,
    Failed,
    Canceled,
    Expired,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::InProgress => "in_progress",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
            JobStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "in_progress" => JobStatus::InProgress,
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            "canceled" => JobStatus::Canceled,
            "expired" => JobStatus::Expired,
            _ => return None,
        })
    }

    /// A vendor's status name (OpenAI, OpenRouter, Replicate, fal, …) in our vocabulary.
    pub fn from_vendor(s: &str) -> Option<JobStatus> {
        Some(
            match s
                .trim()
                .to_ascii_lowercase()
                .replace([' ', '-'], "_")
                .as_str()
            {
                "queued" | "pending" | "starting" | "in_queue" | "submitted" | "waiting"
                | "created" => JobStatus::Queued,
                "in_progress" | "processing" | "running" | "started" | "generating" => {
                    JobStatus::InProgress
                }
                "completed" | "succeeded" | "success" | "done" | "finished" | "ok" => {
                    JobStatus::Completed
                }
                "failed" | "error" | "errored" | "failure" => JobStatus::Failed,
                "canceled" | "cancelled" | "aborted" => JobStatus::Canceled,
                "expired" => JobStatus::Expired,
                _ => return None,
            },
        )
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::InProgress)
    }

    fn webhook_type(self) -> Option<&'static str> {
        Some(match self {
            JobStatus::Completed => "video.generation.completed",
            JobStatus::Failed => "video.generation.failed",
            JobStatus::Canceled => "video.generation.canceled",
            JobStatus::Expired => "video.generation.expired",
            _ => return None,
        })
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The status a client sees: a completed job past its retention is expired even before the
/// runner's sweep has written it.
pub fn visible_status(job: &JobRow, now: i64) -> JobStatus {
    match (job.status, job.expires_at) {
        (JobStatus::Completed, Some(at)) if at <= now => JobStatus::Expired,
        (status, _) => status,
    }
}

/// The job object clients see (OpenAI's `VideoResource` field names plus `urls`). `api` is the
/// API prefix the client used (`/v1` or `/api/v1`), so the links work as given.
pub fn job_object(job: &JobRow, api: &str, now: i64) -> Value {
    let status = visible_status(job, now);
    let base = format!("{api}/video/generations/{}", job.id);
    let secs = |ms: Option<i64>| ms.map(|v| v / 1000);
    let seconds_number = job
        .seconds
        .as_deref()
        .and_then(|s| s.trim().parse::<f64>().ok());
    let output = (status == JobStatus::Completed).then(|| {
        json!({"videos": [{
            "url": format!("{base}/content"),
            "content_type": job.content_type.as_deref().unwrap_or("video/mp4"),
            "bytes": job.content_bytes,
            "seconds": seconds_number,
            "size": job.size,
        }]})
    });
    let usage = (status == JobStatus::Completed).then(|| json!({"seconds": seconds_number}));
    let error = job
        .error_code
        .as_ref()
        .map(|code| json!({"code": code, "message": job.error_message.as_deref().unwrap_or("")}));
    json!({
        "id": job.id,
        "object": "video.generation",
        "model": job.model,
        "status": status.as_str(),
        "progress": job.progress.clamp(0, 100),
        "created_at": job.created_at / 1000,
        "started_at": secs(job.started_at),
        "completed_at": secs(job.completed_at),
        "expires_at": secs(job.expires_at),
        "seconds": job.seconds,
        "size": job.size,
        "prompt": job.prompt,
        "output": output,
        "usage": usage,
        "error": error,
        "urls": {
            "get": base,
            "cancel": format!("{base}/cancel"),
            "content": format!("{base}/content"),
        },
    })
}

/// What handlers need to work with jobs.
#[derive(Clone)]
pub struct Jobs {
    pub store: JobStore,
    pub runner: Addr<JobRunner>,
    pub settings: Arc<VideoSettings>,
    /// This router's runner identity (the owner of the jobs it creates).
    pub owner: String,
}

/// Everything the runner is built from.
pub struct RunnerConfig {
    pub store: JobStore,
    pub router: Addr<RouterActor>,
    pub settings: VideoSettings,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
    pub sink: Arc<dyn RecordSink>,
    /// This router's identity among replicas ([`crate::replica`]): the runner's owner name
    /// unless `VIDEO_RUNNER_ID` gives another.
    pub replica: String,
}

/// Create the storage directory and start the runner on its own arbiter, so downloads and
/// webhooks never compete with request handling for a worker thread.
pub fn start(config: RunnerConfig) -> std::io::Result<Jobs> {
    std::fs::create_dir_all(&config.settings.storage_dir).map_err(|e| {
        std::io::Error::other(format!(
            "video storage directory {}: {e}",
            config.settings.storage_dir.display()
        ))
    })?;
    let owner = config
        .settings
        .runner_id
        .clone()
        .unwrap_or_else(|| config.replica.clone());
    let settings = Arc::new(config.settings);
    let store = config.store.clone();
    let for_actor = shared::Shared::parts(
        config.store,
        config.router,
        settings.clone(),
        config.timeouts,
        config.retry,
        config.sink,
        owner.clone(),
    );
    let arbiter = Arbiter::new();
    let runner = JobRunner::start_in_arbiter(&arbiter.handle(), move |_| JobRunner::new(for_actor));
    Ok(Jobs {
        store,
        runner,
        settings,
        owner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_statuses_map_to_ours() {
        for (vendor, ours) in [
            ("queued", JobStatus::Queued),
            ("pending", JobStatus::Queued),
            ("starting", JobStatus::Queued),
            ("IN_QUEUE", JobStatus::Queued),
            ("processing", JobStatus::InProgress),
            ("IN_PROGRESS", JobStatus::InProgress),
            ("succeeded", JobStatus::Completed),
            ("COMPLETED", JobStatus::Completed),
            ("FAILED", JobStatus::Failed),
            ("cancelled", JobStatus::Canceled),
            ("CANCELED", JobStatus::Canceled),
            ("expired", JobStatus::Expired),
        ] {
            assert_eq!(JobStatus::from_vendor(vendor), Some(ours), "{vendor}");
        }
        assert_eq!(JobStatus::from_vendor("thinking"), None);
        assert!(JobStatus::Canceled.is_terminal());
        assert!(!JobStatus::InProgress.is_terminal());
    }
}
