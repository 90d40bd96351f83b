//! The router-wide budget of JSON request bodies held at once (`MAX_INFLIGHT_JSON_MB`), shared
//! by every worker through the handlers' state and charged as bodies are read (`body.rs`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{ApiError, ErrorCode};

/// How long a request waits for room in the budget before it is refused with a 503.
const BUDGET_WAIT: Duration = Duration::from_secs(2);

/// Bytes of JSON request bodies the whole router (every worker) holds at once: a body's bytes
/// are reserved before they are read, and what parsing it into a tree costs before it is
/// parsed. Counted in KiB so that any budget fits the semaphore's `u32` permits.
pub struct JsonBudget {
    permits: Arc<Semaphore>,
    total_kib: u32,
}

/// One request's share of the [`JsonBudget`], given back when dropped.
#[derive(Default)]
pub struct JsonPermit {
    held: Option<OwnedSemaphorePermit>,
    kib: u32,
}

impl JsonBudget {
    pub fn new(total_bytes: usize) -> JsonBudget {
        let total_kib = u32::try_from(total_bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .max(1);
        JsonBudget {
            permits: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// Add `bytes` to `permit`, waiting briefly for room. A request is never charged more than
    /// the whole budget, so a body larger than the budget still runs, alone.
    pub async fn reserve(&self, permit: &mut JsonPermit, bytes: usize) -> Result<(), ApiError> {
        let wanted = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        let kib = wanted.min(self.total_kib.saturating_sub(permit.kib));
        if kib == 0 {
            return Ok(());
        }
        let acquire = self.permits.clone().acquire_many_owned(kib);
        let more = match tokio::time::timeout(BUDGET_WAIT, acquire).await {
            Ok(Ok(more)) => more,
            // Timed out, or closed (never: the budget owns its semaphore).
            Ok(Err(_)) | Err(_) => return Err(budget_exhausted()),
        };
        match &mut permit.held {
            Some(held) => held.merge(more),
            None => permit.held = Some(more),
        }
        permit.kib += kib;
        Ok(())
    }

    /// KiB not reserved by any request right now.
    pub fn available_kib(&self) -> usize {
        self.permits.available_permits()
    }
}

fn budget_exhausted() -> ApiError {
    ApiError::new(
        ErrorCode::RouterBusy,
        "The router is busy reading other large request bodies; retry shortly.",
    )
    .with_retry_after(Duration::from_secs(1))
}
