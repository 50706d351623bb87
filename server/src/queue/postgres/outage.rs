//! A database that goes away and comes back, on a private cluster of this test's own
//! (`STACKGATE_TEST_PG_OUTAGE_PORT`, else 5496): calls fail fast while it is down, and the
//! same store works again once it is back, with nothing lost.

use std::path::Path;
use std::time::Instant;

use super::{POOL_TIMEOUT, Store};
use crate::domain::{JobId, JobState, Kind, Trigger};
use crate::queue::{Deliveries, DeliveryRecord, Jobs, NewJob, StatusUpdate};

fn cluster(cmd: &str, port: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/postgres.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .args([cmd, port])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "postgres.sh {cmd} {port}");
}

fn none(_: &NewJob, _: JobId) -> Vec<StatusUpdate> {
    Vec::new()
}

fn push(delivery: &str, sha: &str) -> DeliveryRecord {
    DeliveryRecord {
        delivery: delivery.into(),
        event: "push".into(),
        repo: Some("acme/infra".into()),
        jobs: vec![NewJob {
            kind: Kind::Deploy,
            repo: "acme/infra".into(),
            stack: Some(format!("s-{sha}")),
            sha: sha.into(),
            pr: None,
            fork: false,
            trigger: Trigger::Push,
        }],
    }
}

#[test]
fn calls_fail_fast_while_the_database_is_down_and_the_same_store_works_once_it_is_back() {
    let port = std::env::var("STACKGATE_TEST_PG_OUTAGE_PORT").unwrap_or_else(|_| "5496".into());
    cluster("start", &port);
    let s = Store::open(&format!("postgres://postgres@127.0.0.1:{port}/postgres")).unwrap();
    let before = s
        .record_deliveries(&[push("d1", "a")], &none, &|_, _| Vec::new())
        .unwrap();
    assert!(before[0].is_some());

    cluster("pause", &port);
    let t = Instant::now();
    let lease = crate::queue::lease::Lease {
        owner: crate::queue::lease::Replica::new(),
        length: std::time::Duration::from_secs(60),
    };
    let claim = s.claim(&lease, 4);
    let record = s.record_deliveries(&[push("d2", "b")], &none, &|_, _| Vec::new());
    let took = t.elapsed();
    eprintln!("two calls against a stopped database failed in {took:?}");
    assert!(claim.is_err() && record.is_err(), "{claim:?} {record:?}");
    // Said to be the database away, not a refused query: a job's worker waits for it.
    assert!(
        matches!(record, Err(crate::queue::StoreError::Unavailable(_))),
        "{record:?}"
    );
    assert!(took < POOL_TIMEOUT * 2 + POOL_TIMEOUT, "{took:?}");
    let e = record.unwrap_err().to_string();
    assert!(e.contains("PostgreSQL"), "{e}");

    cluster("resume", &port);
    // The pool makes new connections by itself; the delivery GitHub redelivers is new.
    let again = s
        .record_deliveries(&[push("d2", "b"), push("d1", "a")], &none, &|_, _| {
            Vec::new()
        })
        .unwrap();
    assert!(again[0].is_some(), "d2 was never recorded: {again:?}");
    assert!(again[1].is_none(), "d1 was kept: {again:?}");
    let claimed: Vec<String> = s
        .claim(&lease, 4)
        .unwrap()
        .into_iter()
        .map(|j| j.sha)
        .collect();
    assert_eq!(claimed, ["a", "b"]);
    assert_eq!(s.jobs_in_state(JobState::Running).unwrap().len(), 2);
    // A query the server refuses is not an outage: a job's worker ends in error.
    let refused = s.run(async {
        let c = s.pool.get().await?;
        c.execute("SELECT no_such_column FROM jobs", &[]).await?;
        Ok(())
    });
    assert!(
        matches!(refused, Err(crate::queue::StoreError::Backend(_))),
        "{refused:?}"
    );
    drop(s);
    cluster("stop", &port);
}
