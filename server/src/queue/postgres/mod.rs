//! The queue in PostgreSQL, for several replicas on one database; one module per role, as
//! in `sqlite/`.
//!
//! The role traits are synchronous (the SQLite design, and the call sites). The store owns a
//! small runtime of its own (`state-db`) on which the pool's connections do their I/O; a
//! call runs its queries on the calling thread, which waits for the answers (under
//! `block_in_place` on a multi-thread runtime's worker). A call may thus borrow what it was
//! given (the status closures are neither `Send` nor `'static`), and it is safe from async
//! code, from the delivery-writer thread and from plain tests alike.
//!
//! Rules that hold across replicas: a lane's jobs are enqueued and claimed under a
//! transaction advisory lock on the lane, with one running job per lane as a unique index;
//! every write to the outbox takes one outbox lock, so that ids follow commit order and the
//! poster never sees a later status before an earlier one; one poster at a time holds a
//! session advisory lock on a connection of its own.

mod console;
mod deliveries;
mod drift;
mod history;
mod holds;
mod import;
mod jobs;
mod ledger;
#[cfg(test)]
mod outage;
mod outbox;
mod schema;
#[cfg(test)]
pub mod testdb;
mod tls;
#[cfg(test)]
mod tls_cluster;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::domain::{JobId, UnknownName};
use crate::queue::{CheckUpdate, CommentUpdate, Job, StatusUpdate, StoreError, UnreadableRow, now};

/// Connections per store: the recorder, the dispatcher, the poster and a few jobs at once.
const POOL_SIZE: usize = 8;
/// How long a call waits for a connection, or to make one: while the database is down a
/// call fails within this, and the webhook answers 503.
const POOL_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest one call may take, queries and all (a database that stops answering).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The advisory lock namespaces (the first key of the two-key form, its own key space).
const LOCK_LANE: i32 = 0x5347_0001;
const LOCK_OUTBOX: i32 = 0x5347_0002;
const LOCK_MIGRATE: i32 = 0x5347_0003;
const LOCK_POSTER: i32 = 0x5347_0004;

/// A connection URL with its password hidden, for logs and errors.
fn redacted(url: &str) -> String {
    crate::config::StateUrl::new(url).redacted()
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        if unreachable(&e) {
            StoreError::Unavailable(Box::new(e))
        } else {
            StoreError::Backend(Box::new(e))
        }
    }
}

/// Whether an error says the server cannot be reached, rather than that it refused the
/// query: a closed or broken connection, SQLSTATE class 08 (connection exception), or the
/// server shutting down or starting (57P01–57P03).
fn unreachable(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03")
        }
        None => {
            e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(format!("no connection to PostgreSQL: {}", with_causes(&e)).into())
    }
}

/// An error and its causes: tokio-postgres' own message leaves the cause out ("error
/// performing TLS handshake", but not which certificate check failed).
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    for _ in 0..8 {
        let Some(cause) = next else { break };
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

pub struct Store {
    pool: Pool,
    /// The runtime of the pool's connections; `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    /// The database, for the poster's own connection.
    pg: tokio_postgres::Config,
    /// The TLS connector for the URL's `sslmode`, for the pool and the poster alike.
    tls: tls::MakeRustls,
    /// The poster's own connection, and whether it holds the poster lock.
    poster: Mutex<Option<Poster>>,
}

/// A connection of the outbox poster's own: its session holds the poster lock.
struct Poster {
    client: tokio_postgres::Client,
    locked: bool,
}

impl Drop for Store {
    fn drop(&mut self) {
        // A store may be dropped in async code, where a runtime may not wait for its threads.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Store {
    /// Opens the database at `url` and brings its schema up to this version (once, however
    /// many replicas start together).
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let tls::Connection {
            config: mut pg,
            mode,
            tls,
        } = tls::parse(url)
            .map_err(|e| StoreError::Backend(format!("state.url {}: {e}", redacted(url)).into()))?;
        pg.application_name("stackgate")
            .connect_timeout(POOL_TIMEOUT)
            // A peer gone without a word (a failover, a partition) is noticed in seconds,
            // not after the kernel's defaults (two hours idle, then 75 s x 9 probes).
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(20));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("state-db")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        let manager = Manager::from_config(
            pg.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            let _in = rt.enter();
            Pool::builder(manager)
                .max_size(POOL_SIZE)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(POOL_TIMEOUT))
                .create_timeout(Some(POOL_TIMEOUT))
                .recycle_timeout(Some(POOL_TIMEOUT))
                .build()
                .map_err(|e| StoreError::Backend(Box::new(e)))?
        };
        let store = Store {
            pool,
            handle: rt.handle().clone(),
            rt: Some(rt),
            pg,
            tls,
            poster: Mutex::new(None),
        };
        store
            .run(schema::migrate(&store.pool))
            .map_err(|e| match e {
                StoreError::Backend(e) | StoreError::Unavailable(e) => {
                    let url = redacted(url);
                    StoreError::Backend(format!("PostgreSQL at {url} (sslmode={mode}): {e}").into())
                }
                e => e,
            })?;
        Ok(store)
    }

    /// Runs one call's queries to the end on this thread, the connections' I/O on the
    /// store's runtime.
    fn run<T>(&self, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        self.run_within(CALL_TIMEOUT, call)
    }

    /// [`Store::run`] under a deadline of its own, for the rare call whose work grows with
    /// the data (taking in a whole installation).
    fn run_within<T>(
        &self,
        deadline: Duration,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let go = || {
            let _in = self.handle.enter();
            block_on(async {
                tokio::time::timeout(deadline, call).await.map_err(|_| {
                    StoreError::Unavailable(
                        format!("PostgreSQL did not answer within {deadline:?}").into(),
                    )
                })?
            })
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(go),
            _ => go(),
        }
    }

    /// Runs `f` in one transaction on a pooled connection.
    fn tx<T>(
        &self,
        f: impl AsyncFnOnce(&deadpool_postgres::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.tx_within(CALL_TIMEOUT, f)
    }

    /// [`Store::tx`] under a deadline of its own.
    fn tx_within<T>(
        &self,
        deadline: Duration,
        f: impl AsyncFnOnce(&deadpool_postgres::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.run_within(deadline, async {
            let mut c = self.pool.get().await?;
            let tx = c.transaction().await?;
            let out = f(&tx).await?;
            tx.commit().await?;
            Ok(out)
        })
    }

    /// Runs `f` on a pooled connection, each statement its own transaction.
    fn conn<T>(
        &self,
        f: impl AsyncFnOnce(&deadpool_postgres::Object) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.run(async {
            let c = self.pool.get().await?;
            f(&c).await
        })
    }
}

/// Polls a future to its end on this thread, parking between wake-ups.
fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// Takes the lock that orders every write to the outbox, until the transaction ends.
async fn lock_outbox<C: GenericClient>(tx: &C) -> Result<(), StoreError> {
    query(tx, "SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_OUTBOX]).await?;
    Ok(())
}

const JOB_COLUMNS: &str = "id, kind, repo, stack, sha, pr, fork, trigger, state, phase, change_set_id, stack_id, detail, created_at, started_at, finished_at, superseded_by, attempts, fence, owner, lease_until";

/// A stored name read back as its type; an unknown one is an unreadable row.
fn name<T>(r: &Row, table: &'static str, i: usize) -> Result<T, UnreadableRow>
where
    T: std::str::FromStr<Err = UnknownName>,
{
    let s: String = r.get(i);
    s.parse().map_err(|name| UnreadableRow {
        table,
        id: r.get(0),
        column: r.columns()[i].name().to_string(),
        name,
    })
}

fn job_from_row(r: &Row) -> Result<Job, UnreadableRow> {
    let phase: Option<String> = r.get(9);
    Ok(Job {
        id: JobId(r.get(0)),
        kind: name(r, "jobs", 1)?,
        repo: r.get(2),
        stack: r.get(3),
        sha: r.get(4),
        pr: r.get::<_, Option<i64>>(5).map(|p| p as u64),
        fork: r.get(6),
        trigger: name(r, "jobs", 7)?,
        state: name(r, "jobs", 8)?,
        phase: match phase {
            Some(_) => Some(name(r, "jobs", 9)?),
            None => None,
        },
        change_set_id: r.get(10),
        stack_id: r.get(11),
        detail: r.get(12),
        created_at: r.get(13),
        started_at: r.get(14),
        finished_at: r.get(15),
        superseded_by: r.get::<_, Option<i64>>(16).map(JobId),
        attempts: r.get(17),
        fence: r.get(18),
        owner: r.get(19),
        lease_until: r.get(20),
    })
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A statement, prepared once per connection.
async fn query<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> Result<Vec<Row>, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query(&stmt, p).await?)
}

async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    p: Params<'_>,
) -> Result<Option<Row>, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&stmt, p).await?)
}

async fn execute<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> Result<u64, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.execute(&stmt, p).await?)
}

/// Reads jobs, leaving out the rows this version cannot read (each logged). A live one,
/// queued or running, ends in error: it would otherwise hold its lane forever.
async fn read_jobs<C: GenericClient>(
    c: &C,
    sql: &str,
    p: Params<'_>,
) -> Result<Vec<Job>, StoreError> {
    let rows = query(c, sql, p).await?;
    let mut jobs = Vec::with_capacity(rows.len());
    for row in &rows {
        match job_from_row(row) {
            Ok(j) => jobs.push(j),
            Err(bad) => end_unreadable(c, &bad).await?,
        }
    }
    Ok(jobs)
}

/// Ends a live job this version cannot read in error, saying why in its detail.
async fn end_unreadable<C: GenericClient>(c: &C, bad: &UnreadableRow) -> Result<(), StoreError> {
    let ended = execute(
        c,
        "UPDATE jobs SET state = 'error', finished_at = $2, detail = $3
         WHERE id = $1 AND state IN ('queued', 'running')",
        &[
            &bad.id,
            &now(),
            &serde_json::json!({ "error": bad.to_string() }),
        ],
    )
    .await?;
    if ended > 0 {
        tracing::error!(error = %bad, "ended a job this version cannot read in error");
    } else {
        tracing::warn!(error = %bad, "left out a job this version cannot read");
    }
    Ok(())
}

async fn add_status<C: GenericClient>(
    tx: &C,
    job: Option<JobId>,
    s: &StatusUpdate,
) -> Result<(), StoreError> {
    execute(
        tx,
        "INSERT INTO statuses (job, repo, sha, context, state, description, target_url, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &job.map(|j| j.0),
            &s.repo,
            &s.sha,
            &s.context.to_string(),
            &s.state.as_str(),
            &s.description,
            &s.target_url,
            &now(),
        ],
    )
    .await?;
    Ok(())
}

/// A check run write of job `job`. One job writes its check runs one after another, so the
/// ids keep their order without the outbox lock.
async fn add_check<C: GenericClient>(
    tx: &C,
    job: JobId,
    c: &CheckUpdate,
) -> Result<(), StoreError> {
    let annotations = serde_json::to_value(&c.annotations).map_err(StoreError::backend)?;
    execute(
        tx,
        "INSERT INTO check_runs (job, repo, sha, name, state, title, summary, annotations,
                                 details_url, external_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            &job.0,
            &c.repo,
            &c.sha,
            &c.context.to_string(),
            &c.state.as_str(),
            &c.title,
            &c.summary,
            &annotations,
            &c.details_url,
            &c.external_id,
            &now(),
        ],
    )
    .await?;
    Ok(())
}

/// A comment goes after every status recorded before it (the outbox lock is held, so that
/// is every status committed before it): the poster keeps that order.
async fn add_comment<C: GenericClient>(
    tx: &C,
    job: Option<JobId>,
    c: &CommentUpdate,
) -> Result<(), StoreError> {
    execute(
        tx,
        "INSERT INTO comments (job, repo, pr, body, after_status, created_at)
         VALUES ($1, $2, $3, $4, (SELECT COALESCE(MAX(id), 0) FROM statuses), $5)",
        &[&job.map(|j| j.0), &c.repo, &(c.pr as i64), &c.body, &now()],
    )
    .await?;
    Ok(())
}

/// Ends, with `state`, each check run of `job` that has only `in_progress` writes (one
/// that stops before its verdict, or is superseded while queued again).
pub(super) async fn end_open_checks<C: GenericClient>(
    c: &C,
    job: JobId,
    state: crate::domain::CheckState,
    title: &str,
    summary: &str,
) -> Result<usize, StoreError> {
    let ended = execute(
        c,
        "INSERT INTO check_runs (job, repo, sha, name, state, title, summary, annotations,
                                 details_url, external_id, created_at)
         SELECT DISTINCT ON (name) job, repo, sha, name, $3, $4, $5, '[]'::jsonb,
                details_url, external_id, $6
         FROM check_runs c
         WHERE job = $1 AND state = $2 AND NOT EXISTS (
             SELECT 1 FROM check_runs d
             WHERE d.job = c.job AND d.name = c.name AND d.state <> $2)
         ORDER BY name, id",
        &[
            &job.0,
            &crate::domain::CheckState::InProgress.as_str(),
            &state.as_str(),
            &title,
            &summary,
            &now(),
        ],
    )
    .await?;
    Ok(usize::try_from(ended).unwrap_or(usize::MAX))
}
