//! The middle test layer: stackgate built in-process (no socket, no GitHub, no AWS), driven
//! through its router, and snapshots of what users read. One test binary, so one link.

mod harness;
mod router;
mod snapshots;
