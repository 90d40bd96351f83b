//! Start the mesh and the HTTP server.

use std::io::Write;
use std::sync::Arc;

use actix::Actor;
use actix_web::{middleware, web, App, HttpServer};

use crate::api::state::AppState;
use crate::auth::{Auth, Exposure};
use crate::config::Registry;
use crate::mesh::Mesh;
use crate::record::RecordSink;
use crate::reload::ConfigActor;
use crate::settings::Settings;

/// The server's keep-alive (see where it is set): long enough that a client silent for a
/// few seconds mid-request keeps its connection. An HTTP/2 client that answers no PING is
/// dropped after between one and two of these.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(30);

pub struct ServeOptions {
    /// Where to listen, and what that exposes: decided before `serve` by [`crate::listen::listen_host`] (so
    /// `check-config` makes the same decision without binding).
    pub host: String,
    pub port: u16,
    pub exposure: Exposure,
    /// The files the registry came from, for hot reload and for `PUT /admin/routing` to
    /// persist weights to routing.yaml (`None`: the demo, which has no files).
    pub reload: Option<crate::reload::ConfigSource>,
    /// An admin key to print once, in the status page link (`/ui#key=…`), with the listening
    /// line: the demo's generated one. Never logged.
    pub ui_key: Option<String>,
}

/// Run until the server stops. Prints `switchyard listening on http://ADDR` (`https://` with
/// TLS_CERT_FILE) to stdout once
/// bound (tests and scripts read the port from it when started with `--port 0`). Everything
/// comes in already read and checked: this reads no environment variable.
pub async fn serve(
    registry: Registry,
    settings: Settings,
    auth: Auth,
    opts: ServeOptions,
) -> std::io::Result<()> {
    // Before any outbound client exists: every client (traffic, probes, discovery, jobs,
    // webhooks) is built with these.
    crate::relay::client::configure(settings.outbound_settings());
    let auth = Arc::new(auth);
    let observability = settings.observability.clone();
    let host = opts.host;
    // Bind before anything else: the port actually bound (with `--port 0`) is part of this
    // replica's default identity, which rows and job claims carry.
    let listeners = crate::listen::bind_listeners(&host, opts.port)?;
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
            crate::accounting::log_store(&store),
            Arc::new(crate::accounting::spill::Spill::new(
                observability.spill_path.clone(),
                observability.spill_max_bytes,
            )),
            observability.logger,
        )
    });
    // Limits and budgets shared with the other replicas through the database.
    let quotas = crate::quota::Quotas::start(settings.quota, &replica, Some(store.clone()));
    // Keys' limits settled, metrics, the request log.
    let sink: Arc<dyn RecordSink> = Arc::new(
        crate::metrics::AccountingSink::new(metrics.clone(), log.clone(), &replica)
            .with_quotas(quotas.clone()),
    );
    let routing_path = opts.reload.as_ref().and_then(|s| s.routing.clone());
    let control = {
        let (source, registry, router, auth) =
            (opts.reload, registry, mesh.router.clone(), auth.clone());
        let interval = settings.discovery_interval;
        let tls = settings.tls.clone();
        ConfigActor::start_in_arbiter(&actix::Arbiter::new().handle(), move |_| {
            ConfigActor::new(source, registry, router, auth, interval).with_tls(tls)
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
    crate::listen::warn_if_descriptors_short(settings.max_connections);
    let connect_timeout = settings.connect_timeout;
    let max_conns = settings.max_upstream_connections;
    let client_request_timeout = settings.client_request_timeout;
    let tls = settings.tls.clone();
    let quotas_data = web::Data::new(quotas.clone());
    let state = web::Data::new(AppState::new(mesh, settings, sink, store, quotas));
    let auth = web::Data::from(auth);
    let control = web::Data::new(control);
    let mut server = HttpServer::new(move || {
        let client = crate::relay::client::build(connect_timeout, max_conns);
        App::new()
            .app_data(state.clone())
            .app_data(quotas_data.clone())
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
            // apply to exactly what routing chose. Paths are canonical before routing runs;
            // request id, span and HTTP counts are set by the same one layer.
            .wrap(middleware::from_fn(crate::api::front_door::middleware))
            .configure(crate::api::routes)
            .configure(crate::admin::routes)
            .default_service(web::to(crate::api::not_found))
    })
    // Slow-loris clients: the request head must arrive within this (actix answers 408).
    .client_request_timeout(client_request_timeout)
    // One value, two jobs in actix-http: how long an idle HTTP/1.1 connection is kept open,
    // and for HTTP/2 both the PING interval and the PING timeout (a PING unanswered by the
    // next deadline drops the whole connection, every stream and upload on it). Actix's
    // default of 5 s cut the requests of clients that stop reading for longer (starved of
    // CPU, a stalled mobile link). Graceful shutdown is not held up by it: actix closes idle
    // HTTP/1.1 connections at once when draining; an idle HTTP/2 connection whose client
    // answers PINGs never closes on keep-alive, so it lasts to the shutdown grace either way.
    .keep_alive(KEEP_ALIVE)
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
    let scheme = if tls.is_some() { "https" } else { "http" };
    for listener in listeners {
        server = match &tls {
            // HTTPS, with HTTP/2 offered through ALPN (actix adds `h2` and `http/1.1`).
            Some(cert) => {
                let config =
                    crate::tls::server_config(cert.clone()).map_err(std::io::Error::other)?;
                server.listen_rustls_0_23(listener, config)?
            }
            None => server.listen(listener)?,
        };
    }
    // Past the cap a worker stops accepting; once every worker is full, new connections wait
    // in the listen backlog (and beyond it, are refused by the kernel) instead of costing the
    // router a descriptor each.
    server = server
        .workers(workers)
        .max_connections(connections_per_worker);
    for addr in server.addrs() {
        println!("switchyard listening on {scheme}://{addr}");
    }
    if let (Some(key), Some(addr)) = (&opts.ui_key, server.addrs().first()) {
        // The fragment never reaches the server (or its access log): the page reads it.
        println!("status page: {scheme}://{addr}/ui#key={key}");
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
