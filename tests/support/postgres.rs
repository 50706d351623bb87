//! PostgreSQL for the end-to-end tests: a fresh database per test on the cluster that
//! `tests/run.sh` started (`STACKGATE_TEST_POSTGRES_URL`), or on one started here, and a
//! private cluster for a test that stops and starts its database.

use std::process::Command;
use std::sync::OnceLock;

use super::{root, unique};

/// The admin URL of the shared test cluster.
pub fn cluster_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(u) = std::env::var("STACKGATE_TEST_POSTGRES_URL") {
            return u;
        }
        PrivateCluster::start_on(5499).leak()
    })
    .clone()
}

fn psql(admin: &str, sql: &str) {
    let out = Command::new("psql")
        .args([admin, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `admin` with its database swapped for `db`.
fn with_database(admin: &str, db: &str) -> String {
    let mut u = url::Url::parse(admin).expect("a postgres:// URL");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

/// A database of its own for one test, dropped at the end.
pub struct Database {
    pub url: String,
    admin: String,
    name: String,
}

impl Database {
    pub fn new() -> Self {
        Self::on(&cluster_url())
    }

    pub fn on(admin: &str) -> Self {
        let name = unique("sg_e2e").replace('-', "_").to_lowercase();
        psql(admin, &format!("CREATE DATABASE {name}"));
        Self {
            url: with_database(admin, &name),
            admin: admin.to_string(),
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &self.admin,
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// A cluster of the test's own (`deploy/local/postgres.sh` on its port), which it may stop
/// and start again with its data.
pub struct PrivateCluster {
    pub port: u16,
    pub url: String,
}

impl PrivateCluster {
    pub fn start_on(port: u16) -> Self {
        let url = script(&["start", &port.to_string()]);
        let url = if url.starts_with("postgres://") {
            url
        } else {
            script(&["url", &port.to_string()])
        };
        Self { port, url }
    }

    /// A free port of its own.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        Self::start_on(port)
    }

    /// Stops the server, keeping its data.
    pub fn pause(&self) {
        script(&["pause", &self.port.to_string()]);
    }

    /// Starts the paused server again on its data.
    pub fn resume(&self) {
        script(&["resume", &self.port.to_string()]);
    }

    /// Keeps it running after the test (the shared cluster started for a plain `cargo test`).
    fn leak(self) -> String {
        let url = self.url.clone();
        std::mem::forget(self);
        url
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root().join("deploy/local/postgres.sh"))
            .args(["stop", &self.port.to_string()])
            .output();
    }
}

/// `deploy/local/postgres.sh ARGS`: its last line of output.
fn script(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(root().join("deploy/local/postgres.sh"))
        .args(args)
        .output()
        .expect("run deploy/local/postgres.sh");
    assert!(
        out.status.success(),
        "deploy/local/postgres.sh {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_string()
}
