//! The console's pages and their JSON twins: thin handlers. The queue is read off the
//! async workers, commits come from the mirrors' cache (never waited on for long), and
//! `report::console` builds each view model and renders it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use serde::Deserialize;

use super::{ApiError, HttpState};
use crate::auth::Viewer;
use crate::domain::{JobId, Role};
use crate::queue::{self, Queue, StoreError};
use crate::report::console::overview::{self, Overview, OverviewQuery};
use crate::report::console::pulls::{self, MAX_PREVIEWS, PullPage};
use crate::report::console::run::{self, RunPage};
use crate::report::console::stack::{self, MAX_PAGE, PAGE_SIZE, StackPage};
use crate::report::console::templates::render;

/// How many recent runs of every kind the overview lists.
const RECENT: usize = 20;

/// A repository's stacks folder, as configured (`stacks` for one no longer configured).
fn stacks_dir(app: &HttpState, repo: &str) -> String {
    app.cfg
        .repos
        .iter()
        .find(|r| r.name == repo)
        .map_or_else(|| "stacks".to_string(), |r| r.stacks_dir.clone())
}

async fn read<T: Send + 'static>(
    app: &HttpState,
    f: impl FnOnce(&dyn Queue) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(queue::blocking(&app.queue, move |q| f(q)).await?)
}

/// A page's view with who is looking: the header names them and offers the logout, and a
/// stack page offers the actions their role allows, each form with its CSRF token.
#[derive(serde::Serialize)]
struct Page<'a, T: serde::Serialize> {
    #[serde(flatten)]
    view: &'a T,
    who: Who,
}

#[derive(serde::Serialize)]
struct Who {
    name: String,
    /// A login's session: it can log out.
    session: bool,
    csrf: Option<String>,
    /// The stack page's forms, when the viewer is an operator on its repository.
    actions: Option<Actions>,
    /// A held run's forms, when the viewer is an operator on its repository.
    decide: Option<Decide>,
}

#[derive(serde::Serialize)]
struct Decide {
    approve: String,
    reject: String,
}

#[derive(serde::Serialize)]
struct Actions {
    redeploy: String,
    drift: String,
}

impl Who {
    fn of(viewer: &Viewer) -> Self {
        Self {
            name: viewer.name(),
            session: viewer.credential == crate::auth::Credential::Session,
            csrf: viewer.csrf_token().map(str::to_string),
            actions: None,
            decide: None,
        }
    }
}

fn page(
    name: &'static str,
    view: &impl serde::Serialize,
    who: Who,
) -> Result<Html<String>, ApiError> {
    html(name, &Page { view, who })
}

fn html(page: &'static str, view: &impl serde::Serialize) -> Result<Html<String>, ApiError> {
    render(page, view)
        .map(Html)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).plain())
}

fn not_found(what: String) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, what)
}

pub async fn overview_model(
    app: &HttpState,
    viewer: &Viewer,
    q: OverviewQuery,
) -> Result<Overview, ApiError> {
    let filters = q
        .check()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let (mut ledger, mut heads, mut recent, drifts) = read(app, |q| {
        Ok((
            q.ledger_lines()?,
            q.lane_heads()?,
            q.recent_jobs(RECENT)?,
            q.drifts()?,
        ))
    })
    .await?;
    // A viewer sees the repositories their role covers, and nothing of the others.
    let sees = |repo: &str| viewer.may(repo, Role::Viewer);
    ledger.retain(|l| sees(&l.repo));
    heads.retain(|h| sees(&h.repo));
    recent.retain(|j| sees(&j.repo));
    let drifts: HashMap<(String, String), queue::DriftRow> = drifts
        .into_iter()
        .filter(|d| sees(&d.repo))
        .map(|d| ((d.repo.clone(), d.stack.clone()), d))
        .collect();
    let lookups = overview::deployed_shas(&ledger)
        .into_iter()
        .map(|(repo, shas)| async move { app.mirrors.commits(&repo, &shas).await });
    let commits: HashMap<_, _> = futures_util::future::join_all(lookups)
        .await
        .into_iter()
        .flatten()
        .collect();
    let recent: Vec<_> = recent.iter().map(|j| j.summary()).collect();
    let dir = |repo: &str| stacks_dir(app, repo);
    // The target the configuration maps the path to, where the stack is in its account.
    let target = |repo: &str, path: &str, id: &crate::domain::StackIdentity| {
        let r = app.cfg.repo(repo)?;
        let name = crate::config::targets::choose(&r.targets, path)?;
        let t = app.cfg.targets.iter().find(|t| t.name == name)?;
        (t.account_id == id.account).then(|| t.name.clone())
    };
    Ok(overview::build(
        &overview::Inputs {
            ledger: &ledger,
            heads: &heads,
            recent: &recent,
            commits: &commits,
            stacks_dir: &dir,
            drifts: &drifts,
            target: &target,
            now: app.clock.now(),
        },
        filters,
    ))
}

pub async fn index(
    State(app): State<Arc<HttpState>>,
    viewer: Viewer,
    Query(q): Query<OverviewQuery>,
) -> Result<Html<String>, ApiError> {
    let model = overview_model(&app, &viewer, q)
        .await
        .map_err(ApiError::plain)?;
    page("overview.html", &model, Who::of(&viewer))
}

/// Every stack, as the overview shows them.
#[utoipa::path(get, path = "/api/v1/stacks", params(OverviewQuery),
    responses((status = 200, body = Overview), (status = 400, description = "a filter refused")))]
pub async fn stacks_json(
    State(app): State<Arc<HttpState>>,
    viewer: Viewer,
    Query(q): Query<OverviewQuery>,
) -> Result<Json<Overview>, ApiError> {
    Ok(Json(overview_model(&app, &viewer, q).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The page of runs, from 0 (newest); at most 400.
    pub page: Option<usize>,
}

pub async fn stack_model(
    app: &HttpState,
    viewer: &Viewer,
    (owner, name, folder): (String, String, String),
    page: usize,
) -> Result<StackPage, ApiError> {
    let repo = format!("{owner}/{name}");
    viewer.require(&repo, Role::Viewer)?;
    let page = page.min(MAX_PAGE);
    let (r, f) = (repo.clone(), folder.clone());
    let (ledger, runs, head, last_success, last_with_outputs, drift) = read(app, move |q| {
        let runs = q.stack_runs(&r, &f, page * PAGE_SIZE, PAGE_SIZE + 1)?;
        // The lane's newest job is never superseded: it is the first of the first page.
        let head = match page {
            0 => runs.first().cloned(),
            _ => q.stack_runs(&r, &f, 0, 1)?.pop(),
        };
        Ok((
            q.ledger_row(&r, &f)?,
            runs,
            head,
            q.last_succeeded(&r, &f, false)?,
            q.last_succeeded(&r, &f, true)?,
            q.drifts()?
                .into_iter()
                .find(|d| d.repo == r && d.stack == f),
        ))
    })
    .await?;
    if ledger.is_none() && head.is_none() {
        return Err(not_found(format!("no stack {folder} in {repo}")));
    }
    let shas: Vec<String> = ledger.iter().map(|l| l.sha.clone()).collect();
    let commits = app.mirrors.commits(&repo, &shas).await;
    let dir = stacks_dir(app, &repo);
    Ok(stack::build(&stack::Inputs {
        repo: &repo,
        folder: &folder,
        stacks_dir: &dir,
        ledger: ledger.as_ref(),
        head: head.as_ref(),
        runs: &runs,
        page,
        last_success: last_success.as_ref(),
        last_with_outputs: last_with_outputs.as_ref(),
        commits: &commits,
        drift: drift.as_ref(),
        now: app.clock.now(),
    }))
}

pub async fn stack_page(
    State(app): State<Arc<HttpState>>,
    viewer: Viewer,
    Path(path): Path<(String, String, String)>,
    Query(p): Query<PageQuery>,
) -> Result<Html<String>, ApiError> {
    let model = stack_model(&app, &viewer, path, p.page.unwrap_or(0))
        .await
        .map_err(ApiError::plain)?;
    let mut who = Who::of(&viewer);
    if who.csrf.is_some() && viewer.may(&model.repo, Role::Operator) {
        let at = crate::report::console::view::stack_href(&model.repo, &model.folder);
        who.actions = Some(Actions {
            redeploy: format!("{at}/redeploy"),
            drift: format!("{at}/drift"),
        });
    }
    page("stack.html", &model, who)
}

/// One stack folder, as its page shows it.
#[utoipa::path(get, path = "/api/v1/stacks/{owner}/{repo}/{stack}",
    params(("owner" = String, Path), ("repo" = String, Path),
        ("stack" = String, Path, description = "the stack folder; may hold `/`"), PageQuery),
    responses((status = 200, body = StackPage), (status = 404, description = "no such stack")))]
pub async fn stack_json(
    State(app): State<Arc<HttpState>>,
    viewer: Viewer,
    Path(path): Path<(String, String, String)>,
    Query(p): Query<PageQuery>,
) -> Result<Json<StackPage>, ApiError> {
    Ok(Json(
        stack_model(&app, &viewer, path, p.page.unwrap_or(0)).await?,
    ))
}

pub async fn run_model(app: &HttpState, viewer: &Viewer, id: JobId) -> Result<RunPage, ApiError> {
    let Some(job) = read(app, move |q| q.job(id)).await? else {
        return Err(not_found(format!("no job {id}")));
    };
    viewer.require(&job.repo, Role::Viewer)?;
    let commits = app
        .mirrors
        .commits(&job.repo, std::slice::from_ref(&job.sha))
        .await;
    Ok(run::build(&job, commits.get(&job.sha), app.clock.now()))
}

pub async fn run_page(
    State(app): State<Arc<HttpState>>,
    viewer: Viewer,
    Path(id): Path<JobId>,
) -> Result<Html<String>, ApiError> {
    let model = run_model(&app, &viewer, id)
        .await
        .map_err(ApiError::plain)?;
    let mut who = Who::of(&viewer);
    if model.state == crate::domain::JobState::Held
        && who.csrf.is_some()
        && viewer.may(&model.repo, Role::Operator)
    {
        who.decide = Some(Decide {
            approve: format!("/runs/{id}/approve"),
            reject: format!("/runs/{id}/reject"),
        });
    }
    page("run.html", &model, who)
}

/// One run, as its page shows it.
#[utoipa::path(get, path = "/api/v1/runs/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = RunPage), (status = 404, description = "no such run")))]
pub async fn run_json(
    State(app): State<Arc<HttpState>>,
    viewer: Viewer,
    Path(id): Path<JobId>,
) -> Result<Json<RunPage>, ApiError> {
    Ok(Json(run_model(&app, &viewer, id).await?))
}

/// The console's JSON API, described from the code.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "stackgate console API"),
    paths(stacks_json, stack_json, run_json),
    components(schemas(Overview, StackPage, RunPage))
)]
pub struct ApiDoc;

pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    use utoipa::OpenApi as _;
    Json(ApiDoc::openapi())
}

pub async fn pull_page(
    State(app): State<Arc<HttpState>>,
    viewer: Viewer,
    Path((owner, name, pr)): Path<(String, String, u64)>,
) -> Result<Html<String>, ApiError> {
    let repo = format!("{owner}/{name}");
    viewer
        .require(&repo, Role::Viewer)
        .map_err(|e| ApiError::from(e).plain())?;
    let r = repo.clone();
    let jobs = read(&app, move |q| q.pr_runs(&r, pr, MAX_PREVIEWS))
        .await
        .map_err(ApiError::plain)?;
    if jobs.is_empty() {
        return Err(not_found(format!("no preview of pull request #{pr} of {repo}")).plain());
    }
    let model: PullPage = pulls::build(&repo, pr, &jobs, app.clock.now());
    page("pull.html", &model, Who::of(&viewer))
}
