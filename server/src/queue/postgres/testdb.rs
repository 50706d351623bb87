//! Test databases: each test gets a fresh database of its own on the test cluster
//! (`STACKGATE_TEST_POSTGRES_URL`, which `tests/run.sh` sets; without it
//! `deploy/local/postgres.sh start 5499` starts one), dropped when the test ends.

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Store;

/// The test cluster's URL (its `postgres` database).
pub fn cluster_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("STACKGATE_TEST_POSTGRES_URL") {
            return url;
        }
        let port = "5499";
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/postgres.sh");
        let status = std::process::Command::new("bash")
            .arg(script)
            .args(["start", port])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run deploy/local/postgres.sh");
        assert!(
            status.success(),
            "PostgreSQL did not start; run deploy/local/setup.sh first"
        );
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    })
    .clone()
}

/// Runs SQL on the database at `url`, from a thread of its own (callers may be inside a
/// runtime or not).
pub fn admin(url: &str, sql: &str) {
    query_text(url, sql);
}

/// The rows of `sql` on the database at `url`, each column as text.
pub fn query_text(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let (cluster, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&cluster, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connect to {cluster}: {e}"));
            tokio::spawn(conn);
            let mut rows = Vec::new();
            for m in client
                .simple_query(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
            {
                if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                    rows.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
                }
            }
            rows
        })
    })
    .join()
    .unwrap()
}

/// A fresh database, dropped (with whatever still holds it) at the end of the test.
pub struct TestDb {
    pub url: String,
    cluster: String,
    name: String,
}

// `new` makes a database: not a default value.
#[allow(clippy::new_without_default)]
impl TestDb {
    pub fn new() -> TestDb {
        Self::on(&cluster_url())
    }

    /// A fresh database on the cluster at `cluster`.
    pub fn on(cluster: &str) -> TestDb {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "sg_test_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        admin(cluster, &format!("CREATE DATABASE {name}"));
        let mut url = url::Url::parse(cluster).unwrap();
        url.set_path(&format!("/{name}"));
        TestDb {
            url: url.to_string(),
            cluster: cluster.to_string(),
            name,
        }
    }

    pub fn store(&self) -> Store {
        Store::open(&self.url).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Best effort: a cluster a test stopped has nothing left to drop.
        let (cluster, name) = (self.cluster.clone(), self.name.clone());
        let _ = std::panic::catch_unwind(move || {
            admin(
                &cluster,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
        });
    }
}
