//! State shared by every worker of one mock server: settings, counters, the last request,
//! video jobs and issued image ids.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use actix_web::http::header::HeaderMap;
use actix_web::HttpRequest;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::engine::Engine;
use super::settings::MockSettings;
use super::video::VideoJob;

/// A snapshot of what the mock has seen and sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MockStats {
    /// Requests on every path except the control paths (`/_mock/config|stats|reset`).
    pub requests_total: u64,
    /// Same requests by route pattern (e.g. `/v1/video/generations/{id}`).
    pub requests_by_path: BTreeMap<String, u64>,
    /// The last inference request (health, discovery and control requests are not recorded).
    pub last_request: Option<RecordedRequest>,
    /// Streamed bodies (chat SSE, speech audio) begun.
    pub streams_started: u64,
    /// Streamed bodies sent to their end.
    pub streams_completed: u64,
    /// Streamed bodies dropped before their end because the client went away.
    pub streams_aborted: u64,
    /// Streamed bodies cut on purpose by `die_after_chunks`.
    pub streams_killed: u64,
    /// Streamed bodies in flight now.
    pub active_streams: u64,
    /// Chat content chunks and speech audio pieces handed to the connection.
    pub chunks_sent: u64,
    /// Response body bytes handed to the connection on inference paths.
    pub bytes_sent: u64,
    /// File bytes read from multipart uploads.
    pub upload_bytes_total: u64,
    /// Requests answered with an injected error (fail_rate, error_event_first, invalid_json).
    pub faults_injected: u64,
    /// Connections closed by `reset_before_headers`.
    pub connections_reset: u64,
    pub video_submits: u64,
    pub video_polls: u64,
    pub video_cancels: u64,
    pub video_content_fetches: u64,
}

/// One recorded request, as the router sent it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Every header; repeated headers are joined with ", ".
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON, or null (no body, multipart, not JSON).
    pub body: Value,
}

/// What is kept per request: cheap clones only, parsed when a snapshot is taken.
struct PendingRecord {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Option<Bytes>,
}

impl PendingRecord {
    fn materialize(&self) -> RecordedRequest {
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in self.headers.iter() {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value)
                })
                .or_insert(value);
        }
        let body = self
            .body
            .as_ref()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        RecordedRequest {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            headers,
            body,
        }
    }
}

/// Monotonic counters; `Relaxed` is enough, they are only read as a snapshot.
#[derive(Default)]
pub struct Counters {
    pub requests_total: AtomicU64,
    pub streams_started: AtomicU64,
    pub streams_completed: AtomicU64,
    pub streams_aborted: AtomicU64,
    pub streams_killed: AtomicU64,
    pub active_streams: AtomicU64,
    pub chunks_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub upload_bytes_total: AtomicU64,
    pub faults_injected: AtomicU64,
    pub connections_reset: AtomicU64,
    pub video_submits: AtomicU64,
    pub video_polls: AtomicU64,
    pub video_cancels: AtomicU64,
    pub video_content_fetches: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    fn reset(&self) {
        // active_streams is a gauge of live bodies, not history: it is kept.
        for c in [
            &self.requests_total,
            &self.streams_started,
            &self.streams_completed,
            &self.streams_aborted,
            &self.streams_killed,
            &self.chunks_sent,
            &self.bytes_sent,
            &self.upload_bytes_total,
            &self.faults_injected,
            &self.connections_reset,
            &self.video_submits,
            &self.video_polls,
            &self.video_cancels,
            &self.video_content_fetches,
        ] {
            c.store(0, Relaxed);
        }
    }
}

/// Locks a mutex, carrying on after a panic elsewhere poisoned it (the data is plain counters).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub struct MockState {
    settings: RwLock<Arc<MockSettings>>,
    pub counters: Counters,
    by_path: Mutex<HashMap<String, u64>>,
    last_request: Mutex<Option<PendingRecord>>,
    pub videos: Mutex<HashMap<String, VideoJob>>,
    pub images: Mutex<HashSet<String>>,
    /// Responses stored by `/v1/responses`, for `previous_response_id`.
    pub responses: Mutex<super::responses::StoredResponses>,
    /// Slots, queue and prefix cache of the cost model; running requests always.
    pub engine: Engine,
    /// `http://host:port` of this server, for URLs it hands out.
    pub base_url: String,
}

impl MockState {
    pub fn new(settings: MockSettings, base_url: String) -> Self {
        Self {
            settings: RwLock::new(Arc::new(settings)),
            counters: Counters::default(),
            by_path: Mutex::new(HashMap::new()),
            last_request: Mutex::new(None),
            videos: Mutex::new(HashMap::new()),
            images: Mutex::new(HashSet::new()),
            responses: Mutex::default(),
            engine: Engine::default(),
            base_url,
        }
    }

    /// The settings in force now; a request keeps the snapshot it started with.
    pub fn settings(&self) -> Arc<MockSettings> {
        self.settings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_settings(&self, next: MockSettings) {
        *self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
    }

    /// Merges a partial JSON object over the settings (read-modify-write under one lock).
    pub fn patch_settings(&self, patch: Value) -> Result<MockSettings, String> {
        let mut guard = self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let next = guard.patched(patch)?;
        *guard = Arc::new(next.clone());
        Ok(next)
    }

    /// Counts a request under its route pattern.
    pub fn count(&self, route: &str) {
        Counters::add(&self.counters.requests_total, 1);
        let mut by_path = lock(&self.by_path);
        match by_path.get_mut(route) {
            Some(n) => *n += 1,
            None => {
                by_path.insert(route.to_owned(), 1);
            }
        }
    }

    /// Remembers an inference request for `last_request`.
    pub fn record(&self, settings: &MockSettings, req: &HttpRequest, body: Option<Bytes>) {
        if !settings.record_requests {
            return;
        }
        let record = PendingRecord {
            method: req.method().as_str().to_owned(),
            path: req.path().to_owned(),
            query: req.query_string().to_owned(),
            headers: req.headers().clone(),
            body,
        };
        *lock(&self.last_request) = Some(record);
    }

    pub fn snapshot(&self) -> MockStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Relaxed);
        MockStats {
            requests_total: get(&c.requests_total),
            requests_by_path: lock(&self.by_path)
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            last_request: lock(&self.last_request)
                .as_ref()
                .map(PendingRecord::materialize),
            streams_started: get(&c.streams_started),
            streams_completed: get(&c.streams_completed),
            streams_aborted: get(&c.streams_aborted),
            streams_killed: get(&c.streams_killed),
            active_streams: get(&c.active_streams),
            chunks_sent: get(&c.chunks_sent),
            bytes_sent: get(&c.bytes_sent),
            upload_bytes_total: get(&c.upload_bytes_total),
            faults_injected: get(&c.faults_injected),
            connections_reset: get(&c.connections_reset),
            video_submits: get(&c.video_submits),
            video_polls: get(&c.video_polls),
            video_cancels: get(&c.video_cancels),
            video_content_fetches: get(&c.video_content_fetches),
        }
    }

    /// Zeroes the statistics and forgets video jobs, image ids and cached prompts.
    pub fn reset(&self) {
        self.counters.reset();
        lock(&self.by_path).clear();
        *lock(&self.last_request) = None;
        lock(&self.videos).clear();
        lock(&self.images).clear();
        lock(&self.responses).clear();
        self.engine.reset();
    }
}
