//! The key store: client and admin keys from `API_KEYS`, `ADMIN_API_KEY(S)` and the keys file,
//! kept only as SHA-256 digests and compared in constant time. A key is known by its name (or
//! `key-<first 8 hex of its digest>`), never by its text.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::caller::{Budget, Caller};
use crate::config::{place_in, substitute_str, unknown_key_message, VarSource};
use crate::period::BudgetPeriod;

/// The Router checks a key's model list while it resolves the model for routing.
impl crate::mesh::ModelAccess for Caller {
    fn may_use(&self, def: &crate::config::ModelDef) -> bool {
        Caller::may_use(self, def)
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }
}

type KeyDigest = [u8; 32];

pub fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

fn short_id(d: &KeyDigest) -> String {
    let hex: String = d[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("key-{hex}")
}

struct Entry {
    digest: KeyDigest,
    caller: Arc<Caller>,
}

/// The shortest key accepted anywhere (environment or keys file): a shorter one is guessable.
pub const MIN_KEY_LEN: usize = 8;

/// Every configured key. `Debug` shows names only.
#[derive(Default)]
pub struct KeyStore {
    entries: Vec<Entry>,
    /// The keys file has a key written in it (not only `${VAR}`s or `key_sha256`).
    file_has_plaintext_keys: bool,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.caller.key_id))
            .finish()
    }
}

/// What a presented key turned out to be.
pub enum Lookup {
    Known(Arc<Caller>),
    Unknown,
}

impl KeyStore {
    /// Whether `/v1` needs a key: true as soon as one client key is configured.
    pub fn requires_client_key(&self) -> bool {
        self.entries.iter().any(|e| !e.caller.admin)
    }

    pub fn has_admin_keys(&self) -> bool {
        self.entries.iter().any(|e| e.caller.admin)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the keys file holds a key itself, so who may read the file matters.
    pub fn file_has_plaintext_keys(&self) -> bool {
        self.file_has_plaintext_keys
    }

    pub fn callers(&self) -> impl Iterator<Item = &Arc<Caller>> {
        self.entries.iter().map(|e| &e.caller)
    }

    /// Find the key whose digest equals that of `presented`. Every entry is compared, each in
    /// constant time, so timing says nothing about how close a guess was.
    pub fn lookup(&self, presented: &str) -> Lookup {
        let wanted = digest(presented);
        let mut found: Option<&Entry> = None;
        for entry in &self.entries {
            let equal: bool = entry.digest.ct_eq(&wanted).into();
            if equal && found.is_none() {
                found = Some(entry);
            }
        }
        match found {
            Some(e) => Lookup::Known(e.caller.clone()),
            None => Lookup::Unknown,
        }
    }

    /// Build from the environment and the optional keys file; every problem is reported.
    pub fn load(vars: &dyn VarSource, file: Option<&Path>) -> Result<KeyStore, Vec<String>> {
        let mut builder = Builder::default();
        if let Some(list) = vars.get("API_KEYS") {
            builder.add_listed("API_KEYS", &list, false);
        }
        for var in ["ADMIN_API_KEY", "ADMIN_API_KEYS"] {
            if let Some(list) = vars.get(var) {
                builder.add_listed(var, &list, true);
            }
        }
        if let Some(path) = file {
            match std::fs::read_to_string(path) {
                Ok(text) => builder.add_file(&path.display().to_string(), &text, vars),
                Err(e) => builder
                    .errors
                    .push(format!("{}: cannot read: {e}", path.display())),
            }
        }
        builder.finish()
    }

    /// Parse a keys file from text (tests, fuzzing).
    pub fn from_file_text(
        label: &str,
        text: &str,
        vars: &dyn VarSource,
    ) -> Result<KeyStore, Vec<String>> {
        let mut builder = Builder::default();
        builder.add_file(label, text, vars);
        builder.finish()
    }
}

fn split_keys(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|k| !k.is_empty())
}

/// The keys file as written. Unknown keys are collected rather than refused by serde, so that
/// every one is reported (with the closest known key), not only the first. They are errors
/// even with `CONFIG_LENIENT`: a misspelt `models` or `rpm` would give a key more than meant.
#[derive(Debug, Deserialize)]
struct RawKeysFile {
    #[serde(default)]
    keys: Vec<RawKey>,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_yaml::Value>,
}

const KEYS_FILE_KEYS: &[&str] = &["keys"];

#[derive(Debug, Deserialize)]
struct RawKey {
    name: String,
    /// The key itself (usually `${VAR}`).
    key: Option<String>,
    /// Or its SHA-256 in hex, so the file need not hold the key at all.
    key_sha256: Option<String>,
    #[serde(default)]
    admin: bool,
    models: Option<Vec<String>>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    /// USD per period, a decimal (`0.50`).
    budget_usd: Option<f64>,
    /// `day`, `week`, `month` (default) or `total`.
    budget_period: Option<String>,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_yaml::Value>,
}

const KEY_ENTRY_KEYS: &[&str] = &[
    "name",
    "key",
    "key_sha256",
    "admin",
    "models",
    "rpm",
    "tpm",
    "budget_usd",
    "budget_period",
];

/// The most a budget may be (a typo guard, and it keeps micro-dollars well inside `u64`).
const MAX_BUDGET_USD: f64 = 1e9;

/// A key's `budget_usd` and `budget_period`, checked; `Err` says what is wrong.
fn parse_budget(usd: Option<f64>, period: Option<&str>) -> Result<Option<Budget>, String> {
    let period = match period {
        None => BudgetPeriod::default(),
        Some(word) => BudgetPeriod::parse(word).ok_or_else(|| {
            format!(
                "`budget_period` must be one of {} (got {word:?})",
                BudgetPeriod::NAMES.join(", ")
            )
        })?,
    };
    match usd {
        None if period != BudgetPeriod::default() => {
            Err("`budget_period` needs `budget_usd`".into())
        }
        None => Ok(None),
        Some(v) if !(0.0..=MAX_BUDGET_USD).contains(&v) => Err(format!(
            "`budget_usd` must be a number from 0 to {MAX_BUDGET_USD} (got {v})"
        )),
        Some(v) => Ok(Some(Budget {
            micro_usd: (v * 1e6).round() as u64,
            period,
        })),
    }
}

/// What a keys file entry restricts (environment keys restrict nothing).
#[derive(Default)]
struct Limits {
    models: Option<Vec<String>>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    budget: Option<Budget>,
}

#[derive(Default)]
struct Builder {
    entries: Vec<Entry>,
    digests: HashSet<KeyDigest>,
    names: HashSet<String>,
    errors: Vec<String>,
    file_has_plaintext_keys: bool,
}

/// Whether a keys file's `key` field holds key text itself, beyond `${VAR}` references (a
/// `${VAR:-default}` default is written in the file, so it counts).
fn writes_key_text(field: &str) -> bool {
    let no_vars = std::collections::HashMap::<String, String>::new();
    !substitute_str(field, &no_vars).0.trim().is_empty()
}

impl Builder {
    fn finish(self) -> Result<KeyStore, Vec<String>> {
        if self.errors.is_empty() {
            Ok(KeyStore {
                entries: self.entries,
                file_has_plaintext_keys: self.file_has_plaintext_keys,
            })
        } else {
            Err(self.errors)
        }
    }

    /// The comma-separated keys of environment variable `var`; the error names the key by its
    /// place in the list, never by its text.
    fn add_listed(&mut self, var: &str, list: &str, admin: bool) {
        for (i, key) in split_keys(list).enumerate() {
            if key.len() < MIN_KEY_LEN {
                self.errors.push(format!(
                    "{var}: key #{} must be at least {MIN_KEY_LEN} characters",
                    i + 1
                ));
                continue;
            }
            self.add(var, None, digest(key), admin, Limits::default());
        }
    }

    fn add(
        &mut self,
        source: &str,
        name: Option<String>,
        digest: KeyDigest,
        admin: bool,
        limits: Limits,
    ) {
        let key_id = name.unwrap_or_else(|| short_id(&digest));
        if !self.digests.insert(digest) {
            self.errors.push(format!(
                "{source}: key `{key_id}` is configured twice (same key value)"
            ));
            return;
        }
        if !self.names.insert(key_id.clone()) {
            self.errors
                .push(format!("{source}: key name `{key_id}` is used twice"));
            return;
        }
        self.entries.push(Entry {
            digest,
            caller: Arc::new(Caller::new(
                key_id,
                admin,
                limits.models,
                limits.rpm,
                limits.tpm,
                limits.budget,
            )),
        });
    }

    fn add_file(&mut self, label: &str, text: &str, vars: &dyn VarSource) {
        let raw: RawKeysFile = match serde_yaml::from_str::<Option<RawKeysFile>>(text) {
            Ok(Some(raw)) => raw,
            Ok(None) => return,
            Err(e) => {
                self.errors.push(format!("{label}: {e}"));
                return;
            }
        };
        self.refuse_unknown_keys(label, "", &raw.unknown, KEYS_FILE_KEYS);
        for (i, k) in raw.keys.into_iter().enumerate() {
            let at = format!("keys[{i}] (`{}`)", k.name);
            self.refuse_unknown_keys(label, &at, &k.unknown, KEY_ENTRY_KEYS);
            let place = format!("{label}: {at}");
            let name = k.name.trim().to_string();
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                self.errors
                    .push(format!("{place}: `name` must be non-empty without spaces"));
                continue;
            }
            let digest = match (&k.key, &k.key_sha256) {
                (Some(text), None) => {
                    self.file_has_plaintext_keys |= writes_key_text(text);
                    let (value, missing) = substitute_str(text, vars);
                    if !missing.is_empty() {
                        self.errors.push(format!(
                            "{place}: field `key`: environment variable {} is not set",
                            missing.join(", ")
                        ));
                        continue;
                    }
                    let value = value.trim();
                    if value.len() < MIN_KEY_LEN {
                        self.errors.push(format!(
                            "{place}: `key` must be at least {MIN_KEY_LEN} characters"
                        ));
                        continue;
                    }
                    digest_of(value)
                }
                (None, Some(hex)) => match parse_hex_digest(hex) {
                    Some(d) => d,
                    None => {
                        self.errors.push(format!(
                            "{place}: `key_sha256` must be 64 hexadecimal characters"
                        ));
                        continue;
                    }
                },
                _ => {
                    self.errors.push(format!(
                        "{place}: give exactly one of `key` and `key_sha256`"
                    ));
                    continue;
                }
            };
            if k.rpm == Some(0) || k.tpm == Some(0) {
                self.errors.push(format!(
                    "{place}: rpm/tpm must be at least 1 (leave out for no limit)"
                ));
                continue;
            }
            let budget = match parse_budget(k.budget_usd, k.budget_period.as_deref()) {
                Ok(budget) => budget,
                Err(problem) => {
                    self.errors.push(format!("{place}: {problem}"));
                    continue;
                }
            };
            let models = k.models.map(|list| {
                list.into_iter()
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .collect::<Vec<_>>()
            });
            let limits = Limits {
                models,
                rpm: k.rpm,
                tpm: k.tpm,
                budget,
            };
            self.add(label, Some(name), digest, k.admin, limits);
        }
    }

    /// Every unknown key at `path` of the file is an error naming the closest known key.
    fn refuse_unknown_keys(
        &mut self,
        label: &str,
        path: &str,
        unknown: &BTreeMap<String, serde_yaml::Value>,
        known: &[&str],
    ) {
        let place = place_in(path);
        self.errors.extend(
            unknown
                .keys()
                .map(|key| unknown_key_message(label, &place, key, known)),
        );
    }
}

fn digest_of(value: &str) -> KeyDigest {
    digest(value)
}

fn parse_hex_digest(hex: &str) -> Option<KeyDigest> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_vars as vars;

    #[test]
    fn env_keys_are_found_by_value_and_named_by_digest() {
        let store = KeyStore::load(
            &vars(&[
                ("API_KEYS", "sk-one-0001, sk-two-0002,,"),
                ("ADMIN_API_KEY", "adm-key-0001"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(store.len(), 3);
        assert!(store.requires_client_key());
        assert!(store.has_admin_keys());
        let Lookup::Known(c) = store.lookup("sk-two-0002") else {
            panic!("sk-two-0002 not found")
        };
        assert!(!c.admin);
        assert!(c.key_id.starts_with("key-") && c.key_id.len() == 12);
        assert!(!c.key_id.contains("sk-two"));
        assert!(matches!(store.lookup("adm-key-0001"), Lookup::Known(c) if c.admin));
        assert!(matches!(store.lookup("sk-one-000"), Lookup::Unknown));
        assert!(!format!("{store:?}").contains("sk-one"));
    }

    /// Keys from the environment obey the keys file's minimum length, and the error names the
    /// variable and the key's place, never the key.
    #[test]
    fn short_keys_are_refused_from_every_variable() {
        for var in ["API_KEYS", "ADMIN_API_KEY", "ADMIN_API_KEYS"] {
            for (list, errors) in [
                ("x", vec!["#1"]),
                ("1234567", vec!["#1"]),
                ("12345678", vec![]),
                ("long-enough-1, short, long-enough-2, s", vec!["#2", "#4"]),
                (" padded-key-1 ,  ", vec![]),
            ] {
                let result = KeyStore::load(&vars(&[(var, list)]), None);
                let found = result.err().unwrap_or_default();
                assert_eq!(found.len(), errors.len(), "{var}={list:?}: {found:?}");
                for (message, place) in found.iter().zip(&errors) {
                    assert!(
                        message.starts_with(&format!("{var}: key {place} ")),
                        "{message}"
                    );
                    assert!(message.contains("at least 8 characters"), "{message}");
                    assert!(!message.contains("short") && !message.contains("1234567"));
                }
            }
        }
    }

    #[test]
    fn keys_file_with_names_models_limits_and_digests() {
        let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"; // "test"
        let text = format!(
            "keys:\n  - name: team-a\n    key: ${{TEAM_A}}\n    models: [demo-chat, \"local/*\"]\n    rpm: 60\n  - name: hashed\n    key_sha256: {sha}\n    admin: true\n"
        );
        let store =
            KeyStore::from_file_text("keys.yaml", &text, &vars(&[("TEAM_A", "secret-team-a")]))
                .unwrap();
        let Lookup::Known(a) = store.lookup("secret-team-a") else {
            panic!()
        };
        assert_eq!(a.key_id, "team-a");
        assert_eq!(a.rpm, Some(60));
        assert!(
            matches!(store.lookup("test"), Lookup::Known(c) if c.admin && c.key_id == "hashed")
        );
    }

    /// `budget_usd` is a decimal from 0 up, `budget_period` one of the calendar words
    /// (default month) and only with a budget; every problem names the key.
    #[test]
    fn budgets_in_the_keys_file() {
        // (entry fields, Ok(micro-dollars, period) or Err(part of the message))
        type Expected = Result<Option<(u64, BudgetPeriod)>, &'static str>;
        let cases: [(&str, Expected); 10] = [
            ("", Ok(None)),
            ("budget_usd: 0.50", Ok(Some((500_000, BudgetPeriod::Month)))),
            (
                "budget_usd: 12",
                Ok(Some((12_000_000, BudgetPeriod::Month))),
            ),
            ("budget_usd: 0", Ok(Some((0, BudgetPeriod::Month)))),
            (
                "{budget_usd: 1.25, budget_period: Week}",
                Ok(Some((1_250_000, BudgetPeriod::Week))),
            ),
            (
                "{budget_usd: 3, budget_period: total}",
                Ok(Some((3_000_000, BudgetPeriod::Total))),
            ),
            ("budget_usd: -1", Err("from 0 to")),
            ("budget_usd: .nan", Err("from 0 to")),
            (
                "{budget_usd: 1, budget_period: yearly}",
                Err("day, week, month, total"),
            ),
            ("budget_period: day", Err("needs `budget_usd`")),
        ];
        for (fields, expected) in cases {
            let fields = fields.trim_start_matches('{').trim_end_matches('}');
            let sep = if fields.is_empty() { "" } else { ", " };
            let text = format!("keys: [{{name: k, key: long-enough-key{sep}{fields}}}]");
            let got = KeyStore::from_file_text("k.yaml", &text, &vars(&[]));
            match (got, expected) {
                (Ok(store), Ok(budget)) => {
                    let Lookup::Known(c) = store.lookup("long-enough-key") else {
                        panic!("{text}")
                    };
                    assert_eq!(c.budget.map(|b| (b.micro_usd, b.period)), budget, "{text}");
                }
                (Err(errors), Err(part)) => {
                    assert_eq!(errors.len(), 1, "{errors:?}");
                    assert!(
                        errors[0].contains(part) && errors[0].contains("`k`"),
                        "{errors:?}"
                    );
                    assert!(!errors[0].contains("long-enough-key"), "{errors:?}");
                }
                (got, expected) => panic!("{text}: {:?} vs {expected:?}", got.map(|_| ())),
            }
        }
    }

    #[test]
    fn keys_file_errors_are_all_reported() {
        let text = "keys:\n  - name: a\n    key: short\n  - name: b\n  - name: c\n    key: ${NOPE}\n  - name: d\n    key_sha256: xyz\n  - name: e\n    key: long-enough-key\n    rpm: 0\n";
        let errs = KeyStore::from_file_text("k.yaml", text, &vars(&[])).unwrap_err();
        assert_eq!(errs.len(), 5, "{errs:?}");
        let dup = "keys:\n  - {name: a, key: same-key-1}\n  - {name: b, key: same-key-1}\n  - {name: a, key: other-key-1}\n";
        assert_eq!(
            KeyStore::from_file_text("k.yaml", dup, &vars(&[]))
                .unwrap_err()
                .len(),
            2
        );
        assert!(
            KeyStore::from_file_text("k.yaml", "keys: [{name: a, kee: x}]", &vars(&[])).is_err()
        );
    }

    #[test]
    fn every_listed_key_is_accepted_and_every_other_refused_with_a_suggestion() {
        let value = |k: &str| match k {
            "admin" => "true",
            "models" => "[m]",
            "rpm" | "tpm" => "5",
            "budget_usd" => "1.5",
            "budget_period" => "day",
            "key_sha256" => "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            _ => "long-enough-key",
        };
        for key in KEY_ENTRY_KEYS
            .iter()
            .filter(|k| !["name", "key"].contains(*k))
        {
            let text = format!(
                "keys: [{{name: a, key: long-enough-key, {key}: {}}}]",
                value(key)
            );
            let errs = KeyStore::from_file_text("k.yaml", &text, &vars(&[])).err();
            let unknown = errs.iter().flatten().filter(|e| e.contains("unknown key"));
            assert_eq!(unknown.count(), 0, "{key}: {errs:?}");
        }
        let errs = KeyStore::from_file_text(
            "k.yaml",
            "keys: [{name: a, key: long-enough-key, admn: true, rmp: 1}]\nkey: []\n",
            &vars(&[]),
        )
        .unwrap_err();
        assert_eq!(
            errs,
            vec![
                "k.yaml: unknown key `key` at the top level; did you mean `keys`?",
                "k.yaml: unknown key `admn` in keys[0] (`a`); did you mean `admin`?",
                "k.yaml: unknown key `rmp` in keys[0] (`a`); did you mean `rpm`?",
            ]
        );
    }
}
