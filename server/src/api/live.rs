//! `GET /runs/{id}/events`: a live run's progress as server-sent events, for its page.
//! The handler polls the job and sends its progress when it changes; the stream ends when
//! the run does, or after [`LIFETIME`]. At most [`MAX_STREAMS`] are open at once (503 when
//! full): each holds a permit until its client goes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::{ApiError, HttpState};
use crate::domain::JobId;
use crate::queue;
use crate::report::console::run::Progress;

/// How often a stream reads its job.
pub const POLL: Duration = Duration::from_millis(500);
/// The longest a stream stays open; the page's script reconnects if it is still live.
pub const LIFETIME: Duration = Duration::from_secs(15 * 60);
/// The most streams open at once.
pub const MAX_STREAMS: usize = 64;

struct Follow {
    app: Arc<HttpState>,
    id: JobId,
    until: Instant,
    last: Option<Progress>,
    _permit: OwnedSemaphorePermit,
}

async fn progress(app: &Arc<HttpState>, id: JobId) -> Option<Progress> {
    let job = queue::blocking(&app.queue, move |q| q.job(id)).await;
    job.ok().flatten().map(|j| Progress::of(&j))
}

fn event(p: &Progress) -> Event {
    Event::default()
        .event("progress")
        .json_data(p)
        .unwrap_or_else(|_| Event::default().event("end").data("unreadable"))
}

pub async fn run_events(
    State(app): State<Arc<HttpState>>,
    Path(id): Path<JobId>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let permit = app.live_streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live run pages open; reload the page later",
        )
        .plain()
    })?;
    if progress(&app, id).await.is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no job {id}")).plain());
    }
    let follow = Follow {
        app,
        id,
        until: Instant::now() + LIFETIME,
        last: None,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(Some(follow), |state| async move {
        let mut f = state?;
        loop {
            if f.last.is_some() {
                tokio::time::sleep(POLL).await;
            }
            let Some(p) = progress(&f.app, f.id).await else {
                return Some((Ok(Event::default().event("end").data("gone")), None));
            };
            let expired = Instant::now() >= f.until;
            if f.last.as_ref() == Some(&p) && !expired {
                continue;
            }
            let ev = event(&p);
            let live = p.live;
            f.last = Some(p);
            if !live || expired {
                return Some((Ok(ev), None));
            }
            return Some((Ok(ev), Some(f)));
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
