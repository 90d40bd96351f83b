//! A lease on one route of a model: the right to send one request to its endpoint. Dropping it
//! gives the in-flight slot back and reports the outcome, on every path — success, error,
//! timeout and client disconnect alike (a disconnect drops the response stream that owns it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::endpoint::{Endpoint, Permit};
use super::outcome::{Finished, Outcome};
use crate::config::{ModelDef, RouteDef};
use crate::redact::Redactor;

pub struct Lease {
    model: Arc<ModelDef>,
    route_index: usize,
    endpoint: Arc<Endpoint>,
    permit: Permit,
    est_tokens: u64,
    started: Instant,
    outcome: Option<Outcome>,
    actual_tokens: Option<u64>,
    redactor: Arc<Redactor>,
}

impl Lease {
    pub(super) fn new(
        model: Arc<ModelDef>,
        route_index: usize,
        endpoint: Arc<Endpoint>,
        permit: Permit,
        est_tokens: u64,
        redactor: Arc<Redactor>,
    ) -> Lease {
        Lease {
            model,
            route_index,
            endpoint,
            permit,
            est_tokens,
            started: Instant::now(),
            outcome: None,
            actual_tokens: None,
            redactor,
        }
    }

    pub fn model(&self) -> &Arc<ModelDef> {
        &self.model
    }

    pub fn route(&self) -> &RouteDef {
        &self.model.routes[self.route_index]
    }

    pub fn route_index(&self) -> usize {
        self.route_index
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Takes the router's backend credentials out of text derived from this backend's answers.
    pub fn redactor(&self) -> &Arc<Redactor> {
        &self.redactor
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Record how the request ended; the last call wins.
    pub fn finish(&mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
    }

    /// Record the real token count to settle the tokens/minute bucket.
    pub fn set_actual_tokens(&mut self, tokens: u64) {
        self.actual_tokens = Some(tokens);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.endpoint.release_slot();
        self.endpoint.fold_outcome(Finished {
            outcome: self.outcome.unwrap_or(Outcome::Canceled),
            latency: self.started.elapsed(),
            est_tokens: self.est_tokens,
            actual_tokens: self.actual_tokens,
            trial: self.permit.trial,
        });
    }
}
