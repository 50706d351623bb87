//! Versioned migrations, the same rule for every backend: a `schema_migrations (version,
//! name, applied_at)` table, each version applied once under the backend's lock, and a
//! database newer than this binary refused.

use super::StoreError;

/// One step of a backend's schema.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// A database some newer stackgate migrated: this one would misread it.
#[derive(Debug, thiserror::Error)]
#[error(
    "the state database is at schema version {found}, but this stackgate knows versions up to {known}: a newer stackgate wrote it; run that version (or newer), or point [state] at another database"
)]
pub struct NewerSchema {
    pub found: i64,
    pub known: i64,
}

/// Refuses a database at a version past the last of `known`.
pub fn newer_than_known(found: i64, known: &[Migration]) -> Result<(), StoreError> {
    let last = known.last().map_or(0, |m| m.version);
    if found > last {
        return Err(StoreError::Backend(Box::new(NewerSchema {
            found,
            known: last,
        })));
    }
    Ok(())
}
