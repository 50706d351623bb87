//! Versioned migrations: each applied once, and a newer database refused.

use crate::queue::conformance::*;

pub fn opening_again_applies_no_migration_twice(h: &dyn Harness) {
    let s = h.open();
    s.enqueue(&[deploy("a")], &none, &superseded).unwrap();
    drop(s);
    let s = h.open();
    assert_eq!(
        s.jobs_in_state(crate::domain::JobState::Queued)
            .unwrap()
            .len(),
        1
    );
    let versions =
        h.query("SELECT CAST(version AS TEXT), name FROM schema_migrations ORDER BY version");
    assert_eq!(
        versions.iter().map(|v| v[0].as_deref()).collect::<Vec<_>>(),
        [Some("1"), Some("2"), Some("3"), Some("4")],
        "{versions:?}"
    );
}

/// A database a version-1 stackgate left with a job running (no lease columns then) opens:
/// versions 2 to 4 add them, the drift and check run tables, and the job is an orphan any
/// replica takes over.
pub fn a_database_at_version_1_gains_leases_and_its_running_job_is_taken_over(h: &dyn Harness) {
    drop(h.open());
    // Back to what version 1 wrote.
    h.exec(
        "DELETE FROM schema_migrations WHERE version >= 2;
         DROP TABLE drift;
         DROP TABLE check_runs;
         DROP TABLE check_run_ids;
         DROP INDEX jobs_lane_id;
         ALTER TABLE jobs DROP COLUMN owner;
         ALTER TABLE jobs DROP COLUMN lease_until;
         ALTER TABLE jobs DROP COLUMN fence;
         INSERT INTO jobs (kind, repo, stack, sha, lane, trigger, state, phase, change_set_id,
                           created_at, started_at, attempts)
           VALUES ('deploy', 'acme/infra', 'web', 'r1', 'acme/infra#stack:web', 'push', 'running',
                   'executing', 'cs-1', 1, 2, 1);",
    );
    let s = h.open();
    assert_eq!(
        one(
            h,
            "SELECT CAST(MAX(version) AS TEXT) FROM schema_migrations"
        )
        .as_deref(),
        Some("4")
    );
    let lease = crate::queue::lease::Lease {
        owner: crate::queue::lease::Replica::named("r1"),
        length: std::time::Duration::from_secs(60),
    };
    let taken = s
        .take_over(&lease, crate::queue::lease::Orphans::Expired)
        .unwrap();
    assert_eq!(taken.len(), 1, "{taken:?}");
    let j = &taken[0];
    assert_eq!(
        (
            j.sha.as_str(),
            j.change_set_id.as_deref(),
            j.owner.as_deref()
        ),
        ("r1", Some("cs-1"), Some("r1"))
    );
    assert!(j.fence >= 1, "{j:?}");
}

pub fn a_database_newer_than_this_binary_refuses_to_open(h: &dyn Harness) {
    drop(h.open());
    h.exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'from the future', 0)");
    let e = h
        .try_open()
        .err()
        .expect("a newer database is refused")
        .to_string();
    for part in ["schema version 99", "versions up to 4", "newer stackgate"] {
        assert!(e.contains(part), "{part}: {e}");
    }
}
