//! A controllable mock of the inference engines the router talks to (vLLM / llama.cpp / Ollama /
//! LocalAI-style chat and embeddings, a whisper engine, a tts-engine and a video-engine).
//!
//! Start one in-process with [`start`] or run the `switchyard-mock` binary; change its behaviour
//! at run time with [`MockServer::patch_settings`] or `PATCH /_mock/config`, and read what it saw
//! with [`MockServer::stats`] or `GET /_mock/stats`. See `docs/mock-engine.md`.
//!
//! # Layout
//! - `settings`: [`MockSettings`], every knob with its default.
//! - `state`: counters, the last request, jobs; [`MockStats`] snapshots.
//! - `request`, `faults`, `reset`, `errors`: the path every inference request takes before its
//!   handler (count, record, fault gate) and the error bodies.
//! - `body`: bodies produced over time (SSE, audio pieces, slow drip), with abort detection.
//! - `chat`, `embeddings`, `audio`, `transcribe`, `images`, `video`: one file per API.
//! - `health`, `control`: probe/discovery paths and `/_mock/*`.

mod audio;
mod body;
mod chat;
mod control;
mod embeddings;
mod errors;
mod faults;
mod health;
mod images;
mod request;
mod reset;
mod settings;
mod state;
mod transcribe;
mod util;
mod video;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};

pub use settings::{
    ErrorStyle, Hang, Health, MockSettings, UsageMode, VideoMode, VideoStatusStyle,
};
pub use state::{MockStats, RecordedRequest};

use state::MockState;

/// A running mock server. Dropping it leaves the server running; call [`MockServer::stop`].
pub struct MockServer {
    pub addr: SocketAddr,
    state: web::Data<MockState>,
    handle: ServerHandle,
}

impl MockServer {
    /// `http://127.0.0.1:PORT` (a wildcard bind address is shown as loopback).
    pub fn url(&self) -> String {
        base_url(self.addr)
    }

    pub fn stats(&self) -> MockStats {
        self.state.snapshot()
    }

    pub fn settings(&self) -> MockSettings {
        (*self.state.settings()).clone()
    }

    /// Replaces all settings. `workers` only takes effect at start.
    pub fn set_settings(&self, s: MockSettings) {
        self.state.set_settings(s);
    }

    /// Partial update, exactly as `PATCH /_mock/config`: unknown fields and bad values are errors.
    pub fn patch_settings(&self, patch: serde_json::Value) -> Result<(), String> {
        self.state.patch_settings(patch).map(|_| ())
    }

    /// Zeroes statistics and forgets video jobs and image URLs.
    pub fn reset_stats(&self) {
        self.state.reset();
    }

    /// Stops accepting and closes open connections without waiting for them.
    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

fn base_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Starts a mock server on `host:port` (port 0 picks a free port) with `settings.workers`
/// worker threads. Must be called inside a running actix System / actix_rt runtime.
pub async fn start(host: &str, port: u16, settings: MockSettings) -> std::io::Result<MockServer> {
    settings
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = std::net::TcpListener::bind((host, port))?;
    let addr = listener.local_addr()?;
    let workers = settings.workers;
    let state = web::Data::new(MockState::new(settings, base_url(addr)));
    let app_state = state.clone();
    let server = HttpServer::new(move || App::new().app_data(app_state.clone()).configure(routes))
        .workers(workers)
        .backlog(4096)
        .disable_signals()
        // A client that hangs up must end its stream even while the body is stalled (hang, long
        // pauses); with half-closed connections allowed actix would only notice at the next write.
        .h1_allow_half_closed(false)
        .shutdown_timeout(1)
        .on_connect(reset::remember_socket)
        .listen(listener)?
        .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(MockServer {
        addr,
        state,
        handle,
    })
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg
        // health and discovery
        .route("/health", web::get().to(health::health))
        .route("/v1/health", web::get().to(health::health))
        .route("/readyz", web::get().to(health::health))
        .route("/healthz", web::get().to(health::health))
        .route("/api/version", web::get().to(health::ollama_version))
        .route("/", web::get().to(health::ollama_root))
        .route("/v1/models", web::get().to(health::models))
        // inference
        .route(chat::ROUTE, web::post().to(chat::completions))
        .route(embeddings::ROUTE, web::post().to(embeddings::create))
        .route(audio::ROUTE, web::post().to(audio::speech))
        .route(
            transcribe::TRANSCRIPTIONS,
            web::post().to(transcribe::transcriptions),
        )
        .route(
            transcribe::TRANSLATIONS,
            web::post().to(transcribe::translations),
        )
        .route(images::ROUTE, web::post().to(images::generations))
        .route(video::ROUTE, web::post().to(video::submit))
        .route(video::JOB_ROUTE, web::get().to(video::poll))
        .route(video::CONTENT_ROUTE, web::get().to(video::content))
        .route(video::CANCEL_ROUTE, web::post().to(video::cancel))
        .route(images::FILES_ROUTE, web::get().to(images::file))
        // control
        .route("/_mock/config", web::get().to(control::get_config))
        .route("/_mock/config", web::patch().to(control::patch_config))
        .route("/_mock/config", web::put().to(control::patch_config))
        .route("/_mock/stats", web::get().to(control::stats))
        .route("/_mock/reset", web::post().to(control::reset))
        .default_service(web::to(health::unknown));
}
