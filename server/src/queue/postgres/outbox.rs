//! The outbox: commit statuses and PR comments still to post, and the PR comment ids. One
//! replica posts at a time: it holds a session advisory lock on a connection of its own, so
//! that each row goes once and in the order it was recorded (row claims would let two
//! replicas post one commit's statuses out of order). The lock goes with its connection: a
//! replica that loses it stops posting at its next round, and another takes over.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use super::{
    LOCK_POSTER, Store, add_check, add_status, execute, lock_outbox, name, query, query_opt,
};
use crate::domain::{CheckState, JobId, UnknownName};
use crate::queue::lease::Claim;
use crate::queue::{
    CheckUpdate, Outbox, PendingCheck, PendingComment, PendingStatus, StatusUpdate, StoreError,
    UnreadableRow, now,
};

/// How long the connection that holds the poster lock may take to answer a round's check.
const POSTER_CHECK: Duration = Duration::from_secs(2);

impl Outbox for Store {
    fn may_post(&self) -> Result<bool, StoreError> {
        let mut held = self.poster.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = held.as_ref().filter(|p| p.client.is_closed()) {
            if p.locked {
                tracing::warn!("lost the connection that held the poster lock; standing by");
            }
            *held = None;
        }
        if let Some(p) = held.as_ref().filter(|p| p.locked) {
            // A half-open connection (a failover, a partition) looks open for as long as TCP
            // takes to give up, while another replica may take the lock on the new primary:
            // the lock holds only while its connection answers.
            let client = &p.client;
            let answered = self.run(async {
                Ok(tokio::time::timeout(POSTER_CHECK, client.simple_query("SELECT 1")).await)
            })?;
            match answered {
                Ok(Ok(_)) => return Ok(true),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the poster's connection failed; standing by");
                }
                Err(_) => tracing::warn!(
                    "the poster's connection did not answer within {POSTER_CHECK:?}; standing by"
                ),
            }
            // Dropping the client ends its connection; a new one asks again next round.
            *held = None;
            return Ok(false);
        }
        let (pg, tls) = (self.pg.clone(), self.tls.clone());
        let client = held.take().map(|p| p.client);
        let (client, locked) = self.run(async move {
            let client = match client {
                Some(c) => c,
                None => {
                    let (client, connection) = pg.connect(tls).await?;
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::warn!(error = %e, "the poster's connection ended");
                        }
                    });
                    client
                }
            };
            let locked: bool = client
                .query_one("SELECT pg_try_advisory_lock($1, 0)", &[&LOCK_POSTER])
                .await?
                .get(0);
            Ok((client, locked))
        })?;
        if locked {
            tracing::info!("this replica posts the outbox now");
        }
        *held = Some(super::Poster { client, locked });
        Ok(locked)
    }

    fn add_statuses(
        &self,
        job: Option<Claim>,
        statuses: &[StatusUpdate],
    ) -> Result<(), StoreError> {
        if statuses.is_empty() && job.is_none() {
            return Ok(());
        }
        self.tx(async |tx| {
            // The job's row first (as a worker's other writes do), then the outbox.
            if let Some(claim) = job {
                super::jobs::holds(tx, claim).await?;
            }
            lock_outbox(tx).await?;
            for s in statuses {
                add_status(tx, job.map(|c| c.job), s).await?;
            }
            Ok(())
        })
    }

    fn unposted_statuses(&self, limit: usize) -> Result<Vec<PendingStatus>, StoreError> {
        self.conn(async |c| {
            let rows = query(
                c,
                "SELECT s.id, s.repo, s.sha, s.context, s.state, s.description, s.target_url,
                        s.attempts, j.pr
                 FROM statuses s LEFT JOIN jobs j ON j.id = s.job
                 WHERE s.posted_at IS NULL ORDER BY s.id LIMIT $1",
                &[&(limit as i64)],
            )
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                match name(r, "statuses", 4) {
                    Ok(state) => out.push(PendingStatus {
                        id: r.get(0),
                        repo: r.get(1),
                        sha: r.get(2),
                        context: r.get(3),
                        state,
                        description: r.get(5),
                        target_url: r.get(6),
                        attempts: r.get(7),
                        pr: r.get::<_, Option<i64>>(8).map(|p| p as u64),
                    }),
                    // Another version's status: given up on, so that the rest posts.
                    Err(bad) => {
                        tracing::error!(error = %bad, "gave up on a status this version cannot read");
                        mark_failed(c, "statuses", bad.id, &bad.to_string(), true).await?;
                    }
                }
            }
            Ok(out)
        })
    }

    fn statuses_posted(&self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.conn(async |c| {
            execute(
                c,
                "UPDATE statuses SET posted_at = $2 WHERE id = ANY($1)",
                &[&ids, &now()],
            )
            .await?;
            Ok(())
        })
    }

    fn status_failed(&self, id: i64, error: &str, give_up: bool) -> Result<(), StoreError> {
        self.conn(async |c| mark_failed(c, "statuses", id, error, give_up).await)
    }

    fn pr_comment(&self, repo: &str, pr: u64) -> Result<Option<u64>, StoreError> {
        self.conn(async |c| {
            let row = query_opt(
                c,
                "SELECT comment_id FROM pr_comments WHERE repo = $1 AND pr = $2",
                &[&repo, &(pr as i64)],
            )
            .await?;
            Ok(row.map(|r| r.get::<_, i64>(0) as u64))
        })
    }

    fn unposted_comments(&self, limit: usize) -> Result<Vec<PendingComment>, StoreError> {
        self.conn(async |c| {
            let rows = query(
                c,
                "SELECT id, repo, pr, body, after_status, attempts
                 FROM comments WHERE posted_at IS NULL ORDER BY id LIMIT $1",
                &[&(limit as i64)],
            )
            .await?;
            Ok(rows
                .iter()
                .map(|r| PendingComment {
                    id: r.get(0),
                    repo: r.get(1),
                    pr: r.get::<_, i64>(2) as u64,
                    body: r.get(3),
                    after_status: r.get(4),
                    attempts: r.get(5),
                })
                .collect())
        })
    }

    fn comment_posted(&self, id: i64, comment: Option<(&str, u64, u64)>) -> Result<(), StoreError> {
        self.tx(async |tx| {
            execute(
                tx,
                "UPDATE comments SET posted_at = $2 WHERE id = $1",
                &[&id, &now()],
            )
            .await?;
            execute(
                tx,
                "UPDATE jobs SET detail = detail - 'comment_error'
                 WHERE id = (SELECT job FROM comments WHERE id = $1) AND detail ? 'comment_error'",
                &[&id],
            )
            .await?;
            if let Some((repo, pr, comment)) = comment {
                execute(
                    tx,
                    "INSERT INTO pr_comments (repo, pr, comment_id) VALUES ($1, $2, $3)
                     ON CONFLICT (repo, pr) DO UPDATE SET comment_id = excluded.comment_id",
                    &[&repo, &(pr as i64), &(comment as i64)],
                )
                .await?;
            }
            Ok(())
        })
    }

    fn add_checks(&self, job: Claim, checks: &[CheckUpdate]) -> Result<(), StoreError> {
        self.tx(async |tx| {
            super::jobs::holds(tx, job).await?;
            for c in checks {
                add_check(tx, job.job, c).await?;
            }
            Ok(())
        })
    }

    fn unposted_checks(&self, limit: usize, held: &[i64]) -> Result<Vec<PendingCheck>, StoreError> {
        let held = held.to_vec();
        self.conn(async |c| {
            let rows = query(
                c,
                "SELECT id, job, repo, sha, name, state, title, summary, annotations,
                        details_url, external_id, attempts, created_at
                 FROM check_runs WHERE posted_at IS NULL AND (job, name) NOT IN (
                     SELECT job, name FROM check_runs WHERE id = ANY($2))
                 ORDER BY id LIMIT $1",
                &[&(limit as i64), &held],
            )
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let read = name(r, "check_runs", 5).and_then(|state| {
                    let annotations = serde_json::from_value(r.get(8)).map_err(|e| UnreadableRow {
                        table: "check_runs",
                        id: r.get(0),
                        column: "annotations".into(),
                        name: UnknownName {
                            what: "annotation list",
                            value: e.to_string(),
                        },
                    })?;
                    Ok(PendingCheck {
                        id: r.get(0),
                        job: JobId(r.get(1)),
                        repo: r.get(2),
                        sha: r.get(3),
                        name: r.get(4),
                        state,
                        title: r.get(6),
                        summary: r.get(7),
                        annotations,
                        details_url: r.get(9),
                        external_id: r.get(10),
                        attempts: r.get(11),
                        created_at: r.get(12),
                    })
                });
                match read {
                    Ok(check) => out.push(check),
                    // Another version's check run write: given up on, so that the rest posts.
                    Err(bad) => {
                        tracing::error!(error = %bad, "gave up on a check run this version cannot read");
                        mark_failed(c, "check_runs", bad.id, &bad.to_string(), true).await?;
                    }
                }
            }
            Ok(out)
        })
    }

    fn keep_check_run(&self, job: JobId, name: &str, check_run: u64) -> Result<(), StoreError> {
        self.conn(async |c| {
            execute(
                c,
                "INSERT INTO check_run_ids (job, name, check_run_id, created_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (job, name) DO UPDATE SET check_run_id = excluded.check_run_id",
                &[&job.0, &name, &(check_run as i64), &now()],
            )
            .await?;
            Ok(())
        })
    }

    fn check_run(&self, job: JobId, name: &str) -> Result<Option<u64>, StoreError> {
        self.conn(async |c| {
            let row = query_opt(
                c,
                "SELECT check_run_id FROM check_run_ids WHERE job = $1 AND name = $2",
                &[&job.0, &name],
            )
            .await?;
            Ok(row.map(|r| r.get::<_, i64>(0) as u64))
        })
    }

    fn end_checks(
        &self,
        job: Claim,
        state: CheckState,
        title: &str,
        summary: &str,
    ) -> Result<usize, StoreError> {
        self.tx(async |tx| {
            super::jobs::holds(tx, job).await?;
            super::end_open_checks(tx, job.job, state, title, summary).await
        })
    }

    fn check_posted(&self, id: i64) -> Result<(), StoreError> {
        self.conn(async |c| {
            execute(
                c,
                "UPDATE check_runs SET posted_at = $2 WHERE id = $1",
                &[&id, &now()],
            )
            .await?;
            Ok(())
        })
    }

    fn check_failed(&self, id: i64, error: &str, give_up: bool) -> Result<(), StoreError> {
        self.conn(async |c| mark_failed(c, "check_runs", id, error, give_up).await)
    }

    fn comment_failed(&self, id: i64, error: &str, give_up: bool) -> Result<(), StoreError> {
        self.tx(async |tx| {
            mark_failed(tx, "comments", id, error, give_up).await?;
            execute(
                tx,
                "UPDATE jobs SET detail = jsonb_set(detail, '{comment_error}', to_jsonb($2::text))
                 WHERE id = (SELECT job FROM comments WHERE id = $1)",
                &[&id, &error],
            )
            .await?;
            Ok(())
        })
    }
}

async fn mark_failed<C: GenericClient>(
    c: &C,
    table: &str,
    id: i64,
    error: &str,
    give_up: bool,
) -> Result<(), StoreError> {
    execute(
        c,
        &format!(
            "UPDATE {table} SET attempts = attempts + 1, last_error = $2,
                posted_at = CASE WHEN $3 THEN -1 ELSE NULL END WHERE id = $1"
        ),
        &[&id, &error, &give_up],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::postgres::testdb::{TestDb, query_text};

    /// Stops (or continues) a server process, as a partition or a failover leaves the
    /// other end of a connection: open, and silent.
    fn signal(pid: &str, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    }

    /// Continues the stopped backend however the test ends: a stopped backend would hold
    /// up dropping the database.
    struct Stopped(String);
    impl Drop for Stopped {
        fn drop(&mut self) {
            signal(&self.0, "-CONT");
        }
    }

    #[test]
    fn a_poster_whose_connection_stops_answering_stands_by_and_another_takes_over() {
        let db = TestDb::new();
        let (a, b) = (db.store(), db.store());
        assert!(a.may_post().unwrap(), "the first asks and gets it");
        assert!(!b.may_post().unwrap(), "the second stands by");
        let holder = query_text(
            &db.url,
            &format!(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
                   AND classid = {LOCK_POSTER} AND objid = 0 AND objsubid = 2
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
        );
        let pid = holder[0][0].clone().unwrap();
        signal(&pid, "-STOP");
        let stopped = Stopped(pid);

        let t = std::time::Instant::now();
        assert!(
            !a.may_post().unwrap(),
            "a poster whose connection does not answer keeps posting"
        );
        eprintln!("the silent poster stood by after {:?}", t.elapsed());
        drop(stopped);

        // Its old session ends once it reads that its client went; the lock goes with it.
        let mut took = false;
        for _ in 0..50 {
            if b.may_post().unwrap() {
                took = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            took,
            "the second takes over once the first's session is gone"
        );
        assert!(!a.may_post().unwrap(), "the first now stands by");
    }
}
