//! The queue's conformance suite: what every backend must do, as plain functions of a
//! `&dyn Queue` (one file per role), and a macro that makes a `#[test]` of each check for
//! each backend.

pub mod leases;

/// `checks!(backend, open, module: [check, …], …)`: a test per check, each on a fresh
/// queue from `open()` (which returns what must live as long as the queue, and the queue).
macro_rules! checks {
    ($backend:ident, $open:ident, $($module:ident: [$($check:ident),* $(,)?]),* $(,)?) => {
        mod $backend {
            $(
                mod $module {
                    $(
                        #[test]
                        fn $check() {
                            let (_keep, q) = super::super::$open();
                            crate::queue::conformance::$module::$check(q.as_ref());
                        }
                    )*
                }
            )*
        }
    };
}

/// A SQLite queue in a temp dir.
fn sqlite() -> (tempfile::TempDir, Box<dyn crate::queue::Queue>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = crate::queue::sqlite::Store::open(
        &dir.path().join("state.db"),
        crate::config::Synchronous::Normal,
    )
    .expect("open");
    (dir, Box::new(q))
}

checks!(
    on_sqlite,
    sqlite,
    leases: [
        a_claim_sets_owner_expiry_and_fence,
        a_takeover_and_the_next_claim_grow_the_fence,
        a_write_under_an_old_fence_changes_nothing_and_says_lease_lost,
        a_renewal_extends_only_its_owners_leases,
        a_takeover_takes_only_expired_leases_of_others,
        a_clean_stop_hands_its_leases_back,
    ],
);
