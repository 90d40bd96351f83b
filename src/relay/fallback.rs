//! Retry and fallback: ask for a lease, try the route, and on a failure that reached the client
//! with nothing yet, ask again excluding the routes that failed — bounded in attempts and by
//! the replica-wide retry budget, with a jittered exponential back-off. One executor,
//! [`run_attempts`], serves relayed requests ([`with_fallback`]) and video job submissions.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;

use super::admission::{Admission, Refusal};
use super::budget::RetryBudget;
use super::capabilities::Uses;
use super::upstream::CallError;
use crate::engines::ApiOp;
use crate::error::ApiError;
use crate::mesh::{Acquire, AcquireRoute, Lease, ModelAccess, Outcome, RouterActor, RoutingHints};
use crate::mesh::{CapacityReason, RouteError};
use crate::record::{ChargeSlot, RequestCtx, ServedBy, UpstreamFailure};

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Retries per second across all requests of this replica.
    pub budget: Arc<RetryBudget>,
}

impl RetryPolicy {
    /// The wait after the `failed`-th failed attempt (from 1): doubling from `backoff_base`,
    /// capped at `backoff_max`, then jittered to 50–100 % so that requests which failed together
    /// do not come back together.
    pub fn backoff(&self, failed: u32) -> Duration {
        let doublings = failed.saturating_sub(1).min(10);
        let ceiling = self
            .backoff_base
            .saturating_mul(1 << doublings)
            .min(self.backoff_max);
        ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
    }
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
pub enum Attempt<T, E = ApiError> {
    Done(T),
    /// Nothing reached the client: another route may be tried.
    Retry(E),
    /// Give up now with this error (the request itself is bad, or bytes were already sent).
    Fail(E),
}

/// Why no lease came for the next attempt.
#[derive(Debug)]
pub enum NoLease<E> {
    /// No route is left that could take it: the last attempt's failure, when there was one,
    /// says more than this error does.
    NoRouteLeft(E),
    /// Stop with this error whatever came before (the router is stopping, the job is gone).
    Stop(E),
}

/// A lease as the executor sees it: the route it holds, excluded after it failed.
pub trait OnRoute {
    fn route_index(&self) -> usize;
}

impl OnRoute for Lease {
    fn route_index(&self) -> usize {
        Lease::route_index(self)
    }
}

/// Hears the executor's steps, for bookkeeping; every step defaults to nothing, and `()`
/// observes nothing at all.
pub trait AttemptObserver<L, E> {
    /// Attempt number `attempt` (from 1) is about to run on `lease`.
    fn leased(&mut self, _attempt: u32, _lease: &L) {}
    /// The attempt took `elapsed`; `failure` is its error when it did not succeed.
    fn finished(&mut self, _elapsed: Duration, _failure: Option<&E>) {}
    /// The executor waits `wait` before the next attempt.
    fn backing_off(&mut self, _wait: Duration) {}
    /// The span the attempt just leased runs in (its upstream requests carry its trace
    /// context); none unless the observer traces.
    fn attempt_span(&self) -> tracing::Span {
        tracing::Span::none()
    }
}

impl<L, E> AttemptObserver<L, E> for () {}

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

/// The one retry loop: run `attempt` on leases from `acquire` (given the routes that already
/// failed) until one is `Done`, one `Fail`s, the attempts run out, the retry budget is empty,
/// or no route is left. The error returned is the last attempt's failure when there was one:
/// it says more than "no route left".
pub async fn run_attempts<L, T, E, Acq, AcqFut, Att, AttFut>(
    policy: &RetryPolicy,
    observer: &mut impl AttemptObserver<L, E>,
    mut acquire: Acq,
    mut attempt: Att,
) -> Result<T, E>
where
    L: OnRoute,
    Acq: FnMut(Vec<usize>) -> AcqFut,
    AcqFut: Future<Output = Result<L, NoLease<E>>>,
    Att: FnMut(L) -> AttFut,
    AttFut: Future<Output = Attempt<T, E>>,
{
    let max_attempts = policy.max_attempts.max(1);
    let mut exclude: Vec<usize> = Vec::new();
    let mut last_failure: Option<E> = None;
    let mut attempts = 0u32;
    loop {
        let lease = match acquire(exclude.clone()).await {
            Ok(lease) => lease,
            Err(refusal) => {
                // Every lease after the first is asked for with a retry token spent; the
                // retry did not happen, so the token goes back.
                if attempts > 0 {
                    policy.budget.refund();
                }
                return Err(match refusal {
                    NoLease::NoRouteLeft(error) => last_failure.unwrap_or(error),
                    NoLease::Stop(error) => error,
                });
            }
        };
        attempts += 1;
        observer.leased(attempts, &lease);
        let route = lease.route_index();
        let started = Instant::now();
        let result = tracing::Instrument::instrument(attempt(lease), observer.attempt_span()).await;
        let elapsed = started.elapsed();
        let failure = match result {
            Attempt::Done(value) => {
                observer.finished(elapsed, None);
                return Ok(value);
            }
            Attempt::Fail(error) => {
                observer.finished(elapsed, Some(&error));
                return Err(error);
            }
            Attempt::Retry(error) => {
                observer.finished(elapsed, Some(&error));
                error
            }
        };
        if attempts >= max_attempts {
            return Err(failure);
        }
        if !policy.budget.try_spend() {
            tracing::debug!(attempts, "retry budget exhausted; not retrying");
            return Err(failure);
        }
        exclude.push(route);
        last_failure = Some(failure);
        let wait = policy.backoff(attempts);
        observer.backing_off(wait);
        actix_rt::time::sleep(wait).await;
    }
}

/// Relay a request to `model` with fallback: leases from `router`, which also refuses a
/// caller whose key may not use the model, and the request's record kept up to date.
pub async fn with_fallback<T, F, Fut>(
    router: &Addr<RouterActor>,
    model: &str,
    op: ApiOp,
    est_tokens: u64,
    policy: &RetryPolicy,
    ctx: &mut RequestCtx,
    attempt: F,
) -> Result<T, ApiError>
where
    F: FnMut(Lease) -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let ask = RouteAsk {
        model,
        op,
        est_tokens,
        hints: RoutingHints::default(),
        uses: Uses::default(),
    };
    with_fallback_to(router, ask, policy, ctx, attempt).await
}

/// What a relayed request asks the Router for: a model, an operation, the tokens it expects
/// to use, and the hints its policy may use (prompt head, session key); and what it asks of
/// the model ([`Uses`]), checked against every lease's model before its attempt runs.
pub struct RouteAsk<'a> {
    pub model: &'a str,
    pub op: ApiOp,
    pub est_tokens: u64,
    pub hints: RoutingHints,
    pub uses: Uses,
}

/// [`with_fallback`] with routing hints: every attempt's `Acquire` carries them.
pub async fn with_fallback_to<T, F, Fut>(
    router: &Addr<RouterActor>,
    ask: RouteAsk<'_>,
    policy: &RetryPolicy,
    ctx: &mut RequestCtx,
    attempt: F,
) -> Result<T, ApiError>
where
    F: FnMut(Lease) -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    with_fallback_on(router, ask, None, policy, ctx, attempt).await
}

/// [`with_fallback_to`], or, with `pinned`, one attempt on that route of the model only: a
/// follow-up on state one backend holds (a stored response) has nowhere else to go, so the
/// policy and its hints do not choose.
pub async fn with_fallback_on<T, F, Fut>(
    router: &Addr<RouterActor>,
    ask: RouteAsk<'_>,
    pinned: Option<&str>,
    policy: &RetryPolicy,
    ctx: &mut RequestCtx,
    attempt: F,
) -> Result<T, ApiError>
where
    F: FnMut(Lease) -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let caller = ctx
        .caller
        .clone()
        .map(|caller| caller as Arc<dyn ModelAccess>);
    // A request the router refuses itself (no capacity, 501, 503) still belongs to its model:
    // the request log counts it there (`GROUP BY model_id`, `switchyard usage`).
    let refused_model: std::cell::RefCell<Option<String>> = Default::default();
    let admission = Admission::new(ctx, ask.est_tokens);
    let acquire = |exclude: Vec<usize>| {
        let (caller, admission, refused_model, ask) =
            (caller.clone(), &admission, &refused_model, &ask);
        async move {
            // Routes whose endpoint's shared rpm/tpm is spent are skipped like failed ones,
            // but without costing an attempt.
            let mut skip = exclude;
            let mut full_for: Option<Duration> = None;
            loop {
                let model = ask.model.to_string();
                let leased = match pinned {
                    None => {
                        let request = Acquire {
                            model,
                            op: ask.op,
                            est_tokens: ask.est_tokens,
                            exclude: skip.clone(),
                            caller: caller.clone(),
                            hints: ask.hints.clone(),
                        };
                        router.send(request).await
                    }
                    // The pinned route failed (or is full): there is no other.
                    Some(_) if !skip.is_empty() => Ok(Err(RouteError::Exhausted { model })),
                    Some(route) => {
                        let request = AcquireRoute {
                            model,
                            op: ask.op,
                            route: route.to_string(),
                            caller: caller.clone(),
                        };
                        router.send(request).await
                    }
                };
                let lease = match leased {
                    Err(_) => {
                        return Err(NoLease::Stop(ApiError::internal(
                            "the router is not running",
                        )))
                    }
                    Ok(Ok(mut lease)) => {
                        // `prefix_cache` may have chosen to wait for a busy engine slot
                        // keeping the prompt (bounded by `slot_wait_ms`).
                        lease.wait_for_engine_slot().await;
                        lease
                    }
                    Ok(Err(refusal)) => {
                        if let Some(id) = refusal.known_model() {
                            refused_model.replace(Some(id.to_string()));
                        }
                        let refusal = match full_for {
                            Some(retry_after) => RouteError::NoCapacity {
                                model: ask.model.to_string(),
                                reason: CapacityReason::RateLimited,
                                retry_after,
                            },
                            None => refusal,
                        };
                        return Err(NoLease::NoRouteLeft(refusal.into()));
                    }
                };
                let Some(admission) = admission else {
                    return Ok(lease);
                };
                match admission.on_lease(&lease).await {
                    Ok(()) => return Ok(lease),
                    Err(Refusal::Stop(error)) => return Err(NoLease::Stop(error)),
                    Err(Refusal::EndpointFull(wait)) => {
                        skip.push(lease.route_index());
                        full_for = Some(full_for.map_or(wait, |w| w.min(wait)));
                    }
                }
            }
        }
    };
    // The one capability check of every API, native or translated: a lease whose model
    // refuses what the request uses is given back as the client's error, and nothing is sent.
    let uses = ask.uses;
    let mut attempt = attempt;
    let checked = |mut lease: Lease| {
        let run = match uses.check(lease.model()) {
            Ok(()) => Ok(attempt(lease)),
            Err(refusal) => {
                lease.finish(Outcome::ClientError);
                Err(refusal)
            }
        };
        async move {
            match run {
                Ok(attempt) => attempt.await,
                Err(refusal) => Attempt::Fail(refusal),
            }
        }
    };
    let result = run_attempts(policy, ctx, acquire, checked).await;
    if let Some(charge) = admission.and_then(Admission::into_charge) {
        ctx.record.key_charge = ChargeSlot::new(charge);
    }
    if ctx.record.model.is_none() {
        ctx.record.model = refused_model.into_inner();
    }
    result
}

/// A relayed request's record follows its attempts: where it was served, how long the
/// backends took (back-off included: it is spent because a backend failed) and what failed.
impl AttemptObserver<Lease, ApiError> for RequestCtx {
    fn leased(&mut self, attempt: u32, lease: &Lease) {
        let record = &mut self.record;
        record.attempts = attempt;
        record.model = Some(lease.model().id.clone());
        record.model_type = Some(lease.model().model_type);
        record.route = Some(lease.route().name.clone());
        record.endpoint = Some(lease.endpoint().name.clone());
        record.served_by = Some(ServedBy {
            model: lease.model().clone(),
            route_index: lease.route_index(),
        });
        let route = lease.route();
        self.trace.attempt_started(
            attempt,
            &route.name,
            &lease.endpoint().name,
            route.kind.as_str(),
        );
    }

    fn attempt_span(&self) -> tracing::Span {
        self.trace.attempt()
    }

    fn finished(&mut self, elapsed: Duration, failure: Option<&ApiError>) {
        if self.trace.is_on() {
            let code = failure.map(|e| (e.wire_code().unwrap_or("error"), e.message.as_str()));
            self.trace.attempt_ended(code);
        }
        let record = &mut self.record;
        record.upstream_time += elapsed;
        if let (Some(error), Some(endpoint)) = (failure, &record.endpoint) {
            record
                .upstream_errors
                .extend(UpstreamFailure::classify(endpoint, error));
        }
    }

    fn backing_off(&mut self, wait: Duration) {
        self.record.upstream_time += wait;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::RefCell;

    struct FakeLease(usize);

    impl OnRoute for FakeLease {
        fn route_index(&self) -> usize {
            self.0
        }
    }

    /// How a fake route answers.
    #[derive(Debug, Clone, Copy)]
    enum Route {
        Serves,
        /// Fails before anything reached the client: another route may be tried.
        Fails,
        /// Fails in a way no other route can mend.
        Refuses,
        /// Asking for a lease on it stops the loop (the router is going away).
        Gone,
    }
    use Route::*;

    #[derive(Default)]
    struct Seen {
        attempts: Vec<u32>,
        failures: Vec<String>,
        waits: Vec<Duration>,
    }

    impl AttemptObserver<FakeLease, String> for Seen {
        fn leased(&mut self, attempt: u32, _lease: &FakeLease) {
            self.attempts.push(attempt);
        }
        fn finished(&mut self, _elapsed: Duration, failure: Option<&String>) {
            self.failures.extend(failure.cloned());
        }
        fn backing_off(&mut self, wait: Duration) {
            self.waits.push(wait);
        }
    }

    fn policy(max_attempts: u32, budget: RetryBudget) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(3),
            budget: Arc::new(budget),
        }
    }

    fn plenty() -> RetryBudget {
        RetryBudget::new(1000.0, 1000.0)
    }

    struct Run {
        result: Result<usize, String>,
        /// The exclusion list of every lease asked for.
        asked: Vec<Vec<usize>>,
        seen: Seen,
    }

    /// Run the executor over fake routes, leasing the first route not excluded.
    async fn run(routes: &[Route], policy: &RetryPolicy) -> Run {
        let asked = RefCell::new(Vec::new());
        let mut seen = Seen::default();
        let acquire = |exclude: Vec<usize>| {
            let next = (0..routes.len()).find(|r| !exclude.contains(r));
            asked.borrow_mut().push(exclude);
            async move {
                match next.map(|r| (r, routes[r])) {
                    None => Err(NoLease::NoRouteLeft("no route left".to_string())),
                    Some((_, Gone)) => Err(NoLease::Stop("router stopped".to_string())),
                    Some((r, _)) => Ok(FakeLease(r)),
                }
            }
        };
        let attempt = |lease: FakeLease| async move {
            match routes[lease.0] {
                Serves => Attempt::Done(lease.0),
                Fails => Attempt::Retry(format!("route {} failed", lease.0)),
                Refuses | Gone => Attempt::Fail(format!("route {} refused", lease.0)),
            }
        };
        let result = run_attempts(policy, &mut seen, acquire, attempt).await;
        Run {
            result,
            asked: asked.into_inner(),
            seen,
        }
    }

    /// Routes, max attempts, the result, and the exclusion lists of the leases asked for.
    type Case = (
        &'static [Route],
        u32,
        Result<usize, String>,
        Vec<Vec<usize>>,
    );

    #[actix_rt::test]
    async fn attempts_exclude_failed_routes_and_stop_at_the_limit() {
        let ok = |r: usize| Ok(r);
        let err = |m: &str| Err(m.to_string());
        let cases: Vec<Case> = vec![
            (&[Serves], 3, ok(0), vec![vec![]]),
            (&[Fails, Serves], 3, ok(1), vec![vec![], vec![0]]),
            (
                &[Fails, Fails, Fails, Serves],
                3,
                err("route 2 failed"),
                vec![vec![], vec![0], vec![0, 1]],
            ),
            (
                &[Fails, Refuses, Serves],
                3,
                err("route 1 refused"),
                vec![vec![], vec![0]],
            ),
            // No route left: the last failure says more than "no route left".
            (
                &[Fails, Fails],
                5,
                err("route 1 failed"),
                vec![vec![], vec![0], vec![0, 1]],
            ),
            (&[], 3, err("no route left"), vec![vec![]]),
            // A stop wins over the failures before it.
            (
                &[Fails, Gone],
                3,
                err("router stopped"),
                vec![vec![], vec![0]],
            ),
            // Zero attempts configured still makes one.
            (&[Fails, Serves], 0, err("route 0 failed"), vec![vec![]]),
        ];
        for (routes, max_attempts, expected, asked) in cases {
            let run = run(routes, &policy(max_attempts, plenty())).await;
            let label = format!("{routes:?} max {max_attempts}");
            assert_eq!(run.result, expected, "{label}");
            assert_eq!(run.asked, asked, "{label}");
            let attempts = run.seen.attempts.len() as u32;
            assert_eq!(
                run.seen.attempts,
                (1..=attempts).collect::<Vec<_>>(),
                "{label}"
            );
            // One back-off before every lease after the first.
            assert_eq!(run.seen.waits.len(), asked.len() - 1, "{label}");
        }
    }

    #[actix_rt::test]
    async fn an_empty_budget_stops_retries() {
        let budget = RetryBudget::new(0.0, 1.0);
        assert!(budget.try_spend());
        let policy = policy(3, budget);
        let run = run(&[Fails, Serves], &policy).await;
        assert_eq!(run.result, Err("route 0 failed".to_string()));
        assert_eq!(run.seen.attempts, vec![1]);
        assert_eq!(policy.budget.denied(), 1);
    }

    #[actix_rt::test]
    async fn a_retry_with_no_route_left_gives_its_token_back() {
        for routes in [&[Fails][..], &[Fails, Gone][..]] {
            let policy = policy(3, RetryBudget::new(0.0, 2.0));
            let run = run(routes, &policy).await;
            assert!(run.result.is_err(), "{routes:?}");
            assert_eq!(run.seen.attempts, vec![1], "{routes:?}");
            // Both tokens are still there: the one taken for the retry came back.
            assert!(policy.budget.try_spend(), "{routes:?}");
            assert!(policy.budget.try_spend(), "{routes:?}");
            assert!(!policy.budget.try_spend(), "{routes:?}");
        }
    }

    #[actix_rt::test]
    async fn back_off_grows_between_attempts() {
        let run = run(&[Fails, Fails, Fails, Serves], &policy(4, plenty())).await;
        assert_eq!(run.result, Ok(3));
        let ms = Duration::from_millis;
        let ceilings = [ms(1), ms(2), ms(3)];
        assert_eq!(run.seen.waits.len(), ceilings.len());
        for (wait, ceiling) in run.seen.waits.iter().zip(ceilings) {
            assert!(*wait <= ceiling && *wait >= ceiling / 2, "{wait:?}");
        }
    }

    proptest! {
        #[test]
        fn back_off_is_capped_and_jittered_to_at_least_half(
            base_ms in 0u64..2_000,
            max_ms in 0u64..10_000,
            failed in 0u32..100,
        ) {
            let policy = RetryPolicy {
                backoff_base: Duration::from_millis(base_ms),
                backoff_max: Duration::from_millis(max_ms),
                ..RetryPolicy::default()
            };
            let doublings = failed.saturating_sub(1).min(10);
            let ceiling = Duration::from_millis(base_ms << doublings).min(policy.backoff_max);
            let wait = policy.backoff(failed);
            prop_assert!(wait <= ceiling, "{wait:?} > {ceiling:?}");
            // One nanosecond of slack for the float multiplication.
            prop_assert!(wait + Duration::from_nanos(1) >= ceiling / 2, "{wait:?} < {ceiling:?} / 2");
        }
    }
}
