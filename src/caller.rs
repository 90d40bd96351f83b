//! Who is calling: the identity a client or admin key resolves to. It sits below everything
//! that carries it (the request record, the relay, handlers, limits), so none of them needs
//! the key store in `auth` to name it.

use std::sync::{Arc, Mutex};

use crate::config::ModelDef;
use crate::period::{BudgetPeriod, PeriodBounds};

/// Who is calling: what handlers, records and limits see of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's name, or `key-xxxxxxxx` from its digest. Safe to log.
    pub key_id: String,
    /// Admin keys may use `/admin/*` and `/metrics` (and `/v1`).
    pub admin: bool,
    /// Model ids/aliases (a trailing `*` matches a prefix); `None` = every model.
    pub models: Option<Vec<String>>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// Spend cap per calendar period (keys file `budget_usd`, `budget_period`).
    pub budget: Option<Budget>,
    /// What its allowances are called in the shared ledger (see [`AllowanceNames`]).
    pub allowances: AllowanceNames,
}

/// A key's spend cap: whole micro-dollars, so the caller stays `Eq` and sums stay exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub micro_usd: u64,
    pub period: BudgetPeriod,
}

impl Budget {
    pub fn usd(&self) -> f64 {
        self.micro_usd as f64 / 1e6
    }
}

impl Caller {
    pub fn new(
        key_id: String,
        admin: bool,
        models: Option<Vec<String>>,
        rpm: Option<u64>,
        tpm: Option<u64>,
        budget: Option<Budget>,
    ) -> Caller {
        Caller {
            allowances: AllowanceNames::of(&key_id),
            key_id,
            admin,
            models,
            rpm,
            tpm,
            budget,
        }
    }

    pub fn restricts_models(&self) -> bool {
        self.models.is_some()
    }

    /// Whether this key may use `def` (by its id or any alias).
    pub fn may_use(&self, def: &ModelDef) -> bool {
        let Some(patterns) = &self.models else {
            return true;
        };
        std::iter::once(def.id.as_str())
            .chain(def.aliases.iter().map(String::as_str))
            .any(|name| patterns.iter().any(|p| pattern_matches(p, name)))
    }
}

/// The name of an allowance in the shared ledger: `key:<id>:rpm`, `endpoint:<name>:tpm`,
/// `key:<id>:usd:month:2026-12-01`. Ids and endpoint names are configured labels, never
/// secrets.
pub fn allowance_name(owner_kind: &str, owner: &str, what: &str) -> String {
    format!("{owner_kind}:{owner}:{what}")
}

/// A key's allowance names, made once when the key is loaded: every limited request looks
/// its allowances up by name at least twice (at the door and once its model is known), and
/// formatting the names each time cost more than the lookups.
#[derive(Debug)]
pub struct AllowanceNames {
    pub rpm: Arc<str>,
    pub tpm: Arc<str>,
    /// `key:<id>:usd:`; a budget's name is this followed by its period's label.
    pub usd_prefix: Arc<str>,
    /// The budget period last asked for, with its name; remade when that period ends.
    current_budget: Mutex<Option<Arc<BudgetScope>>>,
}

/// One period of a key's budget, as the ledger names it.
#[derive(Debug, PartialEq, Eq)]
pub struct BudgetScope {
    pub name: Arc<str>,
    period: BudgetPeriod,
    pub bounds: PeriodBounds,
}

impl AllowanceNames {
    fn of(key_id: &str) -> AllowanceNames {
        AllowanceNames {
            rpm: allowance_name("key", key_id, "rpm").into(),
            tpm: allowance_name("key", key_id, "tpm").into(),
            usd_prefix: allowance_name("key", key_id, "usd:").into(),
            current_budget: Mutex::new(None),
        }
    }

    /// The budget scope of `period` that holds `now_ms`.
    pub fn budget(&self, period: BudgetPeriod, now_ms: i64) -> Arc<BudgetScope> {
        // Every update leaves the slot consistent: recover from a poisoned lock.
        let mut current = self
            .current_budget
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(scope) = current.as_ref().filter(|s| s.holds(period, now_ms)) {
            return scope.clone();
        }
        let bounds = period.bounds(now_ms);
        let scope = Arc::new(BudgetScope {
            name: format!("{}{}", self.usd_prefix, bounds.label).into(),
            period,
            bounds,
        });
        *current = Some(scope.clone());
        scope
    }
}

impl BudgetScope {
    fn holds(&self, period: BudgetPeriod, now_ms: i64) -> bool {
        self.period == period
            && now_ms >= self.bounds.start_ms
            && self.bounds.end_ms.is_none_or(|end| now_ms < end)
    }
}

/// The names follow from the key's id, so two keys' names are equal when their ids are;
/// the remembered period is a cache, not part of the identity.
impl PartialEq for AllowanceNames {
    fn eq(&self, other: &Self) -> bool {
        self.rpm == other.rpm && self.tpm == other.tpm && self.usd_prefix == other.usd_prefix
    }
}

impl Eq for AllowanceNames {}

impl Clone for AllowanceNames {
    fn clone(&self) -> Self {
        AllowanceNames {
            rpm: self.rpm.clone(),
            tpm: self.tpm.clone(),
            usd_prefix: self.usd_prefix.clone(),
            current_budget: Mutex::new(None),
        }
    }
}

fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_patterns_match_whole_names_or_a_prefix_before_the_star() {
        // (pattern, name, matches)
        let cases = [
            ("local/*", "local/qwen", true),
            ("local/*", "local/", true),
            ("local/*", "remote/qwen", false),
            ("demo-chat", "demo-chat", true),
            ("demo-chat", "demo-chat-2", false),
            ("*", "anything", true),
        ];
        for (pattern, name, matches) in cases {
            assert_eq!(pattern_matches(pattern, name), matches, "{pattern} {name}");
        }
    }

    /// The remembered budget scope is the one `bounds` would give, across period ends and
    /// for every period kind, whatever order the moments come in.
    #[test]
    fn the_remembered_budget_scope_is_always_the_current_one() {
        let names = AllowanceNames::of("team");
        assert_eq!(&*names.rpm, "key:team:rpm");
        assert_eq!(&*names.tpm, "key:team:tpm");
        let day = 86_400_000i64;
        // 2026-12-31T23:59:59.999Z, then across the new year, then back again.
        let eve = 1_798_761_599_999i64;
        let moments = [eve, eve + 1, eve + day * 40, eve, 0, eve + 7 * day, eve + 1];
        for period in [
            BudgetPeriod::Day,
            BudgetPeriod::Week,
            BudgetPeriod::Month,
            BudgetPeriod::Total,
        ] {
            for now in moments {
                let scope = names.budget(period, now);
                let bounds = period.bounds(now);
                assert_eq!(&*scope.name, format!("key:team:usd:{}", bounds.label));
                assert_eq!(scope.bounds, bounds, "{period:?} at {now}");
            }
        }
    }
}
