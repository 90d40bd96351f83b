//! Usage accounting: every finished request's record is priced, counted in the metrics and
//! queued for the `api_logs` table — all without blocking the request that produced it.
//!
//! - [`cost`]: pricing arithmetic (model pricing overlaid by route pricing).
//! - [`row`]: the `api_logs` row; [`db`]: its SQL (insert, tail, aggregates).
//! - [`logger`]: the batching `RequestLogger` actor and the request path's [`LogQueue`].
//! - [`spill`]: the spill file for rows the database could not take yet.
//! - [`cli`]: `switchyard logs` and `switchyard usage`.
//! - [`settings`]: the environment variables of this feature.

pub mod cli;
pub mod cost;
pub mod db;
pub mod logger;
pub mod row;
pub mod settings;
pub mod spill;

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::record::{LogSink, RecordSink, RequestRecord};
pub use logger::LogQueue;
pub use row::LogRow;

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
