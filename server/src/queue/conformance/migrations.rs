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
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert_eq!(versions[0][0].as_deref(), Some("1"));
}

pub fn a_database_newer_than_this_binary_refuses_to_open(h: &dyn Harness) {
    drop(h.open());
    h.exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'from the future', 0)");
    let e = h
        .try_open()
        .err()
        .expect("a newer database is refused")
        .to_string();
    for part in ["schema version 99", "versions up to 1", "newer stackgate"] {
        assert!(e.contains(part), "{part}: {e}");
    }
}
