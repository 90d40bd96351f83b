//! What every handler shares: the mesh, settings and the record sink.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::json_budget::JsonBudget;
use crate::mesh::Mesh;
use crate::record::RecordSink;
use crate::settings::Settings;
use crate::store::Store;

pub struct AppState {
    pub mesh: Mesh,
    pub settings: Settings,
    /// Bytes of JSON request bodies held at once (`MAX_INFLIGHT_JSON_MB`).
    pub json_budget: JsonBudget,
    pub sink: Arc<dyn RecordSink>,
    pub store: Store,
    /// Limits and budgets shared by replicas (per-key reservations are taken here).
    pub quotas: crate::quota::Quotas,
    pub started: Instant,
    /// Unix seconds at start: the `created` of models in `/v1/models`.
    pub started_unix: u64,
    /// What `/health` last found of the database (request log, job store).
    pub dependencies: crate::api::health_deps::DependencyCheck,
}

impl AppState {
    pub fn new(
        mesh: Mesh,
        settings: Settings,
        sink: Arc<dyn RecordSink>,
        store: Store,
        quotas: crate::quota::Quotas,
    ) -> AppState {
        AppState {
            mesh,
            json_budget: JsonBudget::new(settings.max_inflight_json_bytes),
            settings,
            sink,
            store,
            quotas,
            started: Instant::now(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            dependencies: Default::default(),
        }
    }
}
