//! `switchyard logs` (tail and filter) and `switchyard usage` (aggregates), reading the same
//! database the router writes (SQLite by default, PostgreSQL when configured), in the spirit
//! of the original gateway's `scripts/view_logs.py`.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::db::{self, Filter, GroupBy, Period};
use super::row::LogRow;
use crate::config::ProcessEnv;
use crate::quota::keys::KeyScopes;
use crate::quota::store::{read_rows, LedgerRow};
use crate::store::{DbKind, DbSettings, Store};

#[derive(Args, Clone, Debug, Default)]
pub struct FilterArgs {
    /// Only rows at or after this time: `15m`, `24h`, `7d` ago, or unix seconds/milliseconds.
    #[arg(long)]
    pub since: Option<String>,
    /// Only rows before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Public model id.
    #[arg(long)]
    pub model: Option<String>,
    /// Caller key id.
    #[arg(long)]
    pub key: Option<String>,
    /// success, error, canceled or rate_limited.
    #[arg(long)]
    pub outcome: Option<String>,
    /// HTTP status code.
    #[arg(long)]
    pub status: Option<i64>,
    /// Operation: chat_completions, embeddings, speech, transcriptions, images, video, …
    #[arg(long)]
    pub op: Option<String>,
}

#[derive(Args, Clone, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// One request id.
    #[arg(long)]
    pub request_id: Option<String>,
    /// How many of the newest rows to print.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub limit: u32,
    /// Keep printing new rows as they arrive (Ctrl-C to stop).
    #[arg(short, long)]
    pub follow: bool,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone, Debug)]
pub struct UsageArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Group by any of: model, key, replica, period.
    #[arg(long, default_value = "model")]
    pub by: String,
    /// Period length when grouping by period: hour, day or month (30 days).
    #[arg(long, default_value = "day")]
    pub period: String,
    #[arg(long)]
    pub json: bool,
}

impl FilterArgs {
    pub fn to_filter(&self, now_ms: i64) -> Result<Filter, String> {
        let time = |v: &Option<String>, name: &str| -> Result<Option<i64>, String> {
            v.as_deref()
                .map(|s| {
                    db::parse_time_ms(s, now_ms).ok_or_else(|| {
                        format!("--{name} {s:?}: expected 15m/24h/7d or unix seconds")
                    })
                })
                .transpose()
        };
        Ok(Filter {
            since_ms: time(&self.since, "since")?,
            until_ms: time(&self.until, "until")?,
            model: self.model.clone(),
            api_key_id: self.key.clone(),
            outcome: self.outcome.clone(),
            status: self.status,
            op: self.op.clone(),
            request_id: None,
        })
    }
}

/// Open the configured database for reading: never create an empty SQLite file by mistake.
async fn open() -> Result<Store, String> {
    let settings = DbSettings::from_vars(&ProcessEnv)?;
    if settings.kind == DbKind::Sqlite {
        if let Some(path) = &settings.sqlite_path {
            if !path.exists() {
                return Err(format!(
                    "no database at {} (set SQLITE_DB_PATH, or run the router first)",
                    path.display()
                ));
            }
        }
    }
    let store = Store::connect(&settings)
        .await
        .map_err(|e| format!("database {}: {e}", settings.describe()))?;
    store
        .migrate()
        .await
        .map_err(|e| format!("database {}: {e}", settings.describe()))?;
    Ok(store)
}

fn run<F: std::future::Future<Output = Result<(), String>>>(fut: F) -> ExitCode {
    let system = actix_rt::System::new();
    match system.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn fmt_time(ts_ms: i64) -> String {
    // UTC, without a date library: days since the epoch → civil date (Howard Hinnant's).
    let secs = ts_ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn print_row(row: &LogRow, json: bool) {
    if json {
        if let Ok(line) = serde_json::to_string(row) {
            println!("{line}");
        }
        return;
    }
    let tokens = match (row.prompt_tokens, row.completion_tokens) {
        (Some(p), Some(c)) => format!("{p}+{c}{}", if row.usage_estimated { "~" } else { "" }),
        _ => "-".into(),
    };
    println!(
        "{}  {:<40} {:<24} {:<16} {:>3} {:<12} {:>9.1}ms {:>12} {:>12} {}",
        fmt_time(row.ts_ms),
        row.request_id,
        row.model_id.as_deref().unwrap_or("-"),
        row.op,
        row.status_code,
        row.outcome,
        row.latency_ms,
        tokens,
        row.cost_usd.map_or("-".to_string(), |c| format!("${c:.6}")),
        row.route.as_deref().unwrap_or("-"),
    );
}

pub fn logs(args: LogsArgs) -> ExitCode {
    run(async move {
        let store = open().await?;
        let mut filter = args.filter.to_filter(db::now_ms())?;
        filter.request_id = args.request_id.clone();
        if !args.json {
            println!(
                "{:<19}  {:<40} {:<24} {:<16} {:>3} {:<12} {:>11} {:>12} {:>12} route",
                "time (UTC)",
                "request id",
                "model",
                "op",
                "st",
                "outcome",
                "latency",
                "tokens",
                "cost"
            );
        }
        let rows = db::recent_rows(&store, &filter, args.limit)
            .await
            .map_err(|e| e.to_string())?;
        let mut seen: HashSet<String> = HashSet::new();
        let mut newest = filter.since_ms.unwrap_or(0);
        for row in &rows {
            print_row(row, args.json);
            newest = newest.max(row.ts_ms);
            seen.insert(row.id.clone());
        }
        if !args.follow {
            return Ok(());
        }
        // Rows are committed in batches, a little after their timestamp: look back a few
        // seconds each poll and skip what was printed already.
        let look_back = 30_000;
        loop {
            actix_rt::time::sleep(Duration::from_millis(500)).await;
            let mut f = filter.clone();
            f.since_ms = Some(newest - look_back);
            let rows = db::recent_rows(&store, &f, 10_000)
                .await
                .map_err(|e| e.to_string())?;
            for row in rows {
                if seen.insert(row.id.clone()) {
                    print_row(&row, args.json);
                    newest = newest.max(row.ts_ms);
                }
            }
            let horizon = newest - look_back;
            if seen.len() > 100_000 {
                seen.clear();
                newest = newest.max(horizon);
            }
            use std::io::Write;
            let _ = std::io::stdout().flush();
        }
    })
}

pub fn usage(args: UsageArgs) -> ExitCode {
    run(async move {
        let period = Period::parse(&args.period)
            .ok_or_else(|| format!("--period {:?}: expected hour, day or month", args.period))?;
        let group = GroupBy::parse(&args.by, period)?;
        let store = open().await?;
        let filter = args.filter.to_filter(db::now_ms())?;
        let rows = db::usage(&store, &filter, group)
            .await
            .map_err(|e| e.to_string())?;
        if args.json {
            let out = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
            println!("{out}");
            return Ok(());
        }
        let mut header = String::new();
        if group.period.is_some() {
            header.push_str(&format!("{:<19}  ", format!("{} (UTC)", period.as_str())));
        }
        if group.model {
            header.push_str(&format!("{:<28} ", "model"));
        }
        if group.key {
            header.push_str(&format!("{:<20} ", "key"));
        }
        if group.replica {
            header.push_str(&format!("{:<24} ", "replica"));
        }
        println!(
            "{header}{:>9} {:>7} {:>12} {:>12} {:>9} {:>14} {:>10}",
            "requests", "errors", "prompt", "completion", "~est", "cost (USD)", "avg ms"
        );
        for r in &rows {
            let mut line = String::new();
            if let Some(p) = r.period_start_ms {
                line.push_str(&format!("{:<19}  ", fmt_time(p)));
            }
            if let Some(m) = &r.model_id {
                line.push_str(&format!("{m:<28} "));
            }
            if let Some(k) = &r.api_key_id {
                line.push_str(&format!("{k:<20} "));
            }
            if let Some(k) = &r.replica {
                line.push_str(&format!("{k:<24} "));
            }
            println!(
                "{line}{:>9} {:>7} {:>12} {:>12} {:>9} {:>14.6} {:>10.1}",
                r.requests,
                r.errors,
                r.prompt_tokens,
                r.completion_tokens,
                r.estimated_requests,
                r.cost_usd,
                r.avg_latency_ms
            );
        }
        if group.key {
            print_budgets(&store).await;
        }
        Ok(())
    })
}

/// Keys with a budget (from the keys file, as the router reads it): the current period's spend
/// across replicas, from the shared ledger, against the budget.
async fn print_budgets(store: &Store) {
    let keys = crate::auth::keys_file_path(&ProcessEnv);
    let callers: Vec<_> = match crate::auth::KeyStore::load(&ProcessEnv, keys.as_deref()) {
        Ok(keys) => keys
            .callers()
            .filter(|c| c.budget.is_some())
            .cloned()
            .collect(),
        Err(errors) => {
            println!(
                "\nbudgets: the keys file could not be read: {}",
                errors.join("; ")
            );
            return;
        }
    };
    if callers.is_empty() {
        return;
    }
    let now = db::now_ms();
    let scopes: Vec<(String, f64, String)> = callers
        .iter()
        .filter_map(|c| {
            let (scope, limit) = KeyScopes::of(c, now).budget?;
            Some((
                scope.name.to_string(),
                limit.capacity,
                scope.bounds.label.clone(),
            ))
        })
        .collect();
    let names: Vec<String> = scopes.iter().map(|(s, ..)| s.clone()).collect();
    let rows = match read_rows(store, &names, now).await {
        Ok(rows) => rows,
        Err(e) => {
            println!("\nbudgets: the quota ledger could not be read: {e}");
            return;
        }
    };
    println!(
        "\n{:<20} {:<22} {:>14} {:>14} {:>14}",
        "key", "budget period", "spend (USD)", "budget (USD)", "left (USD)"
    );
    for (caller, (scope, budget, period)) in callers.iter().zip(&scopes) {
        let spent = rows.get(scope).map_or(0.0, LedgerRow::used);
        println!(
            "{:<20} {:<22} {:>14.6} {:>14.6} {:>14.6}",
            caller.key_id,
            period,
            spent,
            budget,
            (budget - spent).max(0.0)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::fmt_time;

    #[test]
    fn formats_utc_times() {
        assert_eq!(fmt_time(0), "1970-01-01 00:00:00");
        assert_eq!(fmt_time(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(fmt_time(951_782_400_000), "2000-02-29 00:00:00");
    }
}
