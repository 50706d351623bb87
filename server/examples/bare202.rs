//! The floor for the webhook intake benchmark (`benches/webhook_load.sh`): the same axum +
//! tokio stack as `stackgate serve`, answering `202 Accepted` to `POST /webhooks/github`
//! with nothing behind it: no signature check, no JSON parsing, no SQLite.
//!
//! ```text
//! cargo build --release -p stackgate --example bare202
//! target/release/examples/bare202 18081      # listens on 127.0.0.1:18081
//! ```
//!
//! Only ever binds to the loopback interface.

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::post;

/// Reads the whole body (as stackgate's handler does) and accepts it.
async fn accept(body: Bytes) -> StatusCode {
    std::hint::black_box(body.len());
    StatusCode::ACCEPTED
}

fn main() {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(p)) => p,
        _ => {
            eprintln!("usage: bare202 PORT   (binds 127.0.0.1:PORT)");
            std::process::exit(2);
        }
    };
    // The same runtime as `stackgate serve`: multi-threaded, one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let app = Router::new().route(
            "/webhooks/github",
            // GitHub caps webhook payloads at 25 MB; so does stackgate.
            post(accept).layer(DefaultBodyLimit::max(25 * 1024 * 1024)),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("cannot listen on 127.0.0.1:{port}: {e}"));
        println!("bare202 listening on http://127.0.0.1:{port}");
        axum::serve(listener, app).await.expect("serve");
    });
}
