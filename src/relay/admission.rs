//! What a request must hold before an attempt goes out, beyond the lease itself: the chosen
//! endpoint's shared requests/minute and tokens/minute (each attempt), and once, on the first
//! lease (whose model and route give the price), its key's tokens/minute and budget. What is
//! taken is gathered in one [`LimitCharge`], settled with the real usage and cost when the
//! request's record is written.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use crate::caller::Caller;
use crate::error::ApiError;
use crate::mesh::Lease;
use crate::quota::{reservation_usd, LimitCharge, Quotas};
use crate::record::RequestCtx;

pub struct Admission {
    quotas: Quotas,
    caller: Option<Arc<Caller>>,
    est_tokens: u64,
    key_reserved: Cell<bool>,
    charge: RefCell<Option<LimitCharge>>,
}

/// Why an attempt may not use a lease.
pub enum Refusal {
    /// The endpoint's shared allowance is spent: another route may serve.
    EndpointFull(Duration),
    /// The key may not go on (its tokens/minute or budget): the request ends.
    Stop(ApiError),
}

impl Admission {
    /// `None` when the request has no quotas to answer to (unit setups).
    pub fn new(ctx: &RequestCtx, est_tokens: u64) -> Option<Admission> {
        Some(Admission {
            quotas: ctx.quotas.clone()?,
            caller: ctx.caller.clone(),
            est_tokens,
            key_reserved: Cell::new(false),
            charge: RefCell::new(None),
        })
    }

    /// Take what an attempt on `lease` needs. Never holds a borrow across an await: the
    /// charge is taken out while the quotas are asked.
    pub async fn on_lease(&self, lease: &Lease) -> Result<(), Refusal> {
        let mut charge = self
            .charge
            .take()
            .unwrap_or_else(|| LimitCharge::empty(&self.quotas));
        let result = self.take_for(lease, &mut charge).await;
        self.charge.replace(Some(charge));
        result
    }

    async fn take_for(&self, lease: &Lease, charge: &mut LimitCharge) -> Result<(), Refusal> {
        let endpoint = lease.endpoint();
        if endpoint.limits.rpm.is_some() || endpoint.limits.tpm.is_some() {
            let held = self
                .quotas
                .admit_endpoint(endpoint, self.est_tokens)
                .await
                .map_err(Refusal::EndpointFull)?;
            if let Some(reservation) = held {
                charge.hold_endpoint_tokens(reservation);
            }
        }
        if let Some(caller) = self.caller.as_ref().filter(|_| !self.key_reserved.get()) {
            let route_pricing = Some(&lease.route().pricing);
            let est_usd = reservation_usd(&lease.model().pricing, route_pricing, self.est_tokens);
            self.quotas
                .reserve_for_key(caller, self.est_tokens, est_usd, charge)
                .await
                .map_err(|refusal| Refusal::Stop(refusal.into_error(&caller.key_id)))?;
            self.key_reserved.set(true);
        }
        Ok(())
    }

    /// What the request holds, for its record (`None` when it holds nothing).
    pub fn into_charge(self) -> Option<LimitCharge> {
        self.charge.into_inner().filter(|c| !c.is_empty())
    }
}
