//! The endpoint's side of the slot model (`policy::SlotModel`): a mutex around it, sized from
//! the engine's slot count on the probe timer, taken by every lease on the endpoint and given
//! back in the lease's `Drop`, so a slot cannot leak whatever way the request ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::policy::{PrefillRate, PromptPrefix, SlotModel, SlotTicket, SlotView};

/// One clock for every endpoint, so "least recently used" compares slots across engines.
static CLOCK: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, Default)]
pub struct EngineSlots {
    model: Mutex<SlotModel>,
    /// Woken on every release, for requests waiting for one slot.
    released: Notify,
    /// How fast the engine computes an uncached prompt, from its own reports.
    prefill: Mutex<PrefillRate>,
}

impl EngineSlots {
    /// Follow the engine's reported slot count (`None`: it reports none; the model is kept as
    /// is, and unused while the reading is not fresh).
    pub fn resize(&self, slots: Option<u64>) {
        if let Some(n) = slots {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            let mut model = self.lock();
            if model.len() != n {
                model.resize(n);
            }
        }
    }

    /// Slots modelled (0 = none).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// See [`SlotModel::evicted_by`].
    pub fn evicted_by(&self, prompt: &PromptPrefix) -> Option<Arc<PromptPrefix>> {
        self.lock().evicted_by(prompt)
    }

    /// See [`SlotModel::holders_of`].
    pub fn holders_of(&self, prompt: &PromptPrefix) -> u64 {
        self.lock().holders_of(prompt)
    }

    /// The slots for `prompt`, the evicted prompt being kept by `copies_elsewhere` slots of
    /// other engines.
    pub fn view(&self, prompt: &PromptPrefix, copies_elsewhere: u64) -> Option<SlotView> {
        self.lock().view(prompt, |_| copies_elsewhere)
    }

    /// A request was sent: see [`SlotModel::take`].
    pub fn take(&self, prompt: Option<Arc<PromptPrefix>>) -> Option<SlotTicket> {
        self.lock().take(prompt)
    }

    /// A request waits for busy slot `slot`: see [`SlotModel::take_waiting_for`].
    pub fn take_waiting_for(
        &self,
        prompt: Option<Arc<PromptPrefix>>,
        slot: usize,
    ) -> Option<SlotTicket> {
        self.lock().take_waiting_for(prompt, slot)
    }

    /// The request ended: see [`SlotModel::release`].
    pub fn release(&self, ticket: SlotTicket) {
        let now = CLOCK.fetch_add(1, Ordering::Relaxed);
        self.lock().release(ticket, now);
        self.released.notify_waiters();
    }

    /// Until `ticket` holds a slot, at most `patience`; then it takes what the engine would
    /// give it (see [`SlotModel::stop_waiting_for_slot`]). Whether it got its slot in time.
    pub async fn wait_for_slot(&self, ticket: SlotTicket, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            // Registered before the check, so a release in between is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.lock().holds(ticket) {
                return true;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                let mut model = self.lock();
                if model.holds(ticket) {
                    return true;
                }
                model.stop_waiting_for_slot(ticket);
                return false;
            }
        }
    }

    /// The engine reported computing `computed_tokens` uncached prompt tokens in `prompt_ms`:
    /// see [`PrefillRate::observe`].
    pub fn observe_prefill(&self, computed_tokens: u64, prompt_ms: f64) {
        self.prefill_rate().observe(computed_tokens, prompt_ms);
    }

    /// Milliseconds per uncached prompt token, once learned.
    pub fn prefill_ms_per_token(&self) -> Option<f64> {
        self.prefill_rate().ms_per_token()
    }

    fn prefill_rate(&self) -> MutexGuard<'_, PrefillRate> {
        // Plain data: a panic elsewhere leaves it stale at worst.
        self.prefill
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, SlotModel> {
        // Plain data: a panic elsewhere leaves it stale at worst.
        self.model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
