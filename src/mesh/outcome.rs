//! How a request that held a lease ended: what the lease reports when it is dropped and the
//! endpoint folds into its circuit, buckets and counters.

use std::time::Duration;

/// How a request that held a lease ended, as far as the endpoint's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The backend rejected the request itself (4xx other than 429): the backend is healthy.
    ClientError,
    /// Connect error, timeout, 5xx, broken stream: counts towards opening the circuit.
    Failure,
    /// Upstream 429 (or 503 with Retry-After): pause the endpoint, not a health failure.
    RateLimited {
        retry_after: Option<Duration>,
    },
    /// The client went away before an answer; says nothing about the backend.
    Canceled,
    /// The router itself ran out of a local resource (file descriptors, local ports, socket
    /// buffers) before reaching the backend: the router's fault, never the backend's.
    LocalFailure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ClientError => "client_error",
            Outcome::Failure => "error",
            Outcome::RateLimited { .. } => "rate_limited",
            Outcome::Canceled => "canceled",
            Outcome::LocalFailure => "local_failure",
        }
    }
}

/// How a lease ended, folded into its endpoint's state when the lease is dropped.
#[derive(Debug)]
pub struct Finished {
    pub outcome: Outcome,
    pub latency: Duration,
    pub est_tokens: u64,
    pub actual_tokens: Option<u64>,
    pub trial: bool,
}
