//! Per-key requests/minute and tokens/minute. Requests are counted when admitted; tokens are
//! charged after the request with the usage it really had (streams included), so a key that
//! overspends waits until its bucket refills. The buckets are per router replica.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::caller::Caller;
use crate::mesh::TokenBucket;

struct KeyBuckets {
    limits: (Option<u64>, Option<u64>),
    rpm: Option<TokenBucket>,
    tpm: Option<TokenBucket>,
}

impl KeyBuckets {
    fn new(rpm: Option<u64>, tpm: Option<u64>, now: Instant) -> KeyBuckets {
        KeyBuckets {
            limits: (rpm, tpm),
            rpm: rpm.map(|n| TokenBucket::per_minute(n, now)),
            tpm: tpm.map(|n| TokenBucket::per_minute(n, now)),
        }
    }
}

#[derive(Default)]
pub struct KeyLimiter {
    buckets: Mutex<HashMap<String, KeyBuckets>>,
}

impl KeyLimiter {
    /// Admit one request for `caller`, or say how long to wait.
    pub fn admit(&self, caller: &Caller, now: Instant) -> Result<(), Duration> {
        if caller.rpm.is_none() && caller.tpm.is_none() {
            return Ok(());
        }
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = map
            .entry(caller.key_id.clone())
            .or_insert_with(|| KeyBuckets::new(caller.rpm, caller.tpm, now));
        if entry.limits != (caller.rpm, caller.tpm) {
            // The key's limits changed on reload: start from full buckets at the new sizes.
            *entry = KeyBuckets::new(caller.rpm, caller.tpm, now);
        }
        let rpm_wait = entry
            .rpm
            .as_mut()
            .map_or(Duration::ZERO, |b| b.wait_for(1.0, now));
        // Tokens are charged afterwards; a key may start a request while any are left.
        let tpm_wait = entry
            .tpm
            .as_mut()
            .map_or(Duration::ZERO, |b| b.wait_for(1.0, now));
        let wait = rpm_wait.max(tpm_wait);
        if !wait.is_zero() {
            return Err(wait);
        }
        if let Some(b) = entry.rpm.as_mut() {
            b.take(1.0);
        }
        Ok(())
    }

    /// Charge `tokens` a finished request used to `key_id`'s tokens/minute bucket.
    pub fn charge_tokens(&self, key_id: &str, tokens: u64, now: Instant) {
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(b) = map.get_mut(key_id).and_then(|e| e.tpm.as_mut()) {
            b.settle(0.0, tokens as f64, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(rpm: Option<u64>, tpm: Option<u64>) -> Caller {
        Caller {
            key_id: "k".into(),
            admin: false,
            models: None,
            rpm,
            tpm,
        }
    }

    #[test]
    fn rpm_limits_requests_and_tpm_limits_after_usage() {
        let l = KeyLimiter::default();
        let t0 = Instant::now();
        let c = caller(Some(2), None);
        assert!(l.admit(&c, t0).is_ok());
        assert!(l.admit(&c, t0).is_ok());
        let wait = l.admit(&c, t0).unwrap_err();
        assert!(wait > Duration::from_secs(20) && wait <= Duration::from_secs(30));

        let l = KeyLimiter::default();
        let c = caller(None, Some(100));
        assert!(l.admit(&c, t0).is_ok());
        l.charge_tokens("k", 150, t0);
        assert!(l.admit(&c, t0).is_err(), "overspent key must wait");
        assert!(l.admit(&c, t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn changed_limits_take_effect() {
        let l = KeyLimiter::default();
        let t0 = Instant::now();
        assert!(l.admit(&caller(Some(1), None), t0).is_ok());
        assert!(l.admit(&caller(Some(1), None), t0).is_err());
        assert!(l.admit(&caller(Some(5), None), t0).is_ok());
    }
}
