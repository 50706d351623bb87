//! The middle test layer: stackgate built in-process (no socket, no GitHub, no AWS but the
//! emulator for the pipeline tests), driven through its router or its pipeline, and
//! snapshots of what users read. One test binary, so one link.

mod console;
mod harness;
mod leases;
mod openapi;
mod router;
mod snapshots;
