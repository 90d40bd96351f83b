//! Environment variables of accounting and observability (docs/configuration.md, "Accounting
//! and observability"). Kept apart from `settings.rs` so this feature's knobs live together.

use std::path::PathBuf;
use std::time::Duration;

use super::logger::LoggerSettings;
use crate::config::number_var;
use crate::config::VarSource;
use crate::store::DbSettings;

#[derive(Debug, Clone)]
pub struct ObservabilitySettings {
    /// `REQUEST_LOG_ENABLED`: write `api_logs` rows (metrics are always kept).
    pub request_log: bool,
    pub logger: LoggerSettings,
    /// `LOG_SPILL_PATH`: rows the database could not take yet.
    pub spill_path: PathBuf,
    /// `LOG_SPILL_MAX_MB` in bytes: past it, rows are dropped (and counted).
    pub spill_max_bytes: u64,
    /// `SHUTDOWN_GRACE_SECONDS`: how long in-flight requests and streams may run after
    /// SIGTERM/SIGINT before they are cut.
    pub shutdown_grace: Duration,
}

/// 1 GiB: about two million rows, half an hour of a database outage at 1,000 requests a
/// second, and small next to the disks routers run on.
const DEFAULT_SPILL_MAX_MB: f64 = 1024.0;
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// `REQUEST_LOG_ENABLED`'s words: those of [`crate::config::bool_word`], except that a blank
/// value is refused rather than read as false (switching the log off takes a word).
fn truthy(v: &str) -> Option<bool> {
    crate::config::bool_word(v).filter(|_| !v.trim().is_empty())
}

impl ObservabilitySettings {
    /// What an empty environment gives, for the database in `db`.
    fn defaults_for(db: &DbSettings) -> Self {
        ObservabilitySettings {
            request_log: true,
            logger: LoggerSettings::default(),
            spill_path: default_spill_path(db),
            spill_max_bytes: mib_to_bytes(DEFAULT_SPILL_MAX_MB),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }

    pub fn from_vars(vars: &dyn VarSource, db: &DbSettings) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let defaults = ObservabilitySettings::defaults_for(db);
        let mut num = |name: &str, min: f64, default: f64| -> f64 {
            number_var(vars, name, min, &mut errors).unwrap_or(default)
        };
        let logger = LoggerSettings {
            batch_size: num("LOG_BATCH_SIZE", 1.0, defaults.logger.batch_size as f64) as usize,
            flush_interval: Duration::from_secs_f64(
                num(
                    "LOG_FLUSH_INTERVAL_MS",
                    1.0,
                    defaults.logger.flush_interval.as_millis() as f64,
                ) / 1000.0,
            ),
            queue_capacity: num(
                "LOG_QUEUE_CAPACITY",
                1.0,
                defaults.logger.queue_capacity as f64,
            ) as usize,
        };
        let shutdown_grace = Duration::from_secs_f64(num(
            "SHUTDOWN_GRACE_SECONDS",
            0.0,
            defaults.shutdown_grace.as_secs_f64(),
        ));
        let spill_max_bytes = mib_to_bytes(num("LOG_SPILL_MAX_MB", 0.0, DEFAULT_SPILL_MAX_MB));
        let request_log = match vars.get("REQUEST_LOG_ENABLED") {
            None => defaults.request_log,
            Some(v) => truthy(&v).unwrap_or_else(|| {
                errors.push(format!("REQUEST_LOG_ENABLED={v:?}: expected true or false"));
                defaults.request_log
            }),
        };
        let spill_path = vars
            .get("LOG_SPILL_PATH")
            .filter(|p| !p.trim().is_empty())
            .map(PathBuf::from)
            .unwrap_or(defaults.spill_path);
        if errors.is_empty() {
            Ok(ObservabilitySettings {
                request_log,
                logger,
                spill_path,
                spill_max_bytes,
                shutdown_grace,
            })
        } else {
            Err(errors)
        }
    }
}

impl Default for ObservabilitySettings {
    fn default() -> Self {
        ObservabilitySettings::defaults_for(&DbSettings::default())
    }
}

fn mib_to_bytes(mib: f64) -> u64 {
    (mib * 1024.0 * 1024.0) as u64
}

/// Next to the SQLite file, or under `var/db/` for PostgreSQL.
fn default_spill_path(db: &DbSettings) -> PathBuf {
    match &db.sqlite_path {
        Some(p) => {
            let mut name = p.as_os_str().to_owned();
            name.push(".spill.jsonl");
            PathBuf::from(name)
        }
        None => PathBuf::from("var/db/api_logs.spill.jsonl"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_vars as vars;

    #[test]
    fn defaults_and_overrides() {
        let db = DbSettings::from_vars(&vars(&[("SQLITE_DB_PATH", "/tmp/x.db")])).unwrap();
        let s = ObservabilitySettings::from_vars(&vars(&[]), &db).unwrap();
        assert!(s.request_log);
        assert_eq!(s.spill_path, PathBuf::from("/tmp/x.db.spill.jsonl"));
        assert_eq!(s.shutdown_grace, Duration::from_secs(30));
        assert_eq!(s.spill_max_bytes, 1 << 30);
        let s = ObservabilitySettings::from_vars(
            &vars(&[
                ("REQUEST_LOG_ENABLED", "false"),
                ("LOG_BATCH_SIZE", "10"),
                ("SHUTDOWN_GRACE_SECONDS", "2.5"),
                ("LOG_SPILL_MAX_MB", "0.5"),
            ]),
            &db,
        )
        .unwrap();
        assert!(!s.request_log);
        assert_eq!(s.logger.batch_size, 10);
        assert_eq!(s.shutdown_grace, Duration::from_millis(2500));
        assert_eq!(s.spill_max_bytes, 512 * 1024);
    }

    #[test]
    fn bad_values_are_reported() {
        let db = DbSettings::from_vars(&vars(&[])).unwrap();
        let errs = ObservabilitySettings::from_vars(
            &vars(&[
                ("LOG_BATCH_SIZE", "0"),
                ("REQUEST_LOG_ENABLED", "maybe"),
                ("LOG_SPILL_MAX_MB", "-1"),
            ]),
            &db,
        )
        .unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
    }
}
