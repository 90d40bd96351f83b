//! The `video_jobs` table. Every state change is a conditional UPDATE (`… AND status IN
//! (unfinished)`), so a cancel from a handler and a completion from the runner cannot
//! overwrite each other: whichever lands first wins, the other affects no row.
//!
//! Claims (`lease_owner`, `lease_until`) say which router's runner works on a job; a runner
//! renews its claims while it lives, and a job whose claim ran out may be taken by another
//! runner (another replica, or this router after a restart under a new identity).

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::JobStatus;
use crate::store::DbKind;

const COLUMNS: &str =
    "id, model, status, progress, prompt, seconds, size, request_body, request_id, client_key, \
    idempotency_key, route_name, mode, backend_job_id, submitted_at, resubmitted, poll_failures, \
    error_code, error_message, created_at, started_at, completed_at, expires_at, updated_at, \
    content_path, content_type, content_bytes, callback_url, webhook_status, webhook_attempts, \
    lease_owner, lease_until";

const UNFINISHED: &str = "status IN ('queued', 'in_progress')";

/// One job as stored.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: String,
    pub model: String,
    pub status: JobStatus,
    pub progress: i64,
    pub prompt: String,
    pub seconds: Option<String>,
    pub size: Option<String>,
    /// The client's request body, sent again on resubmission.
    pub request_body: String,
    pub request_id: Option<String>,
    /// The client key that created the job (its name or digest id, never the key); with keys
    /// configured, only that key (or an admin key) sees the job.
    pub client_key: Option<String>,
    pub idempotency_key: Option<String>,
    pub route_name: Option<String>,
    /// `async` or `sync`, once the backend's answer told.
    pub mode: Option<String>,
    pub backend_job_id: Option<String>,
    /// Set when a submission call starts; with no backend job id it means a call was running.
    pub submitted_at: Option<i64>,
    pub resubmitted: i64,
    pub poll_failures: i64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub updated_at: i64,
    pub content_path: Option<String>,
    pub content_type: Option<String>,
    pub content_bytes: Option<i64>,
    pub callback_url: Option<String>,
    /// `pending`, `delivered` or `failed`; `None` when there is no webhook to send.
    pub webhook_status: Option<String>,
    pub webhook_attempts: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
}

impl JobRow {
    fn from_row(row: &AnyRow) -> Result<JobRow, sqlx::Error> {
        let status: String = row.try_get("status")?;
        Ok(JobRow {
            id: row.try_get("id")?,
            model: row.try_get("model")?,
            status: JobStatus::parse(&status).unwrap_or(JobStatus::Failed),
            progress: row.try_get("progress")?,
            prompt: row.try_get("prompt")?,
            seconds: row.try_get("seconds")?,
            size: row.try_get("size")?,
            request_body: row.try_get("request_body")?,
            request_id: row.try_get("request_id")?,
            client_key: row.try_get("client_key")?,
            idempotency_key: row.try_get("idempotency_key")?,
            route_name: row.try_get("route_name")?,
            mode: row.try_get("mode")?,
            backend_job_id: row.try_get("backend_job_id")?,
            submitted_at: row.try_get("submitted_at")?,
            resubmitted: row.try_get("resubmitted")?,
            poll_failures: row.try_get("poll_failures")?,
            error_code: row.try_get("error_code")?,
            error_message: row.try_get("error_message")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            completed_at: row.try_get("completed_at")?,
            expires_at: row.try_get("expires_at")?,
            updated_at: row.try_get("updated_at")?,
            content_path: row.try_get("content_path")?,
            content_type: row.try_get("content_type")?,
            content_bytes: row.try_get("content_bytes")?,
            callback_url: row.try_get("callback_url")?,
            webhook_status: row.try_get("webhook_status")?,
            webhook_attempts: row.try_get("webhook_attempts")?,
            lease_owner: row.try_get("lease_owner")?,
            lease_until: row.try_get("lease_until")?,
        })
    }
}

/// What a new job starts with.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub model: String,
    pub prompt: String,
    pub seconds: Option<String>,
    pub size: Option<String>,
    pub request_body: String,
    pub request_id: String,
    pub client_key: Option<String>,
    /// Already scoped to the client key, so two clients' keys never collide.
    pub idempotency_key: Option<String>,
    pub callback_url: Option<String>,
    pub owner: String,
    pub lease_until: i64,
    pub now: i64,
}

pub enum Inserted {
    New(JobRow),
    /// A job with the same idempotency key exists: the client is retrying its create.
    Existing(JobRow),
    /// Not inserted: a cap on unfinished jobs is reached.
    Refused(CapReached),
}

/// Most unfinished (queued or running) jobs allowed at once.
#[derive(Debug, Clone, Copy)]
pub struct UnfinishedCaps {
    /// Per client key; jobs without a key count as one key.
    pub per_key: u32,
    pub overall: u32,
}

/// Which cap refused a create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapReached {
    PerKey(u32),
    Overall(u32),
}

/// Serialises creates on PostgreSQL (`pg_advisory_xact_lock`), so concurrent creates from any
/// replica see each other's rows when they count. An arbitrary constant: "svid" in ASCII.
const CREATE_LOCK: i64 = 0x7376_6964;

/// Unfinished jobs of the key `$1` (no key counts as one key).
const SAME_KEY: &str = "COALESCE(client_key, '') = COALESCE($1, '')";

pub enum Canceled {
    Now(JobRow),
    AlreadyFinished(JobRow),
    NotFound,
}

/// Where a completed video is.
#[derive(Debug, Clone)]
pub struct StoredContent {
    pub path: String,
    pub content_type: String,
    pub bytes: i64,
}

#[derive(Clone)]
pub struct JobStore {
    pool: AnyPool,
    kind: DbKind,
}

impl JobStore {
    pub fn new(pool: AnyPool, kind: DbKind) -> JobStore {
        JobStore { pool, kind }
    }

    /// Insert a new job unless one with its idempotency key exists or a cap in `caps` is
    /// reached. The count and the insert are one statement, and on PostgreSQL creates also
    /// take one lock, so concurrent creates (from any replica) cannot overshoot a cap.
    pub async fn insert(
        &self,
        job: &NewJob,
        caps: UnfinishedCaps,
    ) -> Result<Inserted, sqlx::Error> {
        if let Some(key) = &job.idempotency_key {
            if let Some(existing) = self.by_idempotency_key(key).await? {
                return Ok(Inserted::Existing(existing));
            }
        }
        let result = self.insert_within_caps(job, caps).await;
        match result {
            Ok(true) => {}
            Ok(false) => return Ok(Inserted::Refused(self.cap_reached(job, caps).await?)),
            // Two creates with one key raced: the unique index let one through.
            Err(e) if job.idempotency_key.is_some() => {
                if let Some(key) = &job.idempotency_key {
                    if let Some(existing) = self.by_idempotency_key(key).await? {
                        return Ok(Inserted::Existing(existing));
                    }
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        }
        let row = self
            .get(&job.id)
            .await?
            .ok_or_else(|| sqlx::Error::RowNotFound)?;
        Ok(Inserted::New(row))
    }

    /// The capped insert; false when a cap refused it.
    async fn insert_within_caps(
        &self,
        job: &NewJob,
        caps: UnfinishedCaps,
    ) -> Result<bool, sqlx::Error> {
        let sql = format!(
            "INSERT INTO video_jobs (client_key, id, model, status, progress, prompt, seconds, size, \
             request_body, request_id, idempotency_key, callback_url, created_at, updated_at, \
             lease_owner, lease_until) \
             SELECT $1, $2, $3, 'queued', 0, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13 \
             WHERE (SELECT COUNT(*) FROM video_jobs WHERE {UNFINISHED} AND {SAME_KEY}) < $14 \
             AND (SELECT COUNT(*) FROM video_jobs WHERE {UNFINISHED}) < $15"
        );
        let mut tx = self.pool.begin().await?;
        if self.kind == DbKind::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(CREATE_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        let inserted = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&job.client_key)
            .bind(&job.id)
            .bind(&job.model)
            .bind(&job.prompt)
            .bind(&job.seconds)
            .bind(&job.size)
            .bind(&job.request_body)
            .bind(&job.request_id)
            .bind(&job.idempotency_key)
            .bind(&job.callback_url)
            .bind(job.now)
            .bind(&job.owner)
            .bind(job.lease_until)
            .bind(i64::from(caps.per_key))
            .bind(i64::from(caps.overall))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(inserted > 0)
    }

    /// Which cap refused `job` (counted again after the refusal: only for the message).
    async fn cap_reached(
        &self,
        job: &NewJob,
        caps: UnfinishedCaps,
    ) -> Result<CapReached, sqlx::Error> {
        let of_key: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM video_jobs WHERE {UNFINISHED} AND {SAME_KEY}"
        )))
        .bind(&job.client_key)
        .fetch_one(&self.pool)
        .await?;
        Ok(if of_key >= i64::from(caps.per_key) {
            CapReached::PerKey(caps.per_key)
        } else {
            CapReached::Overall(caps.overall)
        })
    }

    async fn by_idempotency_key(&self, key: &str) -> Result<Option<JobRow>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM video_jobs WHERE idempotency_key = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(JobRow::from_row).transpose()
    }

    pub async fn get(&self, id: &str) -> Result<Option<JobRow>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM video_jobs WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(JobRow::from_row).transpose()
    }

    /// Up to `limit` jobs after the cursor `after` (an id), newest first unless `ascending`,
    /// only those of `client_key` when given. Ids are time-ordered (UUIDv7), so id order is
    /// creation order.
    pub async fn list(
        &self,
        limit: u32,
        after: Option<&str>,
        ascending: bool,
        client_key: Option<&str>,
    ) -> Result<Vec<JobRow>, sqlx::Error> {
        let (cmp, dir) = if ascending {
            (">", "ASC")
        } else {
            ("<", "DESC")
        };
        // $1 = limit, $2 = cursor, $3 = key; absent filters compare a value with itself.
        let cursor = if after.is_some() {
            format!("id {cmp} $2")
        } else {
            "$2 = $2".to_string()
        };
        let owner = if client_key.is_some() {
            "client_key = $3"
        } else {
            "$3 = $3"
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM video_jobs WHERE {cursor} AND {owner} ORDER BY id {dir} LIMIT $1"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit))
            .bind(after.unwrap_or(""))
            .bind(client_key.unwrap_or(""))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(JobRow::from_row).collect()
    }

    /// Delete a finished job's row; returns it (for its file) when one was deleted.
    pub async fn delete_finished(&self, id: &str) -> Result<Option<JobRow>, sqlx::Error> {
        let Some(row) = self.get(id).await? else {
            return Ok(None);
        };
        let n = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM video_jobs WHERE id = $1 AND NOT {UNFINISHED}"
        )))
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok((n > 0).then_some(row))
    }

    /// Cancel an unfinished job; a webhook becomes due when the job has a callback.
    pub async fn cancel(&self, id: &str, now: i64) -> Result<Canceled, sqlx::Error> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE video_jobs SET status = 'canceled', updated_at = $2, \
             webhook_status = CASE WHEN callback_url IS NULL THEN NULL ELSE 'pending' END \
             WHERE id = $1 AND {UNFINISHED}"
        )))
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(match (done, self.get(id).await?) {
            (_, None) => Canceled::NotFound,
            (0, Some(row)) => Canceled::AlreadyFinished(row),
            (_, Some(row)) => Canceled::Now(row),
        })
    }

    /// A submission call is starting on `route`.
    pub async fn mark_submitted(
        &self,
        id: &str,
        route: &str,
        in_progress: bool,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let status = if in_progress { "in_progress" } else { "queued" };
        self.update(
            "SET route_name = $2, submitted_at = $3, status = $4, \
             started_at = CASE WHEN $4 = 'in_progress' THEN $3 ELSE started_at END, updated_at = $3",
            id,
            |q| q.bind(route.to_string()).bind(now).bind(status.to_string()),
        )
        .await
    }

    /// The previous run died during a submission; this run sends it once more.
    pub async fn mark_resubmitted(&self, id: &str, now: i64) -> Result<bool, sqlx::Error> {
        self.update(
            "SET resubmitted = resubmitted + 1, submitted_at = NULL, updated_at = $2",
            id,
            |q| q.bind(now),
        )
        .await
    }

    /// The backend accepted the job asynchronously under `backend_id`.
    pub async fn mark_async(
        &self,
        id: &str,
        route: &str,
        backend_id: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        self.update(
            "SET route_name = $2, backend_job_id = $3, mode = 'async', updated_at = $4",
            id,
            |q| {
                q.bind(route.to_string())
                    .bind(backend_id.to_string())
                    .bind(now)
            },
        )
        .await
    }

    pub async fn set_progress(
        &self,
        id: &str,
        status: JobStatus,
        progress: i64,
        seconds: Option<&str>,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        self.update(
            "SET status = $2, progress = $3, poll_failures = 0, \
             seconds = COALESCE(seconds, $4), \
             started_at = CASE WHEN $2 = 'in_progress' AND started_at IS NULL THEN $5 ELSE started_at END, \
             updated_at = $5",
            id,
            |q| {
                q.bind(status.as_str().to_string())
                    .bind(progress)
                    .bind(seconds.map(str::to_string))
                    .bind(now)
            },
        )
        .await
    }

    /// A poll succeeded: earlier failures no longer count towards giving up.
    pub async fn reset_poll_failures(&self, id: &str) -> Result<bool, sqlx::Error> {
        self.update("SET poll_failures = 0", id, |q| q).await
    }

    pub async fn count_poll_failure(&self, id: &str, now: i64) -> Result<i64, sqlx::Error> {
        self.update(
            "SET poll_failures = poll_failures + 1, updated_at = $2",
            id,
            |q| q.bind(now),
        )
        .await?;
        Ok(self.get(id).await?.map_or(0, |r| r.poll_failures))
    }

    pub async fn complete(
        &self,
        id: &str,
        content: &StoredContent,
        mode: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        self.update(
            "SET status = 'completed', progress = 100, content_path = $2, content_type = $3, \
             content_bytes = $4, mode = $5, completed_at = $6, expires_at = $7, updated_at = $6, \
             started_at = COALESCE(started_at, $6), \
             webhook_status = CASE WHEN callback_url IS NULL THEN NULL ELSE 'pending' END",
            id,
            |q| {
                q.bind(content.path.clone())
                    .bind(content.content_type.clone())
                    .bind(content.bytes)
                    .bind(mode.to_string())
                    .bind(now)
                    .bind(expires_at)
            },
        )
        .await
    }

    /// Finish an unfinished job as `failed` (or `canceled` when the backend canceled it).
    pub async fn finish_unsuccessfully(
        &self,
        id: &str,
        status: JobStatus,
        code: &str,
        message: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        self.update(
            "SET status = $2, error_code = $3, error_message = $4, completed_at = $5, updated_at = $5, \
             webhook_status = CASE WHEN callback_url IS NULL THEN NULL ELSE 'pending' END",
            id,
            |q| {
                q.bind(status.as_str().to_string())
                    .bind(code.to_string())
                    .bind(message.to_string())
                    .bind(now)
            },
        )
        .await
    }

    /// Run `UPDATE video_jobs {set} WHERE id = $1 AND unfinished`; `$2…` are bound by `bind`.
    async fn update<'q, F>(&self, set: &str, id: &'q str, bind: F) -> Result<bool, sqlx::Error>
    where
        F: FnOnce(
            sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
        ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    {
        let sql = format!("UPDATE video_jobs {set} WHERE id = $1 AND {UNFINISHED}");
        let query = bind(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id));
        Ok(query.execute(&self.pool).await?.rows_affected() > 0)
    }

    /// Completed jobs whose retention ran out.
    pub async fn due_for_expiry(&self, now: i64) -> Result<Vec<JobRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM video_jobs WHERE status = 'completed' AND expires_at <= $1 LIMIT 100"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(JobRow::from_row).collect()
    }

    /// Jobs by model and status, the whole table (every replica's jobs): the
    /// `switchyard_video_jobs` gauge, read at scrape time.
    pub async fn count_by_status(&self) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT model, status, CAST(COUNT(*) AS BIGINT) AS n FROM video_jobs GROUP BY model, status",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("model")?,
                    row.try_get("status")?,
                    row.try_get("n")?,
                ))
            })
            .collect()
    }

    /// Bytes of every completed job's video (what `VIDEO_MAX_STORED_MB` caps).
    pub async fn stored_bytes(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            // PostgreSQL sums BIGINTs as NUMERIC, which the Any driver cannot read.
            "SELECT CAST(COALESCE(SUM(content_bytes), 0) AS BIGINT) FROM video_jobs \
             WHERE status = 'completed'",
        )
        .fetch_one(&self.pool)
        .await
    }

    /// Up to `limit` completed jobs, the longest completed first.
    pub async fn oldest_completed(&self, limit: i64) -> Result<Vec<JobRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM video_jobs WHERE status = 'completed' \
             ORDER BY completed_at, id LIMIT $1"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(JobRow::from_row).collect()
    }

    /// Mark one completed job expired (its `expires_at` becomes now if that was later: a job
    /// expired early to make room says when it went); true if this call did it.
    pub async fn mark_expired(&self, id: &str, now: i64) -> Result<bool, sqlx::Error> {
        let n = sqlx::query(
            "UPDATE video_jobs SET status = 'expired', updated_at = $2, \
             expires_at = CASE WHEN expires_at IS NULL OR expires_at > $2 THEN $2 ELSE expires_at END, \
             webhook_status = CASE WHEN callback_url IS NULL THEN NULL ELSE 'pending' END \
             WHERE id = $1 AND status = 'completed'",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    pub async fn webhook_attempted(
        &self,
        id: &str,
        attempts: i64,
        outcome: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE video_jobs SET webhook_attempts = $2, \
             webhook_status = COALESCE($3, webhook_status) WHERE id = $1",
        )
        .bind(id)
        .bind(attempts)
        .bind(outcome.map(str::to_string))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Take (or keep) a job for `owner` unless another live runner holds it.
    pub async fn claim(
        &self,
        id: &str,
        owner: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let n = sqlx::query(
            "UPDATE video_jobs SET lease_owner = $2, lease_until = $3 \
             WHERE id = $1 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until IS NULL OR lease_until < $4)",
        )
        .bind(id)
        .bind(owner)
        .bind(until)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Extend every claim of `owner` on jobs that still need work.
    pub async fn renew_claims(&self, owner: &str, until: i64) -> Result<(), sqlx::Error> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE video_jobs SET lease_until = $2 WHERE lease_owner = $1 \
             AND ({UNFINISHED} OR webhook_status = 'pending')"
        )))
        .bind(owner)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ids of the unfinished jobs `owner` holds: a job it works on that is not among them was
    /// canceled through another replica, or taken over after its claim ran out.
    pub async fn owned_unfinished(&self, owner: &str) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM video_jobs WHERE lease_owner = $1 AND {UNFINISHED}"
        )))
        .bind(owner)
        .fetch_all(&self.pool)
        .await
    }

    /// Jobs that need work (unfinished, or a webhook to send) and that `owner` may take.
    pub async fn claimable(&self, owner: &str, now: i64) -> Result<Vec<JobRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM video_jobs WHERE ({UNFINISHED} OR webhook_status = 'pending') \
             AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until IS NULL OR lease_until < $2) \
             ORDER BY id LIMIT 500"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(JobRow::from_row).collect()
    }
}
