//! git: the bare mirrors stackgate reads commits from (no work tree), and what a local
//! checkout says about itself for the CLI.

pub mod checkout;
pub mod commits;
pub mod gitinfo;
pub mod mirrors;

pub use checkout::{CheckoutError, Heads, Mirror, Snapshot};
pub use mirrors::{MirrorError, Mirrors};
