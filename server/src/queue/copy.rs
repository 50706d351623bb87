//! Moving an installation over: every row of one backend as it is stored, for another to
//! take in whole (`stackgate state copy`). Names are copied as text, unread: a row this
//! version cannot read moves over too, and is dealt with where it lands.

/// What a copy moved, table by table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    pub jobs: usize,
    pub deliveries: usize,
    pub ledger: usize,
    pub statuses: usize,
    pub comments: usize,
    pub pr_comments: usize,
    pub check_runs: usize,
    pub check_run_ids: usize,
    pub drift: usize,
}

impl std::fmt::Display for Copied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} jobs, {} delivery ids, {} ledger rows, {} statuses, {} comments, {} pull request comment ids, {} check run writes, {} check run ids, {} drift checks",
            self.jobs,
            self.deliveries,
            self.ledger,
            self.statuses,
            self.comments,
            self.pr_comments,
            self.check_runs,
            self.check_run_ids,
            self.drift
        )
    }
}

/// Every row of a state database.
#[derive(Debug, Default, Clone)]
pub struct Rows {
    pub jobs: Vec<JobRow>,
    pub deliveries: Vec<DeliveryRow>,
    pub ledger: Vec<LedgerRow>,
    pub statuses: Vec<StatusRow>,
    pub comments: Vec<CommentRow>,
    pub pr_comments: Vec<(String, i64, i64)>,
    pub check_runs: Vec<CheckRunRow>,
    pub check_run_ids: Vec<CheckRunIdRow>,
    pub drift: Vec<DriftCheckRow>,
}

impl Rows {
    pub fn counts(&self) -> Copied {
        Copied {
            jobs: self.jobs.len(),
            deliveries: self.deliveries.len(),
            ledger: self.ledger.len(),
            statuses: self.statuses.len(),
            comments: self.comments.len(),
            pr_comments: self.pr_comments.len(),
            check_runs: self.check_runs.len(),
            check_run_ids: self.check_run_ids.len(),
            drift: self.drift.len(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub repo: String,
    pub stack: Option<String>,
    pub sha: String,
    pub lane: String,
    pub pr: Option<i64>,
    pub fork: bool,
    pub trigger: String,
    pub delivery: Option<String>,
    pub state: String,
    pub phase: Option<String>,
    pub change_set_id: Option<String>,
    pub stack_id: Option<String>,
    pub detail: serde_json::Value,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub superseded_by: Option<i64>,
    pub attempts: i64,
    /// The lease as it is: stackgate stopped cleanly before the copy and handed its leases
    /// back (expired), so a replica on the copy takes the running jobs over at once. The
    /// fence goes along, so that fences keep growing.
    pub owner: Option<String>,
    pub lease_until: Option<i64>,
    pub fence: i64,
}

#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: String,
    pub event: String,
    pub repo: Option<String>,
    pub received_at: i64,
    pub jobs: i64,
}

#[derive(Debug, Clone)]
pub struct LedgerRow {
    pub repo: String,
    pub stack: String,
    pub sha: String,
    pub removed: bool,
    pub at: i64,
    pub stack_name: Option<String>,
    pub region: Option<String>,
    pub account: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StatusRow {
    pub id: i64,
    pub job: Option<i64>,
    pub repo: String,
    pub sha: String,
    pub context: String,
    pub state: String,
    pub description: String,
    pub target_url: String,
    pub created_at: i64,
    pub posted_at: Option<i64>,
    pub attempts: i64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CommentRow {
    pub id: i64,
    pub job: Option<i64>,
    pub repo: String,
    pub pr: i64,
    pub body: String,
    pub after_status: i64,
    pub created_at: i64,
    pub posted_at: Option<i64>,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// A check run write, posted or still to post.
#[derive(Debug, Clone)]
pub struct CheckRunRow {
    pub id: i64,
    pub job: i64,
    pub repo: String,
    pub sha: String,
    pub name: String,
    pub state: String,
    pub title: String,
    pub summary: String,
    pub annotations: serde_json::Value,
    pub details_url: String,
    pub external_id: String,
    pub created_at: i64,
    pub posted_at: Option<i64>,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// The id GitHub gave a job's check run: without it, the run's later writes could not
/// update it, and it would stay in progress.
#[derive(Debug, Clone)]
pub struct CheckRunIdRow {
    pub id: i64,
    pub job: i64,
    pub name: String,
    pub check_run_id: i64,
    pub created_at: i64,
}

/// A stack's latest drift check.
#[derive(Debug, Clone)]
pub struct DriftCheckRow {
    pub repo: String,
    pub stack: String,
    pub sha: String,
    pub job: i64,
    pub state: String,
    pub drifted: i64,
    pub live_findings: i64,
    pub checked_at: i64,
}

/// Copies the SQLite state file at `from` into the empty PostgreSQL database at `to`, in
/// one PostgreSQL transaction.
pub fn sqlite_to_postgres(from: &std::path::Path, to: &str) -> Result<Copied, super::StoreError> {
    if !from.exists() {
        return Err(super::StoreError::Backend(
            format!("{}: no such state file", from.display()).into(),
        ));
    }
    let rows = super::sqlite::Store::open(from, crate::config::Synchronous::Full)?.export()?;
    super::postgres::Store::open(to)?.import(&rows)?;
    Ok(rows.counts())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CheckState, Context, JobId, JobState, StackIdentity, StatusState};
    use crate::queue::conformance::{deploy_of, preview, queued, superseded};
    use crate::queue::postgres::testdb::TestDb;
    use crate::queue::*;

    fn lease() -> crate::queue::lease::Lease {
        crate::queue::lease::Lease {
            owner: crate::queue::lease::Replica::new(),
            length: std::time::Duration::from_secs(60),
        }
    }

    fn held(q: &dyn Queue, id: JobId) -> crate::queue::lease::Claim {
        q.job(id).unwrap().unwrap().claim()
    }

    fn all_of(q: &dyn Queue) -> String {
        let jobs = serde_json::to_string_pretty(&q.recent_jobs(1000).unwrap()).unwrap();
        let statuses = serde_json::to_string_pretty(&q.unposted_statuses(1000).unwrap()).unwrap();
        let comments: Vec<String> = q
            .unposted_comments(100)
            .unwrap()
            .iter()
            .map(|c| format!("{c:?}"))
            .collect();
        let checks = q.unposted_checks(100, &[]).unwrap();
        format!(
            "{jobs}\n{statuses}\n{comments:?}\n{checks:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
            q.check_run(JobId(2), "stackgate/policy").unwrap(),
            q.drifts().unwrap(),
            q.deployed("acme/infra").unwrap(),
            q.ledger_row("acme/infra", "web").unwrap(),
            q.live_identities().unwrap(),
            q.pr_comment("acme/infra", 7).unwrap(),
            q.delivery_count().unwrap(),
            q.depth().unwrap(),
        )
    }

    #[test]
    fn a_sqlite_state_file_copies_into_postgres_whole_and_only_into_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let s = crate::queue::sqlite::Store::open(&path, crate::config::Synchronous::Full).unwrap();
        // Rows of every kind: a delivery and its job, finished, running, queued and
        // superseded jobs, posted and waiting statuses, a comment, a PR's comment id, and
        // the ledger with and without identities.
        let d = DeliveryRecord {
            delivery: "d1".into(),
            event: "push".into(),
            repo: Some("acme/infra".into()),
            jobs: vec![deploy_of("web", "w1")],
        };
        let web1 = s.record_deliveries(&[d], &queued, &superseded).unwrap()[0]
            .clone()
            .unwrap()[0];
        assert_eq!(s.claim(&lease(), 4).unwrap()[0].id, web1);
        let id = StackIdentity {
            account: "123456789012".into(),
            region: "eu-west-1".into(),
            name: "web-prod".into(),
        };
        s.finish(
            held(&s, web1),
            JobState::Succeeded,
            &serde_json::json!({"outputs": {"Url": "x"}}),
            &[StatusUpdate {
                repo: "acme/infra".into(),
                sha: "w1".into(),
                context: Context::Stack("web".into()),
                state: StatusState::Success,
                description: "deployed".into(),
                target_url: "https://sg/runs/1".into(),
            }],
            Some(LedgerEntry {
                repo: "acme/infra",
                stack: "web",
                sha: "w1",
                removed: false,
                identity: Some(&id),
            }),
        )
        .unwrap();
        let p = s.enqueue(&[preview("p1")], &queued, &superseded).unwrap()[0];
        assert_eq!(s.claim(&lease(), 4).unwrap()[0].id, p);
        let gate = |sha: &str, state| CheckUpdate {
            repo: "acme/infra".into(),
            sha: sha.into(),
            context: Context::Policy,
            state,
            title: "1 stack(s) checked".into(),
            summary: "the findings".into(),
            annotations: Vec::new(),
            details_url: "https://sg/runs/2".into(),
            external_id: "pr/7".into(),
        };
        // Its check run: GitHub made it (the id kept), and its ending is still to post.
        s.add_checks(held(&s, p), &[gate("p1", CheckState::InProgress)])
            .unwrap();
        let started = s.unposted_checks(10, &[]).unwrap().remove(0);
        s.keep_check_run(p, "stackgate/policy", 555).unwrap();
        s.check_posted(started.id).unwrap();
        s.finish_with(
            held(&s, p),
            JobState::Succeeded,
            &serde_json::json!({}),
            crate::queue::Outbound {
                comment: Some(&CommentUpdate {
                    repo: "acme/infra".into(),
                    pr: 7,
                    body: "plan".into(),
                }),
                statuses: &[],
                checks: &[gate("p1", CheckState::Success)],
            },
            None,
        )
        .unwrap();
        let c = s.unposted_comments(10).unwrap().remove(0);
        s.comment_posted(c.id, Some(("acme/infra", 7, 99))).unwrap();
        // A second plan of the PR, its comment still to post.
        let p2 = s.enqueue(&[preview("p2")], &queued, &superseded).unwrap()[0];
        assert_eq!(s.claim(&lease(), 4).unwrap()[0].id, p2);
        s.finish_with(
            held(&s, p2),
            JobState::Succeeded,
            &serde_json::json!({}),
            crate::queue::Outbound {
                comment: Some(&CommentUpdate {
                    repo: "acme/infra".into(),
                    pr: 7,
                    body: "plan 2".into(),
                }),
                statuses: &[],
                checks: &[],
            },
            None,
        )
        .unwrap();
        let running = s
            .enqueue(&[deploy_of("api", "a1")], &queued, &superseded)
            .unwrap()[0];
        let lease = lease();
        assert_eq!(s.claim(&lease, 4).unwrap()[0].id, running);
        s.set_phase(
            held(&s, running),
            crate::domain::Phase::Executing,
            Some("cs-1"),
            Some("st-1"),
        )
        .unwrap();
        s.enqueue(&[deploy_of("db", "x1")], &queued, &superseded)
            .unwrap();
        s.enqueue(&[deploy_of("db", "x2")], &queued, &superseded)
            .unwrap();
        let posted: Vec<i64> = s
            .unposted_statuses(2)
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect();
        s.statuses_posted(&posted).unwrap();
        // A clean stop: the running deploy's lease is handed back.
        assert_eq!(s.release(&lease).unwrap(), 1);
        drop(s);
        // The web stack's last drift check.
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute(
                "INSERT INTO drift (repo, stack, sha, job, state, drifted, live_findings, checked_at)
                 VALUES ('acme/infra', 'web', 'w1', 1, 'drifted', 2, 1, 1234)",
                [],
            )
            .unwrap();
        let s = crate::queue::sqlite::Store::open(&path, crate::config::Synchronous::Full).unwrap();
        let before = all_of(&s);
        assert!(before.contains("Some(555)"), "{before}");
        drop(s);

        let db = TestDb::new();
        let copied = sqlite_to_postgres(&path, &db.url).unwrap();
        assert_eq!(
            copied,
            Copied {
                jobs: 6,
                deliveries: 1,
                ledger: 1,
                statuses: 8,
                comments: 2,
                pr_comments: 1,
                check_runs: 2,
                check_run_ids: 1,
                drift: 1,
            }
        );
        let pg = db.store();
        assert_eq!(all_of(&pg), before);
        // The running deploy resumes; the delivery is a duplicate; new ids go past the old.
        let r = pg.recover(&lease, pg.orphans_at_start()).unwrap();
        assert_eq!(r.resume.iter().map(|j| j.id).collect::<Vec<_>>(), [running]);
        let again = DeliveryRecord {
            delivery: "d1".into(),
            event: "push".into(),
            repo: Some("acme/infra".into()),
            jobs: vec![deploy_of("web", "w9")],
        };
        assert_eq!(
            pg.record_deliveries(&[again], &queued, &superseded)
                .unwrap(),
            [None]
        );
        let next = pg
            .enqueue(&[deploy_of("new", "n1")], &queued, &superseded)
            .unwrap()[0];
        assert_eq!(next, JobId(7));
        let last_status = pg.unposted_statuses(100).unwrap().last().unwrap().id;
        assert!(last_status > 8, "{last_status}");

        let e = sqlite_to_postgres(&path, &db.url).unwrap_err().to_string();
        assert!(e.contains("already holds 7 jobs"), "{e}");
    }

    /// A row at a time, 120k rows took 9 s on loopback (400k passed the 30 s any call may
    /// take, and a network round trip is ten times loopback's); in batches, under 1 s.
    #[test]
    fn a_large_installation_copies_whole() {
        const STATUSES: i64 = 50_000;
        const DELIVERIES: i64 = 50_000;
        const JOBS: i64 = 20_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(crate::queue::sqlite::Store::open(&path, crate::config::Synchronous::Full).unwrap());
        // Months of history, written straight into the file: what a busy installation holds.
        let mut c = rusqlite::Connection::open(&path).unwrap();
        let tx = c.transaction().unwrap();
        for i in 0..JOBS {
            tx.execute(
                "INSERT INTO jobs (kind, repo, stack, sha, lane, trigger, state, detail, created_at,
                   finished_at)
                 VALUES ('deploy', 'acme/infra', 'web', ?1, 'acme/infra:web', 'push', 'succeeded',
                   '{\"outputs\": {}}', ?2, ?2)",
                rusqlite::params![format!("{i:040x}"), i],
            )
            .unwrap();
        }
        for i in 0..STATUSES {
            tx.execute(
                "INSERT INTO statuses (job, repo, sha, context, state, description, target_url,
                   created_at, posted_at)
                 VALUES (?1, 'acme/infra', ?2, 'stackgate/web', 'success', 'deployed',
                   'https://sg/runs/1', ?3, ?3)",
                rusqlite::params![i % JOBS + 1, format!("{i:040x}"), i],
            )
            .unwrap();
        }
        for i in 0..DELIVERIES {
            tx.execute(
                "INSERT INTO deliveries (id, event, repo, received_at, jobs)
                 VALUES (?1, 'push', 'acme/infra', ?2, 1)",
                rusqlite::params![format!("d-{i}"), i],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        drop(c);

        let db = TestDb::new();
        let t = std::time::Instant::now();
        let copied = sqlite_to_postgres(&path, &db.url).unwrap();
        eprintln!(
            "copied {JOBS} jobs, {STATUSES} statuses and {DELIVERIES} deliveries in {:?}",
            t.elapsed()
        );
        assert_eq!(
            (copied.jobs, copied.statuses, copied.deliveries),
            (JOBS as usize, STATUSES as usize, DELIVERIES as usize)
        );
        let counted = crate::queue::postgres::testdb::query_text(
            &db.url,
            &format!(
                "SELECT (SELECT COUNT(*) FROM jobs), (SELECT COUNT(*) FROM statuses),
                        (SELECT COUNT(*) FROM deliveries), (SELECT MAX(id) FROM statuses),
                        (SELECT sha FROM statuses WHERE id = {STATUSES})"
            ),
        );
        let want = [JOBS, STATUSES, DELIVERIES, STATUSES].map(|n| Some(n.to_string()));
        assert_eq!(counted[0][..4], want);
        assert_eq!(counted[0][4], Some(format!("{:040x}", STATUSES - 1)));
        // New rows go past the copied ones.
        let pg = db.store();
        let next = pg
            .enqueue(&[deploy_of("new", "n1")], &queued, &superseded)
            .unwrap()[0];
        assert_eq!(next, JobId(JOBS + 1));
    }
}
