//! Checks that start no server: configuration loading, property tests of the parsers, the
//! catalogue CLI, `.env.example` completeness (one test binary; see tests/api/main.rs for why
//! the tests are grouped).

mod architecture;
mod bench_scripts;
mod catalogue;
mod chat_request_props;
mod compose;
mod config;
mod env_example;
mod monitoring;
mod props;
