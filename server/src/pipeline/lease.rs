//! This replica's leases as its running jobs see them. The queue holds a lease until a
//! time on the database's clock; here each job's [`LeaseGuard`] knows until when (on this
//! process's monotonic clock) the lease is *surely* held: from the moment the claim or the
//! last renewal that included it was asked, plus the lease's length. Before every AWS
//! write the pipeline asks it, with a margin, and sends nothing once it may have lapsed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cloud::guard::{Guard, LeaseLapsed, WriteGuard};
use crate::domain::JobId;
use crate::queue::lease::{Claim, Lease};

/// One running job's lease, shared by its worker and the heartbeat.
#[derive(Debug)]
pub struct LeaseGuard {
    claim: Claim,
    /// When the claim came back and was recorded here: a renewal asked before that did not
    /// name it, so its silence says nothing.
    known: Instant,
    /// Until when the lease is surely held; `None` once another replica holds it.
    until: Mutex<Option<Instant>>,
    margin: Duration,
}

impl LeaseGuard {
    fn new(claim: Claim, asked: Instant, length: Duration, margin: Duration) -> Self {
        Self {
            claim,
            known: Instant::now(),
            until: Mutex::new(asked.checked_add(length)),
            margin,
        }
    }

    pub fn claim(&self) -> Claim {
        self.claim
    }

    /// Whether the lease is surely held `margin` from now.
    pub fn held(&self) -> bool {
        let until = *self.until.lock().unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|u| Instant::now() + self.margin < u)
    }

    fn extend(&self, until: Instant) {
        let mut u = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(now) = *u {
            *u = Some(now.max(until));
        }
    }

    /// Another replica holds the job now (or this one stops): no more AWS writes.
    pub fn revoke(&self) {
        *self.until.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl WriteGuard for LeaseGuard {
    fn check(&self, call: &'static str) -> Result<(), LeaseLapsed> {
        if self.held() {
            Ok(())
        } else {
            tracing::warn!(
                job = self.claim.job.0,
                fence = self.claim.fence,
                call,
                "lease may have lapsed; not sent"
            );
            Err(LeaseLapsed { call })
        }
    }

    fn token(&self) -> Option<String> {
        Some(token(self.claim))
    }
}

/// The idempotency token of a claim's AWS requests: `stackgate-<job>-<fence>`, within
/// CloudFormation's `[a-zA-Z][-a-zA-Z0-9]*` and 128 characters.
pub fn token(claim: Claim) -> String {
    format!("stackgate-{}-{}", claim.job.0, claim.fence)
}

/// The leases this replica holds, by job.
#[derive(Debug)]
pub struct Leases {
    pub lease: Lease,
    margin: Duration,
    held: Mutex<HashMap<JobId, Arc<LeaseGuard>>>,
    /// Set by a clean stop: nothing more is claimed or taken over here.
    stopping: AtomicBool,
}

impl Leases {
    /// The margin is a fifth of the lease (2 s of the default 10 s): renewals come every
    /// third, so a healthy lease is always two thirds ahead, and a write sent just inside
    /// the margin still reaches AWS before another replica may take over.
    pub fn new(lease: Lease) -> Self {
        let margin = lease.length / 5;
        Self {
            lease,
            margin,
            held: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
        }
    }

    /// Whether this replica is stopping: it takes no more jobs.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Records a claim (or takeover) asked at `asked`; its guard.
    pub fn hold(&self, claim: Claim, asked: Instant) -> Arc<LeaseGuard> {
        let g = Arc::new(LeaseGuard::new(
            claim,
            asked,
            self.lease.length,
            self.margin,
        ));
        self.map().insert(claim.job, g.clone());
        g
    }

    /// The guard of a job's AWS writes under `claim`: one that refuses every write when
    /// this replica does not know the claim.
    pub fn guard(&self, claim: Claim) -> Guard {
        let g = match self.map().get(&claim.job) {
            Some(g) if g.claim == claim => g.clone(),
            _ => {
                let g = LeaseGuard::new(claim, Instant::now(), Duration::ZERO, self.margin);
                g.revoke();
                Arc::new(g)
            }
        };
        Guard::new(g)
    }

    /// The claims of the jobs whose workers run here: what the heartbeat renews.
    pub fn claims(&self) -> Vec<Claim> {
        self.map().values().map(|g| g.claim).collect()
    }

    /// The job under `claim` ended (or stopped) here.
    pub fn end(&self, claim: Claim) {
        let mut m = self.map();
        if m.get(&claim.job).is_some_and(|g| g.claim == claim) {
            m.remove(&claim.job);
        }
    }

    /// A renewal asked at `asked` came back: the claims in `held` hold until
    /// `asked + lease`; those it does not name, and that it knew of, are lost.
    pub fn renewed(&self, asked: Instant, held: &[Claim]) {
        let until = asked + self.lease.length;
        for g in self.map().values() {
            if held.contains(&g.claim) {
                g.extend(until);
            } else if g.known < asked {
                tracing::warn!(
                    job = g.claim.job.0,
                    fence = g.claim.fence,
                    "lease lost: another replica holds the job"
                );
                g.revoke();
            }
        }
    }

    /// A clean stop: no more claims or takeovers here, and no more AWS writes by the jobs
    /// still running; their leases go back to the queue next.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for g in self.map().values() {
            g.revoke();
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Arc<LeaseGuard>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::lease::Replica;

    fn leases(ms: u64) -> Leases {
        Leases::new(Lease {
            owner: Replica::named("r1"),
            length: Duration::from_millis(ms),
        })
    }

    fn claim(job: i64, fence: i64) -> Claim {
        Claim {
            job: JobId(job),
            fence,
        }
    }

    #[test]
    fn a_guard_refuses_writes_once_the_lease_may_have_lapsed() {
        let l = leases(10_000);
        let g = l.guard(claim(1, 1));
        assert!(
            g.check("CreateChangeSet").is_err(),
            "an unknown claim writes nothing"
        );
        l.hold(claim(1, 1), Instant::now());
        let g = l.guard(claim(1, 1));
        assert!(g.check("CreateChangeSet").is_ok());
        assert_eq!(g.token().as_deref(), Some("stackgate-1-1"));
        // Within CloudFormation's pattern and length for any job and fence.
        let longest = token(claim(i64::MAX, i64::MAX));
        assert!(crate::cloud::guard::valid_token(&longest), "{longest}");
        assert!(!crate::cloud::guard::valid_token("1-starts-with-a-digit"));
        assert!(
            l.guard(claim(1, 2)).check("x").is_err(),
            "another fence is another claim"
        );
        // Asked long ago: the lease, less the margin, is over.
        l.hold(claim(2, 1), Instant::now() - Duration::from_millis(8_500));
        let e = l.guard(claim(2, 1)).check("ExecuteChangeSet").unwrap_err();
        assert_eq!(e.call, "ExecuteChangeSet");
    }

    #[test]
    fn a_renewal_extends_what_it_names_and_revokes_what_it_knew_of() {
        let l = leases(10_000);
        let old = Instant::now() - Duration::from_millis(9_000);
        l.hold(claim(1, 1), old);
        l.hold(claim(2, 1), old);
        let asked = Instant::now();
        // Claimed after the renewal was asked: the renewal cannot have known of it.
        l.hold(claim(3, 1), Instant::now());
        l.renewed(asked, &[claim(1, 1)]);
        assert!(l.guard(claim(1, 1)).check("x").is_ok(), "renewed");
        assert!(l.guard(claim(2, 1)).check("x").is_err(), "taken over");
        assert!(l.guard(claim(3, 1)).check("x").is_ok(), "too new to judge");
        // Asked before the renewal, but back (committed) after it: the renewal could not
        // see it, so it says nothing of it.
        let claim_asked = Instant::now() - Duration::from_millis(20);
        let renewal_asked = Instant::now() - Duration::from_millis(10);
        l.hold(claim(4, 1), claim_asked);
        l.renewed(renewal_asked, &[claim(1, 1)]);
        assert!(
            l.guard(claim(4, 1)).check("x").is_ok(),
            "a claim that came back after the renewal was asked is not lost"
        );
        // A revoked guard stays revoked, even if a later renewal names its claim.
        l.renewed(Instant::now(), &[claim(2, 1)]);
        assert!(l.guard(claim(2, 1)).check("x").is_err());
        l.stop();
        assert!(l.guard(claim(1, 1)).check("x").is_err());
        assert!(l.stopping());
    }
}
