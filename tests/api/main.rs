//! The router's HTTP API end to end, against the real `switchyard` binary and mock engines:
//! keys and scopes, the chat path, client errors and abuse, models, health, the catalogue and
//! OpenAPI documents, discovery.
//!
//! One test binary for the theme (each module was its own binary once): fewer links, and the
//! tests still run in parallel within it. The harness is shared with the other groups.

#[path = "../common/mod.rs"]
mod common;

mod abuse;
mod auth;
mod catalogue_api;
mod chat;
mod client_errors;
mod completions;
mod discovery;
mod messages;
mod models_and_health;
mod openapi;
mod redaction;
mod rerank;
mod responses;
mod routing_policies;
mod seed_paths;
