//! A PostgreSQL database per test: `TestDb::new()` creates `t_<uuid>` through the admin URL in
//! `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) and drops it, best effort,
//! when the handle is dropped.

use tokio_postgres::{Client, NoTls};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The admin URL tests connect through.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string())
}

/// Connects `url` and drives the connection on the current runtime.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("DATABASE_URL is a URL");
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

/// A fresh, empty database owned by one test (or a [`TestDb::shared`] handle on it).
#[derive(Debug)]
pub struct TestDb {
    admin_url: String,
    name: String,
    url: String,
    /// Dropping the owner drops the database; a [`TestDb::shared`] handle leaves it.
    owned: bool,
}

impl TestDb {
    pub async fn new() -> TestDb {
        TestDb::on_server(&admin_url()).await
    }

    /// A fresh database on the server of `admin_url` (e.g. a [`crate::private_pg::PrivatePg`])
    /// instead of the one of `DATABASE_URL`.
    pub async fn on_server(admin_url: &str) -> TestDb {
        let admin_url = admin_url.to_string();
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let url = with_database(&admin_url, &name);
        TestDb {
            admin_url,
            name,
            url,
            owned: true,
        }
    }

    /// A second handle on the same database that does not drop it (for several origin instances
    /// on one database: the test keeps the owner).
    pub fn shared(&self) -> TestDb {
        TestDb {
            admin_url: self.admin_url.clone(),
            name: self.name.clone(),
            url: self.url.clone(),
            owned: false,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// A new connection to this database.
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// A new connection through the admin URL.
    pub async fn admin_client(&self) -> Client {
        connect(&self.admin_url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread with
        // its own small runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin_url, NoTls).await {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}
