//! Limits and budgets that hold across replicas: per-key requests/minute, tokens/minute and
//! spend, and per-endpoint requests/minute and tokens/minute. See docs/limits.md.
//!
//! Each allowance is a row in the shared database (`quota_buckets`). A replica leases a slice
//! of it (a few per mille of the limit, or what its recent rate spends in a lease interval),
//! spends the slice on the request path with no database access, and gives back what it did
//! not use. Leases expire (`quota_leases`): a replica that dies loses only its unspent slice
//! until then. Database traffic comes only from the [`broker`] task; a request waits on it
//! only when its replica holds nothing of the allowance (bounded by `QUOTA_LEASE_WAIT_MS`).
//!
//! # Layout
//! - `ledger`: the arithmetic of one shared row (lease, give back, overdraft, refill).
//! - `slice`: what one replica holds of one allowance.
//! - `store`: the ledger in SQL (SQLite or PostgreSQL) and in memory (fallback).
//! - `broker`: the background task that exchanges with the ledger.
//! - `keys`: a key's allowances (rpm, tpm, budget), reservations and their settlement.
//! - `endpoints`: an endpoint's shared rpm and tpm, taken per attempt.

mod broker;
mod endpoints;
pub mod keys;
pub mod ledger;
mod slice;
pub mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

pub use keys::{reservation_usd, KeyRefusal, LimitCharge};
use slice::ScopeState;
pub use slice::SharedView;
use slice::Take;

/// A shared allowance's size: `capacity` units at once, refilled at `refill_per_sec`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub capacity: f64,
    pub refill_per_sec: f64,
    /// The smallest useful lease: one request or token; budgets have none.
    pub unit: f64,
    /// When the allowance stops existing (a budget period's end), unix milliseconds.
    pub ends_ms: Option<i64>,
}

impl Limit {
    pub fn per_minute(n: u64) -> Limit {
        let capacity = n.max(1) as f64;
        Limit {
            capacity,
            refill_per_sec: capacity / 60.0,
            unit: 1.0,
            ends_ms: None,
        }
    }

    pub fn budget(usd: f64, ends_ms: Option<i64>) -> Limit {
        Limit {
            capacity: usd.max(0.0),
            refill_per_sec: 0.0,
            unit: 0.0,
            ends_ms,
        }
    }
}

/// `QUOTA_*` settings (docs/limits.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaSettings {
    /// The largest lease, as a fraction of the limit (`QUOTA_LEASE_PERCENT` / 100).
    pub lease_fraction: f64,
    /// A lease's life without renewal (`QUOTA_LEASE_TTL_MS`): what a dead replica's slice is
    /// lost for.
    pub lease_ttl: Duration,
    /// The longest a request waits for a lease before it is refused (`QUOTA_LEASE_WAIT_MS`).
    pub lease_wait: Duration,
    /// How long a lease should last at the replica's recent rate (`QUOTA_LEASE_INTERVAL_MS`).
    pub lease_interval: Duration,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        QuotaSettings {
            lease_fraction: 0.004,
            lease_ttl: Duration::from_secs(15),
            lease_wait: Duration::from_secs(2),
            lease_interval: Duration::from_secs(1),
        }
    }
}

/// How long a refusal is answered locally before the ledger is asked again.
const MAX_LOCAL_REFUSAL: Duration = Duration::from_secs(60);
/// Requests for leases queued at once; beyond, requests are refused (429) rather than queued.
const BROKER_QUEUE: usize = 4096;

/// Counters the metrics read at scrape time.
#[derive(Debug, Default)]
pub struct QuotaStats {
    /// Exchanges with the ledger (lease, renew, give back), each one database transaction.
    pub lease_requests: AtomicU64,
    /// Exchanges that failed on the database and were served by the in-memory ledger.
    pub ledger_errors: AtomicU64,
    /// Requests that waited for a lease.
    pub waits: AtomicU64,
}

/// Every allowance this replica has used, by name. Names are configured labels, not client
/// input, so a fast hasher is safe here; it is looked up several times per limited request.
type ScopeMap = foldhash::HashMap<Arc<str>, ScopeState>;

pub(crate) struct Shared {
    scopes: Mutex<ScopeMap>,
    settings: QuotaSettings,
    tx: mpsc::Sender<broker::Need>,
    pub stats: QuotaStats,
}

impl Shared {
    fn scopes(&self) -> MutexGuard<'_, ScopeMap> {
        // Every update leaves the map consistent: recover from a poisoned lock.
        self.scopes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The replica's handle on every shared allowance; cheap to clone.
#[derive(Clone)]
pub struct Quotas {
    shared: Arc<Shared>,
    /// This replica's name in `quota_leases`.
    holder: Arc<str>,
    store: Option<crate::store::Store>,
}

/// One allowance as views show it.
#[derive(Debug, Clone)]
pub struct ScopeView {
    pub scope: String,
    pub limit: Limit,
    /// Leased by this replica and unspent.
    pub held: f64,
    pub shared: Option<SharedView>,
}

impl Quotas {
    /// Start the broker on the current runtime; `store` is the shared ledger (`None`: this
    /// replica keeps its allowances in memory).
    pub fn start(
        settings: QuotaSettings,
        holder: &str,
        store: Option<crate::store::Store>,
    ) -> Quotas {
        let (quotas, rx) = Quotas::unstarted(settings, holder, store.clone());
        let ledger = store::Ledger::new(store, holder, settings.lease_ttl);
        actix_rt::spawn(broker::run(quotas.shared.clone(), ledger, rx));
        quotas
    }

    fn unstarted(
        settings: QuotaSettings,
        holder: &str,
        store: Option<crate::store::Store>,
    ) -> (Quotas, mpsc::Receiver<broker::Need>) {
        let (tx, rx) = mpsc::channel(BROKER_QUEUE);
        let shared = Arc::new(Shared {
            scopes: Mutex::new(ScopeMap::default()),
            settings,
            tx,
            stats: QuotaStats::default(),
        });
        let quotas = Quotas {
            shared,
            holder: Arc::from(holder),
            store,
        };
        (quotas, rx)
    }

    pub fn settings(&self) -> &QuotaSettings {
        &self.shared.settings
    }

    pub fn stats(&self) -> &QuotaStats {
        &self.shared.stats
    }

    pub fn store(&self) -> Option<&crate::store::Store> {
        self.store.as_ref()
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Spend `amount` of `scope` from what this replica holds, if it holds that much; the
    /// second value says the slice ran low and the broker should top it up.
    fn take_now(&self, scope: &str, limit: Limit, amount: f64) -> (Take, bool) {
        let now = Instant::now();
        let mut scopes = self.shared.scopes();
        let state = match scopes.get_mut(scope) {
            Some(state) => state,
            None => scopes
                .entry(Arc::from(scope))
                .or_insert_with(|| ScopeState::new(limit, now)),
        };
        // A reload may have changed the limit; the ledger applies it at the next exchange.
        state.limit = limit;
        state.try_take(amount, now, &self.shared.settings)
    }

    /// Spend `amount` of `scope`, waiting (at most `QUOTA_LEASE_WAIT_MS`) for a lease when this
    /// replica holds none; `Err` is how long the caller should wait before trying again.
    pub async fn take(&self, scope: &str, limit: Limit, amount: f64) -> Result<(), Duration> {
        let deadline = Instant::now() + self.shared.settings.lease_wait;
        let mut waited = false;
        loop {
            let now = Instant::now();
            let (take, low) = self.take_now(scope, limit, amount);
            match take {
                Take::Taken => {
                    if low {
                        self.ask(scope, 0.0, None);
                    }
                    return Ok(());
                }
                Take::Refused(wait) => return Err(wait),
                Take::Empty if now >= deadline => return Err(Duration::from_secs(1)),
                Take::Empty => {}
            }
            if !waited {
                self.shared.stats.waits.fetch_add(1, Ordering::Relaxed);
                waited = true;
            }
            let (reply, answered) = oneshot::channel();
            if !self.ask(scope, amount, Some(reply)) {
                return Err(Duration::from_secs(1));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, answered).await.is_err() {
                return Err(Duration::from_secs(1));
            }
        }
    }

    /// Queue a lease request; false when the broker's queue is full or it has stopped.
    fn ask(&self, scope: &str, amount: f64, reply: Option<oneshot::Sender<()>>) -> bool {
        let need = broker::Need {
            scope: Arc::from(scope),
            amount,
            reply,
        };
        self.shared.tx.try_send(need).is_ok()
    }

    /// Correct an earlier spend of `scope` (refund when positive, extra charge when
    /// negative). Nothing happens for an allowance this replica never used.
    pub fn adjust(&self, scope: &str, delta: f64) {
        if let Some(state) = self.shared.scopes().get_mut(scope) {
            state.adjust(delta);
        }
    }

    /// Charge `amount` to every allowance whose name starts with `prefix` (a key's budget of
    /// whichever period is current), for usage that was not reserved.
    pub fn charge_matching(&self, prefix: &str, amount: f64) {
        for (name, state) in self.shared.scopes().iter_mut() {
            if name.starts_with(prefix) {
                state.adjust(-amount);
            }
        }
    }

    /// How long `scope` is known to be spent for, if it is.
    pub fn refused_for(&self, scope: &str) -> Option<Duration> {
        let now = Instant::now();
        let scopes = self.shared.scopes();
        let until = scopes.get(scope)?.refused_until?;
        (now < until).then(|| until - now)
    }

    /// Every allowance this replica has used, for gauges.
    pub fn views(&self) -> Vec<ScopeView> {
        let now = Instant::now();
        let mut views: Vec<ScopeView> = self
            .shared
            .scopes()
            .iter()
            .map(|(name, s)| ScopeView {
                scope: name.to_string(),
                limit: s.limit,
                held: if s.live(now) {
                    s.slice
                } else {
                    s.slice.min(0.0)
                },
                shared: s.shared,
            })
            .collect();
        views.sort_by(|a, b| a.scope.cmp(&b.scope));
        views
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With no broker running, a request that finds nothing held waits at most
    /// `lease_wait`, then is told to retry; a held slice needs no broker.
    #[actix_rt::test]
    async fn the_request_path_waits_only_when_nothing_is_held() {
        let settings = QuotaSettings {
            lease_wait: Duration::from_millis(50),
            ..QuotaSettings::default()
        };
        let (quotas, _rx) = Quotas::unstarted(settings, "r1", None);
        let limit = Limit::per_minute(60);
        let started = Instant::now();
        assert_eq!(
            quotas.take("key:k:rpm", limit, 1.0).await,
            Err(Duration::from_secs(1))
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        {
            let mut scopes = quotas.shared.scopes();
            let state = scopes.get_mut("key:k:rpm").unwrap();
            state.slice = 2.0;
            state.live_until = Some(Instant::now() + Duration::from_secs(5));
        }
        assert_eq!(quotas.take("key:k:rpm", limit, 1.0).await, Ok(()));
        assert_eq!(quotas.take_now("key:k:rpm", limit, 1.0).0, Take::Taken);
        assert_eq!(quotas.take_now("key:k:rpm", limit, 1.0).0, Take::Empty);
        quotas.adjust("key:k:rpm", 1.0);
        assert_eq!(quotas.take("key:k:rpm", limit, 1.0).await, Ok(()));
    }
}
