//! The deployed ledger: each folder's last deploy, and the stack it deployed.

use crate::domain::{JobState, StackIdentity};
use crate::queue::conformance::*;
use crate::queue::*;

pub fn a_finished_deploy_writes_the_ledger_and_keeps_identities(h: &dyn Harness) {
    let s = h.open();
    let id = StackIdentity {
        account: "123456789012".into(),
        region: "eu-west-1".into(),
        name: "web-prod".into(),
    };
    let run = |stack: &str, sha: &str, removed: bool, identity: Option<&StackIdentity>| {
        let j = s
            .enqueue(&[deploy_of(stack, sha)], &none, &superseded)
            .unwrap()[0];
        assert_eq!(s.claim(&lease(), 4).unwrap()[0].id, j);
        s.finish(
            held(&*s, j),
            JobState::Succeeded,
            &serde_json::json!({}),
            &[],
            Some(LedgerEntry {
                repo: "acme/infra",
                stack,
                sha,
                removed,
                identity,
            }),
        )
        .unwrap();
    };
    run("web", "a", false, Some(&id));
    run("api", "b", false, None);
    // A later entry without identity keeps the one the ledger has.
    run("web", "c", false, None);
    assert_eq!(
        s.deployed("acme/infra").unwrap(),
        [
            ("api".into(), "b".into(), false),
            ("web".into(), "c".into(), false)
        ]
    );
    let row = s.ledger_row("acme/infra", "web").unwrap().unwrap();
    assert_eq!((row.sha.as_str(), row.removed), ("c", false));
    assert_eq!(row.identity.as_ref(), Some(&id));
    assert_eq!(s.ledger_row("acme/infra", "nope").unwrap(), None);
    assert_eq!(
        s.live_unidentified().unwrap(),
        [("acme/infra".into(), "api".into(), "b".into())]
    );
    let api = StackIdentity {
        name: "api-prod".into(),
        ..id.clone()
    };
    s.fill_identity("acme/infra", "api", &api).unwrap();
    assert!(s.live_unidentified().unwrap().is_empty());
    assert_eq!(
        s.live_identities().unwrap(),
        [
            (api.clone(), "acme/infra".into(), "api".into()),
            (id.clone(), "acme/infra".into(), "web".into())
        ]
    );
    // A stack that moved to another folder is no longer this one's.
    s.retire("acme/infra", "api").unwrap();
    assert!(s.ledger_row("acme/infra", "api").unwrap().unwrap().removed);
    assert_eq!(
        s.live_identities().unwrap(),
        [(id, "acme/infra".into(), "web".into())]
    );
    assert!(s.deployed("acme/other").unwrap().is_empty());
}
