//! A key's allowances: requests/minute taken at the door, tokens/minute and budget reserved
//! with the request's estimate once its model (and so its price) is known, and settled with
//! what the request really used and cost when its record is written.

use std::sync::Arc;
use std::time::Duration;

use super::{Limit, Quotas};
use crate::caller::{allowance_name, BudgetScope, Caller};
use crate::config::Pricing;
use crate::error::{ApiError, ErrorCode};
use crate::period::{now_ms, PeriodBounds};

/// Why a key's request was refused, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    RateLimited(Duration),
    /// The budget is spent; the wait runs to the period's end.
    BudgetExceeded(Duration),
}

impl KeyRefusal {
    pub fn into_error(self, key_id: &str) -> ApiError {
        match self {
            KeyRefusal::RateLimited(wait) => ApiError::new(
                ErrorCode::RateLimitExceeded,
                format!(
                    "Rate limit reached for API key `{key_id}`. Retry after the indicated time."
                ),
            )
            .with_retry_after(wait),
            KeyRefusal::BudgetExceeded(wait) => ApiError::new(
                ErrorCode::BudgetExceeded,
                format!(
                    "API key `{key_id}` has spent its budget for this period. Retry after the indicated time, when the next period starts."
                ),
            )
            .with_retry_after(wait),
        }
    }
}

/// When a budget that never ends (`total`) is spent, clients are told to come back in a day:
/// only an operator raising it helps.
const TOTAL_BUDGET_RETRY: Duration = Duration::from_secs(86_400);

/// The names and sizes of one key's allowances at this moment.
pub struct KeyScopes {
    pub rpm: Option<(Arc<str>, Limit)>,
    pub tpm: Option<(Arc<str>, Limit)>,
    pub budget: Option<(Arc<BudgetScope>, Limit)>,
}

impl KeyScopes {
    pub fn of(caller: &Caller, now_ms: i64) -> KeyScopes {
        let names = &caller.allowances;
        KeyScopes {
            rpm: caller
                .rpm
                .map(|n| (names.rpm.clone(), Limit::per_minute(n))),
            tpm: caller
                .tpm
                .map(|n| (names.tpm.clone(), Limit::per_minute(n))),
            budget: caller.budget.map(|b| {
                let scope = names.budget(b.period, now_ms);
                let limit = Limit::budget(b.usd(), scope.bounds.end_ms);
                (scope, limit)
            }),
        }
    }
}

/// How long a spent budget keeps refusing: to the end of its period.
fn until_period_end(bounds: &PeriodBounds) -> Duration {
    bounds
        .remaining_ms(now_ms())
        .map_or(TOTAL_BUDGET_RETRY, |ms| Duration::from_millis(ms as u64))
}

/// What a request holds of its key's tokens/minute and budget, and of the tokens/minute of the
/// endpoints it tried, until it ends.
pub struct LimitCharge {
    quotas: Quotas,
    tokens: Option<(Arc<str>, f64)>,
    usd: Option<(Arc<str>, f64)>,
    /// Per attempt, in order: the last one served the request.
    endpoint_tokens: Vec<(Arc<str>, f64)>,
}

impl std::fmt::Debug for LimitCharge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitCharge")
            .field("tokens", &self.tokens.as_ref().map(|t| t.1))
            .field("usd", &self.usd.as_ref().map(|u| u.1))
            .finish()
    }
}

impl LimitCharge {
    /// A charge holding nothing yet.
    pub fn empty(quotas: &Quotas) -> LimitCharge {
        LimitCharge {
            quotas: quotas.clone(),
            tokens: None,
            usd: None,
            endpoint_tokens: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_none() && self.usd.is_none() && self.endpoint_tokens.is_empty()
    }

    /// Add an attempt's reservation of an endpoint's tokens/minute.
    pub fn hold_endpoint_tokens(&mut self, reservation: (Arc<str>, f64)) {
        self.endpoint_tokens.push(reservation);
    }

    /// Replace the estimates by what the request used and cost: earlier attempts' endpoint
    /// tokens go back (they failed before using any worth counting), the last attempt's
    /// endpoint pays the real tokens. A charge dropped without this keeps its estimates as
    /// spent: a request whose end is unknown may have cost them.
    pub fn settle(mut self, tokens: u64, usd: f64) {
        let attempts = std::mem::take(&mut self.endpoint_tokens);
        let last = attempts.len().saturating_sub(1);
        for (i, (scope, reserved)) in attempts.into_iter().enumerate() {
            let used = if i == last { tokens as f64 } else { 0.0 };
            self.quotas.adjust(&scope, reserved - used);
        }
        if let Some((scope, reserved)) = self.tokens.take() {
            self.quotas.adjust(&scope, reserved - tokens as f64);
        }
        if let Some((scope, reserved)) = self.usd.take() {
            let usd = if usd.is_finite() { usd.max(0.0) } else { 0.0 };
            self.quotas.adjust(&scope, reserved - usd);
        }
    }
}

/// The estimate reserved from a budget: every estimated token (prompt estimate + max tokens)
/// at the dearer of the prompt and completion prices, plus the per-request fee. Route prices
/// override the model's field by field, as in billing. Media fees are charged when settled.
pub fn reservation_usd(model: &Pricing, route: Option<&Pricing>, est_tokens: u64) -> f64 {
    let pick = |field: fn(&Pricing) -> Option<f64>| route.and_then(field).or_else(|| field(model));
    let prompt = pick(|p| p.prompt.as_ref().map(|x| x.value)).unwrap_or(0.0);
    let completion = pick(|p| p.completion.as_ref().map(|x| x.value)).unwrap_or(0.0);
    let request = pick(|p| p.request.as_ref().map(|x| x.value)).unwrap_or(0.0);
    est_tokens as f64 * prompt.max(completion) + request
}

impl Quotas {
    /// At the door: one request off the key's requests/minute; refused at once when its
    /// tokens/minute or budget is known to be spent.
    pub async fn admit_key(&self, caller: &Caller) -> Result<(), KeyRefusal> {
        if caller.rpm.is_none() && caller.tpm.is_none() && caller.budget.is_none() {
            return Ok(());
        }
        let scopes = KeyScopes::of(caller, now_ms());
        if let Some((budget, _)) = &scopes.budget {
            if self.refused_for(&budget.name).is_some() {
                return Err(KeyRefusal::BudgetExceeded(until_period_end(&budget.bounds)));
            }
        }
        if let Some(wait) = scopes
            .tpm
            .as_ref()
            .and_then(|(name, _)| self.refused_for(name))
        {
            return Err(KeyRefusal::RateLimited(wait));
        }
        if let Some((name, limit)) = &scopes.rpm {
            self.take(name, *limit, 1.0)
                .await
                .map_err(KeyRefusal::RateLimited)?;
        }
        Ok(())
    }

    /// Once the model is known: reserve the request's estimated tokens and cost from the
    /// key's tokens/minute and budget, into `charge`. On a refusal nothing stays reserved.
    pub async fn reserve_for_key(
        &self,
        caller: &Caller,
        est_tokens: u64,
        est_usd: f64,
        charge: &mut LimitCharge,
    ) -> Result<(), KeyRefusal> {
        if caller.tpm.is_none() && caller.budget.is_none() {
            return Ok(());
        }
        let scopes = KeyScopes::of(caller, now_ms());
        let mut tokens = None;
        if let Some((name, limit)) = scopes.tpm {
            let amount = (est_tokens.max(1) as f64).min(limit.capacity);
            self.take(&name, limit, amount)
                .await
                .map_err(KeyRefusal::RateLimited)?;
            tokens = Some((name, amount));
        }
        if let Some((budget, limit)) = scopes.budget {
            let usd = if est_usd.is_finite() {
                est_usd.max(0.0)
            } else {
                0.0
            };
            if self.take(&budget.name, limit, usd).await.is_err() {
                // Nothing was used: the tokens reserved above go back.
                if let Some((scope, amount)) = tokens {
                    self.adjust(&scope, amount);
                }
                return Err(KeyRefusal::BudgetExceeded(until_period_end(&budget.bounds)));
            }
            charge.usd = Some((budget.name.clone(), usd));
        }
        charge.tokens = tokens;
        Ok(())
    }

    /// Usage of a request that reserved nothing (a video job, a request that never reached
    /// a route), charged to the key's tokens/minute and current budget as it stands.
    pub fn charge_unreserved(&self, key_id: &str, tokens: u64, usd: f64) {
        if tokens > 0 {
            self.adjust(&allowance_name("key", key_id, "tpm"), -(tokens as f64));
        }
        if usd.is_finite() && usd > 0.0 {
            self.charge_matching(&allowance_name("key", key_id, "usd:"), usd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller::Budget;
    use crate::config::Price;
    use crate::period::BudgetPeriod;

    fn price(s: &str) -> Option<Price> {
        Some(Price::parse(s).unwrap())
    }

    #[test]
    fn reservations_price_every_token_at_the_dearer_rate_plus_the_fee() {
        let model = Pricing {
            prompt: price("0.000001"),
            completion: price("0.000003"),
            request: price("0.01"),
            ..Pricing::default()
        };
        let route = Pricing {
            completion: price("0.00001"),
            ..Pricing::default()
        };
        // (route, tokens, expected)
        let cases = [
            (None, 1000, 1000.0 * 0.000003 + 0.01),
            (Some(&route), 1000, 1000.0 * 0.00001 + 0.01),
            (None, 0, 0.01),
        ];
        for (route, tokens, expected) in cases {
            let got = reservation_usd(&model, route, tokens);
            assert!((got - expected).abs() < 1e-12, "{got} {expected}");
        }
        assert_eq!(reservation_usd(&Pricing::default(), None, 5000), 0.0);
    }

    fn caller(budget: Option<Budget>, tpm: Option<u64>) -> Caller {
        Caller::new("team".into(), false, None, None, tpm, budget)
    }

    async fn reserve(quotas: &Quotas, c: &Caller) -> Result<LimitCharge, KeyRefusal> {
        let mut charge = LimitCharge::empty(quotas);
        quotas.reserve_for_key(c, 100, 0.1, &mut charge).await?;
        Ok(charge)
    }

    /// Concurrent reservations cannot all slip under the line: each takes its estimate, the
    /// budget refuses once the estimates fill it, and settling for less frees the rest.
    #[actix_rt::test]
    async fn reservations_fill_the_budget_and_settlement_frees_the_difference() {
        let quotas = Quotas::start(super::super::QuotaSettings::default(), "r1", None);
        let budget = Budget {
            micro_usd: 1_000_000,
            period: BudgetPeriod::Day,
        };
        let c = caller(Some(budget), Some(100_000));
        let mut held = Vec::new();
        for _ in 0..10 {
            held.push(reserve(&quotas, &c).await.unwrap());
        }
        let refusal = reserve(&quotas, &c).await.unwrap_err();
        let KeyRefusal::BudgetExceeded(wait) = refusal else {
            panic!("{refusal:?}")
        };
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(86_400));
        assert!(matches!(
            quotas.admit_key(&c).await,
            Err(KeyRefusal::BudgetExceeded(_))
        ));
        // Two requests cost half their estimate: one more request's worth is free again.
        for charge in held.drain(..2) {
            charge.settle(10, 0.05);
        }
        let scopes = KeyScopes::of(&c, now_ms());
        let (budget, _) = scopes.budget.unwrap();
        quotas
            .shared
            .scopes()
            .get_mut(&*budget.name)
            .unwrap()
            .refused_until = None;
        assert!(reserve(&quotas, &c).await.is_ok());
        assert!(reserve(&quotas, &c).await.is_err());
    }
}
