//! The drift scheduler: every deployed stack folder is checked once per `[drift]
//! interval_seconds`, each at its own jittered moment, with at most `concurrency` checks
//! queued or running at once. Checks on demand come from the API.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::domain::{JobState, Kind, Trigger};
use crate::pipeline::Pipeline;
use crate::queue::{NewJob, Queue, StoreError, blocking, now};

/// When this replica first saw each deployed stack folder, by (repo, folder).
type FirstSeen = HashMap<(String, String), i64>;

/// How often the scheduler looks for stacks that are due.
const ROUND: Duration = Duration::from_secs(15);

pub async fn run(app: Arc<Pipeline>) {
    let interval = app.cfg.drift.interval_seconds;
    if interval == 0 {
        return;
    }
    let mut first_seen = FirstSeen::new();
    let mut round = tokio::time::interval(ROUND);
    // More checks were due than the concurrency left room for: look again as soon as a
    // check ends, not only at the next round, or a sweep runs at `concurrency` per round.
    let mut backlog = false;
    loop {
        if backlog {
            tokio::select! {
                _ = round.tick() => {}
                _ = app.wake.drift.notified() => {}
            }
        } else {
            round.tick().await;
        }
        if app.leases.stopping() {
            return;
        }
        let repos: Vec<String> = app.cfg.repos.iter().map(|r| r.name.clone()).collect();
        let limit = app.cfg.drift.concurrency;
        let seen = std::mem::take(&mut first_seen);
        let found = blocking(&app.queue, move |q| {
            due(q, &repos, interval as i64 * 1000, limit, seen, now())
        })
        .await;
        match found {
            Ok(Due { jobs, seen, more }) => {
                first_seen = seen;
                backlog = more;
                if jobs.is_empty() {
                    continue;
                }
                tracing::info!(checks = jobs.len(), "drift checks due");
                if let Err(e) = app.enqueue(&jobs) {
                    tracing::error!(error = %e, "cannot enqueue drift checks");
                }
            }
            Err(e) => {
                backlog = false;
                tracing::warn!(error = %e, "cannot look for drift checks due");
            }
        }
    }
}

/// What one look at the ledger found.
#[derive(Debug)]
struct Due {
    /// The checks to enqueue now.
    jobs: Vec<NewJob>,
    /// When each stack was first seen.
    seen: FirstSeen,
    /// More checks are due than the concurrency left room for.
    more: bool,
}

/// The checks due now, oldest due first, within what `limit` leaves; and when each stack
/// was first seen (a stack never checked is first due within one interval of it, spread
/// by its jitter, so that a fleet does not start all at once).
fn due(
    q: &dyn Queue,
    repos: &[String],
    interval: i64,
    limit: usize,
    mut first_seen: FirstSeen,
    now: i64,
) -> Result<Due, StoreError> {
    let mut live_checks: HashSet<(String, String)> = HashSet::new();
    for state in [JobState::Queued, JobState::Running] {
        for j in q.jobs_in_state(state)? {
            if let (Kind::Drift, Some(stack)) = (j.kind, j.stack) {
                live_checks.insert((j.repo, stack));
            }
        }
    }
    let checked: HashMap<(String, String), i64> = q
        .drifts()?
        .into_iter()
        .map(|d| ((d.repo, d.stack), d.checked_at))
        .collect();
    let mut candidates = Vec::new();
    let mut still = HashMap::new();
    for repo in repos {
        for (stack, sha, removed) in q.deployed(repo)? {
            if removed {
                continue;
            }
            let key = (repo.clone(), stack.clone());
            let seen = *first_seen.entry(key.clone()).or_insert(now);
            still.insert(key.clone(), seen);
            let due_at = match checked.get(&key) {
                Some(at) => at + interval + jitter(&key, interval / 10),
                None => seen + jitter(&key, interval),
            };
            if due_at <= now && !live_checks.contains(&key) {
                candidates.push((due_at, repo.clone(), stack, sha));
            }
        }
    }
    candidates.sort();
    let room = limit.saturating_sub(live_checks.len());
    let more = candidates.len() > room;
    let jobs = candidates
        .into_iter()
        .take(room)
        .map(|(_, repo, stack, sha)| NewJob {
            kind: Kind::Drift,
            repo,
            stack: Some(stack),
            sha,
            pr: None,
            fork: false,
            trigger: Trigger::Schedule,
        })
        .collect();
    Ok(Due {
        jobs,
        seen: still,
        more,
    })
}

/// A stack's own offset in `[0, span)`: stable across rounds and replicas.
fn jitter((repo, stack): &(String, String), span: i64) -> i64 {
    use sha2::{Digest, Sha256};
    if span <= 0 {
        return 0;
    }
    let h = Sha256::digest(format!("{repo}\n{stack}").as_bytes());
    let n = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
    (n % span as u64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DriftState;
    use crate::queue::conformance::{Harness, SqliteHarness, lease, none, superseded};
    use crate::queue::{DriftRow, LedgerEntry};

    const HOUR: i64 = 3_600_000;

    fn deployed(q: &dyn Queue, stack: &str) {
        let j = NewJob {
            kind: Kind::Deploy,
            repo: "acme/infra".into(),
            stack: Some(stack.into()),
            sha: "a".into(),
            pr: None,
            fork: false,
            trigger: Trigger::Push,
        };
        q.enqueue(&[j], &none, &superseded).unwrap();
        let job = q.claim(&lease(), 1).unwrap().remove(0);
        q.finish(
            job.claim(),
            JobState::Succeeded,
            &serde_json::json!({}),
            &[],
            Some(LedgerEntry {
                repo: "acme/infra",
                stack,
                sha: "a",
                removed: false,
                identity: None,
            }),
        )
        .unwrap();
    }

    fn stacks(jobs: &[NewJob]) -> Vec<&str> {
        jobs.iter().filter_map(|j| j.stack.as_deref()).collect()
    }

    #[test]
    fn stacks_are_checked_once_per_interval_within_the_concurrency() {
        let h = SqliteHarness::new();
        let q = h.open();
        for s in ["a", "b", "c"] {
            deployed(&*q, s);
        }
        let repos = ["acme/infra".to_string()];
        let t0 = 1_000 * HOUR;
        // Never checked: each is first due within one interval of being seen.
        let Due {
            jobs: now_due,
            seen,
            ..
        } = due(&*q, &repos, HOUR, 2, HashMap::new(), t0).unwrap();
        assert!(now_due.len() <= 2);
        let Due {
            jobs: later, seen, ..
        } = due(&*q, &repos, HOUR, 2, seen, t0 + HOUR).unwrap();
        assert_eq!(later.len(), 2, "two at a time: {:?}", stacks(&later));
        assert!(
            later
                .iter()
                .all(|j| j.kind == Kind::Drift && j.trigger == Trigger::Schedule && j.sha == "a")
        );

        // Checked just now: not due again until its interval (and jitter) passed.
        let ids = q.enqueue(&later, &none, &superseded).unwrap();
        for (job, id) in q.claim(&lease(), 4).unwrap().into_iter().zip(ids) {
            q.record_drift(
                job.claim(),
                &DriftRow {
                    repo: job.repo.clone(),
                    stack: job.stack.clone().unwrap(),
                    sha: "a".into(),
                    job: id,
                    state: DriftState::InSync,
                    drifted: 0,
                    live_findings: 0,
                    checked_at: t0 + HOUR,
                },
            )
            .unwrap();
            q.finish(
                job.claim(),
                JobState::Succeeded,
                &serde_json::json!({}),
                &[],
                None,
            )
            .unwrap();
        }
        let Due {
            jobs: next, seen, ..
        } = due(&*q, &repos, HOUR, 2, seen, t0 + HOUR + 1).unwrap();
        let checked = stacks(&later);
        assert!(
            next.iter()
                .all(|j| !checked.contains(&j.stack.as_deref().unwrap())),
            "{:?}",
            stacks(&next)
        );
        let Due { jobs: again, .. } =
            due(&*q, &repos, HOUR, 3, seen, t0 + 2 * HOUR + HOUR / 10).unwrap();
        assert_eq!(stacks(&again).len(), 3);
    }

    #[test]
    fn a_stack_with_a_check_queued_is_not_asked_twice() {
        let h = SqliteHarness::new();
        let q = h.open();
        deployed(&*q, "a");
        let repos = ["acme/infra".to_string()];
        let t = 1_000 * HOUR;
        let Due { seen, .. } = due(&*q, &repos, HOUR, 4, HashMap::new(), t).unwrap();
        let Due { jobs, seen, .. } = due(&*q, &repos, HOUR, 4, seen, t + HOUR).unwrap();
        assert_eq!(jobs.len(), 1);
        q.enqueue(&jobs, &none, &superseded).unwrap();
        let Due { jobs, .. } = due(&*q, &repos, HOUR, 4, seen, t + 2 * HOUR).unwrap();
        assert!(jobs.is_empty(), "{jobs:?}");
    }

    #[test]
    fn a_backlog_is_said_so_that_the_next_look_comes_when_a_check_ends() {
        let h = SqliteHarness::new();
        let q = h.open();
        for s in ["a", "b", "c"] {
            deployed(&*q, s);
        }
        let repos = ["acme/infra".to_string()];
        let t = 1_000 * HOUR;
        let Due { seen, .. } = due(&*q, &repos, HOUR, 2, HashMap::new(), t).unwrap();
        // All three due, room for two: a backlog.
        let d = due(&*q, &repos, HOUR, 2, seen, t + HOUR).unwrap();
        assert_eq!(d.jobs.len(), 2);
        assert!(d.more);
        q.enqueue(&d.jobs, &none, &superseded).unwrap();
        // Both slots taken: nothing to enqueue, still a backlog.
        let d = due(&*q, &repos, HOUR, 2, d.seen, t + HOUR).unwrap();
        assert!(d.jobs.is_empty() && d.more, "{d:?}");
        // Room for all that are due: none.
        let d = due(&*q, &repos, HOUR, 4, d.seen, t + HOUR).unwrap();
        assert_eq!(stacks(&d.jobs).len(), 1);
        assert!(!d.more);
    }

    #[test]
    fn jitter_is_stable_and_within_its_span() {
        let k = ("acme/infra".to_string(), "web".to_string());
        assert_eq!(jitter(&k, 1000), jitter(&k, 1000));
        assert!((0..1000).contains(&jitter(&k, 1000)));
        assert_eq!(jitter(&k, 0), 0);
    }
}
