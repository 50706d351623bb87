//! `POST /webhooks/github`: verify the signature on the raw bytes, then parse, record the
//! delivery and its jobs in one transaction, and answer 202 at once.

use std::sync::{Arc, LazyLock};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;

use super::events::{self, Payload, Repository};
use crate::api::HttpState;
use crate::queue::DeliveryRecord;

fn reply(
    app: &HttpState,
    result: &'static str,
    code: StatusCode,
    message: impl Into<String>,
) -> Response {
    app.metrics.delivery(result);
    (
        code,
        Json(json!({"result": result, "message": message.into()})),
    )
        .into_response()
}

/// What a delivery that could not be recorded (the state database is away) is told.
const RETRY_AFTER_SECONDS: &str = "10";

/// Bodies up to this size are verified on the async worker (well under a millisecond).
const INLINE_VERIFY: usize = 64 * 1024;

/// Large-body checks running at once; the rest wait their turn without a thread.
static VERIFY_PERMITS: LazyLock<Semaphore> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Semaphore::new(cores.saturating_sub(1).max(1))
});

/// Only the field that says whose secret to try. Every other field is skipped unread
/// (`IgnoredAny`): serde_json's nesting limit (128) and the body limit bound the read, and
/// nothing read here is acted on until the signature is checked.
#[derive(Deserialize)]
struct Named {
    repository: Option<Repository>,
}

/// The event, parsed (or why it cannot be).
type Parsed = Result<Payload, serde_json::Error>;

enum Refusal {
    Malformed(serde_json::Error),
    UnknownRepo,
    BadSignature,
}

/// The repository the body names, if its configured secret signs the body, and the event
/// parsed. Only that repository's secret is tried: the cost of a forged post does not grow
/// with the number of repositories. A push or a pull request names it in the event itself,
/// so its body is read once (two reads of a 7 KiB push were a tenth of a delivery's CPU);
/// anything else is read for the name alone, and the event parsed only once signed.
fn verify(
    app: &HttpState,
    event: &str,
    body: &[u8],
    sig: &str,
) -> Result<(String, Parsed), Refusal> {
    let parsed = events::parse(event, body);
    if let Ok(p) = &parsed
        && let Some(name) = p.repository()
    {
        let repo = signed_by(app, name, body, sig)?;
        return Ok((repo, parsed));
    }
    // Not parsed (another event, a malformed one, or no repository): the name alone, so
    // that an unsigned or unknown body is refused as such before its event is judged.
    let named: Named = serde_json::from_slice(body).map_err(Refusal::Malformed)?;
    let name = named.repository.ok_or(Refusal::UnknownRepo)?.full_name;
    Ok((signed_by(app, &name, body, sig)?, parsed))
}

/// The configured repository `name` is, if its secret signs the body.
fn signed_by(app: &HttpState, name: &str, body: &[u8], sig: &str) -> Result<String, Refusal> {
    let mut secrets = app
        .webhook_secrets
        .iter()
        .filter(|(repo, _)| repo.eq_ignore_ascii_case(name))
        .peekable();
    if secrets.peek().is_none() {
        return Err(Refusal::UnknownRepo);
    }
    secrets
        .find(|(_, secret)| super::signature::verify(secret.expose_secret().as_bytes(), body, sig))
        .map(|(repo, _)| repo.clone())
        .ok_or(Refusal::BadSignature)
}

pub async fn receive(
    State(app): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    // 1. The signature, on the raw bytes, before the event is parsed.
    let sig = header("x-hub-signature-256");
    if sig.is_empty() {
        return reply(
            &app,
            "unsigned",
            StatusCode::UNAUTHORIZED,
            "missing X-Hub-Signature-256",
        );
    }
    let event = header("x-github-event").to_string();
    let checked = if body.len() <= INLINE_VERIFY {
        verify(&app, &event, &body, sig)
    } else {
        // A large body's HMAC would hold an async worker for milliseconds: the blocking
        // pool does it, a few at a time.
        let Ok(_permit) = VERIFY_PERMITS.acquire().await else {
            return reply(
                &app,
                "error",
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down",
            );
        };
        let (a, e, b, s) = (app.clone(), event.clone(), body.clone(), sig.to_string());
        let span = tracing::Span::current();
        match tokio::task::spawn_blocking(move || span.in_scope(|| verify(&a, &e, &b, &s))).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "the signature check failed");
                return reply(
                    &app,
                    "error",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot check the signature",
                );
            }
        }
    };
    let (verified, parsed) = match checked {
        Ok(v) => v,
        Err(Refusal::Malformed(e)) => {
            return reply(
                &app,
                "malformed",
                StatusCode::BAD_REQUEST,
                format!("malformed {event} payload: {e}"),
            );
        }
        Err(Refusal::UnknownRepo) => {
            return reply(
                &app,
                "unknown_repo",
                StatusCode::FORBIDDEN,
                "the payload names no configured repository",
            );
        }
        Err(Refusal::BadSignature) => {
            return reply(
                &app,
                "bad_signature",
                StatusCode::UNAUTHORIZED,
                "X-Hub-Signature-256 does not match the secret of the repository the payload names",
            );
        }
    };

    // 2. Then the event.
    let delivery = header("x-github-delivery").to_string();
    if delivery.is_empty() {
        return reply(
            &app,
            "malformed",
            StatusCode::BAD_REQUEST,
            "missing X-GitHub-Delivery",
        );
    }
    let malformed = |e: serde_json::Error| {
        reply(
            &app,
            "malformed",
            StatusCode::BAD_REQUEST,
            format!("malformed {event} payload: {e}"),
        )
    };
    let payload = match parsed {
        Ok(p) => p,
        Err(e) => return malformed(e),
    };
    // The event names the repository whose secret signed it (the same field).
    let Some(repo_cfg) = app.cfg.repo(&verified) else {
        return reply(
            &app,
            "unknown_repo",
            StatusCode::FORBIDDEN,
            "the payload's repository is not configured",
        );
    };
    let checks_app = app
        .cfg
        .github
        .as_ref()
        .and_then(|g| g.app_id)
        .filter(|_| app.cfg.check_runs());
    let jobs = match events::jobs(&event, payload, repo_cfg, checks_app) {
        Ok(jobs) => jobs,
        Err(a) => return reply(&app, a.result, a.code, a.message),
    };

    // 3. Delivery and jobs, one transaction.
    let recorded = app
        .recorder
        .record(DeliveryRecord {
            delivery: delivery.clone(),
            event: event.clone(),
            repo: Some(repo_cfg.name.clone()),
            jobs,
        })
        .await;
    match recorded {
        Ok(Some(ids)) => {
            app.wake.jobs.notify_one();
            app.wake.outbox.notify_one();
            app.metrics.delivery("accepted");
            let urls: Vec<String> = ids.iter().map(|id| app.cfg.run_url(*id)).collect();
            (
                StatusCode::ACCEPTED,
                Json(json!({"result": "accepted", "jobs": ids, "urls": urls})),
            )
                .into_response()
        }
        Ok(None) => reply(
            &app,
            "duplicate",
            StatusCode::OK,
            format!("delivery {delivery} was already received"),
        ),
        Err(e) => {
            tracing::error!(error = %e, "cannot record a delivery");
            // Not recorded: GitHub's redelivery of it will be new.
            let mut r = reply(
                &app,
                "error",
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot record the delivery; redeliver it",
            );
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
            r
        }
    }
}
