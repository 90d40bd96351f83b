//! Start the mesh and the HTTP server.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::{middleware, web, App, HttpServer};

use crate::config::Registry;
use crate::mesh::Mesh;
use crate::record::RecordSink;
use crate::settings::Settings;
use crate::state::AppState;

pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    /// routing.yaml, where `PUT /admin/routing` persists weights (`None`: nowhere, the demo).
    pub routing_path: Option<PathBuf>,
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
    let store = open_store(&db).await?;
    let mut probe = settings.probe;
    if let Some(interval) = registry.mesh.health_interval {
        if std::env::var_os("HEALTH_CHECK_INTERVAL_SECS").is_none() {
            probe.interval = interval;
        }
    }
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
    let sink: Arc<dyn RecordSink> = Arc::new(crate::accounting::AccountingSink::new(
        metrics.clone(),
        log.clone(),
    ));
    let obs = web::Data::new(crate::admin::Observability {
        metrics: metrics.clone(),
        log: log.clone(),
        admin_key: observability.admin_api_key.clone(),
        routing_path: opts.routing_path.clone(),
        routing_lock: tokio::sync::Mutex::new(()),
    });
    let metrics_data = web::Data::from(metrics);
    let grace = observability.shutdown_grace;
    let workers = settings.workers;
    let connect_timeout = settings.connect_timeout;
    let max_conns = settings.max_upstream_connections;
    let state = web::Data::new(AppState::new(mesh, settings, sink, store));
    let mut server = HttpServer::new(move || {
        let client = crate::relay::client::build(connect_timeout, max_conns);
        App::new()
            .app_data(state.clone())
            .app_data(obs.clone())
            .app_data(metrics_data.clone())
            .app_data(web::Data::new(client))
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                crate::api::error::ApiError::bad_request(
                    format!("Invalid query string: {err}"),
                    None,
                )
                .into()
            }))
            .wrap(middleware::from_fn(crate::metrics::http_middleware))
            .wrap(middleware::from_fn(crate::api::request_id::middleware))
            .configure(crate::api::routes)
            .configure(crate::admin::routes)
            .default_service(web::to(crate::api::not_found))
    })
    // Signals are ours (see `shutdown`): actix's own handler would stop the whole System
    // before the request logger drained.
    .disable_signals()
    .shutdown_timeout(grace.as_secs_f64().ceil() as u64)
    .bind((opts.host.as_str(), opts.port))?;
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
