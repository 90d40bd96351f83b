//! `RouterActor`: owns the model table. Handlers send it [`Acquire`] and get a [`Lease`] back;
//! it never touches a request or response byte.

use std::sync::Arc;

use actix::prelude::*;

use super::backend::{BackendActor, ProbeSettings, Retire};
use super::endpoint::{CircuitSettings, Endpoint};
use super::lease::Lease;
use super::table::{EndpointFactory, EndpointHandle, EndpointKey, RouteError, RouteTable};
use crate::config::{Registry, RouteDef};
use crate::engines::{ApiOp, BaseUrl};

/// Ask for a lease on one route of `model` able to serve `op`.
#[derive(Message)]
#[rtype(result = "Result<Lease, RouteError>")]
pub struct Acquire {
    /// The name the client used (id or alias).
    pub model: String,
    pub op: ApiOp,
    /// Tokens this request is expected to use (prompt + completion), for tokens/minute limits.
    pub est_tokens: u64,
    /// Routes (indices into the model's routes) that already failed for this request.
    pub exclude: Vec<usize>,
}

/// Ask for a lease on one named route of `model` (see [`RouteTable::acquire_route`]): video
/// job polls and downloads go back to the backend that holds the job.
#[derive(Message)]
#[rtype(result = "Result<Lease, RouteError>")]
pub struct AcquireRoute {
    pub model: String,
    pub op: ApiOp,
    pub route: String,
}

/// The current table, for read-only views (`/v1/models`, `/health`, admin).
#[derive(Message)]
#[rtype(result = "Arc<RouteTable>")]
pub struct GetTable;

/// Replace the registry (hot reload, weight changes). Endpoints whose identity is unchanged
/// keep their actor and state; endpoints no longer used are retired.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyRegistry(pub Registry);

/// Creates endpoints and starts their actors on the mesh's backend arbiter.
pub struct ActorFactory {
    pub arbiter: ArbiterHandle,
    pub probe: ProbeSettings,
    pub circuit: CircuitSettings,
}

impl EndpointFactory for ActorFactory {
    fn create(
        &mut self,
        key: &EndpointKey,
        name: String,
        base: &BaseUrl,
        route: &RouteDef,
    ) -> EndpointHandle {
        let endpoint = Arc::new(Endpoint::new(
            name,
            route.kind,
            base.clone(),
            route.api_key.clone().map(|k| (route.auth, k)),
            key.health_path.clone(),
            route.limits,
            self.circuit,
        ));
        let probe = self.probe;
        let for_actor = endpoint.clone();
        let actor = BackendActor::start_in_arbiter(&self.arbiter, move |_| {
            BackendActor::new(for_actor, probe)
        });
        EndpointHandle { endpoint, actor }
    }
}

pub struct RouterActor {
    table: Arc<RouteTable>,
    factory: ActorFactory,
}

impl RouterActor {
    pub fn new(registry: &Registry, mut factory: ActorFactory) -> RouterActor {
        let table = Arc::new(RouteTable::build(registry, None, &mut factory));
        RouterActor { table, factory }
    }
}

impl Actor for RouterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Handlers await replies, so a larger mailbox only absorbs bursts; it never drops.
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Acquire> for RouterActor {
    type Result = Result<Lease, RouteError>;

    fn handle(&mut self, msg: Acquire, _ctx: &mut Self::Context) -> Self::Result {
        self.table
            .acquire(&msg.model, msg.op, msg.est_tokens, &msg.exclude)
    }
}

impl Handler<AcquireRoute> for RouterActor {
    type Result = Result<Lease, RouteError>;

    fn handle(&mut self, msg: AcquireRoute, _ctx: &mut Self::Context) -> Self::Result {
        self.table.acquire_route(&msg.model, msg.op, &msg.route, 1)
    }
}

impl Handler<GetTable> for RouterActor {
    type Result = MessageResult<GetTable>;

    fn handle(&mut self, _msg: GetTable, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.table.clone())
    }
}

impl Handler<ApplyRegistry> for RouterActor {
    type Result = ();

    fn handle(&mut self, msg: ApplyRegistry, _ctx: &mut Self::Context) {
        let next = RouteTable::build(&msg.0, Some(&self.table), &mut self.factory);
        for (key, handle) in &self.table.endpoints {
            if !next.endpoints.iter().any(|(k, _)| k == key) {
                // Leases in flight keep their own references and finish normally.
                handle.actor.do_send(Retire);
            }
        }
        self.table = Arc::new(next);
    }
}
