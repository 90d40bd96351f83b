//! `response_routes`: the route that produced each response a backend stored natively, so a
//! follow-up naming it (`previous_response_id`) goes back to that backend, whichever replica
//! takes it. Rows expire after a retention period; a lookup never returns an expired row, and
//! writes sweep expired rows now and then, so the table stays bounded by traffic × retention.

use std::time::Duration;

use sqlx::{AnyPool, Row};

/// Where a stored response lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHome {
    /// The public model id it was produced for.
    pub model: String,
    /// The route's name within that model.
    pub route: String,
}

/// One write in this many also deletes expired rows (cheap: an indexed range delete).
const SWEEP_EVERY: u32 = 64;

#[derive(Clone)]
pub struct ResponseRoutes {
    pool: AnyPool,
    retention: Duration,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl ResponseRoutes {
    pub fn new(pool: AnyPool, retention: Duration) -> ResponseRoutes {
        ResponseRoutes { pool, retention }
    }

    fn oldest_kept_ms(&self) -> i64 {
        let retention = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        now_ms().saturating_sub(retention)
    }

    /// Remember that `response_id` lives on `home`, for the key `api_key_id` (`None` without
    /// client keys). A second write of one id (a backend reusing ids) keeps the first.
    pub async fn remember(
        &self,
        response_id: &str,
        home: &ResponseHome,
        api_key_id: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO response_routes (response_id, model, route, api_key_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (response_id) DO NOTHING",
        )
        .bind(response_id)
        .bind(&home.model)
        .bind(&home.route)
        .bind(api_key_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if fastrand::u32(..SWEEP_EVERY) == 0 {
            self.sweep().await?;
        }
        Ok(())
    }

    /// Delete every expired row.
    pub async fn sweep(&self) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("DELETE FROM response_routes WHERE created_at < $1")
            .bind(self.oldest_kept_ms())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Forget `response_id` (deleted on its backend).
    pub async fn forget(&self, response_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM response_routes WHERE response_id = $1")
            .bind(response_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Where `response_id` lives, if it was stored for this key and has not expired. A
    /// response made under another key is not found: its conversation is not this caller's.
    pub async fn lookup(
        &self,
        response_id: &str,
        api_key_id: Option<&str>,
    ) -> Result<Option<ResponseHome>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT model, route, api_key_id FROM response_routes \
             WHERE response_id = $1 AND created_at >= $2",
        )
        .bind(response_id)
        .bind(self.oldest_kept_ms())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let owner: Option<String> = row.try_get("api_key_id")?;
        if owner.as_deref() != api_key_id {
            return Ok(None);
        }
        Ok(Some(ResponseHome {
            model: row.try_get("model")?,
            route: row.try_get("route")?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DbSettings, Store};

    async fn routes(retention: Duration) -> (ResponseRoutes, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let settings = DbSettings::sqlite(dir.path().join("t.db"), 2);
        let store = Store::connect(&settings).await.unwrap();
        store.migrate().await.unwrap();
        (ResponseRoutes::new(store.pool, retention), dir)
    }

    fn home(route: &str) -> ResponseHome {
        ResponseHome {
            model: "m".into(),
            route: route.into(),
        }
    }

    #[actix_rt::test]
    async fn a_response_is_found_only_by_its_key_and_only_until_it_expires() {
        let (db, _dir) = routes(Duration::from_secs(3600)).await;
        db.remember("resp_1", &home("a"), Some("k1")).await.unwrap();
        db.remember("resp_1", &home("b"), Some("k1")).await.unwrap();
        db.remember("resp_2", &home("b"), None).await.unwrap();
        let cases = [
            ("resp_1", Some("k1"), Some(home("a"))),
            ("resp_1", Some("k2"), None),
            ("resp_1", None, None),
            ("resp_2", None, Some(home("b"))),
            ("resp_2", Some("k1"), None),
            ("resp_3", None, None),
        ];
        for (id, key, expected) in cases {
            assert_eq!(db.lookup(id, key).await.unwrap(), expected, "{id} {key:?}");
        }
        let (expired, _dir) = routes(Duration::ZERO).await;
        expired.remember("resp_1", &home("a"), None).await.unwrap();
        actix_rt::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(expired.lookup("resp_1", None).await.unwrap(), None);
        // `remember` itself sweeps one write in SWEEP_EVERY, so the expired row may already be
        // gone: what must hold is that none is left after a sweep, and it deletes at most it.
        assert!(expired.sweep().await.unwrap() <= 1);
        assert_eq!(rows(&expired).await, 0);
    }

    async fn rows(db: &ResponseRoutes) -> i64 {
        sqlx::query("SELECT COUNT(*) AS n FROM response_routes")
            .fetch_one(&db.pool)
            .await
            .unwrap()
            .try_get("n")
            .unwrap()
    }
}
