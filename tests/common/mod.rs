//! Test harness: start the real `switchyard` binary and the project's mock engine on random
//! loopback ports, and talk to them over HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A child process killed when dropped.
pub struct Proc {
    child: Child,
    pub url: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL now (for crash tests).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait up to `within` for the process to exit by itself; returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, then wait up to `grace` for a clean exit; returns the exit status code.
    pub fn terminate(&mut self, grace: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawn `cmd`, wait for the stdout line starting with `prefix`, and return the URL after it.
/// Output keeps being drained in the background so the child never blocks on a full pipe.
fn spawn_and_wait(cmd: Command, prefix: &'static str) -> Proc {
    spawn_with_stderr(cmd, prefix, Stdio::inherit())
}

/// [`spawn_and_wait`] with the child's stderr sent to `stderr`.
fn spawn_with_stderr(mut cmd: Command, prefix: &'static str, stderr: Stdio) -> Proc {
    cmd.stdout(Stdio::piped())
        .stderr(stderr)
        .stdin(Stdio::null());
    let mut child = cmd.spawn().expect("spawn child process");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent {
                if let Some(url) = line.strip_prefix(prefix) {
                    let _ = tx.send(url.trim().to_string());
                    sent = true;
                }
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(url) => Proc { child, url },
        Err(_) => {
            let _ = child.kill();
            panic!("process did not print `{prefix}` within 60 s");
        }
    }
}

pub fn bin(name: &str) -> PathBuf {
    match name {
        "switchyard" => PathBuf::from(env!("CARGO_BIN_EXE_switchyard")),
        "switchyard-mock" => workspace_bin("switchyard-mock", "switchyard-mock"),
        other => panic!("unknown binary {other}"),
    }
}

/// The binary `name` of another crate of the workspace (package `package`).
///
/// Cargo tells a test only where its own package's binaries are (`CARGO_BIN_EXE_*`), but every
/// crate of the workspace builds into the same `<target dir>/<profile>/`, so the binary is
/// looked for next to the router's. Plain `cargo test` builds it before any test runs; when it
/// is missing (e.g. `cargo test -p switchyard --test api` on a fresh target dir) it is built
/// here, once, into that same directory and profile. Cargo does not hold its build lock while
/// tests run, so the nested build does not wait for the outer command.
fn workspace_bin(package: &str, name: &str) -> PathBuf {
    static ONE_BUILD_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let router = std::path::Path::new(env!("CARGO_BIN_EXE_switchyard"));
    let path = router.with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let _guard = ONE_BUILD_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !path.exists() {
        cargo_build_bin(package, name, &path);
    }
    path
}

/// `cargo build -p package --bin name` into the target dir and profile `path` lies in.
fn cargo_build_bin(package: &str, name: &str, path: &std::path::Path) {
    let out_dir = path.parent().expect("binary directory");
    let target_dir = out_dir.parent().expect("target directory");
    // The profile's directory is its name, except `dev` (and `test`), which build into `debug`.
    let profile = match out_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "-p", package, "--bin", name, "--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build {name}: {e}"));
    assert!(
        status.success() && path.exists(),
        "`cargo build -p {package} --bin {name}` did not produce {}",
        path.display()
    );
}

/// Start one mock engine with the given settings (JSON object of `MockSettings` fields).
pub fn start_mock(settings: Value) -> Proc {
    start_mock_with_args(settings, &[])
}

/// [`start_mock`] with more command-line flags (e.g. its TLS mode: `--tls-cert`, `--tls-key`).
pub fn start_mock_with_args(settings: Value, args: &[&str]) -> Proc {
    let mut cmd = Command::new(bin("switchyard-mock"));
    cmd.args([
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--settings-json",
        &settings.to_string(),
    ])
    .args(args);
    spawn_and_wait(cmd, "switchyard-mock listening on ")
}

/// A URL on loopback where nothing listens (connection refused).
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

pub struct Router {
    pub proc: Proc,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for Router {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl std::ops::DerefMut for Router {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

pub struct RouterOpts<'a> {
    pub models_yaml: &'a str,
    pub routing_yaml: Option<&'a str>,
    pub env: Vec<(&'a str, String)>,
}

/// Defaults that make tests fast: frequent probes, short circuit cool-down.
fn test_env() -> Vec<(&'static str, String)> {
    vec![
        ("HEALTH_CHECK_INTERVAL_SECS", "0.2".into()),
        ("HEALTH_CHECK_TIMEOUT_SECS", "1".into()),
        ("CIRCUIT_COOLDOWN_SECS", "1".into()),
        ("WORKERS", "2".into()),
        (
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        ),
    ]
}

/// Options for a router with these models and environment, without a routing file.
pub fn router_opts<'a>(models_yaml: &'a str, env: Vec<(&'a str, String)>) -> RouterOpts<'a> {
    RouterOpts {
        models_yaml,
        routing_yaml: None,
        env,
    }
}

/// Write a keys file into `dir`; its path, as `KEYS_FILE` takes it.
pub fn write_keys_file(dir: &std::path::Path, yaml: &str) -> String {
    let path = dir.join("keys.yaml");
    std::fs::write(&path, yaml).expect("write keys");
    path.display().to_string()
}

pub fn start_router(opts: RouterOpts<'_>) -> Router {
    let (cmd, dir) = router_command(&opts);
    let proc = spawn_and_wait(cmd, "switchyard listening on ");
    Router { proc, dir }
}

/// A router run from its environment alone, as the single-backend gateway's users ran it:
/// `--config` names a models.yaml that does not exist.
pub fn start_router_without_models_file(env: Vec<(&str, String)>) -> Router {
    let opts = RouterOpts {
        models_yaml: "",
        routing_yaml: None,
        env,
    };
    let (cmd, dir) = router_command(&opts);
    std::fs::remove_file(dir.path().join("models.yaml")).expect("remove models.yaml");
    let proc = spawn_and_wait(cmd, "switchyard listening on ");
    Router { proc, dir }
}

/// [`start_router`] with the router's stderr (its log) kept in a file; see [`router_log`].
pub fn start_router_logged(opts: RouterOpts<'_>) -> Router {
    let (cmd, dir) = router_command(&opts);
    let log = std::fs::File::create(dir.path().join(ROUTER_LOG)).expect("router log file");
    let proc = spawn_with_stderr(cmd, "switchyard listening on ", Stdio::from(log));
    Router { proc, dir }
}

const ROUTER_LOG: &str = "router-stderr.log";

/// What a router started by [`start_router_logged`] has written to stderr so far.
pub fn router_log(router: &Router) -> String {
    std::fs::read_to_string(router.dir.path().join(ROUTER_LOG)).unwrap_or_default()
}

const PROXY_VARS: [&str; 4] = ["https_proxy", "http_proxy", "all_proxy", "no_proxy"];

/// The command that starts a router for `opts`, in a fresh working directory.
fn router_command(opts: &RouterOpts<'_>) -> (Command, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models.yaml");
    std::fs::write(&models, opts.models_yaml).expect("write models.yaml");
    let routing = dir.path().join("routing.yaml");
    if let Some(r) = opts.routing_yaml {
        std::fs::write(&routing, r).expect("write routing.yaml");
    }
    let mut cmd = Command::new(bin("switchyard"));
    cmd.current_dir(dir.path())
        .arg("serve")
        .arg("--config")
        .arg(&models)
        .args(["--host", "127.0.0.1", "--port", "0"]);
    if opts.routing_yaml.is_some() {
        cmd.arg("--routing").arg(&routing);
    }
    // A proxy in the test runner's environment would reroute every test's loopback traffic.
    for name in PROXY_VARS {
        cmd.env_remove(name).env_remove(name.to_ascii_uppercase());
    }
    for (k, v) in test_env() {
        cmd.env(k, v);
    }
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    (cmd, dir)
}

/// The routing.yaml `router` persisted to, as text and parsed, and the registry it loads into
/// with `models_yaml` (a persisted change must load back).
pub fn persisted_routing(
    router: &Router,
    models_yaml: &str,
) -> (String, serde_yaml::Value, switchyard::config::Registry) {
    let file = std::fs::read_to_string(router.dir.path().join("routing.yaml")).expect("file");
    let doc: serde_yaml::Value = serde_yaml::from_str(&file).expect("routing.yaml is YAML");
    let registry = switchyard::config::load_str(
        "models.yaml",
        models_yaml,
        Some(("routing.yaml", &file)),
        &std::collections::HashMap::<String, String>::new(),
    )
    .expect("persisted routing.yaml loads");
    (file, doc, registry)
}

/// Start a router and wait until `ready` endpoints report ready.
pub async fn start_router_ready(opts: RouterOpts<'_>, ready: u64) -> Router {
    let router = start_router(opts);
    wait_ready(&router.url, ready).await;
    router
}

pub async fn wait_ready(url: &str, ready: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((200, body)) = get_json(&format!("{url}/health")).await {
            if body["endpoints"]["ready"].as_u64().unwrap_or(0) >= ready {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "router at {url} did not get {ready} ready endpoints"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until no endpoint is `starting`: every probed endpoint has answered its first probe,
/// so no request can meet the 503 `model_loading` a route gets until then. For routers whose
/// probed endpoints all come up (a dead or loading one stays `starting`: count with
/// [`wait_ready`] instead).
pub async fn wait_none_starting(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((200, body)) = get_json(&format!("{url}/health")).await {
            if body["endpoints"]["starting"].as_u64() == Some(0) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "router at {url} still has starting endpoints"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Start a router and wait until none of its endpoints is `starting` ([`wait_none_starting`]).
pub async fn start_router_settled(opts: RouterOpts<'_>) -> Router {
    let router = start_router(opts);
    wait_none_starting(&router.url).await;
    router
}

pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish()
}

pub async fn get_json(url: &str) -> Result<(u16, Value), String> {
    let mut resp = client().get(url).send().await.map_err(|e| e.to_string())?;
    let body = resp
        .body()
        .limit(64 << 20)
        .await
        .map_err(|e| e.to_string())?;
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok((resp.status().as_u16(), v))
}

pub async fn post_json(url: &str, body: &Value) -> (u16, awc::http::header::HeaderMap, Value) {
    let mut resp = client()
        .post(url)
        .insert_header(("content-type", "application/json"))
        .send_body(body.to_string())
        .await
        .expect("request");
    let bytes = resp.body().limit(64 << 20).await.expect("body");
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (resp.status().as_u16(), resp.headers().clone(), v)
}

pub async fn post_raw(
    url: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, awc::http::header::HeaderMap, Value) {
    let mut resp = client()
        .post(url)
        .insert_header(("content-type", content_type))
        .send_body(body)
        .await
        .expect("request");
    let bytes = resp.body().limit(64 << 20).await.expect("body");
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (resp.status().as_u16(), resp.headers().clone(), v)
}

/// Assert the OpenAI error shape: all four keys, with the given status.
pub fn assert_openai_error(status: u16, expected: u16, body: &Value) {
    assert_eq!(status, expected, "body: {body}");
    let e = body
        .get("error")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no error object: {body}"));
    for key in ["message", "type", "param", "code"] {
        assert!(e.contains_key(key), "error lacks `{key}`: {body}");
    }
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

pub async fn mock_stats(mock: &Proc) -> Value {
    get_json(&format!("{}/_mock/stats", mock.url))
        .await
        .expect("mock stats")
        .1
}

pub async fn mock_patch(mock: &Proc, patch: Value) {
    let mut resp = client()
        .patch(format!("{}/_mock/config", mock.url))
        .insert_header(("content-type", "application/json"))
        .send_body(patch.to_string())
        .await
        .expect("patch mock");
    assert!(
        resp.status().is_success(),
        "mock patch failed: {:?}",
        resp.body().await
    );
}

/// A models.yaml with one chat model routed to the given (kind, url, weight) triples.
pub fn chat_model_yaml(id: &str, routes: &[(&str, &str, f64)]) -> String {
    let mut y = format!("models:\n  - id: {id}\n    route:\n");
    for (kind, url, weight) in routes {
        y.push_str(&format!(
            "      - kind: {kind}\n        weight: {weight}\n        base_url: \"{url}\"\n        provider_model_id: upstream-{id}\n"
        ));
    }
    y
}

/// A models.yaml with one chat model whose routes (kind, url) are tried in the order given:
/// each is a tier (`priority`) above the next, so the first is always tried first and the
/// next only after it fails or refuses. (A weight of 1000:1 only makes that likely: one
/// request in a thousand would start on the second route.)
pub fn chat_model_yaml_in_order(id: &str, routes: &[(&str, &str)]) -> String {
    let mut y = format!("models:\n  - id: {id}\n    route:\n");
    for (tier, (kind, url)) in routes.iter().rev().enumerate().rev() {
        y.push_str(&format!(
            "      - kind: {kind}\n        priority: {tier}\n        base_url: \"{url}\"\n        provider_model_id: upstream-{id}\n"
        ));
    }
    y
}

pub fn chat_body(model: &str, stream: bool) -> Value {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "Hello there"}],
        "stream": stream,
        "max_tokens": 16,
    })
}

/// Read an SSE response to the end, returning each `data:` payload with its arrival time.
pub async fn read_sse(
    resp: &mut awc::ClientResponse<
        impl futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
    >,
) -> Vec<(Duration, String)> {
    use futures_util::StreamExt;
    let start = Instant::now();
    let mut buf = String::new();
    let mut out = Vec::new();
    while let Some(chunk) = resp.next().await {
        let Ok(chunk) = chunk else { break };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(pos) = buf.find("\n\n") {
            let event: String = buf.drain(..pos + 2).collect();
            for line in event.lines() {
                if let Some(data) = line.strip_prefix("data: ") {
                    out.push((start.elapsed(), data.to_string()));
                }
            }
        }
    }
    out
}

/// A request with `Authorization: Bearer <key>` (no header when `key` is `None`).
pub async fn send_with_key(
    method: &str,
    url: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, awc::http::header::HeaderMap, Value) {
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client().request(method, url);
    if let Some(key) = key {
        req = req.insert_header(("authorization", format!("Bearer {key}")));
    }
    let sent = match body {
        Some(b) => {
            req.insert_header(("content-type", "application/json"))
                .send_body(b.to_string())
                .await
        }
        None => req.send().await,
    };
    let mut resp = sent.expect("request");
    let bytes = resp.body().limit(64 << 20).await.expect("body");
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (resp.status().as_u16(), resp.headers().clone(), v)
}

/// `endpoints.in_flight` from `/health`.
pub async fn in_flight(router: &str) -> u64 {
    get_json(&format!("{router}/health"))
        .await
        .ok()
        .and_then(|(_, v)| v["endpoints"]["in_flight"].as_u64())
        .unwrap_or(u64::MAX)
}

/// Poll until every lease is released, or fail after `within`.
pub async fn wait_in_flight_zero(router: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let n = in_flight(router).await;
        if n == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "in-flight still {n} after {within:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll `check` every 50 ms until it is true, or fail with `what` after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Send a signal by name (`HUP`, `TERM`) to a child process.
pub fn signal(proc: &Proc, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(proc.pid().to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} failed");
}

/// Public model ids listed by `/v1/models` (with an optional key).
pub async fn model_ids(router: &str, key: Option<&str>) -> Vec<String> {
    let (_, _, v) = send_with_key("GET", &format!("{router}/v1/models"), key, None).await;
    v["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub mod obs;
pub mod pg;

/// Put the session key `key` where the `n`th of the three places a client may put it says:
/// the `x-session-id` header (returned, for the caller to send), the body's
/// `prompt_cache_key`, or its `user`.
pub fn place_session_key<'a>(n: usize, key: &'a str, body: &mut Value) -> Option<&'a str> {
    match n % 3 {
        0 => Some(key),
        1 => {
            body["prompt_cache_key"] = Value::String(key.to_string());
            None
        }
        _ => {
            body["user"] = Value::String(key.to_string());
            None
        }
    }
}

/// The router's `/metrics` text (the router runs with `METRICS_PUBLIC=true`).
pub async fn metrics_text(router: &str) -> String {
    let mut resp = client()
        .get(format!("{router}/metrics"))
        .send()
        .await
        .expect("metrics");
    let body = resp.body().limit(8 << 20).await.expect("metrics body");
    String::from_utf8_lossy(&body).into_owned()
}

/// Whether `/metrics` text counts a request of `model` on operation `op` with `outcome`.
pub fn counts_request(metrics: &str, model: &str, op: &str, outcome: &str) -> bool {
    metrics.lines().any(|l| {
        l.starts_with("switchyard_requests_total{")
            && l.contains(&format!("model=\"{model}\""))
            && l.contains(&format!("op=\"{op}\""))
            && l.contains(&format!("outcome=\"{outcome}\""))
    })
}
