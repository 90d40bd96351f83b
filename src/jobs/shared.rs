//! What every job future shares: the table, the router, the HTTP clients and the settings.
//! The runner (`runner.rs`) builds it; one job's life (`drive.rs`) and its webhooks
//! (`webhook.rs`) read it.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;

use super::now_ms;
use super::store::JobStore;
use crate::media::VideoSettings;
use crate::mesh::RouterActor;
use crate::record::RecordSink;
use crate::relay::{RetryPolicy, Timeouts};

/// What every job future shares. Built in the runner's thread (the awc client is `!Send`).
pub struct Shared {
    pub store: JobStore,
    pub router: Addr<RouterActor>,
    pub client: awc::Client,
    /// Webhooks only: its connections go to checked addresses and are never pooled, so none
    /// is shared with backend calls (awc pools by host name, whatever address was dialled).
    pub webhook_client: awc::Client,
    pub settings: Arc<VideoSettings>,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
    pub sink: Arc<dyn RecordSink>,
    pub owner: String,
}

/// The `Send` parts of [`Shared`], moved into the runner's arbiter.
pub struct SharedParts {
    store: JobStore,
    router: Addr<RouterActor>,
    settings: Arc<VideoSettings>,
    timeouts: Timeouts,
    retry: RetryPolicy,
    sink: Arc<dyn RecordSink>,
    owner: String,
}

impl Shared {
    pub fn parts(
        store: JobStore,
        router: Addr<RouterActor>,
        settings: Arc<VideoSettings>,
        timeouts: Timeouts,
        retry: RetryPolicy,
        sink: Arc<dyn RecordSink>,
        owner: String,
    ) -> SharedParts {
        SharedParts {
            store,
            router,
            settings,
            timeouts,
            retry,
            sink,
            owner,
        }
    }

    pub fn claim_until(&self) -> i64 {
        now_ms() + self.settings.claim.as_millis() as i64
    }
}

impl SharedParts {
    /// The whole [`Shared`], built on the runner's thread: the awc clients are `!Send`.
    pub fn into_shared(self) -> Shared {
        // No redirects, like the relay client: a webhook receiver or backend that redirects
        // should not be followed to another host.
        let client = crate::relay::client::build(Duration::from_secs(10), 0);
        Shared {
            store: self.store,
            router: self.router,
            client,
            webhook_client: crate::relay::client::build(Duration::from_secs(10), 0),
            settings: self.settings,
            timeouts: self.timeouts,
            retry: self.retry,
            sink: self.sink,
            owner: self.owner,
        }
    }
}
