//! `switchyard healthcheck`, the container image's HEALTHCHECK: exit 0 on a 200 from /health,
//! 1 with a reason otherwise.

use crate::common;

use std::process::Command;

use common::*;
use serde_json::json;

fn healthcheck(args: &[&str], port: Option<u16>) -> (bool, String) {
    let mut cmd = Command::new(bin("switchyard"));
    cmd.arg("healthcheck").args(args).env_remove("PORT");
    if let Some(p) = port {
        cmd.env("PORT", p.to_string());
    }
    let out = cmd.output().expect("run switchyard healthcheck");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[actix_rt::test]
async fn healthcheck_exits_zero_only_on_a_200() {
    let mock = start_mock(json!({}));
    let router = start_router(RouterOpts {
        models_yaml: &chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]),
        routing_yaml: None,
        env: vec![],
    });
    let health = format!("{}/health", router.url);
    assert_eq!(
        healthcheck(&["--url", &health], None),
        (true, String::new())
    );
    // The default URL is 127.0.0.1 on $PORT, as in the container.
    let port: u16 = router
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("router port");
    assert!(healthcheck(&[], Some(port)).0);
    // Not a 200: an unknown path (404), nothing listening.
    let (ok, why) = healthcheck(&["--url", &format!("{}/nope", router.url)], None);
    assert!(!ok && why.contains("404"), "{why}");
    let (ok, why) = healthcheck(
        &["--url", &format!("{}/health", dead_url()), "--timeout", "1"],
        None,
    );
    assert!(!ok && why.starts_with("unhealthy:"), "{why}");
}
