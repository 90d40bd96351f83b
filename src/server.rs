//! Start the mesh and the HTTP server.

use std::io::Write;
use std::sync::Arc;

use actix::Actor;
use actix_web::{middleware, web, App, HttpServer};

use crate::auth::{Auth, KeyUsageSink};
use crate::config::{ProcessEnv, Registry};
use crate::mesh::Mesh;
use crate::record::RecordSink;
use crate::reload::ConfigActor;
use crate::settings::Settings;
use crate::state::AppState;

pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    /// The files the registry came from, for hot reload and for `PUT /admin/routing` to
    /// persist weights to routing.yaml (`None`: the demo, which has no files).
    pub reload: Option<crate::reload::ConfigSource>,
}

/// Run until the server stops. Prints `switchyard listening on http://ADDR` to stdout once
/// bound (tests and scripts read the port from it when started with `--port 0`).
pub async fn serve(
    registry: Registry,
    settings: Settings,
    opts: ServeOptions,
) -> std::io::Result<()> {
    let db = crate::store::DbSettings::from_vars(&crate::config::ProcessEnv)
        .map_err(std::io::Error::other)?;
    let observability = crate::accounting::settings::ObservabilitySettings::from_vars(
        &crate::config::ProcessEnv,
        &db,
    )
    .map_err(|errs| std::io::Error::other(errs.join("; ")))?;
    // Bind before anything else: the port actually bound (with `--port 0`) is part of this
    // replica's default identity, which rows and job claims carry.
    let listeners = bind_listeners(&opts.host, opts.port)?;
    let port = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .map_or(opts.port, |a| a.port());
    let replica = crate::replica::identity(&ProcessEnv, port);
    tracing::info!(%replica, "replica identity");
    let store = open_store(&db).await?;
    let mut probe = settings.probe;
    if let Some(interval) = registry.mesh.health_interval {
        if std::env::var_os("HEALTH_CHECK_INTERVAL_SECS").is_none() {
            probe.interval = interval;
        }
    }
    let auth = Arc::new(Auth::from_vars(&ProcessEnv).map_err(|errors| {
        for e in &errors {
            tracing::error!("keys: {e}");
        }
        std::io::Error::new(std::io::ErrorKind::InvalidInput, errors.join("; "))
    })?);
    auth.warn_at_start();
    let mesh = Mesh::start(&registry, probe, settings.circuit);
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let log = observability.request_log.then(|| {
        crate::accounting::LogQueue::start(
            Arc::new(store.clone()),
            Arc::new(crate::accounting::spill::Spill::new(
                observability.spill_path.clone(),
            )),
            observability.logger,
        )
    });
    // Per-key token accounting wraps the accounting sink (metrics + request log).
    let sink: Arc<dyn RecordSink> = Arc::new(KeyUsageSink::new(
        auth.clone(),
        Arc::new(crate::accounting::AccountingSink::new(
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
    let workers = settings.workers;
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
                crate::api::error::ApiError::bad_request(
                    format!("Invalid query string: {err}"),
                    None,
                )
                .into()
            }))
            .wrap(middleware::from_fn(crate::auth::middleware))
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
    if let Some(w) = workers {
        server = server.workers(w);
    }
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
