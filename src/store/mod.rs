//! The database behind request logs, usage and video jobs, through sqlx's `Any` driver so one
//! set of queries and migrations serves both SQLite (the embedded default) and PostgreSQL
//! (`USE_SQLITE_LOG=false` + `DATABASE_URL`, shared by several replicas).
//!
//! Portability rules for queries and migrations: `$1`-style placeholders, `TEXT`, `BIGINT`,
//! `DOUBLE PRECISION`, timestamps as unix milliseconds in `BIGINT`, no driver-specific DDL.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, AssertSqlSafe, ConnectOptions, Executor};

pub mod response_routes;
use crate::config::{bool_var, VarSource};

/// Default SQLite file, the HybridInference gateway's, so its `sqlite3` queries work unchanged.
pub const DEFAULT_SQLITE_PATH: &str = "var/db/openrouter_logs.db";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

/// Where the database is, from the environment.
#[derive(Clone)]
pub struct DbSettings {
    pub kind: DbKind,
    /// Connection URL; may contain a password, so it is never logged (see [`DbSettings::describe`]).
    pub url: String,
    pub sqlite_path: Option<PathBuf>,
    pub max_connections: u32,
}

/// The URL's password must not reach a log through the settings' `{:?}`: only what
/// [`DbSettings::describe`] shows.
impl std::fmt::Debug for DbSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSettings")
            .field("kind", &self.kind)
            .field("database", &self.describe())
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl Default for DbSettings {
    /// SQLite at [`DEFAULT_SQLITE_PATH`], what an empty environment gives.
    fn default() -> Self {
        DbSettings::sqlite(PathBuf::from(DEFAULT_SQLITE_PATH), DEFAULT_MAX_CONNECTIONS)
    }
}

/// Connections per replica unless `DATABASE_MAX_CONNECTIONS` says otherwise.
const DEFAULT_MAX_CONNECTIONS: u32 = 8;

impl DbSettings {
    /// `USE_SQLITE_LOG` (default true) picks SQLite at `SQLITE_DB_PATH` / `OPENROUTER_SQLITE_DB`
    /// / `var/db/openrouter_logs.db`; `USE_SQLITE_LOG=false` with `DATABASE_URL` picks PostgreSQL.
    /// Every problem is reported, joined by `; ` (see [`DbSettings::read`]).
    pub fn from_vars(vars: &dyn VarSource) -> Result<DbSettings, String> {
        let mut errors = Vec::new();
        let db = DbSettings::read(vars, &mut errors);
        if errors.is_empty() {
            Ok(db)
        } else {
            Err(errors.join("; "))
        }
    }

    /// [`DbSettings::from_vars`] for the router's settings: each problem is added to `errors`
    /// (and the default used in its place), so they are all reported at once. A `DATABASE_URL`
    /// is parsed here as the connection will parse it, so a malformed one fails `check-config`
    /// and not only the first connection.
    pub fn read(vars: &dyn VarSource, errors: &mut Vec<String>) -> DbSettings {
        let use_sqlite = bool_var(vars, "USE_SQLITE_LOG", errors).unwrap_or(true);
        let max_connections = match vars.get("DATABASE_MAX_CONNECTIONS") {
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or_else(|| {
                    errors.push(format!(
                        "DATABASE_MAX_CONNECTIONS={v:?}: expected a positive integer"
                    ));
                    DEFAULT_MAX_CONNECTIONS
                }),
            None => DEFAULT_MAX_CONNECTIONS,
        };
        if use_sqlite {
            let path = vars
                .get("SQLITE_DB_PATH")
                .or_else(|| vars.get("OPENROUTER_SQLITE_DB"))
                .filter(|p| !p.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_SQLITE_PATH.to_string());
            return DbSettings::sqlite(PathBuf::from(path), max_connections);
        }
        let database_url = vars.get("DATABASE_URL").filter(|u| !u.trim().is_empty());
        match database_url.map(|url| postgres_url_problem(&url).map_or(Ok(url), Err)) {
            Some(Ok(url)) => DbSettings {
                kind: DbKind::Postgres,
                url,
                sqlite_path: None,
                max_connections,
            },
            Some(Err(problem)) => {
                errors.push(problem);
                DbSettings::default()
            }
            None => {
                errors.push("USE_SQLITE_LOG=false needs DATABASE_URL (a PostgreSQL URL)".into());
                DbSettings::default()
            }
        }
    }

    fn sqlite(path: PathBuf, max_connections: u32) -> DbSettings {
        DbSettings {
            kind: DbKind::Sqlite,
            url: format!("sqlite://{}?mode=rwc", path.display()),
            sqlite_path: Some(path),
            max_connections,
        }
    }

    /// A description safe to log: the SQLite path, or PostgreSQL's host and database only.
    pub fn describe(&self) -> String {
        match self.kind {
            DbKind::Sqlite => format!(
                "sqlite {}",
                self.sqlite_path
                    .as_deref()
                    .unwrap_or(Path::new("?"))
                    .display()
            ),
            DbKind::Postgres => match url::Url::parse(&self.url) {
                Ok(u) => format!(
                    "postgres {}:{}{}",
                    u.host_str().unwrap_or("?"),
                    u.port().unwrap_or(5432),
                    u.path()
                ),
                Err(_) => "postgres".into(),
            },
        }
    }
}

/// Why `url` cannot be the PostgreSQL URL: not `postgres://`/`postgresql://`, not a URL (a bad
/// port, a bad percent-encoding, ...), or not accepted by the driver (an unknown `sslmode`,
/// ...). The message never quotes the URL, which may hold a password.
fn postgres_url_problem(url: &str) -> Option<String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Some("DATABASE_URL must be a postgres:// or postgresql:// URL".into());
    }
    // url's messages name the problem only ("invalid port number"), never the input.
    let parsed = match url::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(e) => return Some(format!("DATABASE_URL is not a valid URL: {e}")),
    };
    // The parse the connection makes; its messages may quote the URL, so they are not shown.
    match sqlx::postgres::PgConnectOptions::from_url(&parsed) {
        Ok(_) => None,
        Err(_) => Some(
            "DATABASE_URL: the PostgreSQL driver refuses its options (check sslmode and the \
             other query parameters)"
                .into(),
        ),
    }
}

/// The page size a new SQLite database is created with (bytes).
pub const PAGE_SIZE: u32 = 16_384;

/// A connection pool plus which database it talks to.
#[derive(Clone)]
pub struct Store {
    pub pool: AnyPool,
    pub kind: DbKind,
    /// SQLite only: the database file, which the request log's own writer opens
    /// (`accounting::sqlite_rows`).
    pub sqlite_path: Option<PathBuf>,
}

impl Store {
    pub async fn connect(settings: &DbSettings) -> Result<Store, sqlx::Error> {
        sqlx::any::install_default_drivers();
        if let Some(path) = &settings.sqlite_path {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
        }
        let options = AnyConnectOptions::from_str(&settings.url)?;
        let kind = settings.kind;
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if kind == DbKind::Sqlite {
                        // A new database gets 16 KiB pages (SQLite's default is 4 KiB): the
                        // request log appends ~300-byte rows, and each commit writes every page
                        // it touched to the WAL with one system call, then the checkpoint once
                        // more; bigger pages cut those calls ~3x (issue 17). An existing database
                        // keeps its page size: in WAL mode this statement changes nothing.
                        conn.execute(AssertSqlSafe(format!("PRAGMA page_size={PAGE_SIZE}")))
                            .await?;
                        // WAL lets readers (admin views, `switchyard logs`) run beside the writer;
                        // busy_timeout rides out the writer's short locks instead of failing.
                        conn.execute("PRAGMA journal_mode=WAL").await?;
                        conn.execute("PRAGMA busy_timeout=5000").await?;
                        conn.execute("PRAGMA synchronous=NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let sqlite_path = match &settings.sqlite_path {
            Some(path) if kind == DbKind::Sqlite => Some(path.clone()),
            _ => None,
        };
        Ok(Store {
            pool,
            kind,
            sqlite_path,
        })
    }

    /// Apply every pending migration (embedded in the binary). Safe to run concurrently from
    /// several replicas: sqlx takes a lock on PostgreSQL. Migrations only add, so a database a
    /// newer replica already migrated is fine for this one (rolling updates, rollbacks).
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        let mut migrator = sqlx::migrate!("src/store/migrations");
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_vars as vars;

    #[test]
    fn sqlite_is_the_default_and_paths_can_be_overridden() {
        let s = DbSettings::from_vars(&vars(&[])).unwrap();
        assert_eq!(s.kind, DbKind::Sqlite);
        assert_eq!(
            s.sqlite_path.as_deref(),
            Some(Path::new(DEFAULT_SQLITE_PATH))
        );
        let s = DbSettings::from_vars(&vars(&[("OPENROUTER_SQLITE_DB", "/tmp/x.db")])).unwrap();
        assert_eq!(s.sqlite_path.as_deref(), Some(Path::new("/tmp/x.db")));
        let s = DbSettings::from_vars(&vars(&[
            ("SQLITE_DB_PATH", "/tmp/a.db"),
            ("OPENROUTER_SQLITE_DB", "/tmp/b.db"),
        ]))
        .unwrap();
        assert_eq!(s.sqlite_path.as_deref(), Some(Path::new("/tmp/a.db")));
    }

    #[test]
    fn postgres_needs_use_sqlite_log_false_and_a_url() {
        let s = DbSettings::from_vars(&vars(&[("DATABASE_URL", "postgres://u:pw@db:5432/app")]))
            .unwrap();
        assert_eq!(s.kind, DbKind::Sqlite, "USE_SQLITE_LOG defaults to true");
        let s = DbSettings::from_vars(&vars(&[
            ("USE_SQLITE_LOG", "false"),
            ("DATABASE_URL", "postgres://u:pw@db:5432/app"),
        ]))
        .unwrap();
        assert_eq!(s.kind, DbKind::Postgres);
        assert!(!s.describe().contains("pw"));
        assert!(DbSettings::from_vars(&vars(&[("USE_SQLITE_LOG", "false")])).is_err());
    }

    #[actix_rt::test]
    async fn sqlite_store_connects_and_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/logs.db");
        let settings =
            DbSettings::from_vars(&vars(&[("SQLITE_DB_PATH", path.to_str().unwrap())])).unwrap();
        let store = Store::connect(&settings).await.unwrap();
        store.migrate().await.unwrap();
        store.migrate().await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM switchyard_meta")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(n, 0);
        assert!(path.exists());
        // A newer router migrated this database further: this one still starts on it.
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from a newer version', 1, X'00', 0)",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        store.migrate().await.unwrap();
    }

    /// A new SQLite database is created with [`PAGE_SIZE`] pages, in WAL mode; one created
    /// with another page size keeps it (SQLite cannot change it in WAL mode), and still works.
    #[actix_rt::test]
    async fn new_sqlite_databases_get_the_larger_page_size_and_old_ones_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let settings_for = |path: &Path| {
            DbSettings::from_vars(&vars(&[("SQLITE_DB_PATH", path.to_str().unwrap())])).unwrap()
        };
        let page_size = |store: Store| async move {
            let size: i64 = sqlx::query_scalar("PRAGMA page_size")
                .fetch_one(&store.pool)
                .await
                .unwrap();
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&store.pool)
                .await
                .unwrap();
            (size, mode)
        };
        let fresh = dir.path().join("fresh.db");
        let store = Store::connect(&settings_for(&fresh)).await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(
            page_size(store).await,
            (i64::from(PAGE_SIZE), "wal".to_string())
        );
        let old = dir.path().join("old.db");
        {
            let conn = rusqlite::Connection::open(&old).unwrap();
            conn.execute_batch(
                "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; CREATE TABLE t (x)",
            )
            .unwrap();
        }
        let store = Store::connect(&settings_for(&old)).await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(page_size(store).await, (4096, "wal".to_string()));
    }

    /// Each `api_logs` row writes its primary key and only the indexes the log's readers
    /// need (migration 0007 dropped the per-model and per-key ones that 0002 created).
    #[actix_rt::test]
    async fn api_logs_keeps_only_the_time_and_request_id_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.db");
        let settings =
            DbSettings::from_vars(&vars(&[("SQLITE_DB_PATH", path.to_str().unwrap())])).unwrap();
        let store = Store::connect(&settings).await.unwrap();
        store.migrate().await.unwrap();
        let mut names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'api_logs' \
             AND name NOT LIKE 'sqlite_autoindex%'",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        names.sort();
        assert_eq!(names, ["api_logs_request_id", "api_logs_ts"]);
    }

    /// sqlx records each applied migration's SHA-384 and refuses to start on a database whose
    /// shipped file changed since (`VersionMismatch`), so even a comment edit in a shipped
    /// migration would stop every existing deployment. Change the schema in a new file instead.
    #[test]
    fn shipped_migrations_are_never_edited() {
        let pinned = [
            (1, "cdad38a82116a19c2dfd6a57ba35e8c036e25f5ab6af0b8871691fb8231f89e11f39737cf067217ff46c52184a8f0697"),
            (2, "7df9f2e0a8beec147b1a5767a118c682c6c7e5dae96aab249343b40448d7cefb3c5b8c831d220d6bdabdca9fc76e1ef3"),
            (3, "5858ee41cf69a723be6484903e1228368ebe1b0b3f0a6b3d6cc2f609b4b7863675c2963492faa1f0fe45ccde656105ba"),
            (4, "3098a3f0a929311f20fdfecbe790d1b44b60c77ceaeebc23cbf44baaf8f4ddd9ff8c1dc888c045975998d303dc8fb606"),
            (5, "c10dc63a1746617aeb738f4dab8ac5bf011fb0dd0ac70ec33a4c5d67f6dd788749d0e5ced47eb629bff03cc1d8aad66f"),
        ];
        let migrator = sqlx::migrate!("src/store/migrations");
        let shipped: Vec<(i64, String)> = migrator
            .iter()
            .map(|m| (m.version, hex::encode(&m.checksum)))
            .collect();
        for (version, checksum) in pinned {
            assert!(
                shipped.contains(&(version, checksum.to_string())),
                "migration {version} was edited or removed: {shipped:?}"
            );
        }
    }
}
