//! The floors for the webhook intake benchmark (`benches/webhook_load.sh`): the same axum +
//! tokio stack as `stackgate serve`, answering `202 Accepted` to `POST /webhooks/github`.
//!
//! - `bare202 PORT`: nothing behind the answer: no signature check, no JSON, no SQLite.
//! - `bare202 PORT JOURNAL`: the floor of this job, the cheapest intake that does what each
//!   delivery needs. It checks the `X-Hub-Signature-256` HMAC on the raw body (the secret
//!   from `BENCH_HOOK_SECRET`), parses the event with stackgate's own parser, then writes
//!   the `X-GitHub-Delivery` to JOURNAL and answers once it is fdatasync'd, by one writer
//!   thread that group-commits whatever is waiting (as stackgate's writer does). The file is
//!   preallocated and written in place, so an fdatasync flushes data only, as for SQLite's
//!   reused log. No queue, no SQLite: what verify + parse + durability cost here.
//!
//! ```text
//! cargo build --release -p stackgate --example bare202
//! target/release/examples/bare202 18081      # listens on 127.0.0.1:18081
//! ```
//!
//! Only ever binds to the loopback interface.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, mpsc};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use stackgate::intake::{events, signature};
use tokio::sync::oneshot;

/// The journal writer and the webhook secret.
type Journal = Option<(mpsc::Sender<(Vec<u8>, oneshot::Sender<()>)>, Arc<[u8]>)>;

/// Reads the whole body (as stackgate's handler does) and accepts it: at once, or (with a
/// journal) once verified, parsed and journaled.
async fn accept(State(journal): State<Journal>, headers: HeaderMap, body: Bytes) -> StatusCode {
    std::hint::black_box(body.len());
    let Some((journal, secret)) = journal else {
        return StatusCode::ACCEPTED;
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if !signature::verify(&secret, &body, header("x-hub-signature-256")) {
        return StatusCode::UNAUTHORIZED;
    }
    if std::hint::black_box(events::parse(header("x-github-event"), &body)).is_err() {
        return StatusCode::BAD_REQUEST;
    }
    let mut line = headers
        .get("x-github-delivery")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    line.push(b'\n');
    let (done, written) = oneshot::channel();
    if journal.send((line, done)).is_err() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match written.await {
        Ok(()) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The journal's size: written through once at start, then in place (a ring).
const JOURNAL_BYTES: u64 = 64 * 1024 * 1024;

/// Writes what is waiting at the next offset, fdatasyncs, then answers each; a failed
/// write answers none.
fn journal_writer(file: std::fs::File, rx: mpsc::Receiver<(Vec<u8>, oneshot::Sender<()>)>) {
    let mut at = 0u64;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let bytes: Vec<u8> = batch.iter().flat_map(|(l, _)| l.iter().copied()).collect();
        if at + bytes.len() as u64 > JOURNAL_BYTES {
            at = 0;
        }
        if let Err(e) = file
            .write_all_at(&bytes, at)
            .and_then(|()| file.sync_data())
        {
            eprintln!("journal: {e}");
            continue;
        }
        at += bytes.len() as u64;
        for (_, done) in batch {
            let _ = done.send(());
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = match args.next().map(|p| p.parse()) {
        Some(Ok(p)) => p,
        _ => {
            eprintln!(
                "usage: bare202 PORT [JOURNAL]   (binds 127.0.0.1:PORT; JOURNAL needs BENCH_HOOK_SECRET)"
            );
            std::process::exit(2);
        }
    };
    let journal: Journal = args.next().map(|path| {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
        // Real zeros, not a hole or fallocate's unwritten extents: later writes then change
        // no metadata.
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..JOURNAL_BYTES / zeros.len() as u64 {
            file.write_all(&zeros)
                .unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        }
        file.sync_all()
            .unwrap_or_else(|e| panic!("cannot sync {path}: {e}"));
        let secret = std::env::var("BENCH_HOOK_SECRET").unwrap_or_else(|_| {
            panic!("BENCH_HOOK_SECRET: the webhook secret, for the journal floor")
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || journal_writer(file, rx));
        (tx, Arc::from(secret.into_bytes()))
    });
    // The same runtime as `stackgate serve`: multi-threaded, one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let app = Router::new()
            .route(
                "/webhooks/github",
                // GitHub caps webhook payloads at 25 MB; so does stackgate.
                post(accept).layer(DefaultBodyLimit::max(25 * 1024 * 1024)),
            )
            .with_state(journal);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("cannot listen on 127.0.0.1:{port}: {e}"));
        println!("bare202 listening on http://127.0.0.1:{port}");
        axum::serve(listener, app).await.expect("serve");
    });
}
