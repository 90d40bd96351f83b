//! Helpers for the accounting and observability tests: the router's database, request ids,
//! PostgreSQL scratch databases.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard::accounting::db::{self, Filter};
use switchyard::accounting::LogRow;
use switchyard::store::{DbSettings, Store};

use super::{client, Router};

/// The SQLite file a router started by the harness writes (its working directory is `dir`).
pub fn sqlite_path(router: &Router) -> PathBuf {
    router.dir.path().join("var/db/openrouter_logs.db")
}

pub async fn open_sqlite(path: &std::path::Path) -> Store {
    let vars: std::collections::HashMap<String, String> =
        [("SQLITE_DB_PATH".to_string(), path.display().to_string())].into();
    let settings = DbSettings::from_vars(&vars).expect("db settings");
    Store::connect(&settings).await.expect("open sqlite")
}

pub async fn open_postgres(url: &str) -> Store {
    let vars: std::collections::HashMap<String, String> = [
        ("USE_SQLITE_LOG".to_string(), "false".to_string()),
        ("DATABASE_URL".to_string(), url.to_string()),
    ]
    .into();
    let settings = DbSettings::from_vars(&vars).expect("db settings");
    Store::connect(&settings).await.expect("open postgres")
}

pub async fn all_rows(store: &Store) -> Vec<LogRow> {
    db::recent_rows(store, &Filter::default(), 100_000)
        .await
        .expect("read api_logs")
}

/// Wait until at least `n` rows exist (the logger flushes on a timer).
pub async fn wait_rows(store: &Store, n: usize) -> Vec<LogRow> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = all_rows(store).await;
        if rows.len() >= n || Instant::now() > deadline {
            return rows;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until at least `n` rows answered 200 (rows of refused requests may come first).
pub async fn wait_served_rows(store: &Store, n: usize) -> Vec<LogRow> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = all_rows(store).await;
        let served = rows.iter().filter(|r| r.status_code == 200).count();
        if served >= n || Instant::now() > deadline {
            return rows;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn row_for<'a>(rows: &'a [LogRow], request_id: &str) -> &'a LogRow {
    rows.iter()
        .find(|r| r.request_id == request_id)
        .unwrap_or_else(|| panic!("no api_logs row for {request_id}; rows: {rows:#?}"))
}

/// POST JSON with our own `X-Request-Id`; returns status, the echoed id and the body text.
pub async fn post_with_id(url: &str, body: &Value, id: &str) -> (u16, String, String) {
    let mut resp = client()
        .post(url)
        .insert_header(("content-type", "application/json"))
        .insert_header(("x-request-id", id))
        .send_body(body.to_string())
        .await
        .expect("request");
    let echoed = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = resp.body().limit(64 << 20).await.expect("body");
    (
        resp.status().as_u16(),
        echoed,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// A scratch PostgreSQL database, created with a random name and dropped on `Drop`. `None`
/// (with a SKIP line) when `TEST_DATABASE_URL` is unset or the server is unreachable.
pub struct PgScratch {
    admin_url: String,
    name: String,
    pub url: String,
}

fn with_db(url: &str, name: &str) -> String {
    let mut u = url::Url::parse(url).expect("TEST_DATABASE_URL is a URL");
    u.set_path(&format!("/{name}"));
    u.to_string()
}

fn block_on_fresh<F: std::future::Future + Send + 'static>(fut: F) -> F::Output
where
    F::Output: Send + 'static,
{
    // A runtime of its own on its own thread: usable from Drop inside an actix test.
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(fut)
    })
    .join()
    .expect("scratch db thread")
}

impl PgScratch {
    pub fn create(test: &str) -> Option<PgScratch> {
        let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
            println!("SKIP {test}: TEST_DATABASE_URL is not set");
            return None;
        };
        let name = format!("sy_{}_{}", test.replace('-', "_"), fastrand::u64(..));
        let (a, n) = (admin_url.clone(), name.clone());
        let created = block_on_fresh(async move {
            use sqlx::Connection;
            let mut conn = sqlx::postgres::PgConnection::connect(&a).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{n}\"")))
                .execute(&mut conn)
                .await?;
            conn.close().await
        });
        if let Err(e) = created {
            println!("SKIP {test}: cannot create a PostgreSQL database at TEST_DATABASE_URL: {e}");
            return None;
        }
        let url = with_db(&admin_url, &name);
        Some(PgScratch {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for PgScratch {
    fn drop(&mut self) {
        let (a, n) = (self.admin_url.clone(), self.name.clone());
        let _ = block_on_fresh(async move {
            use sqlx::Connection;
            let mut conn = sqlx::postgres::PgConnection::connect(&a).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{n}\" WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await?;
            conn.close().await
        });
    }
}

/// Run the `switchyard` binary with a subcommand and environment; returns (exit code, stdout).
pub fn run_cli(args: &[&str], env: &[(&str, String)], cwd: &std::path::Path) -> (i32, String) {
    let mut cmd = std::process::Command::new(super::bin("switchyard"));
    cmd.args(args).current_dir(cwd);
    cmd.env_remove("DATABASE_URL").env_remove("USE_SQLITE_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run switchyard");
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Start a prepared `switchyard serve` command and wait for its listening line.
pub fn spawn_router_cmd(cmd: std::process::Command) -> super::Proc {
    super::spawn_and_wait(cmd, "switchyard listening on ")
}
