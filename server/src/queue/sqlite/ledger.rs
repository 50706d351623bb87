//! The deployed ledger: each folder's last deployed sha and the stack it deployed.

use rusqlite::{OptionalExtension, params};

use super::Store;
use crate::domain::StackIdentity;
use crate::queue::{Ledger, LedgerRow, StoreError, now};

impl Ledger for Store {
    /// The last deployed sha of each stack of a repo, and whether it was a removal.
    fn deployed(&self, repo: &str) -> Result<Vec<(String, String, bool)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT stack, sha, removed FROM deployed WHERE repo = ?1 ORDER BY stack",
            )?;
            stmt.query_map([repo], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0))
            })?
            .collect()
        })
    }

    /// Marks a folder's stack as no longer its own (it moved to another folder) without
    /// any AWS call.
    fn retire(&self, repo: &str, stack: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE deployed SET removed = 1, at = ?3 WHERE repo = ?1 AND stack = ?2",
                params![repo, stack, now()],
            )
        })?;
        Ok(())
    }

    /// What the ledger remembers of one stack folder's last deploy.
    fn ledger_row(&self, repo: &str, stack: &str) -> Result<Option<LedgerRow>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT sha, removed, stack_name, region, account FROM deployed WHERE repo = ?1 AND stack = ?2",
                params![repo, stack],
                |r| {
                    let (name, region, account): (Option<String>, Option<String>, Option<String>) =
                        (r.get(2)?, r.get(3)?, r.get(4)?);
                    Ok(LedgerRow {
                        sha: r.get(0)?,
                        removed: r.get::<_, i64>(1)? != 0,
                        identity: match (name, region, account) {
                            (Some(name), Some(region), Some(account)) => Some(StackIdentity {
                                account,
                                region,
                                name,
                            }),
                            _ => None,
                        },
                    })
                },
            )
            .optional()
        })
    }

    /// The (repo, stack folder, sha) of every live row from before the ledger kept
    /// identities: `App::ledger` reads them from their commit.
    fn live_unidentified(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT repo, stack, sha FROM deployed
                 WHERE removed = 0 AND (stack_name IS NULL OR region IS NULL OR account IS NULL)
                 ORDER BY repo, stack",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
    }

    /// Fills in the identity of a row from before the ledger kept identities.
    fn fill_identity(&self, repo: &str, stack: &str, id: &StackIdentity) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE deployed SET stack_name = ?3, region = ?4, account = ?5
                 WHERE repo = ?1 AND stack = ?2 AND stack_name IS NULL",
                params![repo, stack, id.name, id.region, id.account],
            )
        })?;
        Ok(())
    }

    /// The (repo, stack folder) of every live stack of the ledger, by its identity. Rows
    /// from before the ledger kept identities are not in it until `fill_identity`.
    fn live_identities(&self) -> Result<Vec<(StackIdentity, String, String)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT account, region, stack_name, repo, stack FROM deployed
                 WHERE removed = 0 AND stack_name IS NOT NULL AND region IS NOT NULL AND account IS NOT NULL
                 ORDER BY repo, stack",
            )?;
            stmt.query_map([], |r| {
                Ok((
                    StackIdentity {
                        account: r.get(0)?,
                        region: r.get(1)?,
                        name: r.get(2)?,
                    },
                    r.get(3)?,
                    r.get(4)?,
                ))
            })?
            .collect()
        })
    }
}
