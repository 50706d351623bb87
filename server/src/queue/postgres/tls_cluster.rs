//! `sslmode` against real servers: a cluster of this binary's own that serves TLS with a
//! throwaway CA (`STACKGATE_TEST_PG_TLS_PORT`, else 5495; `postgres.sh` with
//! `STACKGATE_PG_TLS=1`), and the plain test cluster.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::testdb::{TestDb, cluster_url};
use super::{Store, query};
use crate::queue::Outbox;

/// The TLS cluster's URL and its CA file, started once per test binary.
fn tls_cluster() -> &'static (String, PathBuf) {
    static CLUSTER: OnceLock<(String, PathBuf)> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let port = std::env::var("STACKGATE_TEST_PG_TLS_PORT").unwrap_or_else(|_| "5495".into());
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = std::process::Command::new("bash")
            .arg(root.join("deploy/local/postgres.sh"))
            .args(["start", &port])
            .env("STACKGATE_PG_TLS", "1")
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "postgres.sh start {port} with TLS");
        let ca = root.join(format!(".local/pg/{port}/tls/ca.crt"));
        (format!("postgres://postgres@127.0.0.1:{port}/postgres"), ca)
    })
}

/// A CA of its own that signed nothing the server shows.
fn other_ca(dir: &Path) -> PathBuf {
    let ca = dir.join("other-ca.crt");
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=another CA"])
        .arg("-keyout")
        .arg(dir.join("other-ca.key"))
        .arg("-out")
        .arg(&ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ca
}

fn with(url: &str, query_string: &str) -> String {
    format!("{url}?{query_string}")
}

/// Whether the store's pooled connection, and the outbox poster's own, are encrypted.
fn encrypted(s: &Store) -> (bool, bool) {
    const SQL: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let pooled = s
        .conn(async |c| Ok(query(c, SQL, &[]).await?[0].get::<_, bool>(0)))
        .unwrap();
    // The poster's connection is made whether or not it gets the lock.
    s.may_post().unwrap();
    let held = s.poster.lock().unwrap().take().unwrap();
    let poster = s
        .run(async { Ok(held.client.query_one(SQL, &[]).await?.get::<_, bool>(0)) })
        .unwrap();
    (pooled, poster)
}

fn open_err(url: &str) -> String {
    match Store::open(url) {
        Ok(_) => panic!("{url} connected"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn require_and_prefer_encrypt_every_connection_to_a_server_that_serves_tls() {
    let (cluster, _) = tls_cluster();
    let db = TestDb::on(cluster);
    let s = Store::open(&with(&db.url, "sslmode=require")).unwrap();
    assert_eq!(encrypted(&s), (true, true));
    drop(s);
    // prefer is libpq's default: no sslmode at all is prefer.
    let s = Store::open(&db.url).unwrap();
    assert_eq!(encrypted(&s), (true, true));
    drop(s);
    let s = Store::open(&with(&db.url, "sslmode=disable")).unwrap();
    assert_eq!(encrypted(&s), (false, false));
}

#[test]
fn verify_full_connects_with_the_servers_ca_and_refuses_another() {
    let (cluster, ca) = tls_cluster();
    let db = TestDb::on(cluster);
    let good = format!("sslmode=verify-full&sslrootcert={}", ca.display());
    let s = Store::open(&with(&db.url, &good)).unwrap();
    assert_eq!(encrypted(&s), (true, true));
    drop(s);

    let dir = tempfile::tempdir().unwrap();
    let other = other_ca(dir.path());
    // A password in the URL, to see that no error shows it.
    let url = db.url.replace("postgres@", "postgres:s3cret-pw@");
    let e = open_err(&with(
        &url,
        &format!("sslmode=verify-full&sslrootcert={}", other.display()),
    ));
    assert!(e.contains("sslmode=verify-full"), "{e}");
    assert!(e.contains("invalid peer certificate: UnknownIssuer"), "{e}");
    assert!(!e.contains("s3cret-pw"), "{e}");

    // Without sslrootcert the system's CAs count, and none of them signed this server.
    let e = open_err(&with(&db.url, "sslmode=verify-full"));
    assert!(e.contains("UnknownIssuer"), "{e}");
    // require with a root file checks the chain, as libpq does.
    let e = open_err(&with(
        &db.url,
        &format!("sslmode=require&sslrootcert={}", other.display()),
    ));
    assert!(e.contains("UnknownIssuer"), "{e}");
}

#[test]
fn verify_ca_skips_the_name_that_verify_full_checks() {
    let (cluster, ca) = tls_cluster();
    let db = TestDb::on(cluster);
    // The certificate names 127.0.0.1, not localhost.
    let by_name = db.url.replace("127.0.0.1", "localhost");
    let root = format!("sslrootcert={}", ca.display());
    let s = Store::open(&with(&by_name, &format!("sslmode=verify-ca&{root}"))).unwrap();
    assert_eq!(encrypted(&s), (true, true));
    drop(s);
    let e = open_err(&with(&by_name, &format!("sslmode=verify-full&{root}")));
    assert!(e.contains("sslmode=verify-full"), "{e}");
    assert!(
        e.contains("certificate not valid for name \"localhost\""),
        "{e}"
    );
}

#[test]
fn against_a_server_without_tls_require_is_refused_and_disable_and_prefer_connect() {
    let db = TestDb::on(&cluster_url());
    let e = open_err(&with(&db.url, "sslmode=require"));
    assert!(e.contains("sslmode=require"), "{e}");
    assert!(e.contains("server does not support TLS"), "{e}");
    for mode in ["sslmode=disable", "sslmode=prefer"] {
        let s = Store::open(&with(&db.url, mode)).unwrap();
        assert_eq!(encrypted(&s), (false, false), "{mode}");
    }
}
