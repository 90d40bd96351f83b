//! switchyard: a multi-modal OpenAI/OpenRouter-compatible inference router.
//!
//! # Layout
//! - [`catalogue`]: the self-hosted model catalogue (data, Dockerfile/manifest rendering, CLI).
//! - [`config`]: `models.yaml`, `routing.yaml`, `.env`, `${VAR}`, OFFLOAD → a validated registry.
//! - [`engines`]: backend kinds, what each serves, health paths, URL joining.
//! - [`mesh`]: the actors — a `RouterActor` picking routes, one `BackendActor` per endpoint —
//!   and the lease that carries capacity from one to the handler and back.
//! - [`api`]: HTTP handlers, one module per endpoint family, what they share (`api::state`),
//!   and the OpenAI error shape.
//! - [`auth`]: client and admin keys, per-key limits, the scope check on every request.
//! - [`caller`]: who is calling (what a key resolves to) and which models it may use.
//! - [`relay`]: talking to backends — one call, retry/fallback, streaming relays.
//! - [`record`]: the record every request leaves behind.
//! - [`redact`]: removing backend credentials from text a backend wrote.
//! - [`reload`]: the `ConfigActor` — hot reload (SIGHUP, `POST /admin/reload`) and the models
//!   [`discovery`] finds; [`netguard`] keeps self-started traffic off private networks.
//! - [`accounting`]: pricing, the batching request logger (`api_logs`), `logs`/`usage` CLI.
//! - [`metrics`]: Prometheus metrics and the status page's recent-traffic timeline.
//! - [`admin`]: `/admin/*` views and weight changes, `/metrics`, the `/ui` status page.
//! - [`shutdown`]: signals, grace period, final flush.
//! - [`demo`]: `switchyard demo`, the router plus mock engines (the `switchyard-mock` crate,
//!   feature `demo`, on by default) in one process.
//! - [`store`]: the sqlx database (SQLite by default, PostgreSQL when configured).
//! - [`jobs`]: durable video generation jobs: their table, the runner actor, webhooks.
//! - [`media`]: settings of audio uploads and video jobs.
//! - [`healthcheck`]: `switchyard healthcheck`, the container image's health probe.
//! - [`replica`]: this router's identity among replicas sharing a database.
//! - [`telemetry`]: OpenTelemetry traces: OTLP export from the `OTEL_*` variables, W3C
//!   propagation, the request and attempt spans.
//! - [`server`], [`settings`]: wiring.

#![forbid(unsafe_code)]

pub mod accounting;
pub mod admin;
pub mod api;
pub mod auth;
pub mod caller;
pub mod catalogue;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod discovery;
pub mod engines;
pub mod error;
pub mod healthcheck;
pub mod jobs;
pub mod listen;
pub mod media;
pub mod mesh;
pub mod metrics;
pub mod netguard;
pub mod period;
pub mod quota;
pub mod record;
pub mod redact;
pub mod relay;
pub mod reload;
pub mod replica;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod translate;
