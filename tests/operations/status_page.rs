//! The `/ui` status page in a real browser: headless Chromium (Debian's `chromium`) driven by
//! `playwright-core` (`tests/ui/`, `npm install` there). Skipped, with a line saying why, when
//! node, Chromium or playwright-core is missing.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn chromium() -> Option<PathBuf> {
    let candidates = [
        std::env::var("CHROMIUM_PATH").unwrap_or_default(),
        "/usr/bin/chromium".into(),
        "/usr/bin/chromium-browser".into(),
    ];
    candidates
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui")
}

#[actix_rt::test]
async fn status_page_renders_live_charts_in_headless_chromium() {
    let Some(browser) = chromium() else {
        println!("SKIP status page: no Chromium (apt-get install chromium, or set CHROMIUM_PATH)");
        return;
    };
    if Command::new("node").arg("--version").output().is_err() {
        println!("SKIP status page: node is not installed");
        return;
    }
    if !ui_dir().join("node_modules/playwright-core").exists() {
        println!("SKIP status page: run `npm install` in tests/ui (playwright-core)");
        return;
    }
    let mock = start_mock(json!({"chunks": 4, "latency_ms": 5}));
    let yaml = format!(
        "models:\n  - id: m\n    route:\n      - {{kind: vllm, base_url: \"{}\", rpm: 6000, tpm: 1000000, max_in_flight: 32}}\n",
        mock.url
    );
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml: None,
            env: vec![("ADMIN_API_KEY", "ui-test-key".into())],
        },
        1,
    )
    .await;
    // Traffic spread over a few seconds so the charts have more than one slot.
    let url = format!("{}/v1/chat/completions", router.url);
    let until = Instant::now() + Duration::from_secs(6);
    let mut sent = 0;
    while Instant::now() < until {
        for stream in [false, true] {
            assert_eq!(post_json(&url, &chat_body("m", stream)).await.0, 200);
            sent += 1;
        }
        actix_rt::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(sent > 20);
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status_page.png");
    let _ = std::fs::remove_file(&shot);
    let out = Command::new("node")
        .current_dir(ui_dir())
        .env("CHROMIUM_PATH", &browser)
        .arg("status_page.mjs")
        .arg(&router.url)
        .arg("ui-test-key")
        .arg(&shot)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser check failed:\n{stdout}\n{stderr}"
    );
    assert!(shot.exists(), "screenshot saved at {}", shot.display());
    println!("status page screenshot: {}", shot.display());
}
