//! Graceful shutdown under load: SIGTERM stops accepting, lets in-flight requests and streams
//! finish within `SHUTDOWN_GRACE_SECONDS` (cutting them after it), flushes every record and
//! exits 0. The request log then has exactly one row per request that got an answer.

use crate::common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::obs::*;
use common::*;
use futures_util::StreamExt;
use serde_json::json;

fn sigterm(pid: u32) {
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

/// Wait for the process to exit on its own (no second signal); returns its exit code.
fn wait_exit(router: &mut Router, within: Duration) -> Option<i32> {
    router.proc.wait_exit(within)
}

#[actix_rt::test]
async fn sigterm_under_load_finishes_streams_and_logs_every_request() {
    // Streams of 16 words (max_tokens) 50 ms apart; JSON answers at once.
    let mock = start_mock(json!({"chunks": 20, "chunk_interval_ms": 50}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let mut router = start_router_ready(
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml: None,
            env: vec![
                ("SHUTDOWN_GRACE_SECONDS", "15".into()),
                ("LOG_FLUSH_INTERVAL_MS", "1000".into()),
                ("LOG_BATCH_SIZE", "100000".into()),
            ],
        },
        1,
    )
    .await;
    let db = sqlite_path(&router);
    let url = format!("{}/v1/chat/completions", router.url);

    // Background load: 4 loops of non-streamed requests until the router stops answering.
    let answered = Rc::new(Cell::new(0u64));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (url, answered) = (url.clone(), answered.clone());
        loops.push(actix_rt::spawn(async move {
            let mut body = chat_body("m", false);
            body["max_tokens"] = json!(1);
            // Until the router stops answering; a status line means it produced a record.
            while let Ok(mut resp) = client().post(&url).send_json(&body).await {
                let _ = resp.body().await;
                answered.set(answered.get() + 1);
            }
        }));
    }

    // Eight streams, each started and past its first token before the signal.
    let mut streams = Vec::new();
    for _ in 0..8 {
        let mut resp = client()
            .post(&url)
            .send_json(&chat_body("m", true))
            .await
            .expect("stream");
        assert_eq!(resp.status(), 200);
        let first = resp.next().await.expect("first chunk").expect("bytes");
        assert!(!first.is_empty());
        streams.push(resp);
    }
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    sigterm(router.pid());

    // Every stream runs to its end despite the signal.
    for mut resp in streams {
        let rest = read_sse(&mut resp).await;
        assert_eq!(
            rest.last().map(|(_, d)| d.as_str()),
            Some("[DONE]"),
            "a stream in flight at SIGTERM must finish"
        );
    }
    for l in loops {
        let _ = l.await;
    }
    assert_eq!(wait_exit(&mut router, Duration::from_secs(30)), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "exit well within the grace period"
    );

    let store = open_sqlite(&db).await;
    let rows = all_rows(&store).await;
    let expected = answered.get() as usize + 8;
    assert!(
        answered.get() > 10,
        "the load loops ran ({})",
        answered.get()
    );
    assert_eq!(rows.len(), expected, "one row per answered request");
    let streamed: Vec<_> = rows.iter().filter(|r| r.stream).collect();
    assert_eq!(streamed.len(), 8);
    assert!(streamed
        .iter()
        .all(|r| r.outcome == "success" && r.completion_tokens == Some(16)));
}

#[actix_rt::test]
async fn streams_longer_than_the_grace_period_are_cut_and_still_logged() {
    // 100 words 100 ms apart: ten seconds, far beyond a one-second grace.
    let mock = start_mock(json!({"chunks": 100, "chunk_interval_ms": 100}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let mut router = start_router_ready(
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml: None,
            env: vec![("SHUTDOWN_GRACE_SECONDS", "1".into())],
        },
        1,
    )
    .await;
    let db = sqlite_path(&router);
    let url = format!("{}/v1/chat/completions", router.url);
    let mut streams = Vec::new();
    for i in 0..3 {
        let mut resp = client()
            .post(&url)
            .insert_header(("x-request-id", format!("cut-{i}")))
            .send_json(&chat_body("m", true))
            .await
            .expect("stream");
        let _ = resp.next().await;
        streams.push(resp);
    }
    let signalled = Instant::now();
    sigterm(router.pid());
    for mut resp in streams {
        let rest = read_sse(&mut resp).await;
        assert_ne!(
            rest.last().map(|(_, d)| d.as_str()),
            Some("[DONE]"),
            "a ten-second stream cannot finish in a one-second grace"
        );
    }
    let cut_after = signalled.elapsed();
    assert!(
        cut_after < Duration::from_secs(6),
        "streams cut about the grace period after the signal ({cut_after:?})"
    );
    assert_eq!(wait_exit(&mut router, Duration::from_secs(20)), Some(0));
    let store = open_sqlite(&db).await;
    let rows = all_rows(&store).await;
    assert_eq!(rows.len(), 3, "{rows:#?}");
    for i in 0..3 {
        let r = row_for(&rows, &format!("cut-{i}"));
        assert_eq!(r.outcome, "canceled", "{r:?}");
        assert!(
            r.usage_estimated && r.completion_tokens.unwrap_or(0) > 0,
            "{r:?}"
        );
    }
}

/// The server's keep-alive is long (30 s, so that slow HTTP/2 clients keep their connections;
/// see `src/server.rs`): an idle HTTP/1.1 keep-alive connection must still not hold the exit
/// until it, or the grace period, runs out. Actix closes idle connections when draining.
#[actix_rt::test]
async fn an_idle_keep_alive_connection_does_not_hold_the_shutdown() {
    use std::io::{Read, Write};
    let mock = start_mock(json!({}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let mut router = start_router_ready(
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml: None,
            env: vec![("SHUTDOWN_GRACE_SECONDS", "20".into())],
        },
        1,
    )
    .await;
    let addr = router.url.trim_start_matches("http://").to_string();
    let mut idle = std::net::TcpStream::connect(&addr).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("request");
    let mut head = [0u8; 1024];
    let n = idle.read(&mut head).expect("an answer");
    let answer = String::from_utf8_lossy(&head[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("connection: close"),
        "kept alive: {answer}"
    );

    let signalled = Instant::now();
    sigterm(router.pid());
    assert_eq!(wait_exit(&mut router, Duration::from_secs(30)), Some(0));
    let exited_after = signalled.elapsed();
    assert!(
        exited_after < Duration::from_secs(5),
        "an idle connection held the exit for {exited_after:?}"
    );
    drop(idle);
}
