//! Response bodies that are produced over time: SSE, audio pieces, slow-drip JSON.
//!
//! A body is a plan of steps (bytes, pauses, an abrupt death) executed by [`PacedBody`], an
//! actix-web streaming body. Bytes are handed to actix as each step is reached, so a client sees
//! them spread in time. A [`Tracker`] inside the body counts it in the stats; its `Drop` tells a
//! finished body from one the client abandoned.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::time::Sleep;

use super::engine::SlotGuard;
use super::state::{Counters, MockState};

enum Step {
    /// Bytes to send; `chunks` is how many content chunks they carry (for `chunks_sent`).
    Data {
        bytes: Bytes,
        chunks: u64,
    },
    Pause(Duration),
    /// Fail the body: actix drops the connection without finishing the response.
    Die,
}

/// Builds a list of steps, merging bytes that are sent back to back.
#[derive(Default)]
pub struct Plan {
    steps: VecDeque<Step>,
    /// Bytes not yet separated by a pause; joined once when the run ends (linear, not quadratic).
    pending: Vec<Bytes>,
    pending_chunks: u64,
}

impl Plan {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn data(&mut self, bytes: impl Into<Bytes>, chunks: u64) {
        self.pending.push(bytes.into());
        self.pending_chunks += chunks;
    }

    pub fn pause_ms(&mut self, ms: u64) {
        self.pause(Duration::from_millis(ms));
    }

    pub fn pause(&mut self, d: Duration) {
        if !d.is_zero() {
            self.flush();
            self.steps.push_back(Step::Pause(d));
        }
    }

    pub fn die(&mut self) {
        self.flush();
        self.steps.push_back(Step::Die);
    }

    /// Turns the pending run of bytes into one write.
    fn flush(&mut self) {
        let bytes = match self.pending.len() {
            0 => return,
            1 => self.pending.remove(0),
            _ => {
                let len = self.pending.iter().map(Bytes::len).sum();
                let mut joined = BytesMut::with_capacity(len);
                for piece in self.pending.drain(..) {
                    joined.extend_from_slice(&piece);
                }
                joined.freeze()
            }
        };
        self.steps.push_back(Step::Data {
            bytes,
            chunks: std::mem::take(&mut self.pending_chunks),
        });
    }

    fn into_steps(mut self) -> VecDeque<Step> {
        self.flush();
        self.steps
    }

    /// Splits `body` into pieces of `piece` bytes with `gap_ms` between them.
    pub fn drip(body: Bytes, piece: usize, gap_ms: u64) -> Self {
        let mut plan = Self::new();
        let piece = piece.max(1);
        let mut offset = 0;
        while offset < body.len() {
            if offset > 0 {
                plan.pause_ms(gap_ms);
            }
            let end = (offset + piece).min(body.len());
            plan.data(body.slice(offset..end), 0);
            offset = end;
        }
        plan
    }

    /// Sends `body` in two halves with a stall of `ms` between them (`hang: mid_stream`).
    pub fn stall_midway(body: Bytes, ms: u64) -> Self {
        let mut plan = Self::new();
        let half = body.len() / 2;
        plan.data(body.slice(..half), 0);
        plan.pause_ms(ms);
        plan.data(body.slice(half..), 0);
        plan
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Running,
    Completed,
    Killed,
}

/// Counts a body in the stats and classifies how it ended.
pub struct Tracker {
    state: web::Data<MockState>,
    /// Streams count in `streams_*`; plain bodies (slow drip) only in `bytes_sent`.
    is_stream: bool,
    outcome: Outcome,
}

impl Tracker {
    pub fn stream(state: web::Data<MockState>) -> Self {
        let c = &state.counters;
        Counters::add(&c.streams_started, 1);
        Counters::add(&c.active_streams, 1);
        Self {
            state,
            is_stream: true,
            outcome: Outcome::Running,
        }
    }

    pub fn plain(state: web::Data<MockState>) -> Self {
        Self {
            state,
            is_stream: false,
            outcome: Outcome::Running,
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.outcome != Outcome::Running || !self.is_stream {
            self.outcome = outcome;
            return;
        }
        self.outcome = outcome;
        let c = &self.state.counters;
        match outcome {
            Outcome::Completed => Counters::add(&c.streams_completed, 1),
            Outcome::Killed => Counters::add(&c.streams_killed, 1),
            Outcome::Running => {}
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if !self.is_stream {
            return;
        }
        let c = &self.state.counters;
        c.active_streams.fetch_sub(1, Relaxed);
        if self.outcome == Outcome::Running {
            // Dropped before the end and not by us: the client went away.
            Counters::add(&c.streams_aborted, 1);
        }
    }
}

/// Executes a [`Plan`] as an actix-web streaming body.
pub struct PacedBody {
    steps: VecDeque<Step>,
    sleep: Option<Pin<Box<Sleep>>>,
    tracker: Tracker,
    /// `Die` first yields once so actix flushes what was already sent.
    die_flushed: bool,
    /// The engine slot this reply computes in, given back when the body ends or is dropped.
    _slot: Option<SlotGuard>,
}

impl PacedBody {
    pub fn new(plan: Plan, tracker: Tracker) -> Self {
        Self {
            steps: plan.into_steps(),
            sleep: None,
            tracker,
            die_flushed: false,
            _slot: None,
        }
    }

    /// Hold `slot` until the body is done.
    pub fn holding(mut self, slot: SlotGuard) -> Self {
        self._slot = Some(slot);
        self
    }
}

impl Stream for PacedBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.sleep = None;
            }
            match this.steps.pop_front() {
                Some(Step::Pause(d)) => this.sleep = Some(Box::pin(tokio::time::sleep(d))),
                Some(Step::Data { bytes, chunks }) => {
                    let c = &this.tracker.state.counters;
                    Counters::add(&c.bytes_sent, bytes.len() as u64);
                    if chunks > 0 {
                        Counters::add(&c.chunks_sent, chunks);
                    }
                    return Poll::Ready(Some(Ok(bytes)));
                }
                Some(Step::Die) if !this.die_flushed => {
                    this.die_flushed = true;
                    this.steps.push_front(Step::Die);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Some(Step::Die) => {
                    this.tracker.finish(Outcome::Killed);
                    this.steps.clear();
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "mock: die_after_chunks",
                    ))));
                }
                None => {
                    if this.tracker.outcome == Outcome::Running {
                        this.tracker.finish(Outcome::Completed);
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(steps: &VecDeque<Step>) -> Vec<&'static str> {
        steps
            .iter()
            .map(|s| match s {
                Step::Data { .. } => "data",
                Step::Pause(_) => "pause",
                Step::Die => "die",
            })
            .collect()
    }

    #[test]
    fn adjacent_data_is_merged_and_zero_pauses_vanish() {
        let mut plan = Plan::new();
        plan.data(Bytes::from_static(b"a"), 1);
        plan.pause_ms(0);
        plan.data(Bytes::from_static(b"b"), 1);
        plan.pause_ms(5);
        plan.data(Bytes::from_static(b"c"), 0);
        plan.die();
        let steps = plan.into_steps();
        assert_eq!(kinds(&steps), ["data", "pause", "data", "die"]);
        match &steps[0] {
            Step::Data { bytes, chunks } => {
                assert_eq!(&bytes[..], b"ab");
                assert_eq!(*chunks, 2);
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn drip_splits_into_pieces() {
        let plan = Plan::drip(Bytes::from_static(b"0123456789"), 4, 1);
        assert_eq!(
            kinds(&plan.into_steps()),
            ["data", "pause", "data", "pause", "data"]
        );
    }

    #[test]
    fn a_long_run_is_joined_once() {
        let mut plan = Plan::new();
        for _ in 0..100_000 {
            plan.data(Bytes::from_static(b"data: {}\n\n"), 1);
        }
        let steps = plan.into_steps();
        assert_eq!(steps.len(), 1);
        match &steps[0] {
            Step::Data { bytes, chunks } => {
                assert_eq!(bytes.len(), 1_000_000);
                assert_eq!(*chunks, 100_000);
            }
            _ => unreachable!(),
        }
    }
}
