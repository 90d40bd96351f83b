//! A model of a llama.cpp-style engine's slots, from the requests this router sends it.
//!
//! llama-server keeps a KV cache per **slot**, not per engine: each of its `--parallel` slots
//! holds the prompt it last computed, and a new request gets an idle slot chosen as llama.cpp's
//! `get_available_slot` does — the idle slot whose kept prompt shares the longest prefix with
//! the request, if that prefix is more than [`SLOT_PROMPT_SIMILARITY`] of the slot's prompt
//! (`--slot-prompt-similarity`), else the least recently used idle slot; with no idle slot the
//! request waits and takes the first slot that frees. So an engine that "holds" a prompt only
//! serves it from cache while the slot holding it is idle; a second concurrent request for the
//! same prompt gets another slot, recomputes the prompt and evicts whatever that slot held.
//!
//! [`SlotModel`] replays that choice for every request the router sends the engine (whatever
//! its model or policy: they all take a slot), so `prefix_cache` can tell a real cache hit (an
//! idle slot holds the prefix) from a cold start, and what a cold start would evict. Pure data:
//! the endpoint wraps it in a mutex (`engine_slots.rs`), the lease releases its slot on drop.
//! Requests reaching the engine from elsewhere are not seen; each request the router sends
//! re-synchronises the slot it lands in.

use std::collections::VecDeque;
use std::sync::Arc;

use super::PromptPrefix;

/// Engines with more slots than this are not modelled (their requests keep the engine-level
/// view): with that many slots a prompt nearly always finds one of its own idle, and the
/// decision's cost stays bounded (a view compares the prompt with every slot's).
pub const MAX_MODELLED_SLOTS: usize = 64;
/// Requests modelled as waiting for a slot, at most; more still queue in the engine, unmodelled.
pub const MAX_MODELLED_WAITING: usize = 4_096;
/// llama-server's default `--slot-prompt-similarity`: an idle slot is reused for a request when
/// their common prefix is more than this share of the slot's kept prompt.
pub const SLOT_PROMPT_SIMILARITY: f64 = 0.5;

/// A request's place in the model: a slot, or a turn in the queue. Released once, by the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotTicket(u64);

#[derive(Debug, Clone, Default)]
struct Slot {
    /// The prompt the slot last computed (`None`: nothing yet, or a request without a prompt
    /// the router looked at).
    prompt: Option<Arc<PromptPrefix>>,
    /// The ticket computing in it now.
    holder: Option<u64>,
    /// When it was last released (0: never used), on the caller's clock.
    last_used: u64,
    /// The request computing in it was given it for the prompt it kept (a cache hit, so it is
    /// likely to finish soon).
    warm: bool,
}

/// A request waiting for a slot: any slot (the engine's queue), or one slot (it chose to wait
/// for the busy slot keeping its prefix).
#[derive(Debug)]
struct Waiting {
    ticket: u64,
    prompt: Option<Arc<PromptPrefix>>,
    for_slot: Option<usize>,
}

/// What taking an engine's idle slot would lose, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Loss {
    /// Nothing worth keeping: the slot is empty, held a prompt nobody looked at, or holds a
    /// prefix of this very prompt (which the request extends).
    Nothing,
    /// A prompt another slot (on this engine or another candidate) also holds.
    Copy,
    /// The only copy of a prompt.
    Unique,
}

/// One engine's slots as a routing decision sees them, for one prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotView {
    /// Slots modelled (the engine's count).
    pub slots: u64,
    /// Slots computing nothing of this router's.
    pub idle: u64,
    /// Leading chunks of the prompt kept by the idle slot the engine would give the request
    /// (0 with no idle slot).
    pub idle_match: usize,
    /// Slots, busy or idle, the engine would reuse for the prompt (by the similarity rule).
    pub holding: u64,
    /// What the idle slot the request would take loses (with no idle slot: [`Loss::Nothing`]).
    pub loss: Loss,
    /// When that slot was last used (0 for [`Loss::Nothing`]): of two equal losses, the older
    /// prompt is the one less likely to be asked for again.
    pub last_used: u64,
    /// A busy slot keeping the prefix that nobody waits for yet, where the request may wait
    /// instead of starting cold: one computing a cache hit (soon free) first, else the one
    /// computing the oldest request.
    pub wait_slot: Option<usize>,
    /// Whether that slot's request is a cache hit.
    pub wait_warm: bool,
    /// How long the request may wait for that slot, in milliseconds (`slot_wait_ms`; set by
    /// the table, 0 = it may not).
    pub wait_ms: u64,
}

impl SlotView {
    /// Whether one more request starts at once.
    pub fn has_idle(&self) -> bool {
        self.idle > 0
    }
}

#[derive(Debug, Default)]
pub struct SlotModel {
    slots: Vec<Slot>,
    waiting: VecDeque<Waiting>,
    next_ticket: u64,
}

impl SlotModel {
    /// Slots modelled (0: none; the engine's count is unknown or above the cap).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Requests modelled as waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Follow the engine's slot count. New slots start empty; slots beyond a smaller count are
    /// dropped with whatever they held (their holders' releases then find nothing). A count
    /// above [`MAX_MODELLED_SLOTS`] stops the modelling.
    pub fn resize(&mut self, slots: usize) {
        let slots = if slots > MAX_MODELLED_SLOTS { 0 } else { slots };
        if slots == 0 {
            self.waiting.clear();
        }
        self.slots.resize_with(slots, Slot::default);
        self.waiting
            .retain(|w| w.for_slot.is_none_or(|i| i < slots));
        // New slots take waiting requests at once, as the engine would.
        while let Some(k) = self.waiting.iter().position(|w| w.for_slot.is_none()) {
            let Some((i, reused)) =
                self.idle_slot_for(self.waiting.get(k).and_then(|w| w.prompt.as_deref()))
            else {
                break;
            };
            if let Some(w) = self.waiting.remove(k) {
                self.occupy(i, w.ticket, w.prompt, reused);
            }
        }
    }

    /// The engine's slots for `prompt`; `copies_elsewhere` says how many slots of the other
    /// candidates hold a given prompt (so a prompt kept twice counts as a copy). `None` when
    /// nothing is modelled.
    pub fn view(
        &self,
        prompt: &PromptPrefix,
        copies_elsewhere: impl Fn(&PromptPrefix) -> u64,
    ) -> Option<SlotView> {
        if self.slots.is_empty() {
            return None;
        }
        let idle = self.slots.iter().filter(|s| s.holder.is_none()).count() as u64;
        let holding = self
            .slots
            .iter()
            .filter(|s| s.prompt.as_deref().is_some_and(|p| reusable(p, prompt)))
            .count() as u64;
        let pinned = |i: usize| self.waiting.iter().any(|w| w.for_slot == Some(i));
        // Tickets grow with each request, so the lowest holder started first.
        let wait = self
            .slots
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                !pinned(*i) && s.prompt.as_deref().is_some_and(|p| reusable(p, prompt))
            })
            .filter_map(|(i, s)| s.holder.map(|ticket| (!s.warm, ticket, i)))
            .min();
        let mut view = SlotView {
            slots: self.slots.len() as u64,
            idle,
            idle_match: 0,
            holding,
            loss: Loss::Nothing,
            last_used: 0,
            wait_slot: wait.map(|(_, _, i)| i),
            wait_warm: wait.is_some_and(|(cold, _, _)| !cold),
            wait_ms: 0,
        };
        let Some((i, reused)) = self.idle_slot_for(Some(prompt)) else {
            return Some(view);
        };
        let slot = &self.slots[i];
        view.idle_match = slot
            .prompt
            .as_deref()
            .map_or(0, |p| common_chunks(p, prompt));
        if let (false, Some(kept)) = (reused, slot.prompt.as_deref()) {
            if view.idle_match < kept.chunks().len() {
                let here = self
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(j, s)| {
                        *j != i && s.prompt.as_deref().is_some_and(|p| reusable(p, kept))
                    })
                    .count() as u64;
                view.loss = if here + copies_elsewhere(kept) > 0 {
                    Loss::Copy
                } else {
                    Loss::Unique
                };
                view.last_used = slot.last_used;
            }
        }
        Some(view)
    }

    /// The prompt a request for `prompt` would evict: what the least recently used idle slot
    /// keeps, when no idle slot would be reused. (Asked first, so the caller can count its
    /// copies on the other candidates before [`SlotModel::view`].)
    pub fn evicted_by(&self, prompt: &PromptPrefix) -> Option<Arc<PromptPrefix>> {
        match self.idle_slot_for(Some(prompt)) {
            Some((i, false)) => self.slots[i].prompt.clone(),
            _ => None,
        }
    }

    /// Slots that would be reused for `prompt`, busy or idle (for the other candidates' views).
    pub fn holders_of(&self, prompt: &PromptPrefix) -> u64 {
        self.slots
            .iter()
            .filter(|s| s.prompt.as_deref().is_some_and(|p| reusable(p, prompt)))
            .count() as u64
    }

    /// A request with `prompt` (`None`: not looked at) was sent: it takes the idle slot the
    /// engine would give it, or queues. `None` when nothing is modelled or the queue is at its
    /// cap (the request is then not modelled).
    pub fn take(&mut self, prompt: Option<Arc<PromptPrefix>>) -> Option<SlotTicket> {
        if self.slots.is_empty() {
            return None;
        }
        let ticket = self.next_ticket;
        if !self.place(ticket, prompt) {
            return None;
        }
        self.next_ticket = self.next_ticket.wrapping_add(1);
        Some(SlotTicket(ticket))
    }

    /// A request with `prompt` waits for busy slot `slot` (see [`SlotView::wait_slot`]) rather
    /// than taking another: it gets that slot when it frees. `None` as [`SlotModel::take`].
    pub fn take_waiting_for(
        &mut self,
        prompt: Option<Arc<PromptPrefix>>,
        slot: usize,
    ) -> Option<SlotTicket> {
        if slot >= self.slots.len() || self.slots[slot].holder.is_none() {
            return self.take(prompt);
        }
        if self.waiting.len() >= MAX_MODELLED_WAITING {
            return None;
        }
        let ticket = self.next_ticket;
        self.waiting.push_back(Waiting {
            ticket,
            prompt,
            for_slot: Some(slot),
        });
        self.next_ticket = self.next_ticket.wrapping_add(1);
        Some(SlotTicket(ticket))
    }

    /// Whether `ticket`'s request holds a slot (is not waiting).
    pub fn holds(&self, ticket: SlotTicket) -> bool {
        !self.waiting.iter().any(|w| w.ticket == ticket.0)
    }

    /// A request that waited for one slot too long takes whatever the engine would give it
    /// now: an idle slot, or its place at the end of the queue.
    pub fn stop_waiting_for_slot(&mut self, ticket: SlotTicket) {
        let Some(k) = self
            .waiting
            .iter()
            .position(|w| w.ticket == ticket.0 && w.for_slot.is_some())
        else {
            return;
        };
        if let Some(w) = self.waiting.remove(k) {
            self.place(w.ticket, w.prompt);
        }
    }

    /// Give `ticket` the idle slot the engine would, or queue it; false when the queue is full.
    fn place(&mut self, ticket: u64, prompt: Option<Arc<PromptPrefix>>) -> bool {
        match self.idle_slot_for(prompt.as_deref()) {
            Some((i, reused)) => self.occupy(i, ticket, prompt, reused),
            None if self.waiting.len() < MAX_MODELLED_WAITING => self.waiting.push_back(Waiting {
                ticket,
                prompt,
                for_slot: None,
            }),
            None => return false,
        }
        true
    }

    /// The request of `ticket` ended (or gave up waiting) at `now`: its slot goes to the first
    /// waiting request, as the engine's deferred queue does.
    pub fn release(&mut self, ticket: SlotTicket, now: u64) {
        if let Some(i) = self.slots.iter().position(|s| s.holder == Some(ticket.0)) {
            self.slots[i].holder = None;
            self.slots[i].warm = false;
            self.slots[i].last_used = now;
            // The request waiting for this very slot first, else the engine's queue in order.
            let next = self
                .waiting
                .iter()
                .position(|w| w.for_slot == Some(i))
                .or_else(|| self.waiting.iter().position(|w| w.for_slot.is_none()));
            if let Some(w) = next.and_then(|k| self.waiting.remove(k)) {
                let (slot, reused) = match w.for_slot {
                    Some(slot) => (slot, true),
                    None => self
                        .idle_slot_for(w.prompt.as_deref())
                        .unwrap_or((i, false)),
                };
                self.occupy(slot, w.ticket, w.prompt, reused);
            }
        } else if let Some(k) = self.waiting.iter().position(|w| w.ticket == ticket.0) {
            self.waiting.remove(k);
        }
    }

    fn occupy(&mut self, i: usize, ticket: u64, prompt: Option<Arc<PromptPrefix>>, warm: bool) {
        let slot = &mut self.slots[i];
        slot.holder = Some(ticket);
        slot.prompt = prompt;
        slot.warm = warm;
    }

    /// The idle slot llama-server gives a request for `prompt`, and whether it was chosen for
    /// what it keeps (else it is the least recently used idle slot). `None`: none idle.
    fn idle_slot_for(&self, prompt: Option<&PromptPrefix>) -> Option<(usize, bool)> {
        let idle = || {
            self.slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.holder.is_none())
        };
        if let Some(prompt) = prompt {
            let mut best: Option<(usize, usize)> = None;
            for (i, slot) in idle() {
                let Some(kept) = slot.prompt.as_deref() else {
                    continue;
                };
                let common = common_chunks(kept, prompt);
                if reusable(kept, prompt) && best.is_none_or(|(_, b)| common > b) {
                    best = Some((i, common));
                }
            }
            if let Some((i, _)) = best {
                return Some((i, true));
            }
        }
        // Least recently used; of equals, the last (llama.cpp compares with `<=`).
        let mut lru: Option<(usize, u64)> = None;
        for (i, slot) in idle() {
            if lru.is_none_or(|(_, t)| slot.last_used <= t) {
                lru = Some((i, slot.last_used));
            }
        }
        lru.map(|(i, _)| (i, false))
    }
}

/// Leading chunks `a` and `b` share.
fn common_chunks(a: &PromptPrefix, b: &PromptPrefix) -> usize {
    a.chunks()
        .iter()
        .zip(b.chunks())
        .take_while(|(x, y)| x == y)
        .count()
}

/// Whether the engine would reuse a slot keeping `kept` for `prompt`: their common prefix is
/// more than [`SLOT_PROMPT_SIMILARITY`] of `kept`.
fn reusable(kept: &PromptPrefix, prompt: &PromptPrefix) -> bool {
    let common = common_chunks(kept, prompt);
    common > 0 && common as f64 > SLOT_PROMPT_SIMILARITY * kept.chunks().len() as f64
}

#[cfg(test)]
mod tests {
    use super::super::prefix_tree::CHUNK_BYTES;
    use super::*;
    use proptest::prelude::*;

    /// A prompt of a 4-chunk system prompt `system` and a one-chunk question `q`.
    fn prompt(system: char, q: u32) -> Arc<PromptPrefix> {
        let text = format!(
            "{}{:<width$}",
            system.to_string().repeat(CHUNK_BYTES * 4),
            q,
            width = CHUNK_BYTES
        );
        Arc::new(PromptPrefix::from_text(&text))
    }

    fn none_elsewhere(_: &PromptPrefix) -> u64 {
        0
    }

    #[test]
    fn a_request_takes_the_idle_slot_holding_its_prefix_else_the_least_recently_used() {
        let mut m = SlotModel::default();
        m.resize(2);
        let a1 = m.take(Some(prompt('a', 1))).unwrap();
        let b1 = m.take(Some(prompt('b', 1))).unwrap();
        m.release(a1, 10);
        m.release(b1, 11);
        // Both idle: a second A finds A's slot.
        let v = m.view(&prompt('a', 2), none_elsewhere).unwrap();
        assert_eq!((v.idle, v.idle_match, v.holding), (2, 4, 1));
        assert_eq!(v.loss, Loss::Nothing);
        let a2 = m.take(Some(prompt('a', 2))).unwrap();
        // A's slot busy: another A would take B's slot, the only copy of B.
        let v = m.view(&prompt('a', 3), none_elsewhere).unwrap();
        assert_eq!((v.idle, v.idle_match, v.holding), (1, 0, 1));
        assert_eq!((v.loss, v.last_used), (Loss::Unique, 11));
        // …unless another candidate also keeps B.
        let v = m.view(&prompt('a', 3), |_| 1).unwrap();
        assert_eq!(v.loss, Loss::Copy);
        // A cold C takes the least recently used idle slot (B's).
        let c = m.take(Some(prompt('c', 1))).unwrap();
        let v = m.view(&prompt('b', 2), none_elsewhere).unwrap();
        assert_eq!((v.idle, v.idle_match, v.holding), (0, 0, 0));
        // Full: the next request waits, and takes the first slot that frees.
        let b2 = m.take(Some(prompt('b', 2))).unwrap();
        assert_eq!(m.waiting(), 1);
        m.release(a2, 20);
        assert_eq!(m.waiting(), 0);
        let v = m.view(&prompt('a', 4), none_elsewhere).unwrap();
        assert_eq!(
            (v.idle, v.holding),
            (0, 0),
            "B evicted A when it got A's slot"
        );
        m.release(b2, 21);
        m.release(c, 22);
        let v = m.view(&prompt('b', 3), none_elsewhere).unwrap();
        assert_eq!((v.idle, v.idle_match), (2, 4));
    }

    #[test]
    fn an_extension_reuses_its_slot_and_an_empty_slot_loses_nothing() {
        let mut m = SlotModel::default();
        m.resize(2);
        let short = Arc::new(PromptPrefix::from_text(&"t".repeat(CHUNK_BYTES * 2)));
        let t = m.take(Some(short)).unwrap();
        m.release(t, 5);
        // A longer prompt starting with the kept one reuses it (the empty slot is not used).
        let long = PromptPrefix::from_text(&"t".repeat(CHUNK_BYTES * 3));
        let v = m.view(&long, none_elsewhere).unwrap();
        assert_eq!((v.idle_match, v.loss), (2, Loss::Nothing));
        // An unrelated prompt gets the never-used slot: nothing lost.
        let v = m.view(&prompt('z', 0), none_elsewhere).unwrap();
        assert_eq!((v.idle_match, v.loss, v.last_used), (0, Loss::Nothing, 0));
    }

    #[test]
    fn waiting_requests_that_give_up_leave_the_queue_and_resizes_are_safe() {
        let mut m = SlotModel::default();
        assert_eq!(m.take(Some(prompt('a', 0))), None, "nothing modelled");
        assert!(m.view(&prompt('a', 0), none_elsewhere).is_none());
        m.resize(1);
        let busy = m.take(None).unwrap();
        let queued = m.take(Some(prompt('a', 1))).unwrap();
        m.release(queued, 1);
        assert_eq!(m.waiting(), 0);
        m.release(busy, 2);
        assert_eq!(m.view(&prompt('a', 1), none_elsewhere).unwrap().idle, 1);
        let busy = m.take(None).unwrap();
        m.resize(0);
        m.release(busy, 3);
        m.resize(MAX_MODELLED_SLOTS + 1);
        assert!(m.is_empty(), "too many slots: not modelled");
    }

    #[test]
    fn a_request_may_wait_for_the_busy_slot_keeping_its_prefix() {
        let mut m = SlotModel::default();
        m.resize(2);
        let a1 = m.take(Some(prompt('a', 1))).unwrap();
        let b1 = m.take(Some(prompt('b', 1))).unwrap();
        m.release(a1, 1);
        m.release(b1, 2);
        // A cached A in slot 1 (A's), a cold C in slot 0 (B's).
        let a2 = m.take(Some(prompt('a', 2))).unwrap();
        let v = m.view(&prompt('a', 3), none_elsewhere).unwrap();
        assert_eq!((v.idle, v.wait_slot), (1, Some(1)), "A's slot is slot 1");
        let c1 = m.take(Some(prompt('c', 1))).unwrap();
        let v = m.view(&prompt('c', 2), none_elsewhere).unwrap();
        assert_eq!(
            (v.wait_slot, v.wait_warm),
            (Some(0), false),
            "C's cold request"
        );
        let v = m.view(&prompt('a', 3), none_elsewhere).unwrap();
        assert_eq!((v.wait_slot, v.wait_warm), (Some(1), true));
        // A third A waits for A's slot; a fourth finds nobody else to wait for.
        let a3 = m.take_waiting_for(Some(prompt('a', 3)), 1).unwrap();
        assert!(!m.holds(a3));
        assert_eq!(
            m.view(&prompt('a', 4), none_elsewhere).unwrap().wait_slot,
            None
        );
        // C's slot frees first: the waiting A does not take it.
        m.release(c1, 3);
        assert!(!m.holds(a3));
        m.release(a2, 4);
        assert!(m.holds(a3));
        let v = m.view(&prompt('a', 4), none_elsewhere).unwrap();
        assert_eq!((v.idle, v.idle_match), (1, 0), "A's slot is busy again");
        // Giving up the wait takes what the engine would give.
        let b2 = m.take(Some(prompt('b', 2))).unwrap();
        let a4 = m.take_waiting_for(Some(prompt('a', 4)), 1).unwrap();
        assert!(!m.holds(a4));
        m.release(b2, 5);
        assert!(!m.holds(a4), "not its slot");
        m.stop_waiting_for_slot(a4);
        assert!(m.holds(a4));
        m.release(a3, 6);
        m.release(a4, 7);
        assert_eq!(m.waiting(), 0);
        assert_eq!(m.view(&prompt('a', 5), none_elsewhere).unwrap().idle, 2);
    }

    proptest! {
        /// Whatever the sequence of takes, releases and resizes: no more busy slots than
        /// slots, every ticket released once leaves nothing behind, and a request finds its
        /// prompt's slot whenever an idle slot holds it.
        #[test]
        fn slots_never_leak(
            ops in proptest::collection::vec((0u8..6, 0u32..4, 0usize..8), 1..200),
        ) {
            let mut m = SlotModel::default();
            m.resize(3);
            let mut live: Vec<SlotTicket> = Vec::new();
            let mut now = 0u64;
            for (op, which, n) in ops {
                now += 1;
                match op {
                    0 | 1 => {
                        let p = prompt(char::from(b'a' + which as u8), n as u32);
                        let hit = m.view(&p, none_elsewhere).is_some_and(|v| v.idle > 0 && v.holding > 0
                            && m.slots.iter().any(|s| s.holder.is_none() && s.prompt.as_deref().is_some_and(|k| reusable(k, &p))));
                        let before = m.view(&p, none_elsewhere);
                        if let Some(t) = m.take(Some(p)) { live.push(t) }
                        if hit {
                            prop_assert!(before.is_some_and(|v| v.idle_match >= 4));
                        }
                    }
                    2 if !live.is_empty() => {
                        let t = live.remove(n % live.len());
                        m.release(t, now);
                    }
                    3 if n == 0 => m.resize(1 + which as usize),
                    4 => {
                        let p = prompt(char::from(b'a' + which as u8), n as u32);
                        if let Some(t) = m.take_waiting_for(Some(p), n % 4) { live.push(t) }
                    }
                    5 if !live.is_empty() => m.stop_waiting_for_slot(live[n % live.len()]),
                    _ => {}
                }
                let busy = m.slots.iter().filter(|s| s.holder.is_some()).count();
                prop_assert!(busy <= m.len());
                prop_assert!(m.waiting() <= MAX_MODELLED_WAITING);
                // Nobody waits in the engine's queue while a slot is idle (the first free slot
                // goes to the queue).
                let queued = m.waiting.iter().filter(|w| w.for_slot.is_none()).count();
                prop_assert!(queued == 0 || busy == m.len());
            }
            for t in live.drain(..) {
                m.release(t, now);
            }
            prop_assert_eq!(m.waiting(), 0);
            prop_assert!(m.slots.iter().all(|s| s.holder.is_none()));
        }
    }
}
