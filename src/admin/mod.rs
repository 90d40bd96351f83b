//! Operator surfaces: the admin API (`/admin/*`), `GET /metrics` and the live status page
//! (`GET /ui`, also `/status`).
//!
//! Access: the `/admin` scope and the `/metrics` resource carry the admin key check
//! (`crate::auth::admin_scope`, `crate::auth::metrics_scope`) on the routes themselves.
//! - [`routing`]: `GET`/`PUT /admin/routing`.
//! - [`keys`]: `GET /admin/keys` (limits, spend and budget left per key, across replicas).
//! - [`views`]: `/admin/usage`, `/admin/backends`, `/admin/status`, `/admin/video-jobs`, and
//!   `/metrics`.
//! - [`ui`]: the status page, embedded in the binary.

pub mod keys;
pub mod routing;
pub mod ui;
pub mod views;

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::web;

use crate::accounting::LogQueue;
use crate::metrics::Metrics;

/// What the operator surfaces share (registered as app data next to `AppState`).
pub struct Observability {
    pub metrics: Arc<Metrics>,
    pub log: Option<LogQueue>,
    /// routing.yaml, where `PUT /admin/routing` persists weights (`None`: the demo).
    pub routing_path: Option<PathBuf>,
    /// One weight change at a time: read table, change, apply, persist.
    pub routing_lock: tokio::sync::Mutex<()>,
}

/// Mount `/metrics`, `/ui` (+ `/status`) and the `/admin` scope.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/metrics")
            .wrap(actix_web::middleware::from_fn(crate::auth::metrics_scope))
            .route(web::get().to(views::metrics)),
    );
    cfg.route("/ui", web::get().to(ui::page));
    cfg.route("/ui/", web::get().to(ui::page));
    cfg.route("/status", web::get().to(ui::page));
    cfg.route("/ui/status.js", web::get().to(ui::script));
    cfg.route("/ui/status.css", web::get().to(ui::style));
    cfg.service(
        web::scope("/admin")
            .wrap(actix_web::middleware::from_fn(crate::auth::admin_scope))
            .service(
                web::resource("/routing")
                    .route(web::get().to(routing::get_routing))
                    .route(web::put().to(routing::put_routing))
                    .default_service(web::to(crate::api::method_not_allowed)),
            )
            .route("/usage", web::get().to(views::usage))
            .route("/keys", web::get().to(keys::keys))
            .route("/backends", web::get().to(views::backends))
            .route("/status", web::get().to(views::status))
            .route("/video-jobs", web::get().to(views::video_jobs))
            .service(
                web::resource("/reload")
                    .route(web::post().to(crate::reload::admin_reload))
                    .default_service(web::to(crate::api::method_not_allowed)),
            ),
    );
}
