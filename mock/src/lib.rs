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
//! - `chat` (chat and text completions), `responses`, `messages`, `embeddings`, `rerank`
//!   (native and TEI shapes), `audio`, `transcribe`, `images`, `video`: one file per API.
//! - `engine`: the opt-in cost model (slots, queue, prefix cache); `metrics`: `/metrics` and
//!   `/slots`, which report it.
//! - `health`, `control`: probe/discovery paths and `/_mock/*`.

mod audio;
mod body;
mod chat;
mod control;
mod embeddings;
mod engine;
mod errors;
mod faults;
mod health;
mod images;
mod messages;
mod metrics;
mod request;
mod rerank;
mod reset;
mod responses;
mod settings;
mod state;
mod tls;
mod transcribe;
mod util;
mod video;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};

pub use settings::{
    CostModel, ErrorStyle, Hang, Health, MockSettings, UsageMode, VideoMode, VideoStatusStyle,
};
pub use state::{MockStats, RecordedRequest};
pub use tls::TlsFiles;

use state::MockState;

/// A running mock server. Dropping it leaves the server running; call [`MockServer::stop`].
pub struct MockServer {
    pub addr: SocketAddr,
    /// `https` in TLS mode, else `http`.
    scheme: &'static str,
    state: web::Data<MockState>,
    handle: ServerHandle,
}

impl MockServer {
    /// `http://127.0.0.1:PORT` (`https://` in TLS mode; a wildcard bind address is shown as
    /// loopback).
    pub fn url(&self) -> String {
        base_url(self.scheme, self.addr)
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

fn base_url(scheme: &str, addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

/// Starts a mock server on `host:port` (port 0 picks a free port) with `settings.workers`
/// worker threads. Must be called inside a running actix System / actix_rt runtime.
pub async fn start(host: &str, port: u16, settings: MockSettings) -> std::io::Result<MockServer> {
    start_with(host, port, settings, None).await
}

/// [`start`], serving HTTPS (HTTP/2 and HTTP/1.1) with `tls` when given.
pub async fn start_with(
    host: &str,
    port: u16,
    settings: MockSettings,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<MockServer> {
    settings
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = std::net::TcpListener::bind((host, port))?;
    let addr = listener.local_addr()?;
    let workers = settings.workers;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let state = web::Data::new(MockState::new(settings, base_url(scheme, addr)));
    let app_state = state.clone();
    let server = HttpServer::new(move || App::new().app_data(app_state.clone()).configure(routes))
        .workers(workers)
        .backlog(4096)
        .disable_signals()
        // A client that hangs up must end its stream even while the body is stalled (hang, long
        // pauses); with half-closed connections allowed actix would only notice at the next write.
        .h1_allow_half_closed(false)
        // Real engines (uvicorn, llama.cpp) send with TCP_NODELAY; without it each SSE chunk
        // after the first waits for the client's delayed ACK (up to 40 ms) on a reused
        // connection, and the stream looks slow and coalesced for reasons that are not the
        // router's.
        .tcp_nodelay(true)
        .shutdown_timeout(1)
        .on_connect(reset::remember_socket);
    let server = match tls {
        Some(config) => server.listen_rustls_0_23(listener, config)?,
        None => server.listen(listener)?,
    }
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(MockServer {
        addr,
        scheme,
        state,
        handle,
    })
}

/// A path whose other methods get an OpenAI-shaped 405 instead of actix's empty one.
fn at(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(health::wrong_method))
}

fn routes(cfg: &mut web::ServiceConfig) {
    let get = web::get;
    let post = web::post;
    cfg
        // health and discovery
        .service(at("/health").route(get().to(health::health)))
        .service(at("/v1/health").route(get().to(health::health)))
        .service(at("/readyz").route(get().to(health::health)))
        .service(at("/healthz").route(get().to(health::health)))
        .service(at("/api/version").route(get().to(health::ollama_version)))
        .service(at("/").route(get().to(health::ollama_root)))
        .service(at("/v1/models").route(get().to(health::models)))
        // the engine's own load
        .service(at("/metrics").route(get().to(metrics::prometheus)))
        .service(at("/slots").route(get().to(metrics::slots)))
        // inference
        .service(at(chat::ROUTE).route(post().to(chat::completions)))
        .service(at(responses::ROUTE).route(post().to(responses::create)))
        .service(
            at(responses::ONE_ROUTE)
                .route(get().to(responses::get))
                .route(web::delete().to(responses::delete)),
        )
        .service(at(messages::ROUTE).route(post().to(messages::create)))
        .service(at(messages::COUNT_ROUTE).route(post().to(messages::count_tokens)))
        .service(at(chat::TEXT_ROUTE).route(post().to(chat::text_completions)))
        .service(at(rerank::ROUTE).route(post().to(rerank::native)))
        .service(at(rerank::TEI_ROUTE).route(post().to(rerank::tei)))
        .service(at(embeddings::ROUTE).route(post().to(embeddings::create)))
        .service(at(audio::ROUTE).route(post().to(audio::speech)))
        .service(at(transcribe::TRANSCRIPTIONS).route(post().to(transcribe::transcriptions)))
        .service(at(transcribe::TRANSLATIONS).route(post().to(transcribe::translations)))
        .service(at(images::ROUTE).route(post().to(images::generations)))
        .service(at(video::ROUTE).route(post().to(video::submit)))
        .service(at(video::JOB_ROUTE).route(get().to(video::poll)))
        .service(at(video::CONTENT_ROUTE).route(get().to(video::content)))
        .service(at(video::CANCEL_ROUTE).route(post().to(video::cancel)))
        .service(at(images::FILES_ROUTE).route(get().to(images::file)))
        // control
        .service(
            at("/_mock/config")
                .route(get().to(control::get_config))
                .route(web::patch().to(control::patch_config))
                .route(web::put().to(control::patch_config)),
        )
        .service(at("/_mock/stats").route(get().to(control::stats)))
        .service(at("/_mock/reset").route(post().to(control::reset)))
        .default_service(web::to(health::unknown));
}
