//! An endpoint's requests/minute and tokens/minute shared by every replica: each attempt on
//! the endpoint takes one request and its estimated tokens; the tokens are settled with the
//! real usage when the request's record is written (see [`super::LimitCharge`]).

use std::time::Duration;

use super::{Limit, Quotas};
use crate::caller::allowance_name;
use crate::config::Limits;

impl Quotas {
    /// Take one request and `est_tokens` of the endpoint `name`'s shared allowances. `Ok`
    /// carries the tokens reservation to settle later; `Err` is how long until it has room.
    pub async fn admit_endpoint(
        &self,
        name: &str,
        limits: &Limits,
        est_tokens: u64,
    ) -> Result<Option<(String, f64)>, Duration> {
        if let Some(rpm) = limits.rpm {
            let scope = allowance_name("endpoint", name, "rpm");
            self.take(&scope, Limit::per_minute(rpm), 1.0).await?;
        }
        let Some(tpm) = limits.tpm else {
            return Ok(None);
        };
        let limit = Limit::per_minute(tpm);
        let scope = allowance_name("endpoint", name, "tpm");
        let tokens = (est_tokens.max(1) as f64).min(limit.capacity);
        self.take(&scope, limit, tokens).await?;
        Ok(Some((scope, tokens)))
    }
}
