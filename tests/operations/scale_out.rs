//! Scale-out: three router processes on loopback sharing one PostgreSQL database and one video
//! storage directory. Video jobs submitted through router A survive A's SIGKILL: B and C take
//! them over once A's claims run out, finish them (async jobs re-polled, sync jobs resubmitted
//! once) and serve the content; any replica answers for any job; request rows from all three
//! land in one `api_logs` table, each with its replica.
//!
//! Needs `TEST_DATABASE_URL` (a server where the test may create and drop a database); without
//! it the test says SKIP and passes.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use sqlx::Connection;

/// Seconds a claim lasts without renewal; the takeover is bounded by this plus one pickup
/// interval (a third of it).
const CLAIM_SECS: u64 = 3;

const ADMIN_KEY: &str = "scale-out-admin";

fn models_yaml(async_mock: &str, sync_mock: &str) -> String {
    format!(
        "models:
  - id: chat
    route:
      - {{kind: vllm, base_url: \"{async_mock}\"}}
  - id: vid-async
    type: video
    pricing: {{video: 0.01}}
    route:
      - {{name: engine, kind: video-engine, base_url: \"{async_mock}\", video_mode: async}}
  - id: vid-sync
    type: video
    route:
      - {{name: engine, kind: video-engine, base_url: \"{sync_mock}\", video_mode: sync}}
"
    )
}

fn start_replica(yaml: &str, name: &str, db_url: &str, storage: &Path) -> Router {
    start_router(RouterOpts {
        models_yaml: yaml,
        routing_yaml: None,
        env: vec![
            ("USE_SQLITE_LOG", "false".into()),
            ("DATABASE_URL", db_url.into()),
            ("REPLICA_ID", name.into()),
            ("VIDEO_STORAGE_DIR", storage.display().to_string()),
            ("VIDEO_CLAIM_SECS", CLAIM_SECS.to_string()),
            ("VIDEO_POLL_INTERVAL_MS", "100".into()),
            ("VIDEO_POLL_MAX_INTERVAL_MS", "300".into()),
            ("LOG_FLUSH_INTERVAL_MS", "50".into()),
            ("ADMIN_API_KEY", ADMIN_KEY.into()),
        ],
    })
}

/// The mock's MP4: an `ftyp` box, then an `mdat` box of `(i % 251)` filler.
fn mock_mp4(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&24u32.to_be_bytes());
    out.extend_from_slice(b"ftypisom");
    out.extend_from_slice(&0x200u32.to_be_bytes());
    out.extend_from_slice(b"isommp41");
    out.extend_from_slice(&((len - 24) as u32).to_be_bytes());
    out.extend_from_slice(b"mdat");
    out.extend((0..len - 32).map(|i| (i % 251) as u8));
    out
}

async fn job(router: &str, id: &str) -> Value {
    let (status, v) = get_json(&format!("{router}/v1/video/generations/{id}"))
        .await
        .expect("job");
    assert_eq!(status, 200, "{v}");
    v
}

async fn create_job(router: &str, model: &str) -> String {
    let (status, _, v) = post_json(
        &format!("{router}/v1/video/generations"),
        &json!({"model": model, "prompt": "a lighthouse, scaled out", "seconds": 4}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    v["id"].as_str().expect("job id").to_string()
}

async fn content(router: &str, id: &str, range: Option<&str>) -> (u16, bytes::Bytes) {
    let mut req = client().get(format!("{router}/v1/video/generations/{id}/content"));
    if let Some(r) = range {
        req = req.insert_header(("range", r));
    }
    let mut resp = req.send().await.expect("content request");
    let body = resp.body().limit(64 << 20).await.expect("content body");
    (resp.status().as_u16(), body)
}

/// `(lease_owner, count)` of the given jobs.
async fn owners(db: &mut sqlx::PgConnection, ids: &[String]) -> BTreeMap<String, i64> {
    let rows: Vec<(Option<String>,)> =
        sqlx::query_as("SELECT lease_owner FROM video_jobs WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(&mut *db)
            .await
            .expect("job owners");
    let mut out = BTreeMap::new();
    for (owner,) in rows {
        *out.entry(owner.unwrap_or_default()).or_insert(0) += 1;
    }
    out
}

/// Request rows of `op` per replica.
async fn rows_by_replica(db: &mut sqlx::PgConnection, op: &str) -> BTreeMap<String, i64> {
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT replica, COUNT(*) FROM api_logs WHERE op = $1 GROUP BY replica ORDER BY replica",
    )
    .bind(op)
    .fetch_all(&mut *db)
    .await
    .expect("rows by replica");
    rows.into_iter()
        .map(|(r, n)| (r.unwrap_or_default(), n))
        .collect()
}

async fn chat_through(router: &str, n: usize) {
    for _ in 0..n {
        let (status, _, v) = post_json(
            &format!("{router}/v1/chat/completions"),
            &chat_body("chat", false),
        )
        .await;
        assert_eq!(status, 200, "{v}");
    }
}

async fn scale_out(db_url: &str) {
    let storage = tempfile::tempdir().expect("storage dir");
    // ~4 s async jobs (polled by whoever holds them) and ~3 s sync calls (lost with A).
    let async_mock = start_mock(
        json!({"video_queue_ms": 200, "video_steps": 10, "video_step_ms": 400, "video_bytes": 50000}),
    );
    let sync_mock = start_mock(
        json!({"video_mode": "sync", "video_steps": 6, "video_step_ms": 500, "video_bytes": 30000}),
    );
    let yaml = models_yaml(&async_mock.url, &sync_mock.url);
    let mut a = start_replica(&yaml, "router-a", db_url, storage.path());
    let b = start_replica(&yaml, "router-b", db_url, storage.path());
    let c = start_replica(&yaml, "router-c", db_url, storage.path());
    for r in [&a, &b, &c] {
        wait_ready(&r.url, 3).await;
    }
    let mut db = sqlx::PgConnection::connect(db_url)
        .await
        .expect("connect to the test database");

    // Usage from every replica lands in the one table; A's rows are written before it dies.
    chat_through(&a.url, 3).await;
    chat_through(&b.url, 2).await;
    chat_through(&c.url, 4).await;
    let expected: BTreeMap<String, i64> = [("router-a", 3), ("router-b", 2), ("router-c", 4)]
        .into_iter()
        .map(|(r, n)| (r.to_string(), n))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while rows_by_replica(&mut db, "chat_completions").await != expected {
        assert!(
            Instant::now() < deadline,
            "chat rows by replica: {:?}",
            rows_by_replica(&mut db, "chat_completions").await
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    // The aggregates any replica serves count every replica's requests.
    let (_, _, usage) = send_with_key(
        "GET",
        &format!("{}/admin/usage?by=model", b.url),
        Some(ADMIN_KEY),
        None,
    )
    .await;
    let chat_usage = usage["data"]
        .as_array()
        .and_then(|d| d.iter().find(|r| r["model_id"] == "chat"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(chat_usage["requests"], 9, "{usage}");
    let (_, _, by_replica) = send_with_key(
        "GET",
        &format!("{}/admin/usage?by=replica&model=chat", c.url),
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert_eq!(by_replica["group_by"], json!(["replica"]));
    let counted: BTreeMap<String, i64> = by_replica["data"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|r| {
                    (
                        r["replica"].as_str().unwrap_or("").to_string(),
                        r["requests"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(counted, expected, "{by_replica}");

    // Jobs through A: two async, two sync. Kill A once all four are with their backends.
    let async_ids = [
        create_job(&a.url, "vid-async").await,
        create_job(&a.url, "vid-async").await,
    ];
    let sync_ids = [
        create_job(&a.url, "vid-sync").await,
        create_job(&a.url, "vid-sync").await,
    ];
    let all: Vec<String> = async_ids.iter().chain(&sync_ids).cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut async_started = true;
        for id in &async_ids {
            async_started &= job(&a.url, id).await["status"] == "in_progress";
        }
        let sync_started = mock_stats(&sync_mock).await["video_submits"] == 2;
        if async_started && sync_started {
            break;
        }
        assert!(Instant::now() < deadline, "jobs did not reach the backends");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        owners(&mut db, &all).await,
        BTreeMap::from([("router-a".to_string(), 4)])
    );
    a.kill();
    let killed = Instant::now();

    // B and C take the jobs over once A's claims run out.
    let mut taken_over = None;
    let deadline = killed + Duration::from_secs(CLAIM_SECS * 2 + 10);
    let mut done: BTreeMap<String, Value> = BTreeMap::new();
    let mut round = 0usize;
    while done.len() < all.len() {
        assert!(
            Instant::now() < deadline,
            "jobs not finished after A's death: owners {:?}, done {:?}",
            owners(&mut db, &all).await,
            done.keys().collect::<Vec<_>>()
        );
        if taken_over.is_none() && !owners(&mut db, &all).await.contains_key("router-a") {
            taken_over = Some(killed.elapsed());
        }
        for id in &all {
            if done.contains_key(id) {
                continue;
            }
            // Polling alternates between the survivors: either may answer for any job.
            round += 1;
            let through = if round.is_multiple_of(2) {
                &b.url
            } else {
                &c.url
            };
            let v = job(through, id).await;
            match v["status"].as_str() {
                Some("completed") => {
                    done.insert(id.clone(), v);
                }
                Some("queued" | "in_progress") => {}
                other => panic!("job {id} ended {other:?}: {v}"),
            }
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let all_done = killed.elapsed();
    let taken_over = taken_over.unwrap_or(all_done);
    eprintln!(
        "scale-out: jobs taken over {:.1} s after SIGKILL (claim {CLAIM_SECS} s), all four completed after {:.1} s",
        taken_over.as_secs_f64(),
        all_done.as_secs_f64()
    );
    assert!(
        taken_over <= Duration::from_secs(CLAIM_SECS + CLAIM_SECS / 3 + 2),
        "takeover took {taken_over:?}"
    );
    let by_owner = owners(&mut db, &all).await;
    assert!(
        by_owner.keys().all(|o| o == "router-b" || o == "router-c"),
        "{by_owner:?}"
    );
    assert_eq!(
        mock_stats(&async_mock).await["video_submits"],
        2,
        "async jobs re-polled by the new owner, not resubmitted"
    );
    assert_eq!(
        mock_stats(&sync_mock).await["video_submits"],
        4,
        "each sync call lost with A was sent once more"
    );

    // The content is on the shared directory: every survivor serves every job.
    for (ids, len) in [(&async_ids, 50000), (&sync_ids, 30000)] {
        for id in ids.iter() {
            for r in [&b, &c] {
                let (status, body) = content(&r.url, id, None).await;
                assert_eq!(status, 200, "content of {id} through {}", r.url);
                assert_eq!(body.len(), len);
                assert!(body.as_ref() == mock_mp4(len).as_slice(), "bytes of {id}");
            }
            let (status, part) = content(&c.url, id, Some("bytes=100-199")).await;
            assert_eq!(status, 206);
            assert_eq!(part.as_ref(), &mock_mp4(len)[100..200]);
        }
    }
    // No leftovers of the interrupted sync downloads: one file per job.
    let mut files: Vec<String> = std::fs::read_dir(storage.path())
        .expect("storage dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    assert!(files.iter().all(|f| !f.ends_with(".part")), "{files:?}");

    // A job owned by one survivor is canceled through the other, which tells the backend; the
    // owner notices at its next renewal and stops.
    let id = create_job(&b.url, "vid-async").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while job(&c.url, &id).await["status"] != "in_progress" {
        assert!(Instant::now() < deadline, "job {id} not started");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let cancels = mock_stats(&async_mock).await["video_cancels"]
        .as_u64()
        .unwrap_or(0);
    let (status, _, v) = post_json(
        &format!("{}/v1/video/generations/{id}/cancel", c.url),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "canceled");
    assert_eq!(job(&b.url, &id).await["status"], "canceled");
    let (status, _, v) = post_json(
        &format!("{}/v1/video/generations/{id}/cancel", b.url),
        &json!({}),
    )
    .await;
    assert_openai_error(status, 409, &v);
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock_stats(&async_mock).await["video_cancels"]
        .as_u64()
        .unwrap_or(0)
        <= cancels
    {
        assert!(
            Instant::now() < deadline,
            "backend never told of the cancel"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = content(&b.url, &id, None).await;
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));

    // Listing through any replica shows every job.
    let (_, page) = get_json(&format!("{}/v1/video/generations?limit=100", c.url))
        .await
        .expect("list");
    assert_eq!(page["data"].as_array().map_or(0, Vec::len), 5, "{page}");

    // The completion records of the taken-over jobs were written by their new owners.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let video = rows_by_replica(&mut db, "video").await;
        let finished_by_survivors: i64 = ["router-b", "router-c"]
            .iter()
            .map(|r| video.get(*r).copied().unwrap_or(0))
            .sum();
        // 4 completions + the canceled job's create (202) on B; A left its 4 creates.
        if video.get("router-a") == Some(&4) && finished_by_survivors >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "video rows: {video:?}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let (seconds, cost): (Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT SUM(video_seconds), SUM(cost_usd) FROM api_logs \
         WHERE op = 'video' AND model_id = 'vid-async' AND replica <> 'router-a'",
    )
    .fetch_one(&mut db)
    .await
    .expect("video usage");
    assert!(
        seconds.is_some_and(|s| s > 0.0),
        "video seconds: {seconds:?}"
    );
    assert!(cost.is_some_and(|c| c > 0.0), "video cost: {cost:?}");
    let _ = db.close().await;
}

#[actix_rt::test]
async fn replicas_share_logs_and_take_over_video_jobs_after_a_sigkill() {
    let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("SKIP: TEST_DATABASE_URL not set (a PostgreSQL server where this test may create and drop a database)");
        return;
    };
    let db = common::pg::TempDatabase::create(&admin, "switchyard_scale").await;
    let outcome =
        futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(scale_out(&db.url)))
            .await;
    db.drop_it().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
