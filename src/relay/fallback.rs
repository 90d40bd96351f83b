//! Retry and fallback: ask the Router for a lease, try the route, and on a failure that reached
//! the client with nothing yet, ask again excluding the routes that failed — bounded in
//! attempts, with a short jittered back-off.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;

use super::budget::RetryBudget;
use super::upstream::CallError;
use crate::api::error::ApiError;
use crate::engines::ApiOp;
use crate::mesh::{Acquire, GetTable, Lease, Outcome, RouteError, RouterActor};
use crate::record::{RequestCtx, ServedBy, UpstreamFailure};

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Retries per second across all requests of this replica.
    pub budget: Arc<RetryBudget>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(250),
            budget: Arc::new(RetryBudget::default()),
        }
    }
}

/// What one attempt on one lease came to.
pub enum Attempt<T> {
    Done(T),
    /// Nothing reached the client: another route may be tried.
    Retry(ApiError),
    /// Give up now with this error (the request itself is bad, or bytes were already sent).
    Fail(ApiError),
}

impl CallError {
    /// Settle `lease` with this failure's outcome and give the attempt's verdict: a failure
    /// another route may not repeat is a `Retry`; one the request itself caused, or the
    /// router's own lack of resources, is a `Fail`.
    pub fn into_attempt<T>(self, lease: &mut Lease) -> Attempt<T> {
        match self {
            CallError::Retryable { outcome, error } => {
                lease.finish(outcome);
                Attempt::Retry(error)
            }
            CallError::Fatal { outcome, error } => {
                lease.finish(outcome);
                Attempt::Fail(error)
            }
            CallError::Local { error } => {
                lease.finish(Outcome::LocalFailure);
                Attempt::Fail(error)
            }
        }
    }
}

/// Run `attempt` on successive leases until one is `Done`, the attempts run out, or no route is
/// left. The error returned is the last upstream failure when there was one: it says more
/// than "no route left".
pub async fn with_fallback<T, F, Fut>(
    router: &Addr<RouterActor>,
    model: &str,
    op: ApiOp,
    est_tokens: u64,
    policy: &RetryPolicy,
    ctx: &mut RequestCtx,
    mut attempt: F,
) -> Result<T, ApiError>
where
    F: FnMut(Lease) -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    check_caller_may_use(router, model, ctx).await?;
    let mut exclude: Vec<usize> = Vec::new();
    let mut last_error: Option<ApiError> = None;
    // A retry token spent for the coming attempt; given back if no route is left to try.
    let mut spent_retry = false;
    for n in 0..policy.max_attempts.max(1) {
        let acquired = router
            .send(Acquire {
                model: model.to_string(),
                op,
                est_tokens,
                exclude: exclude.clone(),
            })
            .await
            .map_err(|_| ApiError::internal("the router is not running"))?;
        let lease = match acquired {
            Ok(lease) => lease,
            Err(e) => {
                if std::mem::take(&mut spent_retry) {
                    policy.budget.refund();
                }
                match e {
                    RouteError::Exhausted { .. } if last_error.is_some() => break,
                    e => return Err(last_error.unwrap_or_else(|| e.into())),
                }
            }
        };
        spent_retry = false;
        ctx.record.attempts = n + 1;
        ctx.record.model = Some(lease.model().id.clone());
        ctx.record.model_type = Some(lease.model().model_type);
        ctx.record.route = Some(lease.route().name.clone());
        ctx.record.endpoint = Some(lease.endpoint().name.clone());
        ctx.record.served_by = Some(ServedBy {
            model: lease.model().clone(),
            route_index: lease.route_index(),
        });
        let route = lease.route_index();
        let endpoint = lease.endpoint().name.clone();
        let attempt_started = Instant::now();
        let result = attempt(lease).await;
        ctx.record.upstream_time += attempt_started.elapsed();
        match result {
            Attempt::Done(value) => return Ok(value),
            Attempt::Fail(error) => {
                ctx.record
                    .upstream_errors
                    .extend(UpstreamFailure::classify(&endpoint, &error));
                return Err(error);
            }
            Attempt::Retry(error) => {
                ctx.record
                    .upstream_errors
                    .extend(UpstreamFailure::classify(&endpoint, &error));
                exclude.push(route);
                last_error = Some(error);
                if n + 1 < policy.max_attempts {
                    if !policy.budget.try_spend() {
                        tracing::debug!(model, "retry budget exhausted; not retrying");
                        break;
                    }
                    spent_retry = true;
                    let exp = policy.backoff_base.saturating_mul(1 << n.min(10));
                    let wait = exp
                        .min(policy.backoff_max)
                        .mul_f64(0.5 + fastrand::f64() / 2.0);
                    actix_rt::time::sleep(wait).await;
                    // Back-off is spent because a backend failed: upstream time, not overhead.
                    ctx.record.upstream_time += wait;
                }
            }
        }
    }
    Err(last_error.unwrap_or_else(|| ApiError::internal("no attempt was made")))
}

/// A client key limited to some models may not use others (checked on the public id and
/// aliases, so an alias cannot get around the list).
async fn check_caller_may_use(
    router: &Addr<RouterActor>,
    model: &str,
    ctx: &RequestCtx,
) -> Result<(), ApiError> {
    let Some(caller) = ctx.caller.as_ref().filter(|c| c.restricts_models()) else {
        return Ok(());
    };
    let table = router
        .send(GetTable)
        .await
        .map_err(|_| ApiError::internal("the router is not running"))?;
    match table.resolve(model) {
        // Unknown names get the Router's own 404.
        None => Ok(()),
        Some(entry) if caller.may_use(&entry.def) => Ok(()),
        Some(_) => Err(crate::caller::model_not_allowed(model, caller)),
    }
}
