//! workers: the background loops. The dispatcher runs claimed jobs, the heartbeat renews
//! their leases, the takeover loop resumes jobs whose worker is gone, the pollers watch
//! branch heads, the pruner forgets old history, expiry ends held change sets nobody decided on. (The outbox poster is `report::outbox`.)

pub mod dispatcher;
pub mod drift;
pub mod expiry;
pub mod heartbeat;
pub mod poller;
pub mod pruner;
pub mod takeover;

use std::time::Duration;

/// How long a loop lets a burst of wake-ups gather.
pub const GATHER: Duration = Duration::from_millis(10);
