//! The production record sink: every finished request is priced, counted in the metrics and
//! queued for the `api_logs` table. It lives here because `metrics` sits above `accounting`
//! (it also reads the request logger's counters at scrape time): `accounting` never imports
//! `metrics`.

use std::sync::Arc;

use super::Metrics;
use crate::accounting::{cost, LogQueue, LogRow};
use crate::quota::Quotas;
use crate::record::{LogSink, RecordSink, RequestRecord};

/// The production sink: the key's limits settled, metrics, one tracing line, and a database row.
pub struct AccountingSink {
    metrics: Arc<Metrics>,
    log: Option<LogQueue>,
    /// This router's identity ([`crate::replica`]), stamped on every row.
    replica: Arc<str>,
    /// Where keys' tokens/minute and budgets are settled with what requests used and cost.
    quotas: Option<Quotas>,
}

impl AccountingSink {
    pub fn new(metrics: Arc<Metrics>, log: Option<LogQueue>, replica: &str) -> AccountingSink {
        AccountingSink {
            metrics,
            log,
            replica: Arc::from(replica),
            quotas: None,
        }
    }

    pub fn with_quotas(mut self, quotas: Quotas) -> AccountingSink {
        self.quotas = Some(quotas);
        self
    }

    /// Replace the request's reserved estimates by its real tokens and cost (streams
    /// included: the record is written when the stream ends); usage nothing reserved is
    /// charged to the key as it stands.
    fn settle(&self, record: &RequestRecord, cost: Option<f64>) {
        let tokens = record.usage.map_or(0, |u| u.total());
        let usd = cost.unwrap_or(0.0);
        match record.key_charge.take() {
            Some(charge) => charge.settle(tokens, usd),
            None => {
                if let (Some(quotas), Some(key)) = (&self.quotas, &record.api_key_id) {
                    quotas.charge_unreserved(key, tokens, usd);
                }
            }
        }
    }
}

impl RecordSink for AccountingSink {
    fn record(&self, record: RequestRecord) {
        let cost = cost::of_record(&record);
        self.settle(&record, cost);
        self.metrics.observe(&record, cost);
        LogSink::write_line(&record);
        if let Some(queue) = &self.log {
            // The row takes the record's strings over rather than copying them.
            let mut row = LogRow::from_record(record, cost);
            row.replica = Some(self.replica.to_string());
            queue.push(row);
        }
    }
}
