//! `RouterActor`: picks routes. Handlers send it [`Acquire`] and get a [`Lease`] back; it never
//! touches a request or response byte.
//!
//! There is one RouterActor per HTTP worker thread plus one *owner* on the mesh's arbiter, all
//! reading the same [`TableHub`]. A handler talks to the one on its own thread
//! ([`super::Mesh::local_router`]), so a routing decision never crosses threads (a cross-thread
//! request/reply measured as two context switches per request). The owner alone builds tables
//! ([`ApplyRegistry`]), starts BackendActors and retires them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use actix::prelude::*;

use super::backend::{BackendActor, HealthCheck, ProbeSettings, Retire};
use super::circuit::CircuitSettings;
use super::endpoint::Endpoint;
use super::lease::Lease;
use super::policy::RoutingHints;
use super::table::{
    EndpointFactory, EndpointHandle, EndpointKey, ModelAccess, RouteError, RouteTable,
};
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
    /// The client's key, when it may be limited to some models: checked on the entry that
    /// routing resolves, so the check costs no message of its own.
    pub caller: Option<Arc<dyn ModelAccess>>,
    /// The prompt's head and the session key, for `prefix_cache` and session affinity;
    /// `RoutingHints::default()` when the operation has neither.
    pub hints: RoutingHints,
}

/// Ask for a lease on one named route of `model` (see [`RouteTable::acquire_route`]): video
/// job polls and downloads go back to the backend that holds the job.
#[derive(Message)]
#[rtype(result = "Result<Lease, RouteError>")]
pub struct AcquireRoute {
    pub model: String,
    pub op: ApiOp,
    pub route: String,
    /// The client's key when a client asks (a follow-up on a stored response), checked as
    /// [`Acquire`] checks it; `None` for the router's own calls (video jobs).
    pub caller: Option<Arc<dyn ModelAccess>>,
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
    pub health_check: Arc<dyn HealthCheck>,
}

impl EndpointFactory for ActorFactory {
    fn create(
        &mut self,
        key: &EndpointKey,
        name: String,
        base: &BaseUrl,
        route: &RouteDef,
    ) -> EndpointHandle {
        let endpoint = Arc::new(
            Endpoint::new(
                name,
                route.kind,
                base.clone(),
                route.api_key.clone().map(|k| (route.auth, k)),
                key.health_path.clone(),
                route.limits,
                self.circuit,
            )
            .with_metrics_path(key.metrics_path.clone())
            .with_outbound(route.outbound.clone()),
        );
        let (probe, health_check) = (self.probe, self.health_check.clone());
        let for_actor = endpoint.clone();
        let actor = BackendActor::start_in_arbiter(&self.arbiter, move |_| {
            BackendActor::new(for_actor, probe, health_check)
        });
        EndpointHandle { endpoint, actor }
    }
}

/// The current route table, published by the owner and read by every RouterActor.
pub struct TableHub {
    current: RwLock<Arc<RouteTable>>,
    /// Bumped on every publish, so readers re-read the lock only when the table changed.
    generation: AtomicU64,
}

impl TableHub {
    pub fn new(table: RouteTable) -> TableHub {
        TableHub {
            current: RwLock::new(Arc::new(table)),
            generation: AtomicU64::new(0),
        }
    }

    pub fn load(&self) -> Arc<RouteTable> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn publish(&self, table: Arc<RouteTable>) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = table;
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

pub struct RouterActor {
    hub: Arc<TableHub>,
    /// This actor's copy of the hub's table and the generation it was read at.
    table: Arc<RouteTable>,
    seen: u64,
    /// Only the owner builds tables and endpoints.
    factory: Option<ActorFactory>,
}

impl RouterActor {
    /// The owner: builds the first table (starting its BackendActors) and publishes it.
    pub fn owner(registry: &Registry, mut factory: ActorFactory) -> (RouterActor, Arc<TableHub>) {
        let hub = Arc::new(TableHub::new(RouteTable::build(
            registry,
            None,
            &mut factory,
        )));
        let actor = RouterActor {
            table: hub.load(),
            seen: hub.generation(),
            hub: hub.clone(),
            factory: Some(factory),
        };
        (actor, hub)
    }

    /// A worker-thread replica reading the owner's tables.
    pub fn replica(hub: Arc<TableHub>) -> RouterActor {
        RouterActor {
            table: hub.load(),
            seen: hub.generation(),
            hub,
            factory: None,
        }
    }

    fn table(&mut self) -> &Arc<RouteTable> {
        let generation = self.hub.generation();
        if generation != self.seen {
            self.table = self.hub.load();
            self.seen = generation;
        }
        &self.table
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
        self.table().acquire(
            &msg.model,
            msg.op,
            msg.est_tokens,
            &msg.exclude,
            msg.caller.as_deref(),
            &msg.hints,
        )
    }
}

impl Handler<AcquireRoute> for RouterActor {
    type Result = Result<Lease, RouteError>;

    fn handle(&mut self, msg: AcquireRoute, _ctx: &mut Self::Context) -> Self::Result {
        self.table()
            .acquire_route(&msg.model, msg.op, &msg.route, 1, msg.caller.as_deref())
    }
}

impl Handler<GetTable> for RouterActor {
    type Result = MessageResult<GetTable>;

    fn handle(&mut self, _msg: GetTable, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.table().clone())
    }
}

impl Handler<ApplyRegistry> for RouterActor {
    type Result = ();

    fn handle(&mut self, msg: ApplyRegistry, _ctx: &mut Self::Context) {
        let current = self.table().clone();
        let Some(factory) = self.factory.as_mut() else {
            tracing::error!(
                "ApplyRegistry sent to a worker's RouterActor; only the owner applies registries"
            );
            return;
        };
        let next = Arc::new(RouteTable::build(&msg.0, Some(&current), factory));
        for (key, handle) in &current.endpoints {
            if !next.endpoints.iter().any(|(k, _)| k == key) {
                // Leases in flight keep their own references and finish normally.
                handle.actor.do_send(Retire);
            }
        }
        self.hub.publish(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, ModelDef};
    use std::collections::HashMap;

    /// A key allowed the models with these exact ids or aliases.
    struct Allowed(&'static [&'static str]);

    impl ModelAccess for Allowed {
        fn may_use(&self, def: &ModelDef) -> bool {
            std::iter::once(&def.id)
                .chain(&def.aliases)
                .any(|name| self.0.contains(&name.as_str()))
        }

        fn key_id(&self) -> &str {
            "team-a"
        }
    }

    /// Every probe succeeds (the routes here are never called).
    struct AlwaysHealthy;

    impl crate::mesh::backend::HealthCheck for AlwaysHealthy {
        fn check(
            &self,
            _endpoint: &crate::mesh::Endpoint,
            _path: &str,
            _timeout: std::time::Duration,
        ) -> futures_util::future::LocalBoxFuture<'static, crate::mesh::backend::ProbeVerdict>
        {
            Box::pin(std::future::ready(
                crate::mesh::backend::ProbeVerdict::Healthy,
            ))
        }
    }

    fn refused(model: &str) -> Result<(), RouteError> {
        Err(RouteError::ModelNotAllowed {
            model: model.into(),
            key_id: "team-a".into(),
        })
    }

    #[actix_rt::test]
    async fn the_router_refuses_models_outside_the_caller_s_list() {
        let yaml = "models:\n  - id: open\n    aliases: [open-alias]\n    route: [{kind: vllm, base_url: \"http://127.0.0.1:9\", health_path: none}]\n  - id: secret\n    aliases: [innocent]\n    route: [{kind: vllm, base_url: \"http://127.0.0.1:9\", health_path: none}]\n";
        let registry = load_str("m.yaml", yaml, None, &HashMap::new()).unwrap();
        let router = RouterActor::owner(&registry, test_factory()).0.start();
        let open_only: Arc<dyn ModelAccess> = Arc::new(Allowed(&["open"]));
        let by_alias: Arc<dyn ModelAccess> = Arc::new(Allowed(&["open-alias"]));
        let cases = vec![
            (None, "secret", ApiOp::ChatCompletions, Ok(())),
            (Some(&open_only), "open", ApiOp::ChatCompletions, Ok(())),
            (
                Some(&open_only),
                "open-alias",
                ApiOp::ChatCompletions,
                Ok(()),
            ),
            (Some(&by_alias), "open", ApiOp::ChatCompletions, Ok(())),
            // By id or by alias, the refusal names what the caller asked for.
            (
                Some(&open_only),
                "secret",
                ApiOp::ChatCompletions,
                refused("secret"),
            ),
            (
                Some(&open_only),
                "innocent",
                ApiOp::ChatCompletions,
                refused("innocent"),
            ),
            // Refused before anything else about the model is told.
            (
                Some(&open_only),
                "secret",
                ApiOp::Embeddings,
                refused("secret"),
            ),
            // Unknown names stay a 404 for everyone.
            (
                Some(&open_only),
                "nope",
                ApiOp::ChatCompletions,
                Err(RouteError::UnknownModel("nope".into())),
            ),
        ];
        for (caller, model, op, expected) in cases {
            let acquired = router
                .send(Acquire {
                    model: model.into(),
                    op,
                    est_tokens: 1,
                    exclude: Vec::new(),
                    caller: caller.cloned(),
                    hints: RoutingHints::default(),
                })
                .await
                .unwrap()
                .map(|_lease| ());
            assert_eq!(acquired, expected, "{model} {op:?}");
        }
    }

    fn table_for(yaml: &str, routing: Option<&str>) -> Arc<RouteTable> {
        let routing = routing.map(|r| ("routing.yaml", r));
        let registry = load_str("m.yaml", yaml, routing, &HashMap::new()).unwrap();
        RouterActor::owner(&registry, test_factory()).1.load()
    }

    /// Endpoints on this arbiter whose probes always succeed.
    fn test_factory() -> ActorFactory {
        ActorFactory {
            arbiter: actix_rt::Arbiter::current(),
            probe: ProbeSettings::default(),
            circuit: CircuitSettings::default(),
            health_check: Arc::new(AlwaysHealthy),
        }
    }

    fn lease_on(table: &RouteTable, hints: &RoutingHints) -> Result<Lease, RouteError> {
        table.acquire("m", ApiOp::ChatCompletions, 1, &[], None, hints)
    }

    /// Under every policy: weight 0 is never chosen, the higher tier takes what it admits and
    /// the lower one only the overflow, and a freed slot brings traffic back at once.
    #[actix_rt::test]
    async fn tiers_and_weight_zero_hold_under_every_policy() {
        let yaml = "models:\n  - id: m\n    route:\n      - {name: local, kind: vllm, base_url: \"http://127.0.0.1:9\", health_path: none, priority: 1, max_in_flight: 2}\n      - {name: off, kind: vllm, base_url: \"http://127.0.0.1:10\", health_path: none, priority: 1, weight: 0}\n      - {name: remote, kind: vllm, base_url: \"http://127.0.0.1:11\", health_path: none}\n";
        for policy in crate::config::RoutingPolicy::ALL {
            let routing = format!("default_policy: {policy}\n");
            let table = table_for(yaml, Some(&routing));
            for session in [None, Some("s-1")] {
                let mut hints = RoutingHints::default().with_prompt("a prompt");
                if let Some(s) = session {
                    hints = hints.with_session_key(s);
                }
                let held: Vec<Lease> = (0..5).map(|_| lease_on(&table, &hints).unwrap()).collect();
                let routes: Vec<&str> = held.iter().map(|l| l.route().name.as_str()).collect();
                assert_eq!(
                    routes,
                    ["local", "local", "remote", "remote", "remote"],
                    "{policy}"
                );
                drop(held);
                let again = lease_on(&table, &hints).unwrap();
                assert_eq!(again.route().name, "local", "{policy}");
            }
        }
    }

    /// A backend that says it served nothing from its cache takes the route's entry for that
    /// prompt out of the tree; one that served it all leaves the entry.
    #[actix_rt::test]
    async fn cache_reports_correct_the_prefix_tree() {
        let yaml = "models:\n  - id: m\n    policy: prefix_cache\n    route:\n      - {name: a, kind: vllm, base_url: \"http://127.0.0.1:9\", health_path: none}\n      - {name: b, kind: vllm, base_url: \"http://127.0.0.1:10\", health_path: none}\n";
        let table = table_for(yaml, None);
        let hints = RoutingHints::default().with_prompt(&"system prompt. ".repeat(100));
        let prompt = hints.prompt.clone().unwrap();
        let Some(tree) = table.resolve("m").and_then(|m| m.prefix_tree.clone()) else {
            panic!("prefix_cache models have a tree");
        };
        let matched =
            |route: usize| usize::from(tree.lock().unwrap().matched_chunks(&prompt)[route]);
        let first = lease_on(&table, &hints).unwrap();
        let home = first.route_index();
        // A cold start says nothing about the cache: no correction.
        let mut first = first;
        first.report_cache(300, 0, None);
        drop(first);
        assert_eq!(matched(home), prompt.chunks().len());
        let mut hit = lease_on(&table, &hints).unwrap();
        assert_eq!(hit.route_index(), home, "the cached prefix wins");
        hit.report_cache(300, 300, None);
        drop(hit);
        assert_eq!(matched(home), prompt.chunks().len());
        let mut stale = lease_on(&table, &hints).unwrap();
        stale.report_cache(300, 150, None);
        assert_eq!(matched(home), prompt.chunks().len() / 2);
        stale.report_cache(300, 0, None); // once per lease
        assert_eq!(matched(home), prompt.chunks().len() / 2);
        drop(stale);
        let mut evicted = lease_on(&table, &hints).unwrap();
        assert_eq!(evicted.route_index(), home);
        evicted.report_cache(300, 0, None);
        assert_eq!(matched(home), 0);
    }

    /// An engine that reports its slots is full once this router holds that many requests on
    /// it: the next request for its cached prompt goes to the engine with a free slot (and is
    /// remembered there), while without a slot count the cache holder keeps it.
    #[actix_rt::test]
    async fn a_full_cache_holder_gives_way_to_an_engine_with_a_free_slot() {
        let yaml = "models:\n  - id: m\n    policy: prefix_cache\n    route:\n      - {name: a, kind: llamacpp, base_url: \"http://127.0.0.1:9\", health_path: none}\n      - {name: b, kind: llamacpp, base_url: \"http://127.0.0.1:10\", health_path: none}\n";
        let hints = RoutingHints::default().with_prompt(&"system prompt. ".repeat(100));
        for slots in [None, Some(1)] {
            let table = table_for(yaml, None);
            if let Some(entry) = table.resolve("m") {
                for handle in entry.endpoints.iter().flatten() {
                    let reading = crate::mesh::EngineLoad {
                        slots,
                        ..Default::default()
                    };
                    handle.endpoint.engine_load.record(
                        reading,
                        std::time::Instant::now(),
                        std::time::Duration::from_secs(60),
                    );
                }
            }
            let first = lease_on(&table, &hints).unwrap();
            let home = first.route_index();
            let second = lease_on(&table, &hints).unwrap();
            match slots {
                None => assert_eq!(second.route_index(), home, "no capacity known: cache wins"),
                Some(_) => assert_ne!(second.route_index(), home, "the holder is full"),
            }
            drop((first, second));
            if slots.is_some() {
                // Both engines now hold the prompt: the idle pair splits it, cache hits both.
                let third = lease_on(&table, &hints).unwrap();
                let fourth = lease_on(&table, &hints).unwrap();
                assert_ne!(third.route_index(), fourth.route_index());
            }
        }
    }

    /// Records which endpoints were probed (and calls them healthy).
    #[derive(Default)]
    struct ProbeLog(std::sync::Mutex<Vec<String>>);

    impl ProbeLog {
        fn probed(&self, authority: &str) -> bool {
            let seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
            seen.iter().any(|name| name.ends_with(authority))
        }
    }

    impl crate::mesh::backend::HealthCheck for Arc<ProbeLog> {
        fn check(
            &self,
            endpoint: &crate::mesh::Endpoint,
            _path: &str,
            _timeout: std::time::Duration,
        ) -> futures_util::future::LocalBoxFuture<'static, crate::mesh::backend::ProbeVerdict>
        {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(endpoint.name.clone());
            Box::pin(std::future::ready(
                crate::mesh::backend::ProbeVerdict::Healthy,
            ))
        }
    }

    async fn settle() {
        actix_rt::time::sleep(std::time::Duration::from_millis(150)).await;
    }

    #[actix_rt::test]
    async fn remote_routes_of_weight_zero_are_not_probed_until_given_weight() {
        let yaml = |remote_weight: u32| {
            format!(
                "models:\n  - id: m\n    route:\n      - {{kind: vllm, weight: 0, base_url: \"http://127.0.0.1:9\"}}\n      - {{kind: vllm, weight: 0, base_url: \"http://localhost:10\"}}\n      - {{kind: vllm, weight: 1, base_url: \"http://10.1.2.3:11\"}}\n      - {{kind: vllm, weight: {remote_weight}, base_url: \"https://api.example.com/v1\"}}\n      - {{kind: vllm, weight: 0, base_url: \"http://[::1]:12\"}}\n"
            )
        };
        let log = Arc::new(ProbeLog::default());
        // Probes every 10s: anything seen within the test came from the first probe or a Wake.
        let factory = ActorFactory {
            arbiter: actix_rt::Arbiter::current(),
            probe: ProbeSettings::default(),
            circuit: CircuitSettings::default(),
            health_check: Arc::new(log.clone()),
        };
        let registry = load_str("m.yaml", &yaml(0), None, &HashMap::new()).unwrap();
        let router = RouterActor::owner(&registry, factory).0.start();
        settle().await;
        // On this machine: probed whatever the weight. Elsewhere: only with weight.
        for (authority, probed) in [
            ("127.0.0.1:9", true),
            ("localhost:10", true),
            ("[::1]:12", true),
            ("10.1.2.3:11", true),
            ("api.example.com:443", false),
        ] {
            assert_eq!(log.probed(authority), probed, "{authority}");
        }
        let table = router.send(GetTable).await.unwrap();
        let remote = table
            .endpoints
            .iter()
            .find(|(_, h)| h.endpoint.name.ends_with("api.example.com:443"))
            .map(|(_, h)| h.endpoint.clone())
            .unwrap();
        assert!(remote.is_dormant());
        // Enabling it (a weight change) probes it at once, not at the next 10s tick.
        let enabled = load_str("m.yaml", &yaml(2), None, &HashMap::new()).unwrap();
        router.send(ApplyRegistry(enabled)).await.unwrap();
        settle().await;
        assert!(log.probed("api.example.com:443"));
        assert!(!remote.is_dormant());
        // Back to weight 0: dormant again.
        let disabled = load_str("m.yaml", &yaml(0), None, &HashMap::new()).unwrap();
        router.send(ApplyRegistry(disabled)).await.unwrap();
        assert!(remote.is_dormant());
    }
}
