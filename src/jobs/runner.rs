//! `JobRunner`: the actor that owns all work on video jobs. One future per active job
//! ([`super::drive::drive`]) runs in the actor's context, so a cancel stops it by dropping it,
//! which drops its lease and closes the backend connection. A timer renews this runner's claims,
//! expires videos past their retention (and the oldest, while the stored videos exceed
//! `VIDEO_MAX_STORED_MB`), and picks up jobs nobody is working on: on start this resumes every
//! job a previous run left unfinished.
//!
//! Several replicas may share the job table. A job is worked on by the runner that holds its
//! claim (`lease_owner`, `lease_until`), renewed every `VIDEO_CLAIM_SECS / 3`. When a replica
//! dies its claims run out, and the others take its jobs within `VIDEO_CLAIM_SECS` plus one
//! pickup interval (`VIDEO_CLAIM_SECS / 3`, at most 5 s). At each renewal a runner also drops
//! the work on jobs it no longer holds unfinished: canceled through another replica, or taken
//! over while this one was cut off.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::{debug, info, warn};

use super::shared::{Shared, SharedParts};
use super::{now_ms, JobStatus};
use crate::telemetry::JobTrace;

const TICK: Duration = Duration::from_millis(500);
/// Longest wait between two looks for jobs nobody works on.
const MAX_PICKUP_EVERY: Duration = Duration::from_secs(5);

/// A job row was inserted by this router: start it. The creating request's trace, when it
/// was traced, is what the job's spans link to (kept in memory only: a job resumed after a
/// restart or by another replica has no link).
#[derive(Message)]
#[rtype(result = "()")]
pub struct JobCreated(pub String, pub Option<JobTrace>);

/// A handler marked the job canceled: stop its work and tell the backend.
#[derive(Message)]
#[rtype(result = "()")]
pub struct JobCanceled(pub String);

/// The runner's rhythm, from the claim length.
impl Shared {
    /// Between two renewals of this runner's claims: a claim survives two missed renewals.
    fn renew_every(&self) -> Duration {
        self.settings.claim / 3
    }

    /// Between two looks for orphaned jobs: bounds the takeover time after a replica dies.
    fn pickup_every(&self) -> Duration {
        (self.settings.claim / 3).clamp(TICK, MAX_PICKUP_EVERY)
    }
}

pub struct JobRunner {
    shared: Rc<Shared>,
    active: HashMap<String, SpawnHandle>,
    webhooks: HashSet<String>,
    maintenance_running: bool,
    last_pickup: Option<Instant>,
    last_renewal: Instant,
}

impl JobRunner {
    pub fn new(parts: SharedParts) -> JobRunner {
        JobRunner {
            shared: Rc::new(parts.into_shared()),
            active: HashMap::new(),
            webhooks: HashSet::new(),
            maintenance_running: false,
            last_pickup: None,
            last_renewal: Instant::now(),
        }
    }

    fn start_job(&mut self, id: String, created_in: Option<JobTrace>, ctx: &mut Context<Self>) {
        if self.active.contains_key(&id) {
            return;
        }
        let done_id = id.clone();
        let work = super::drive::drive(self.shared.clone(), id.clone(), created_in)
            .into_actor(self)
            .map(move |_, act: &mut JobRunner, ctx| {
                act.active.remove(&done_id);
                act.send_webhook(done_id, ctx);
            });
        let handle = ctx.spawn(work);
        self.active.insert(id, handle);
    }

    fn send_webhook(&mut self, id: String, ctx: &mut Context<Self>) {
        if !self.webhooks.insert(id.clone()) {
            return;
        }
        let work = super::webhook::deliver(self.shared.clone(), id.clone())
            .into_actor(self)
            .map(move |_, act: &mut JobRunner, _| {
                act.webhooks.remove(&id);
            });
        ctx.spawn(work);
    }

    /// Renew claims, expire old videos, and (every few seconds) take up jobs nobody works on.
    fn maintain(&mut self, ctx: &mut Context<Self>) {
        if self.maintenance_running {
            return;
        }
        self.maintenance_running = true;
        let renew = self.last_renewal.elapsed() >= self.shared.renew_every();
        if renew {
            self.last_renewal = Instant::now();
        }
        let pickup = self
            .last_pickup
            .is_none_or(|at| at.elapsed() >= self.shared.pickup_every());
        if pickup {
            self.last_pickup = Some(Instant::now());
        }
        // Taken before the query, so a job created meanwhile is not mistaken for a lost one.
        let working: Vec<String> = self.active.keys().cloned().collect();
        let shared = self.shared.clone();
        let work = async move {
            let lost = if renew {
                renew_and_find_lost(&shared, working).await
            } else {
                Vec::new()
            };
            let mut expired = expire_due(&shared).await;
            expired.extend(expire_over_storage_cap(&shared).await);
            let claimed = if pickup {
                claim_orphans(&shared).await
            } else {
                Vec::new()
            };
            (lost, expired, claimed)
        }
        .into_actor(self)
        .map(|(lost, expired, claimed), act: &mut JobRunner, ctx| {
            act.maintenance_running = false;
            for id in lost {
                act.drop_lost(id, ctx);
            }
            for id in expired {
                act.send_webhook(id, ctx);
            }
            for (id, unfinished) in claimed {
                if unfinished {
                    act.start_job(id, None, ctx);
                } else {
                    act.send_webhook(id, ctx);
                }
            }
        });
        ctx.spawn(work);
    }
}

impl JobRunner {
    /// Stop working on a job this runner no longer holds unfinished. If it ended (canceled
    /// through another replica), its webhook is ours to send; if another runner took it, that
    /// runner does the rest.
    fn drop_lost(&mut self, id: String, ctx: &mut Context<Self>) {
        let Some(handle) = self.active.remove(&id) else {
            return;
        };
        ctx.cancel_future(handle);
        let shared = self.shared.clone();
        let work = async move {
            let ended = match shared.store.get(&id).await {
                Ok(Some(job)) if job.status.is_terminal() => true,
                Ok(Some(job)) => {
                    info!(job = %id, owner = job.lease_owner.as_deref().unwrap_or("-"), "video job taken over by another runner");
                    false
                }
                _ => false,
            };
            if ended {
                super::drive::clean_up_if_ended(&shared, &id).await;
            }
            (id, ended)
        }
        .into_actor(self)
        .map(|(id, ended), act: &mut JobRunner, ctx| {
            if ended {
                act.send_webhook(id, ctx);
            }
        });
        ctx.spawn(work);
    }
}

/// Renew this runner's claims; returns the jobs of `working` it no longer holds unfinished.
async fn renew_and_find_lost(shared: &Shared, working: Vec<String>) -> Vec<String> {
    if let Err(e) = shared
        .store
        .renew_claims(&shared.owner, shared.claim_until())
        .await
    {
        warn!(error = %e, "could not renew video job claims");
        return Vec::new();
    }
    if working.is_empty() {
        return Vec::new();
    }
    match shared.store.owned_unfinished(&shared.owner).await {
        Ok(owned) => {
            let owned: HashSet<String> = owned.into_iter().collect();
            working
                .into_iter()
                .filter(|id| !owned.contains(id))
                .collect()
        }
        Err(e) => {
            warn!(error = %e, "could not check this runner's video job claims");
            Vec::new()
        }
    }
}

/// Expire completed jobs past their retention and delete their files; returns the ids this
/// runner expired (their webhooks are due).
async fn expire_due(shared: &Shared) -> Vec<String> {
    let now = now_ms();
    let due = match shared.store.due_for_expiry(now).await {
        Ok(rows) => rows,
        Err(e) => {
            warn!(error = %e, "could not look for expired videos");
            return Vec::new();
        }
    };
    let mut expired = Vec::new();
    for job in due {
        if expire(shared, &job, now, "retention").await {
            expired.push(job.id);
        }
    }
    expired
}

/// Completed jobs looked at per pass when the stored videos exceed their cap.
const EVICTION_BATCH: i64 = 100;

/// While the stored videos exceed `VIDEO_MAX_STORED_MB`, expire the oldest completed ones and
/// delete their files; returns the ids this runner expired (their webhooks are due).
async fn expire_over_storage_cap(shared: &Shared) -> Vec<String> {
    let cap = i64::try_from(shared.settings.max_stored_bytes).unwrap_or(i64::MAX);
    let mut excess = match shared.store.stored_bytes().await {
        Ok(stored) => stored.saturating_sub(cap),
        Err(e) => {
            warn!(error = %e, "could not add up stored videos");
            return Vec::new();
        }
    };
    if excess <= 0 {
        return Vec::new();
    }
    let oldest = match shared.store.oldest_completed(EVICTION_BATCH).await {
        Ok(rows) => rows,
        Err(e) => {
            warn!(error = %e, "could not look for videos to expire");
            return Vec::new();
        }
    };
    let now = now_ms();
    let mut expired = Vec::new();
    for job in oldest {
        if excess <= 0 {
            break;
        }
        // Counted as freed even when another replica expired it first: either way it is gone.
        excess -= job.content_bytes.unwrap_or(0);
        if expire(shared, &job, now, "storage cap").await {
            expired.push(job.id);
        }
    }
    expired
}

/// Mark a completed job expired and delete its video; true if this runner did it.
async fn expire(shared: &Shared, job: &super::JobRow, now: i64, why: &str) -> bool {
    match shared.store.mark_expired(&job.id, now).await {
        Ok(true) => {
            if let Some(name) = &job.content_path {
                super::content::remove(&shared.settings.storage_dir, name).await;
            }
            info!(job = %job.id, why, "video expired");
            true
        }
        Ok(false) => false,
        Err(e) => {
            warn!(job = %job.id, error = %e, "could not expire video");
            false
        }
    }
}

/// Claim jobs that need work and that no live runner holds: `(id, unfinished)`.
async fn claim_orphans(shared: &Shared) -> Vec<(String, bool)> {
    let now = now_ms();
    let rows = match shared.store.claimable(&shared.owner, now).await {
        Ok(rows) => rows,
        Err(e) => {
            warn!(error = %e, "could not look for video jobs to resume");
            return Vec::new();
        }
    };
    let mut claimed = Vec::new();
    for job in rows {
        match shared
            .store
            .claim(&job.id, &shared.owner, shared.claim_until(), now)
            .await
        {
            Ok(true) => claimed.push((job.id, !job.status.is_terminal())),
            Ok(false) => debug!(job = %job.id, "claimed by another runner meanwhile"),
            Err(e) => warn!(job = %job.id, error = %e, "could not claim video job"),
        }
    }
    claimed
}

impl Actor for JobRunner {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        info!(owner = %self.shared.owner, "video job runner started");
        // The first maintenance pass resumes whatever a previous run left unfinished.
        self.maintain(ctx);
        ctx.run_interval(TICK, |act, ctx| act.maintain(ctx));
    }
}

impl Handler<JobCreated> for JobRunner {
    type Result = ();

    fn handle(&mut self, msg: JobCreated, ctx: &mut Self::Context) {
        self.start_job(msg.0, msg.1, ctx);
    }
}

impl Handler<JobCanceled> for JobRunner {
    type Result = ();

    fn handle(&mut self, msg: JobCanceled, ctx: &mut Self::Context) {
        let id = msg.0;
        if let Some(handle) = self.active.remove(&id) {
            // Dropping the job's future drops its lease and any backend call in flight.
            ctx.cancel_future(handle);
        }
        let shared = self.shared.clone();
        let for_webhook = id.clone();
        let work = async move {
            let Ok(Some(job)) = shared.store.get(&id).await else {
                return false;
            };
            if job.status == JobStatus::Canceled {
                super::drive::cancel_on_backend(&shared, &job).await;
            }
            // The claim holder sends the webhook (it may be another replica, which notices the
            // cancel at its next renewal), so a cancel never sends it twice.
            job.lease_owner.as_deref() == Some(shared.owner.as_str())
        }
        .into_actor(self)
        .map(move |ours, act: &mut JobRunner, ctx| {
            if ours {
                act.send_webhook(for_webhook, ctx);
            }
        });
        ctx.spawn(work);
    }
}
