//! Start the mesh and the HTTP server.

use std::io::Write;
use std::sync::Arc;

use actix::Actor;
use actix_web::{middleware, web, App, HttpServer};

use crate::api::state::AppState;
use crate::auth::{Auth, Exposure, KeyUsageSink};
use crate::config::Registry;
use crate::mesh::Mesh;
use crate::record::RecordSink;
use crate::reload::ConfigActor;
use crate::settings::Settings;

pub struct ServeOptions {
    /// Where to listen, and what that exposes: decided before `serve` by [`listen_host`] (so
    /// `check-config` makes the same decision without binding).
    pub host: String,
    pub port: u16,
    pub exposure: Exposure,
    /// The files the registry came from, for hot reload and for `PUT /admin/routing` to
    /// persist weights to routing.yaml (`None`: the demo, which has no files).
    pub reload: Option<crate::reload::ConfigSource>,
}

/// Run until the server stops. Prints `switchyard listening on http://ADDR` to stdout once
/// bound (tests and scripts read the port from it when started with `--port 0`). Everything
/// comes in already read and checked: this reads no environment variable.
pub async fn serve(
    registry: Registry,
    settings: Settings,
    auth: Auth,
    opts: ServeOptions,
) -> std::io::Result<()> {
    let auth = Arc::new(auth);
    let observability = settings.observability.clone();
    let host = opts.host;
    // Bind before anything else: the port actually bound (with `--port 0`) is part of this
    // replica's default identity, which rows and job claims carry.
    let listeners = bind_listeners(&host, opts.port)?;
    let port = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .map_or(opts.port, |a| a.port());
    let replica = settings.replica.identity(port);
    tracing::info!(%replica, "replica identity");
    let store = open_store(&settings.db).await?;
    let probe = settings.probe_settings(registry.mesh.health_interval);
    auth.warn_at_start(opts.exposure, &host);
    let health_check = Arc::new(crate::relay::probe::HttpHealthCheck);
    let mesh = Mesh::start(&registry, probe, settings.circuit, health_check);
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let log = observability.request_log.then(|| {
        crate::accounting::LogQueue::start(
            Arc::new(store.clone()),
            Arc::new(crate::accounting::spill::Spill::new(
                observability.spill_path.clone(),
                observability.spill_max_bytes,
            )),
            observability.logger,
        )
    });
    // Per-key token accounting wraps the accounting sink (metrics + request log).
    let sink: Arc<dyn RecordSink> = Arc::new(KeyUsageSink::new(
        auth.clone(),
        Arc::new(crate::metrics::AccountingSink::new(
            metrics.clone(),
            log.clone(),
            &replica,
        )),
    ));
    let routing_path = opts.reload.as_ref().and_then(|s| s.routing.clone());
    let control = {
        let (source, registry, router, auth) =
            (opts.reload, registry, mesh.router.clone(), auth.clone());
        let interval = settings.discovery_interval;
        ConfigActor::start_in_arbiter(&actix::Arbiter::new().handle(), move |_| {
            ConfigActor::new(source, registry, router, auth, interval)
        })
    };
    crate::reload::listen_for_sighup(control.clone())?;
    let obs = web::Data::new(crate::admin::Observability {
        metrics: metrics.clone(),
        log: log.clone(),
        routing_path,
        routing_lock: tokio::sync::Mutex::new(()),
    });
    let metrics_data = web::Data::from(metrics);
    let grace = observability.shutdown_grace;
    let jobs = web::Data::new(start_media(&settings, &store, &mesh, &sink, replica)?);
    let workers = settings.worker_count();
    let connections_per_worker = settings.connections_per_worker();
    warn_if_descriptors_short(settings.max_connections);
    let connect_timeout = settings.connect_timeout;
    let max_conns = settings.max_upstream_connections;
    let client_request_timeout = settings.client_request_timeout;
    let state = web::Data::new(AppState::new(mesh, settings, sink, store));
    let auth = web::Data::from(auth);
    let control = web::Data::new(control);
    let mut server = HttpServer::new(move || {
        let client = crate::relay::client::build(connect_timeout, max_conns);
        App::new()
            .app_data(state.clone())
            .app_data(auth.clone())
            .app_data(control.clone())
            .app_data(obs.clone())
            .app_data(metrics_data.clone())
            .app_data(web::Data::new(client))
            .app_data(jobs.clone())
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                crate::error::ApiError::bad_request(format!("Invalid query string: {err}"), None)
                    .into()
            }))
            // Key checks are not here: each scope carries its own (see `crate::auth`), so they
            // apply to exactly what routing chose. Paths are canonical before routing runs.
            .wrap(middleware::from_fn(crate::api::canonical_path::middleware))
            .wrap(middleware::from_fn(crate::metrics::http_middleware))
            .wrap(middleware::from_fn(crate::api::request_id::middleware))
            .configure(crate::api::routes)
            .configure(crate::admin::routes)
            .default_service(web::to(crate::api::not_found))
    })
    // Slow-loris clients: the request head must arrive within this (actix answers 408).
    .client_request_timeout(client_request_timeout)
    // A client that closes its connection while waiting must cancel its request: without
    // this, actix keeps running a pending (non-streamed) handler to the end, upstream call
    // and all. Half-closing HTTP/1 clients are not something inference clients do.
    .h1_allow_half_closed(false)
    // SSE events and audio chunks are small writes: with Nagle's algorithm on (actix's
    // default), one written while the previous is unacknowledged waits for the client's
    // delayed ACK, up to 40 ms on Linux.
    .tcp_nodelay(true)
    // Signals are ours (see `shutdown`): actix's own handler would stop the whole System
    // before the request logger drained.
    .disable_signals()
    .shutdown_timeout(grace.as_secs_f64().ceil() as u64);
    for listener in listeners {
        server = server.listen(listener)?;
    }
    // Past the cap a worker stops accepting; once every worker is full, new connections wait
    // in the listen backlog (and beyond it, are refused by the kernel) instead of costing the
    // router a descriptor each.
    server = server
        .workers(workers)
        .max_connections(connections_per_worker);
    for addr in server.addrs() {
        println!("switchyard listening on http://{addr}");
    }
    let _ = std::io::stdout().flush();
    let server = server.run();
    crate::shutdown::listen_for_signals(server.handle(), grace)?;
    let result = server.await;
    crate::shutdown::finish(log.as_ref()).await;
    result
}

/// Every held client connection costs a descriptor, and another while it waits on a backend:
/// say so at start when the process limit cannot cover `MAX_CONNECTIONS` (the router then
/// answers 503 `router_overloaded` when it runs out, but a warning now saves the guesswork).
fn warn_if_descriptors_short(max_connections: usize) {
    let Some(limit) = descriptor_limit() else {
        return;
    };
    let wanted = (max_connections as u64).saturating_mul(2);
    if limit < wanted {
        tracing::warn!(
            descriptor_limit = limit,
            max_connections,
            "the open-file limit (ulimit -n) is below 2 x MAX_CONNECTIONS; raise it or lower MAX_CONNECTIONS"
        );
    }
}

/// The soft RLIMIT_NOFILE of this process (`None`: unknown or unlimited).
fn descriptor_limit() -> Option<u64> {
    let (soft, _hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
    (soft != rlimit::INFINITY).then_some(soft)
}

/// Where `serve` listens when not told and clients need a key (or the operator allowed an
/// open router): every interface, as a server in a container or VM must.
const DEFAULT_HOST: &str = "0.0.0.0";
/// Where it listens when not told and `/v1` would be open to anyone who can connect.
const LOOPBACK_HOST: &str = "127.0.0.1";

/// The host to listen on and what that exposes. With no client key, an open `/v1` on a
/// reachable address must be a decision (`allow_unauthenticated`): without it the default
/// host becomes loopback, and a non-loopback host asked for explicitly (`--host` / `HOST`)
/// is refused, with a message naming the settings, rather than silently changed.
pub fn listen_host(
    requested: Option<&str>,
    key_required: bool,
    allow_unauthenticated: bool,
) -> Result<(String, Exposure), String> {
    if key_required {
        let host = requested.unwrap_or(DEFAULT_HOST);
        return Ok((host.to_string(), Exposure::KeyRequired));
    }
    let host = match requested {
        Some(host) => host,
        None if allow_unauthenticated => DEFAULT_HOST,
        None => LOOPBACK_HOST,
    };
    if is_loopback_host(host) {
        Ok((host.to_string(), Exposure::OpenOnLoopback))
    } else if allow_unauthenticated {
        Ok((host.to_string(), Exposure::OpenToNetwork))
    } else {
        Err(format!(
            "refusing to listen on {host}: no client key is configured, so /v1 would be open to \
             anyone who can reach this address. Set API_KEYS (or a keys file, KEYS_FILE) to \
             require a key, set ALLOW_UNAUTHENTICATED=true to serve it open on purpose, or \
             leave HOST/--host unset to listen on loopback ({LOOPBACK_HOST}) only."
        ))
    }
}

/// Whether every address `host` names is a loopback address (a name that does not resolve is
/// not: binding it fails anyway).
fn is_loopback_host(host: &str) -> bool {
    use std::net::ToSocketAddrs;
    match (host, 0).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// Prepare the upload spool and start the video job runner (which resumes unfinished jobs).
fn start_media(
    settings: &Settings,
    store: &crate::store::Store,
    mesh: &Mesh,
    sink: &Arc<dyn RecordSink>,
    replica: String,
) -> std::io::Result<crate::jobs::Jobs> {
    let spool = &settings.media.upload.spool_dir;
    std::fs::create_dir_all(spool).map_err(|e| {
        std::io::Error::other(format!("upload spool directory {}: {e}", spool.display()))
    })?;
    crate::jobs::start(crate::jobs::RunnerConfig {
        store: crate::jobs::JobStore::new(store.pool.clone(), store.kind),
        router: mesh.router.clone(),
        settings: settings.media.video.clone(),
        timeouts: settings.timeouts,
        retry: settings.retry.clone(),
        sink: sink.clone(),
        replica,
    })
}

/// Listeners on every address `host` resolves to, set up as actix's own `bind` does
/// (SO_REUSEADDR, backlog 1024).
fn bind_listeners(host: &str, port: u16) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::ToSocketAddrs;
    let mut listeners = Vec::new();
    let mut last_error = None;
    for addr in (host, port).to_socket_addrs()? {
        let bound = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .and_then(|socket| {
                socket.set_reuse_address(true)?;
                socket.bind(&addr.into())?;
                socket.listen(1024)?;
                Ok(std::net::TcpListener::from(socket))
            });
        match bound {
            Ok(listener) => listeners.push(listener),
            Err(e) => last_error = Some(e),
        }
    }
    if listeners.is_empty() {
        return Err(last_error.unwrap_or_else(|| {
            std::io::Error::other(format!("{host}:{port} resolves to no address"))
        }));
    }
    Ok(listeners)
}

/// Connect to the configured database and apply migrations; refuse to start without it, since
/// records and jobs must not be silently lost.
async fn open_store(db: &crate::store::DbSettings) -> std::io::Result<crate::store::Store> {
    let store = crate::store::Store::connect(db)
        .await
        .map_err(|e| std::io::Error::other(format!("database ({}): {e}", db.describe())))?;
    store.migrate().await.map_err(|e| {
        std::io::Error::other(format!("database migrations ({}): {e}", db.describe()))
    })?;
    tracing::info!(database = %db.describe(), "database ready");
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_router_listens_on_loopback_unless_the_operator_decides_otherwise() {
        use Exposure::*;
        /// The host and exposure chosen, or `None` for a refusal.
        type Verdict = Option<(&'static str, Exposure)>;
        // (requested host, client keys, ALLOW_UNAUTHENTICATED, verdict)
        let cases: &[(Option<&str>, bool, bool, Verdict)] = &[
            (None, false, false, Some(("127.0.0.1", OpenOnLoopback))),
            (None, false, true, Some(("0.0.0.0", OpenToNetwork))),
            (None, true, false, Some(("0.0.0.0", KeyRequired))),
            (Some("0.0.0.0"), false, false, None),
            (Some("::"), false, false, None),
            (Some("192.0.2.7"), false, false, None),
            (
                Some("0.0.0.0"),
                false,
                true,
                Some(("0.0.0.0", OpenToNetwork)),
            ),
            (Some("0.0.0.0"), true, false, Some(("0.0.0.0", KeyRequired))),
            (
                Some("127.0.0.1"),
                false,
                false,
                Some(("127.0.0.1", OpenOnLoopback)),
            ),
            (
                Some("127.0.0.2"),
                false,
                false,
                Some(("127.0.0.2", OpenOnLoopback)),
            ),
            (Some("::1"), false, false, Some(("::1", OpenOnLoopback))),
            (
                Some("localhost"),
                false,
                false,
                Some(("localhost", OpenOnLoopback)),
            ),
            (
                Some("127.0.0.1"),
                false,
                true,
                Some(("127.0.0.1", OpenOnLoopback)),
            ),
            (Some("no-such-host.invalid"), false, false, None),
        ];
        for (requested, keys, allow, expected) in cases {
            let got = listen_host(*requested, *keys, *allow);
            let label = format!("{requested:?} keys={keys} allow={allow}: {got:?}");
            match expected {
                Some((host, exposure)) => {
                    assert_eq!(got, Ok((host.to_string(), *exposure)), "{label}")
                }
                None => {
                    let refusal = got.expect_err(&label);
                    assert!(refusal.contains("ALLOW_UNAUTHENTICATED"), "{refusal}");
                    assert!(refusal.contains("API_KEYS"), "{refusal}");
                }
            }
        }
    }
}
