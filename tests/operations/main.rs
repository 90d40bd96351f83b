//! Running the router: accounting, metrics and the admin API, the container health check, the
//! status page, replicas sharing a database (one test binary; see tests/api/main.rs for why the
//! tests are grouped).

#[path = "../common/mod.rs"]
mod common;

mod accounting;
mod check_config_parity;
mod engine_signals;
mod healthcheck;
mod monitoring_stack;
mod observability;
mod scale_out;
mod seeds;
mod shared_limits;
mod startup_guard;
mod status_page;
mod strict_config;
mod tls_serving;
mod traces;
