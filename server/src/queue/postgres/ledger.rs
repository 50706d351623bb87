//! The deployed ledger: each folder's last deployed sha and the stack it deployed.

use tokio_postgres::Row;

use super::{Store, execute, query, query_opt};
use crate::domain::StackIdentity;
use crate::queue::{Ledger, LedgerRow, StoreError, now};

fn identity(r: &Row, from: usize) -> Option<StackIdentity> {
    let (name, region, account): (Option<String>, Option<String>, Option<String>) =
        (r.get(from), r.get(from + 1), r.get(from + 2));
    Some(StackIdentity {
        account: account?,
        region: region?,
        name: name?,
    })
}

impl Ledger for Store {
    fn deployed(&self, repo: &str) -> Result<Vec<(String, String, bool)>, StoreError> {
        self.conn(async |c| {
            let rows = query(
                c,
                "SELECT stack, sha, removed FROM deployed WHERE repo = $1 ORDER BY stack",
                &[&repo],
            )
            .await?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect())
        })
    }

    fn retire(&self, repo: &str, stack: &str) -> Result<(), StoreError> {
        self.conn(async |c| {
            execute(
                c,
                "UPDATE deployed SET removed = true, at = $3 WHERE repo = $1 AND stack = $2",
                &[&repo, &stack, &now()],
            )
            .await?;
            Ok(())
        })
    }

    fn ledger_row(&self, repo: &str, stack: &str) -> Result<Option<LedgerRow>, StoreError> {
        self.conn(async |c| {
            let row = query_opt(
                c,
                "SELECT sha, removed, stack_name, region, account FROM deployed WHERE repo = $1 AND stack = $2",
                &[&repo, &stack],
            )
            .await?;
            Ok(row.map(|r| LedgerRow {
                sha: r.get(0),
                removed: r.get(1),
                identity: identity(&r, 2),
            }))
        })
    }

    fn live_unidentified(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        self.conn(async |c| {
            let rows = query(
                c,
                "SELECT repo, stack, sha FROM deployed
                 WHERE NOT removed AND (stack_name IS NULL OR region IS NULL OR account IS NULL)
                 ORDER BY repo, stack",
                &[],
            )
            .await?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect())
        })
    }

    fn fill_identity(&self, repo: &str, stack: &str, id: &StackIdentity) -> Result<(), StoreError> {
        self.conn(async |c| {
            execute(
                c,
                "UPDATE deployed SET stack_name = $3, region = $4, account = $5
                 WHERE repo = $1 AND stack = $2 AND stack_name IS NULL",
                &[&repo, &stack, &id.name, &id.region, &id.account],
            )
            .await?;
            Ok(())
        })
    }

    fn live_identities(&self) -> Result<Vec<(StackIdentity, String, String)>, StoreError> {
        self.conn(async |c| {
            let rows = query(
                c,
                "SELECT stack_name, region, account, repo, stack FROM deployed
                 WHERE NOT removed AND stack_name IS NOT NULL AND region IS NOT NULL AND account IS NOT NULL
                 ORDER BY repo, stack",
                &[],
            )
            .await?;
            Ok(rows
                .iter()
                .filter_map(|r| Some((identity(r, 0)?, r.get(3), r.get(4))))
                .collect())
        })
    }
}
