//! What operators plug in: a real Prometheus (Debian's `prometheus` package) scraping the router
//! with the shipped scrape config and rules, and `switchyard demo` opening its own status page.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const ADMIN_KEY: &str = "prom-admin-key-0123456";

/// A child killed (and reaped) when dropped, so a failed assertion leaves no server behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn find_in_path(name: &str) -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `deploy/prometheus/prometheus.yml` pointed at this router: its target, a credentials file
/// holding the admin key, the rule files by absolute path, and a 1 s scrape interval.
fn scrape_config(router_url: &str, dir: &Path) -> String {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    let text = std::fs::read_to_string(deploy.join("prometheus.yml")).expect("prometheus.yml");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("prometheus.yml");
    let key_file = dir.join("admin-key");
    std::fs::write(&key_file, ADMIN_KEY).expect("write key file");
    config["global"]["scrape_interval"] = "1s".into();
    config["global"]["evaluation_interval"] = "1s".into();
    let rule_files = config["rule_files"].as_sequence_mut().expect("rule_files");
    for file in rule_files.iter_mut() {
        let name = file.as_str().expect("rule file name").to_string();
        *file = deploy.join(name).display().to_string().into();
    }
    let job = &mut config["scrape_configs"][0];
    assert_eq!(job["job_name"].as_str(), Some("switchyard"));
    job["authorization"]["credentials_file"] = key_file.display().to_string().into();
    let target = router_url.trim_start_matches("http://").to_string();
    job["static_configs"][0]["targets"] = vec![serde_yaml::Value::from(target)].into();
    serde_yaml::to_string(&config).expect("serialize config")
}

/// GET a Prometheus API path; `None` while it does not answer.
async fn prom_api(base: &str, path_and_query: &str) -> Option<Value> {
    let (status, body) = get_json(&format!("{base}{path_and_query}")).await.ok()?;
    (status == 200).then_some(body)
}

#[actix_rt::test]
async fn a_real_prometheus_scrapes_the_router_with_the_shipped_config() {
    let Some(prometheus) = find_in_path("prometheus") else {
        eprintln!("SKIPPED: the prometheus binary is not installed (apt-get install prometheus)");
        return;
    };
    let mock = start_mock(json!({}));
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]),
            routing_yaml: None,
            env: vec![("ADMIN_API_KEY", ADMIN_KEY.into())],
        },
        1,
    )
    .await;
    let (status, _, _) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("m", false),
    )
    .await;
    assert_eq!(status, 200);

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, scrape_config(&router.url, dir.path())).expect("write config");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _prometheus = Killed(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );

    // Bounded: Prometheus starts in about a second and scrapes every second.
    let deadline = Instant::now() + Duration::from_secs(60);
    let query = "/api/v1/query?query=sum%20by%20(model%2C%20outcome)%20(switchyard_requests_total)";
    let answer = loop {
        if let Some(body) = prom_api(&base, query).await {
            let result = body["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !result.is_empty() {
                break result;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus at {base} did not answer a query over switchyard_requests_total"
        );
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(answer[0]["metric"]["model"], "m");
    assert_eq!(answer[0]["metric"]["outcome"], "success");
    assert_eq!(answer[0]["value"][1], "1", "{answer:?}");

    // The scrape went through the admin key, and Prometheus loaded every shipped rule.
    let targets = prom_api(&base, "/api/v1/targets").await.expect("targets");
    let active = &targets["data"]["activeTargets"][0];
    assert_eq!(active["health"], "up", "{active}");
    let rules = prom_api(&base, "/api/v1/rules").await.expect("rules");
    let loaded: usize = rules["data"]["groups"]
        .as_array()
        .expect("rule groups")
        .iter()
        .map(|g| g["rules"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(loaded >= 15, "only {loaded} rules loaded: {rules}");
    let health: Vec<String> = rules["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["health"] == "err")
        .map(|r| r.to_string())
        .collect();
    assert!(health.is_empty(), "rules failing to evaluate: {health:?}");
}

/// `switchyard demo --port 0` with `env`; every stdout line, as it comes.
fn start_demo(env: &[(&str, &str)]) -> (Killed, mpsc::Receiver<String>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(bin("switchyard"));
    cmd.current_dir(dir.path())
        .args(["demo", "--port", "0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for name in [
        "ADMIN_API_KEY",
        "ADMIN_API_KEYS",
        "API_KEYS",
        "KEYS_FILE",
        "HOST",
    ] {
        cmd.env_remove(name);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn demo");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Killed(child), rx, dir)
}

/// Lines until (and including) the first one starting with `prefix`.
fn lines_until(rx: &mpsc::Receiver<String>, prefix: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let done = line.starts_with(prefix);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(_) => panic!("no `{prefix}` line; stdout so far: {seen:?}"),
        }
    }
}

async fn admin_status(base: &str, key: Option<&str>) -> u16 {
    let mut req = client().get(format!("{base}/admin/backends"));
    if let Some(key) = key {
        req = req.insert_header(("authorization", format!("Bearer {key}")));
    }
    req.send().await.expect("admin request").status().as_u16()
}

#[actix_rt::test]
async fn the_demo_prints_a_status_page_link_with_a_generated_admin_key() {
    let (_demo, rx, _dir) = start_demo(&[]);
    let lines = lines_until(&rx, "status page: ");
    assert!(
        lines.iter().any(|l| l.contains("set ADMIN_API_KEY")),
        "the demo does not say how to fix the key: {lines:?}"
    );
    let link = lines.last().expect("link line");
    let url = link.trim_start_matches("status page: ");
    let (base, key) = url.split_once("/ui#key=").expect("a /ui#key= link");
    assert!(base.starts_with("http://127.0.0.1:"), "{link}");
    assert!(key.len() >= 32, "a short key: {key}");
    // Printed once: only the link line carries it.
    assert_eq!(lines.iter().filter(|l| l.contains(key)).count(), 1);
    // The link's key opens the admin API (what the page calls); nothing else does.
    assert_eq!(admin_status(base, Some(key)).await, 200);
    assert_eq!(admin_status(base, None).await, 401);
    assert_eq!(
        admin_status(base, Some("sy-demo-not-the-key-000000")).await,
        401
    );
    let (status, _) = get_json(&format!("{base}/ui"))
        .await
        .unwrap_or((0, Value::Null));
    assert_eq!(status, 200);

    // A second run makes another key.
    let (_again, rx2, _dir2) = start_demo(&[]);
    let other = lines_until(&rx2, "status page: ");
    assert!(!other.last().expect("link").ends_with(key));
}

#[actix_rt::test]
async fn a_fixed_admin_key_is_used_as_is_and_never_printed() {
    let fixed = "fixed-demo-admin-key-0001";
    let (_demo, rx, _dir) = start_demo(&[("ADMIN_API_KEY", fixed)]);
    let lines = lines_until(&rx, "switchyard listening on ");
    let base = lines
        .last()
        .and_then(|l| l.strip_prefix("switchyard listening on "))
        .expect("address")
        .to_string();
    assert_eq!(admin_status(&base, Some(fixed)).await, 200);
    // Nothing generated, no link with a key: whatever else is printed never holds the key.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let later: Vec<String> = rx.try_iter().collect();
    assert!(
        lines
            .iter()
            .chain(&later)
            .all(|l| !l.contains(fixed) && !l.contains("#key=")),
        "{lines:?} {later:?}"
    );
}
