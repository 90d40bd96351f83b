//! The one task that talks to the ledger: it leases slices when a replica runs low or a
//! request waits with nothing held, renews leases at half their life, gives back what an idle
//! replica holds and reports overdrafts. Requests queue here through a bounded channel; the
//! ones for the same allowance that arrive together share one exchange.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::ledger::LeaseRequest;
use super::store::{Exchanged, Holding, Ledger};
use super::{Limit, Shared, MAX_LOCAL_REFUSAL};

/// A request for a lease: `amount` is what a waiting request needs (0: top up ahead of need).
pub struct Need {
    pub scope: Arc<str>,
    pub amount: f64,
    pub reply: Option<oneshot::Sender<()>>,
}

/// Lease requests taken off the queue for one round of exchanges.
const BATCH: usize = 1024;
/// Between two sweeps of ended budget periods and dead leases.
const SWEEP_EVERY: Duration = Duration::from_secs(300);

pub async fn run(shared: Arc<Shared>, mut ledger: Ledger, mut rx: mpsc::Receiver<Need>) {
    let ttl = shared.settings.lease_ttl;
    let mut tick = tokio::time::interval((ttl / 4).max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut broker = Broker {
        shared,
        failing: false,
        last_sweep: Instant::now(),
    };
    loop {
        tokio::select! {
            need = rx.recv() => {
                let Some(first) = need else { break };
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(need) => batch.push(need),
                        Err(_) => break,
                    }
                }
                broker.serve(&mut ledger, batch).await;
            }
            _ = tick.tick() => broker.housekeeping(&mut ledger).await,
        }
    }
}

struct Broker {
    shared: Arc<Shared>,
    /// The database failed on the last exchange (logged once per outage).
    failing: bool,
    last_sweep: Instant,
}

/// One planned exchange: what to ask, and what this replica will hold afterwards.
struct Plan {
    limit: Limit,
    req: LeaseRequest,
    unspent: f64,
    at: Instant,
    /// Requests are waiting on it (a refusal must then be remembered).
    for_waiters: bool,
}

/// Waiting requests of one allowance.
#[derive(Default)]
struct Waiting {
    amounts: Vec<f64>,
    replies: Vec<oneshot::Sender<()>>,
}

impl Broker {
    async fn serve(&mut self, ledger: &mut Ledger, batch: Vec<Need>) {
        let mut by_scope: HashMap<Arc<str>, Waiting> = HashMap::new();
        for need in batch {
            let waiting = by_scope.entry(need.scope).or_default();
            if need.amount > 0.0 {
                waiting.amounts.push(need.amount);
            }
            waiting.replies.extend(need.reply);
        }
        for (scope, waiting) in by_scope {
            let plan = self.plan_for_need(&scope, &waiting.amounts);
            if let Some(plan) = plan {
                self.run(ledger, &scope, plan).await;
            }
            for reply in waiting.replies {
                let _ = reply.send(());
            }
        }
    }

    /// Plan a lease for waiting requests (`amounts`) or a top-up (none): `None` when what is
    /// held already covers it.
    fn plan_for_need(&self, scope: &str, amounts: &[f64]) -> Option<Plan> {
        let settings = &self.shared.settings;
        let mut scopes = self.shared.scopes();
        let state = scopes.get_mut(scope)?;
        let now = Instant::now();
        state.refill_queued = false;
        if !state.live(now) {
            // Whatever it held expired; the ledger takes it back.
            state.slice = state.slice.min(0.0);
        }
        let unspent = state.slice.max(0.0);
        let demand: f64 = amounts.iter().sum();
        let target = state.target(settings);
        let covered = state.live(now) && unspent >= demand && unspent >= target / 2.0;
        if covered || (amounts.is_empty() && unspent >= target) {
            return None;
        }
        let smallest = amounts.iter().copied().fold(f64::INFINITY, f64::min);
        let min_grant = if amounts.is_empty() {
            0.0
        } else {
            (smallest.min(state.limit.capacity) - unspent).max(0.0)
        };
        let overdraft = (-state.slice).max(0.0);
        state.slice += overdraft;
        state.note_sync(now);
        Some(Plan {
            limit: state.limit,
            req: LeaseRequest {
                overdraft,
                give_back: 0.0,
                want: (demand - unspent).max(0.0) + (target - unspent).max(0.0).min(target),
                min_grant,
            },
            unspent,
            at: now,
            for_waiters: !amounts.is_empty(),
        })
    }

    /// Renew leases at half their life, give back what idle allowances hold, report
    /// overdrafts, forget long-idle empty ones; sweep the ledger now and then.
    async fn housekeeping(&mut self, ledger: &mut Ledger) {
        let settings = self.shared.settings;
        let ttl = settings.lease_ttl;
        let live_for = ttl.mul_f64(LOCAL_LIFE);
        let idle_after = settings.lease_interval.max(ttl / 4);
        let now = Instant::now();
        let plans: Vec<(Arc<str>, Plan)> = {
            let mut scopes = self.shared.scopes();
            scopes.retain(|_, s| !(s.idle(now, ttl * 20) && s.slice == 0.0 && !s.live(now)));
            scopes
                .iter_mut()
                .filter_map(|(name, state)| {
                    let overdraft = (-state.slice).max(0.0);
                    let live = state.live(now);
                    let idle = state.idle(now, idle_after);
                    let half_gone = state
                        .live_until
                        .is_some_and(|until| until.saturating_duration_since(now) < live_for / 2);
                    let req = if live && idle && state.slice > 0.0 {
                        // Idle: the slice goes back for other replicas.
                        let give_back = state.slice;
                        state.slice = 0.0;
                        LeaseRequest {
                            give_back,
                            ..LeaseRequest::default()
                        }
                    } else if (live && half_gone) || overdraft > 0.0 {
                        state.slice += overdraft;
                        LeaseRequest {
                            overdraft,
                            ..LeaseRequest::default()
                        }
                    } else {
                        return None;
                    };
                    state.note_sync(now);
                    let unspent = if live { state.slice.max(0.0) } else { 0.0 };
                    let plan = Plan {
                        limit: state.limit,
                        req,
                        unspent,
                        at: now,
                        for_waiters: false,
                    };
                    Some((name.clone(), plan))
                })
                .collect()
        };
        for (scope, plan) in plans {
            self.run(ledger, &scope, plan).await;
        }
        if self.last_sweep.elapsed() >= SWEEP_EVERY {
            self.last_sweep = Instant::now();
            if let Err(e) = ledger.sweep(crate::period::now_ms()).await {
                tracing::debug!(error = %e, "quota ledger sweep failed");
            }
        }
    }

    /// Carry out one exchange and fold its answer into the replica's state.
    async fn run(&mut self, ledger: &mut Ledger, scope: &str, plan: Plan) {
        let stats = &self.shared.stats;
        stats.lease_requests.fetch_add(1, Ordering::Relaxed);
        let now_ms = crate::period::now_ms();
        let unspent = plan.unspent;
        let held_after = move |granted: f64| Holding {
            unspent: unspent + granted,
        };
        let exchanged = match ledger
            .exchange(scope, &plan.limit, &plan.req, held_after, now_ms)
            .await
        {
            Ok(done) => {
                if self.failing {
                    tracing::info!("quota ledger reachable again: limits are shared again");
                    self.failing = false;
                }
                done
            }
            Err(e) => {
                stats.ledger_errors.fetch_add(1, Ordering::Relaxed);
                if !self.failing {
                    tracing::warn!(error = %e, "quota ledger unreachable: rate limits are per replica and budgets spend nothing more until it is back");
                    self.failing = true;
                }
                if plan.limit.refill_per_sec == 0.0 {
                    self.keep_unreported(scope, &plan);
                    return;
                }
                ledger.exchange_in_memory(scope, &plan.limit, &plan.req, now_ms)
            }
        };
        self.apply(scope, &plan, exchanged);
    }

    /// A budget is money: without the ledger nothing more is leased (it fails closed), and
    /// what this exchange was to report stays with the replica for the next one.
    fn keep_unreported(&self, scope: &str, plan: &Plan) {
        let mut scopes = self.shared.scopes();
        let Some(state) = scopes.get_mut(scope) else {
            return;
        };
        state.slice += plan.req.give_back - plan.req.overdraft;
        if plan.for_waiters {
            state.refused_until = Some(plan.at + Duration::from_secs(1));
        }
    }

    fn apply(&self, scope: &str, plan: &Plan, done: Exchanged) {
        let ttl = self.shared.settings.lease_ttl;
        let mut scopes = self.shared.scopes();
        let Some(state) = scopes.get_mut(scope) else {
            return;
        };
        state.slice += done.grant.granted;
        state.live_until = Some(plan.at + ttl.mul_f64(LOCAL_LIFE));
        state.shared = Some(done.shared);
        match done.grant.wait_ms {
            Some(wait) if plan.for_waiters => {
                // Rate limits: until the refill covers the need. Budgets: ask again in a
                // second (a replica may give back), while clients are told the period's end.
                let wait = wait.map_or(Duration::from_secs(1), |ms| {
                    Duration::from_millis(ms.max(1) as u64)
                });
                state.refused_until = Some(plan.at + wait.min(MAX_LOCAL_REFUSAL));
            }
            _ if done.grant.granted > 0.0 => state.refused_until = None,
            _ => {}
        }
    }
}

/// The share of the ledger's lease life this replica spends a slice for: the rest is margin
/// for clock drift and a slow exchange, so the ledger never reclaims a slice still spent.
const LOCAL_LIFE: f64 = 0.8;

#[cfg(test)]
mod tests {
    use super::super::{QuotaSettings, Quotas, Take};
    use super::*;

    /// End to end through the in-memory ledger: a waiting request gets a lease, the next
    /// ones spend it locally, the allowance runs out with a refusal that says how long.
    #[actix_rt::test]
    async fn waiting_requests_are_leased_and_then_refused_with_a_wait() {
        let settings = QuotaSettings {
            lease_fraction: 0.05,
            ..QuotaSettings::default()
        };
        let quotas = Quotas::start(settings, "r1", None);
        let limit = Limit::per_minute(60);
        let mut accepted = 0;
        let mut refused = None;
        for _ in 0..100 {
            match quotas.take("key:k:rpm", limit, 1.0).await {
                Ok(()) => accepted += 1,
                Err(wait) => {
                    refused = Some(wait);
                    break;
                }
            }
        }
        assert!((60..=61).contains(&accepted), "{accepted}");
        let wait = refused.expect("refused once spent");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(matches!(
            quotas.take_now("key:k:rpm", limit, 1.0).0,
            Take::Refused(_)
        ));
    }

    /// A database that fails every exchange (here: its tables were never created): rate limits
    /// go on per replica from memory, budgets admit nothing more.
    #[actix_rt::test]
    async fn a_failing_ledger_keeps_rate_limits_and_closes_budgets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-tables.db");
        let vars = crate::config::test_vars(&[("SQLITE_DB_PATH", path.to_str().unwrap())]);
        let db = crate::store::DbSettings::from_vars(&vars).unwrap();
        let store = crate::store::Store::connect(&db).await.unwrap();
        let quotas = Quotas::start(QuotaSettings::default(), "r1", Some(store));
        assert_eq!(
            quotas.take("key:k:rpm", Limit::per_minute(60), 1.0).await,
            Ok(())
        );
        let budget = Limit::budget(10.0, None);
        assert!(quotas.take("key:k:usd:total", budget, 0.01).await.is_err());
        assert!(quotas.stats().ledger_errors.load(Ordering::Relaxed) >= 2);
    }
}
