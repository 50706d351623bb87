//! Runs every declarative case in `tests/cases/*.json` (format: `policies/README.md`).

#[test]
fn declarative_cases() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cases");
    match stackgate_policy_sdk::testing::run_cases(dir, policy_open_ingress::evaluate) {
        Ok(n) => eprintln!("{n} open-ingress cases passed"),
        Err(e) => panic!("{e}"),
    }
}
