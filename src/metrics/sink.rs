//! The production record sink: every finished request is priced, counted in the metrics and
//! queued for the `api_logs` table. It lives here because `metrics` sits above `accounting`
//! (it also reads the request logger's counters at scrape time): `accounting` never imports
//! `metrics`.

use std::sync::Arc;

use super::Metrics;
use crate::accounting::{cost, LogQueue, LogRow};
use crate::record::{LogSink, RecordSink, RequestRecord};

/// The production sink: metrics, one tracing line, and a database row.
pub struct AccountingSink {
    metrics: Arc<Metrics>,
    log: Option<LogQueue>,
    /// This router's identity ([`crate::replica`]), stamped on every row.
    replica: Arc<str>,
}

impl AccountingSink {
    pub fn new(metrics: Arc<Metrics>, log: Option<LogQueue>, replica: &str) -> AccountingSink {
        AccountingSink {
            metrics,
            log,
            replica: Arc::from(replica),
        }
    }
}

impl RecordSink for AccountingSink {
    fn record(&self, record: RequestRecord) {
        let cost = cost::of_record(&record);
        self.metrics.observe(&record, cost);
        if let Some(queue) = &self.log {
            let mut row = LogRow::from_record(&record, cost);
            row.replica = Some(self.replica.to_string());
            queue.push(row);
        }
        LogSink.record(record);
    }
}
