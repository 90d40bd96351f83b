//! A record sink in front of the real one that charges each finished request's tokens to the
//! key that made it (tokens/minute limits need the real usage, known only at the end).

use std::sync::Arc;
use std::time::Instant;

use super::Auth;
use crate::record::{RecordSink, RequestRecord};

pub struct KeyUsageSink {
    auth: Arc<Auth>,
    inner: Arc<dyn RecordSink>,
}

impl KeyUsageSink {
    pub fn new(auth: Arc<Auth>, inner: Arc<dyn RecordSink>) -> KeyUsageSink {
        KeyUsageSink { auth, inner }
    }
}

impl RecordSink for KeyUsageSink {
    fn record(&self, record: RequestRecord) {
        if let (Some(key), Some(usage)) = (&record.api_key_id, record.usage) {
            self.auth
                .limiter
                .charge_tokens(key, usage.total(), Instant::now());
        }
        self.inner.record(record);
    }
}
