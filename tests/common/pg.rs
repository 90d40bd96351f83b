//! A throwaway PostgreSQL database per test, for the tests that need `TEST_DATABASE_URL`.

use sqlx::Connection;

/// A fresh PostgreSQL database for one test, dropped afterwards with [`TempDatabase::drop_it`].
pub struct TempDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl TempDatabase {
    /// Create `{prefix}_{uuid}` on the server of `admin_url`.
    pub async fn create(admin_url: &str, prefix: &str) -> TempDatabase {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("connect to TEST_DATABASE_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let mut url = url::Url::parse(admin_url).expect("TEST_DATABASE_URL");
        url.set_path(&format!("/{name}"));
        TempDatabase {
            admin_url: admin_url.to_string(),
            name,
            url: url.to_string(),
        }
    }

    pub async fn drop_it(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn)
            .await;
        }
    }
}
