//! Start the mesh and the HTTP server.

use std::io::Write;
use std::sync::Arc;

use actix_web::{middleware, web, App, HttpServer};

use crate::config::Registry;
use crate::mesh::Mesh;
use crate::record::{LogSink, RecordSink};
use crate::settings::Settings;
use crate::state::AppState;

pub struct ServeOptions {
    pub host: String,
    pub port: u16,
}

/// Run until the server stops. Prints `switchyard listening on http://ADDR` to stdout once
/// bound (tests and scripts read the port from it when started with `--port 0`).
pub async fn serve(
    registry: Registry,
    settings: Settings,
    opts: ServeOptions,
) -> std::io::Result<()> {
    let store = open_store().await?;
    let mut probe = settings.probe;
    if let Some(interval) = registry.mesh.health_interval {
        if std::env::var_os("HEALTH_CHECK_INTERVAL_SECS").is_none() {
            probe.interval = interval;
        }
    }
    let mesh = Mesh::start(&registry, probe, settings.circuit);
    let sink: Arc<dyn RecordSink> = Arc::new(LogSink);
    let jobs = web::Data::new(start_media(&settings, &store, &mesh, &sink, opts.port)?);
    let workers = settings.workers;
    let connect_timeout = settings.connect_timeout;
    let max_conns = settings.max_upstream_connections;
    let state = web::Data::new(AppState::new(mesh, settings, sink, store));
    let mut server = HttpServer::new(move || {
        let client = crate::relay::client::build(connect_timeout, max_conns);
        App::new()
            .app_data(state.clone())
            .app_data(web::Data::new(client))
            .app_data(jobs.clone())
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                crate::api::error::ApiError::bad_request(
                    format!("Invalid query string: {err}"),
                    None,
                )
                .into()
            }))
            .wrap(middleware::from_fn(crate::api::request_id::middleware))
            .configure(crate::api::routes)
            .default_service(web::to(crate::api::not_found))
    })
    .bind((opts.host.as_str(), opts.port))?;
    if let Some(w) = workers {
        server = server.workers(w);
    }
    for addr in server.addrs() {
        println!("switchyard listening on http://{addr}");
    }
    let _ = std::io::stdout().flush();
    server.run().await
}

/// Prepare the upload spool and start the video job runner (which resumes unfinished jobs).
fn start_media(
    settings: &Settings,
    store: &crate::store::Store,
    mesh: &Mesh,
    sink: &Arc<dyn RecordSink>,
    port: u16,
) -> std::io::Result<crate::jobs::Jobs> {
    let spool = &settings.media.upload.spool_dir;
    std::fs::create_dir_all(spool).map_err(|e| {
        std::io::Error::other(format!("upload spool directory {}: {e}", spool.display()))
    })?;
    crate::jobs::start(crate::jobs::RunnerConfig {
        store: crate::jobs::JobStore::new(store.pool.clone()),
        router: mesh.router.clone(),
        settings: settings.media.video.clone(),
        timeouts: settings.timeouts,
        retry: settings.retry,
        sink: sink.clone(),
        port,
    })
}

/// Connect to the configured database and apply migrations; refuse to start without it, since
/// records and jobs must not be silently lost.
async fn open_store() -> std::io::Result<crate::store::Store> {
    let db = crate::store::DbSettings::from_vars(&crate::config::ProcessEnv)
        .map_err(std::io::Error::other)?;
    let store = crate::store::Store::connect(&db)
        .await
        .map_err(|e| std::io::Error::other(format!("database ({}): {e}", db.describe())))?;
    store.migrate().await.map_err(|e| {
        std::io::Error::other(format!("database migrations ({}): {e}", db.describe()))
    })?;
    tracing::info!(database = %db.describe(), "database ready");
    Ok(store)
}
