//! The actor mesh: [`RouterActor`]s that pick routes (one per HTTP worker thread, plus the
//! owner that applies registry changes) and one [`BackendActor`] per distinct backend endpoint,
//! which probes its health. The endpoint's live state (health, circuit, token buckets, 429
//! pause, in-flight count) is a shared [`Endpoint`], not actor state: a [`Lease`] takes capacity
//! from it synchronously on the handler's thread and gives it back in `Drop`, so a request costs
//! no message to the BackendActor and no thread hop.

mod backend;
mod bucket;
mod circuit;
mod client_error;
mod endpoint;
mod engine_load;
mod engine_slots;
mod lease;
mod outcome;
pub mod policy;
mod router;
mod table;

pub use backend::{BackendActor, HealthCheck, ProbeSettings, ProbeVerdict};
pub use bucket::TokenBucket;
pub use circuit::{CircuitBreaker, CircuitSettings, CircuitState, OpenReason};
pub use client_error::wrong_endpoint;
pub use endpoint::{Endpoint, EndpointSnapshot, Health};
pub use engine_load::{EngineLoad, EngineLoadSlot, EngineLoadView};
pub use lease::Lease;
pub use outcome::Outcome;
pub use policy::RoutingHints;
pub use router::{
    Acquire, AcquireRoute, ActorFactory, ApplyRegistry, GetTable, RouterActor, TableHub,
};
pub use table::{CapacityReason, EndpointHandle, ModelAccess, ModelEntry, RouteError, RouteTable};

use std::cell::RefCell;
use std::sync::Arc;

use actix::{Actor, Addr, Arbiter};

use crate::config::Registry;

/// Handles to the running mesh.
#[derive(Clone)]
pub struct Mesh {
    /// The owner RouterActor: registry changes go here; it also answers routing requests from
    /// threads that have no RouterActor of their own.
    pub router: Addr<RouterActor>,
    hub: Arc<TableHub>,
}

thread_local! {
    // This thread's RouterActor per mesh (keyed by the hub's address).
    static LOCAL_ROUTERS: RefCell<Vec<(usize, Addr<RouterActor>)>> = const { RefCell::new(Vec::new()) };
}

impl Mesh {
    /// Start the Router on its own arbiter and the BackendActors on another, so probes and
    /// outcome bookkeeping never compete with routing decisions for a thread.
    pub fn start(
        registry: &Registry,
        probe: ProbeSettings,
        circuit: CircuitSettings,
        health_check: Arc<dyn HealthCheck>,
    ) -> Mesh {
        let backends = Arbiter::new();
        let routers = Arbiter::new();
        let factory = ActorFactory {
            arbiter: backends.handle(),
            probe,
            circuit,
            health_check,
        };
        // The first table is built here (starting the BackendActors on their arbiter), so the
        // hub exists before any request arrives.
        let (owner, hub) = RouterActor::owner(registry, factory);
        let router = RouterActor::start_in_arbiter(&routers.handle(), move |_| owner);
        // Dropping an `Arbiter` value does not stop its thread; it runs until the System stops.
        Mesh { router, hub }
    }

    /// The RouterActor on the calling thread, started on first use in this thread's arbiter
    /// (each HTTP worker gets its own); the owner when the thread runs no arbiter.
    pub fn local_router(&self) -> Addr<RouterActor> {
        if actix_rt::Arbiter::try_current().is_none() {
            return self.router.clone();
        }
        let key = Arc::as_ptr(&self.hub) as usize;
        LOCAL_ROUTERS.with(|cell| {
            let mut routers = cell.borrow_mut();
            routers.retain(|(_, addr)| addr.connected());
            if let Some((_, addr)) = routers.iter().find(|(k, _)| *k == key) {
                return addr.clone();
            }
            let addr = RouterActor::replica(self.hub.clone()).start();
            routers.push((key, addr.clone()));
            addr
        })
    }

    /// The current route table, read without a message (views, health).
    pub fn table(&self) -> Arc<RouteTable> {
        self.hub.load()
    }
}
