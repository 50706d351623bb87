//! The queue's conformance suite: what every backend must do, one file per role, each
//! check a `pub fn(&dyn Harness)`. `suite!` makes a `#[test]` of every check for each
//! backend (`mod sqlite`, `mod postgres`); a new role file is one line in it. `replicas`
//! holds the checks that need two stores on one database (PostgreSQL only).

pub mod console;
pub mod deliveries;
pub mod drifts;
pub mod history;
pub mod holds;
pub mod jobs;
pub mod leases;
pub mod ledger;
pub mod migrations;
pub mod outbox;
pub mod replicas;

use std::sync::Arc;

use crate::config::Synchronous;
use crate::domain::{Context, JobId, Kind, StatusState, Trigger};
use crate::queue::{Job, NewJob, Queue, StatusUpdate, StoreError};

/// One test's backend: its data, and ways to reach it beside the traits.
pub trait Harness: Sync {
    /// A store on this test's data, opened anew at each call: a restart, or another
    /// replica on the same database.
    fn try_open(&self) -> Result<Arc<dyn Queue>, StoreError>;

    fn open(&self) -> Arc<dyn Queue> {
        self.try_open().unwrap()
    }

    /// Runs SQL both backends understand on this test's data: aging rows, or writing what
    /// another version of stackgate would.
    fn exec(&self, sql: &str);

    /// The rows of `sql`, every column text (`CAST(… AS TEXT)` what is not).
    fn query(&self, sql: &str) -> Vec<Vec<Option<String>>>;
}

pub struct SqliteHarness {
    dir: tempfile::TempDir,
}

// `new` makes a folder, `PostgresHarness::new` a database: neither is a default value.
#[allow(clippy::new_without_default)]
impl SqliteHarness {
    pub fn new() -> Self {
        SqliteHarness {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("s.db")
    }
}

impl Harness for SqliteHarness {
    fn try_open(&self) -> Result<Arc<dyn Queue>, StoreError> {
        Ok(Arc::new(crate::queue::sqlite::Store::open(
            &self.path(),
            Synchronous::Full,
        )?))
    }
    fn exec(&self, sql: &str) {
        let c = rusqlite::Connection::open(self.path()).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        c.execute_batch(sql).unwrap();
    }
    fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let c = rusqlite::Connection::open(self.path()).unwrap();
        let mut stmt = c.prepare(sql).unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

pub struct PostgresHarness {
    pub db: crate::queue::postgres::testdb::TestDb,
}

#[allow(clippy::new_without_default)]
impl PostgresHarness {
    pub fn new() -> Self {
        PostgresHarness {
            db: crate::queue::postgres::testdb::TestDb::new(),
        }
    }
}

impl Harness for PostgresHarness {
    fn try_open(&self) -> Result<Arc<dyn Queue>, StoreError> {
        Ok(Arc::new(crate::queue::postgres::Store::open(&self.db.url)?))
    }
    fn exec(&self, sql: &str) {
        crate::queue::postgres::testdb::admin(&self.db.url, sql);
    }
    fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        crate::queue::postgres::testdb::query_text(&self.db.url, sql)
    }
}

/// The lease of a new replica at each call: a claim and a later recovery are two processes.
pub fn lease() -> crate::queue::lease::Lease {
    crate::queue::lease::Lease {
        owner: crate::queue::lease::Replica::new(),
        length: std::time::Duration::from_secs(60),
    }
}

/// The claim that holds a job now.
pub fn held(q: &dyn Queue, id: JobId) -> crate::queue::lease::Claim {
    q.job(id).unwrap().unwrap().claim()
}

/// The one text value of a query.
pub fn one(h: &dyn Harness, sql: &str) -> Option<String> {
    h.query(sql).remove(0).remove(0)
}

// Shared helpers of the checks.

pub fn none(_: &NewJob, _: JobId) -> Vec<StatusUpdate> {
    Vec::new()
}

pub fn queued(j: &NewJob, _: JobId) -> Vec<StatusUpdate> {
    vec![StatusUpdate {
        repo: j.repo.clone(),
        sha: j.sha.clone(),
        context: Context::Policy,
        state: StatusState::Pending,
        description: "queued".into(),
        target_url: String::new(),
    }]
}

pub fn superseded(old: &Job, new: &NewJob) -> Vec<StatusUpdate> {
    vec![StatusUpdate {
        repo: old.repo.clone(),
        sha: old.sha.clone(),
        context: Context::Policy,
        state: StatusState::Error,
        description: format!("superseded by {}", new.sha),
        target_url: String::new(),
    }]
}

pub fn deploy(sha: &str) -> NewJob {
    NewJob {
        kind: Kind::Deploy,
        repo: "acme/infra".into(),
        stack: Some("web".into()),
        sha: sha.into(),
        trigger: Trigger::Push,
        pr: None,
        fork: false,
    }
}

pub fn deploy_of(stack: &str, sha: &str) -> NewJob {
    NewJob {
        stack: Some(stack.into()),
        ..deploy(sha)
    }
}

pub fn preview(sha: &str) -> NewJob {
    NewJob {
        kind: Kind::Preview,
        repo: "acme/infra".into(),
        sha: sha.into(),
        pr: Some(7),
        fork: true,
        trigger: Trigger::PullRequest,
        stack: None,
    }
}

/// A job's state and stored detail as an operator reads them with SQL: the row may not be
/// readable as a `Job`.
pub fn raw_state(h: &dyn Harness, id: JobId) -> (String, String) {
    let mut row = h
        .query(&format!(
            "SELECT state, CAST(detail AS TEXT) FROM jobs WHERE id = {}",
            id.0
        ))
        .remove(0);
    (row.remove(0).unwrap(), row.remove(0).unwrap())
}

/// A `#[test]` for each check of each role, on the harness `$harness` makes.
macro_rules! checks {
    ($harness:expr; $($role:ident: [$($check:ident),+ $(,)?]);+ $(;)?) => {
        $(
            mod $role {
                $(
                    #[test]
                    fn $check() {
                        let h = $harness;
                        crate::queue::conformance::$role::$check(&h);
                    }
                )+
            }
        )+
    };
}

/// Every role's checks; a new role file is one line here.
macro_rules! suite {
    ($harness:expr) => {
        checks! { $harness;
            deliveries: [
                a_delivery_is_recorded_once_even_within_one_batch,
                the_newest_job_of_a_batch_supersedes_the_rest_and_queued_ones,
                a_bad_queued_job_does_not_fail_the_enqueue_of_its_lane_or_batch,
            ];
            jobs: [
                a_job_for_the_commit_already_queued_is_that_job,
                a_manual_redeploy_is_its_own_job_and_requeued_jobs_are_superseded,
                a_burst_of_pushes_runs_one_sync,
                one_job_per_lane_and_newer_commits_supersede_queued_ones,
                a_job_that_takes_the_process_down_twice_is_not_run_again,
                pending_deploys_are_each_stacks_newest_live_job,
                a_running_deploy_survives_a_restart,
                a_stored_job_of_an_unknown_kind_is_an_error_not_a_sync,
                a_bad_running_job_ends_in_error_and_the_others_resume,
            ];
            outbox: [
                a_bad_status_is_given_up_on_and_the_rest_posts,
                a_comment_goes_after_the_statuses_before_it_and_remembers_its_id,
                a_failed_comment_is_noted_on_its_job_until_posted,
                check_runs_are_written_in_order_and_keep_the_id_github_gave,
                a_job_that_stops_ends_the_check_runs_it_started_once,
                a_preview_superseded_while_queued_again_ends_the_check_runs_it_started,
                a_job_s_end_ends_the_check_runs_it_started_and_did_not_end,
            ];
            ledger: [a_finished_deploy_writes_the_ledger_and_keeps_identities];
            drifts: [
                a_check_replaces_the_last_and_hands_it_back,
                a_check_whose_lease_is_lost_records_nothing,
            ];
            holds: [
                a_held_job_frees_its_lane_and_an_approval_queues_it_once,
                a_newer_deploy_makes_a_hold_undecidable_and_closes_it,
                an_approved_hold_superseded_before_it_runs_is_still_closed,
                a_held_job_is_kept_by_the_pruner,
            ];
            console: [the_console_reads_each_lanes_newest_job_runs_and_previews];
            history: [old_history_is_forgotten_but_live_work_and_each_lanes_last_run_stay];
            migrations: [
                opening_again_applies_no_migration_twice,
                a_database_newer_than_this_binary_refuses_to_open,
                a_database_at_version_1_gains_leases_and_its_running_job_is_taken_over,
            ];
            leases: [
                a_claim_sets_owner_expiry_and_fence,
                a_takeover_and_the_next_claim_grow_the_fence,
                a_write_under_an_old_fence_changes_nothing_and_says_lease_lost,
                a_renewal_extends_only_its_owners_leases,
                a_takeover_takes_only_expired_leases,
                a_renewal_renews_only_the_claims_it_names,
                a_clean_stop_hands_its_leases_back,
            ];
        }
    };
}

mod sqlite {
    suite!(crate::queue::conformance::SqliteHarness::new());
}

mod postgres {
    suite!(crate::queue::conformance::PostgresHarness::new());

    checks! { crate::queue::conformance::PostgresHarness::new();
        replicas: [
            two_stores_claiming_at_once_never_run_two_jobs_of_a_lane,
            the_same_delivery_through_two_stores_makes_one_job,
            two_enqueues_at_once_supersede_as_one_process_would,
            two_stores_opening_a_new_database_at_once_migrate_once,
            one_store_posts_at_a_time,
            two_stores_taking_over_at_once_never_take_the_same_job,
            a_store_whose_lease_was_taken_over_gets_lease_lost_and_writes_nothing,
            a_renewal_by_one_store_never_extends_anothers_lease,
            a_starting_replica_takes_over_only_expired_leases,
        ];
    }
}
