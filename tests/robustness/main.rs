//! The router under failure: the mock engine's fault matrix, circuits and retries, hot reload,
//! graceful shutdown, outbound TLS and egress proxies (one test binary; see tests/api/main.rs for why the tests are grouped).

#[path = "../common/mod.rs"]
mod common;

mod faults;
mod json_memory;
mod limits;
mod reload;
mod resilience;
mod shutdown;
mod tls_outbound;
