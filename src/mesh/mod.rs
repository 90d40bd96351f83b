//! The actor mesh: a [`RouterActor`] that picks routes and one [`BackendActor`] per distinct
//! backend endpoint holding its health, circuit, token buckets and in-flight count.

mod backend;
mod bucket;
mod circuit;
mod endpoint;
mod lease;
mod router;
mod table;

pub use backend::{BackendActor, Outcome, ProbeSettings};
pub use bucket::TokenBucket;
pub use circuit::{CircuitBreaker, CircuitState, OpenReason};
pub use endpoint::{CircuitSettings, Endpoint, EndpointSnapshot, Health};
pub use lease::Lease;
pub use router::{Acquire, AcquireRoute, ActorFactory, ApplyRegistry, GetTable, RouterActor};
pub use table::{CapacityReason, EndpointHandle, ModelEntry, RouteError, RouteTable};

use actix::{Actor, Addr, Arbiter};

use crate::config::Registry;

/// Handles to the running mesh.
#[derive(Clone)]
pub struct Mesh {
    pub router: Addr<RouterActor>,
}

impl Mesh {
    /// Start the Router on its own arbiter and the BackendActors on another, so probes and
    /// outcome bookkeeping never compete with routing decisions for a thread.
    pub fn start(registry: &Registry, probe: ProbeSettings, circuit: CircuitSettings) -> Mesh {
        let backends = Arbiter::new();
        let routers = Arbiter::new();
        let factory = ActorFactory {
            arbiter: backends.handle(),
            probe,
            circuit,
        };
        let registry = registry.clone();
        let router = RouterActor::start_in_arbiter(&routers.handle(), move |_| {
            RouterActor::new(&registry, factory)
        });
        // Dropping an `Arbiter` value does not stop its thread; it runs until the System stops.
        Mesh { router }
    }
}
