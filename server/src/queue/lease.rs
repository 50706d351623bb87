//! Leases: a running job is held by one replica (its owner) until `lease_until`, under a
//! fencing token that grows on every claim and takeover. Every write a worker makes to its
//! job names its [`Claim`], and changes nothing once the fence is no longer the job's.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use serde::Serialize;

use crate::domain::JobId;

/// What a worker holds on a running job: its id and the fencing token of its claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Claim {
    pub job: JobId,
    pub fence: i64,
}

impl std::fmt::Display for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "job {} (fence {})", self.job.0, self.fence)
    }
}

/// A replica's name on its leases: host, pid and a random part, made once at start, so
/// that a restarted process (same host, maybe the same pid) is another owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Replica(String);

impl Replica {
    /// This process's name: `<host>-<pid>-<random>`.
    pub fn new() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default();
        // Bounded and plain: the name goes into logs and the state database.
        let host: String = host
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
            .take(64)
            .collect();
        let host = if host.is_empty() { "host".into() } else { host };
        // std's hasher keys are random per process: a random part without another crate.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        Replica(format!(
            "{host}-{}-{:08x}",
            std::process::id(),
            h.finish() as u32
        ))
    }

    /// A replica by name (tests, and a name read back from the database).
    pub fn named(name: impl Into<String>) -> Self {
        Replica(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Replica {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The leases a replica takes: whose, and for how long each claim or renewal holds.
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: Replica,
    pub length: Duration,
}

impl Lease {
    /// The length in milliseconds, as the database counts time.
    pub fn millis(&self) -> i64 {
        i64::try_from(self.length.as_millis()).unwrap_or(i64::MAX / 2)
    }
}

/// Which running jobs [`crate::queue::Jobs::take_over`] takes from other owners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orphans {
    /// Those whose lease expired: another replica may still be alive.
    Expired,
    /// Every one not this replica's, expired or not: at start-up, when this process alone
    /// owns the state (SQLite), whatever ran before it is dead.
    All,
}
