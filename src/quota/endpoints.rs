//! An endpoint's requests/minute and tokens/minute shared by every replica: each attempt on
//! the endpoint takes one request and its estimated tokens; the tokens are settled with the
//! real usage when the request's record is written (see [`super::LimitCharge`]).

use std::sync::Arc;
use std::time::Duration;

use super::{Limit, Quotas};
use crate::mesh::Endpoint;

impl Quotas {
    /// Take one request and `est_tokens` of `endpoint`'s shared allowances. `Ok` carries the
    /// tokens reservation to settle later; `Err` is how long until it has room.
    pub async fn admit_endpoint(
        &self,
        endpoint: &Endpoint,
        est_tokens: u64,
    ) -> Result<Option<(Arc<str>, f64)>, Duration> {
        if let Some(rpm) = endpoint.limits.rpm {
            self.take(&endpoint.rpm_allowance, Limit::per_minute(rpm), 1.0)
                .await?;
        }
        let Some(tpm) = endpoint.limits.tpm else {
            return Ok(None);
        };
        let limit = Limit::per_minute(tpm);
        let tokens = (est_tokens.max(1) as f64).min(limit.capacity);
        self.take(&endpoint.tpm_allowance, limit, tokens).await?;
        Ok(Some((endpoint.tpm_allowance.clone(), tokens)))
    }
}
