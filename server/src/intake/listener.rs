//! The HTTP listener: every connection counted and every wait bounded. `axum::serve` has no
//! header or body deadline and no connection cap, so one client could hold the port open.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::timeout::DeadlineBody;

use crate::config::ListenerConfig;

/// Serves `router` on `listener` until `shutdown` resolves, then lets the requests in flight
/// finish (bounded by the header and body deadlines).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &ListenerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let header_timeout = Duration::from_secs(limits.header_timeout_seconds);
    let body_timeout = Duration::from_secs(limits.body_timeout_seconds);
    // Over the cap, new connections wait in the kernel's backlog, not in memory here.
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper also applies the header deadline to an idle keep-alive connection.
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        // The body deadline counts from the end of the headers: a body trickled in a byte at
        // a time is cut off, however steadily it arrives.
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            router
                .clone()
                .oneshot(req.map(|b| DeadlineBody::new(body_timeout, b)))
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(header_timeout + body_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the drain deadline; closing them");
    }
}
