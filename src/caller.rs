//! Who is calling: the identity a client or admin key resolves to. It sits below everything
//! that carries it (the request record, the relay, handlers, limits), so none of them needs
//! the key store in `auth` to name it.

use crate::config::ModelDef;
use crate::period::BudgetPeriod;

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
}
