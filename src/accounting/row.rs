//! One `api_logs` row: what the database, the spill file and the CLI agree on.

use std::borrow::Cow;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sqlx::any::{Any, AnyArguments};
use sqlx::query::Query;

use crate::record::RequestRecord;

/// Column list in insert order; [`LogRow::bind_all`] and [`LogRow::sqlite_params`] follow it.
pub const COLUMNS: &[&str] = &[
    "id",
    "request_id",
    "ts_ms",
    "model_id",
    "model_type",
    "op",
    "route",
    "endpoint",
    "api_key_id",
    "status_code",
    "outcome",
    "stream",
    "latency_ms",
    "ttfb_ms",
    "upstream_ms",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "total_tokens",
    "usage_estimated",
    "audio_seconds",
    "images",
    "video_seconds",
    "cost_usd",
    "attempts",
    "error_code",
    "error",
    "replica",
];

/// Longest error text kept in a row: enough to diagnose, small enough for a busy table.
const MAX_ERROR_CHARS: usize = 500;

/// `text` cut after its first `max` characters (not bytes: a cut never splits a character).
fn cut_to_chars(mut text: String, max: usize) -> String {
    if let Some((end, _)) = text.char_indices().nth(max) {
        text.truncate(end);
    }
    text
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    pub id: String,
    pub request_id: String,
    /// Request start, unix milliseconds.
    pub ts_ms: i64,
    pub model_id: Option<String>,
    /// Names from a fixed set (model types, operations, outcomes): borrowed, not copied, on the
    /// request path; owned only when read back from the database or the spill file.
    pub model_type: Option<Cow<'static, str>>,
    pub op: Cow<'static, str>,
    pub route: Option<String>,
    pub endpoint: Option<String>,
    pub api_key_id: Option<String>,
    pub status_code: i64,
    pub outcome: Cow<'static, str>,
    pub stream: bool,
    pub latency_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub upstream_ms: Option<f64>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub cached_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub usage_estimated: bool,
    pub audio_seconds: Option<f64>,
    pub images: Option<i64>,
    pub video_seconds: Option<f64>,
    pub cost_usd: Option<f64>,
    pub attempts: i64,
    pub error_code: Option<String>,
    pub error: Option<String>,
    /// The router that served the request ([`crate::replica`]); absent in spill lines written
    /// before the column existed.
    #[serde(default)]
    pub replica: Option<String>,
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

impl LogRow {
    /// The row of a finished request. It takes the record's strings over (the record is done
    /// with once its row and log line are made), so the request thread copies none of them.
    pub fn from_record(r: RequestRecord, cost_usd: Option<f64>) -> LogRow {
        let ts_ms = r
            .started_at
            .duration_since(UNIX_EPOCH)
            .map(|d| int(d.as_millis().min(u64::MAX as u128) as u64))
            .unwrap_or(0);
        let usage = r.usage;
        LogRow {
            id: uuid::Uuid::now_v7().simple().to_string(),
            request_id: r.request_id,
            ts_ms,
            model_id: r.model,
            model_type: r.model_type.map(|t| Cow::Borrowed(t.as_str())),
            op: Cow::Borrowed(r.op.as_str()),
            route: r.route,
            endpoint: r.endpoint,
            api_key_id: r.api_key_id,
            status_code: i64::from(r.status),
            outcome: Cow::Borrowed(r.outcome),
            stream: r.stream,
            latency_ms: ms(r.latency),
            ttfb_ms: r.ttfb.map(ms),
            upstream_ms: (r.attempts > 0).then(|| ms(r.upstream_time)),
            prompt_tokens: usage.map(|u| int(u.prompt_tokens)),
            completion_tokens: usage.map(|u| int(u.completion_tokens)),
            cached_tokens: usage.map(|u| int(u.cached_tokens)),
            total_tokens: usage.map(|u| int(u.total())),
            usage_estimated: usage.is_some_and(|u| u.estimated),
            audio_seconds: finite(r.audio_seconds),
            images: r.images.map(i64::from),
            video_seconds: finite(r.video_seconds),
            cost_usd: finite(cost_usd),
            attempts: i64::from(r.attempts),
            error_code: r.error_code,
            error: r.error.map(|e| cut_to_chars(e, MAX_ERROR_CHARS)),
            replica: None,
        }
    }

    /// Every column's value, in [`COLUMNS`] order, borrowed for the SQLite writer's prepared
    /// statement ([`super::sqlite_rows`]).
    pub fn sqlite_params(&self) -> [&dyn rusqlite::ToSql; 28] {
        [
            &self.id,
            &self.request_id,
            &self.ts_ms,
            &self.model_id,
            &self.model_type,
            &self.op,
            &self.route,
            &self.endpoint,
            &self.api_key_id,
            &self.status_code,
            &self.outcome,
            &self.stream,
            &self.latency_ms,
            &self.ttfb_ms,
            &self.upstream_ms,
            &self.prompt_tokens,
            &self.completion_tokens,
            &self.cached_tokens,
            &self.total_tokens,
            &self.usage_estimated,
            &self.audio_seconds,
            &self.images,
            &self.video_seconds,
            &self.cost_usd,
            &self.attempts,
            &self.error_code,
            &self.error,
            &self.replica,
        ]
    }

    /// Bind every column, in [`COLUMNS`] order, to an insert through the `Any` pool
    /// ([`super::db::insert_rows`]; SQLite's own writer binds [`LogRow::sqlite_params`]).
    pub fn bind_all<'q>(
        &'q self,
        mut q: Query<'q, Any, AnyArguments>,
    ) -> Query<'q, Any, AnyArguments> {
        q = q
            .bind(self.id.as_str())
            .bind(self.request_id.as_str())
            .bind(self.ts_ms)
            .bind(self.model_id.as_deref())
            .bind(self.model_type.as_deref())
            .bind(&*self.op)
            .bind(self.route.as_deref())
            .bind(self.endpoint.as_deref())
            .bind(self.api_key_id.as_deref())
            .bind(self.status_code)
            .bind(&*self.outcome)
            .bind(i64::from(self.stream))
            .bind(self.latency_ms)
            .bind(self.ttfb_ms)
            .bind(self.upstream_ms)
            .bind(self.prompt_tokens)
            .bind(self.completion_tokens)
            .bind(self.cached_tokens)
            .bind(self.total_tokens)
            .bind(i64::from(self.usage_estimated))
            .bind(self.audio_seconds)
            .bind(self.images)
            .bind(self.video_seconds)
            .bind(self.cost_usd)
            .bind(self.attempts)
            .bind(self.error_code.as_deref())
            .bind(self.error.as_deref())
            .bind(self.replica.as_deref());
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error text is cut after its first characters, never inside one, and a short one is
    /// kept whole.
    #[test]
    fn error_text_is_cut_at_a_character_count() {
        let cases: [(&str, usize, &str); 7] = [
            ("", 3, ""),
            ("abc", 3, "abc"),
            ("abcd", 3, "abc"),
            ("ab", 3, "ab"),
            ("éèêë", 2, "éè"),
            ("a😀b", 2, "a😀"),
            ("😀😀", 0, ""),
        ];
        for (text, max, cut) in cases {
            assert_eq!(
                cut_to_chars(text.to_string(), max),
                cut,
                "{text:?} at {max}"
            );
        }
    }

    /// The row keeps the record's error text up to `MAX_ERROR_CHARS` characters.
    #[test]
    fn a_long_error_is_kept_to_its_first_characters() {
        let long: String = "é".repeat(MAX_ERROR_CHARS + 10);
        let record = RequestRecord {
            error: Some(long),
            ..crate::record::test_record()
        };
        let row = LogRow::from_record(record, None);
        let kept = row.error.unwrap_or_default();
        assert_eq!(kept.chars().count(), MAX_ERROR_CHARS);
        assert!(kept.chars().all(|c| c == 'é'));
    }
}
