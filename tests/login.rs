//! Login end to end: a real `stackgate serve` with `[auth]`, a real OpenID provider
//! (npm `oidc-provider`, tests/doubles/oidc) on a free loopback port, and a cookie-keeping
//! HTTP client that fills the provider's login form as `otto` (operator) and `viola`
//! (viewer). No token is made by hand: every one comes from oidc-provider.

mod support;

use support::oidc::{Browser, OTTO, Provider, VIOLA};
use support::service::*;
use support::*;

const SESSION_KEY: &str = "login-test-session-key-0123456789abcdef";
const SCOPED_VIEWER: &str = "sg-scoped-viewer-token-5e1f";
const SCOPED_ELSEWHERE: &str = "sg-scoped-elsewhere-token-77aa";

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// A server whose `[auth]` points at a provider on `provider_port` (started after it: the
/// provider must know the server's redirect URI, and stackgate discovers it only at the
/// first login).
fn server_with_login(repo: &GitRepo, gh: &StandIn, provider_port: u16) -> Server {
    let extra = format!(
        "[[api_token]]\nsha256 = \"{viewer}\"\nrole = \"viewer\"\n\
         [[api_token]]\nsha256 = \"{elsewhere}\"\nrole = \"operator\"\nrepos = [\"someone/else\"]\n\
         [auth]\nissuer = \"http://127.0.0.1:{provider_port}\"\nclient_id = \"{client}\"\n\
         client_secret_env = \"SG_TEST_OIDC_SECRET\"\nsession_key_env = \"SG_TEST_SESSION_KEY\"\n\
         scopes = [\"email\", \"groups\"]\n\
         [[auth.roles]]\nrole = \"operator\"\nclaim = \"groups\"\nvalue = \"stackgate-operators\"\nrepos = [\"{REPO}\"]\n\
         [[auth.roles]]\nrole = \"viewer\"\nclaim = \"email\"\nvalue = \"viola@example.test\"\n",
        viewer = sha256_hex(SCOPED_VIEWER),
        elsewhere = sha256_hex(SCOPED_ELSEWHERE),
        client = support::oidc::CLIENT_ID,
    );
    Server::start_opts(
        repo,
        gh,
        Opts {
            extra: &extra,
            env: vec![
                (
                    "SG_TEST_OIDC_SECRET",
                    support::oidc::CLIENT_SECRET.to_string(),
                ),
                ("SG_TEST_SESSION_KEY", SESSION_KEY.to_string()),
            ],
            ..Opts::default()
        },
    )
}

/// The value of cookie `name` in a Set-Cookie header, and the header.
fn set_cookie<'a>(answer: &'a support::oidc::Answer, name: &str) -> Option<(&'a str, String)> {
    answer.all("set-cookie").into_iter().find_map(|h| {
        let value = h.strip_prefix(&format!("{name}="))?;
        Some((h, value.split(';').next().unwrap_or("").to_string()))
    })
}

#[test]
fn operators_redeploy_from_the_console_and_viewers_only_read() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("login-app");
    param_stack(&repo, "app", &name, "l1");
    repo.commit("l1");
    let port = free_port();
    let server = server_with_login(&repo, &gh, port);
    let provider = Provider::start(port, &[&format!("{}/auth/callback", server.url)]);

    // Not logged in: pages send to the login, the API says 401.
    let anon = Browser::new();
    let page = anon.get(&format!("{}/", server.url));
    assert_eq!(page.status, 303, "{page:?}");
    assert_eq!(page.location(), "/login?next=%2F");
    assert_eq!(
        anon.get(&format!("{}/auth/session", server.url)).status,
        401
    );
    assert_eq!(
        anon.get(&format!("{}/api/v1/jobs/1", server.url)).status,
        401
    );

    // otto logs in through the provider's form.
    let otto = Browser::new();
    let callback = otto.login(&server.url, &provider, OTTO);
    assert_eq!(callback.status, 303, "{callback:?}\n{}", server.logs());
    assert_eq!(callback.location(), "/");
    let (header, session) = set_cookie(&callback, "sg_session").expect("a session cookie");
    assert!(header.contains("HttpOnly"), "{header}");
    assert!(header.contains("SameSite=Lax"), "{header}");
    assert!(header.contains("Path=/"), "{header}");
    assert!(
        !header.contains("Secure"),
        "no Secure over plain http: {header}"
    );
    let (login_cleared, _) = set_cookie(&callback, "sg_login").expect("the login cookie cleared");
    assert!(login_cleared.contains("Max-Age=0"), "{login_cleared}");
    let me = otto.get(&format!("{}/auth/session", server.url)).json();
    assert_eq!(me["credential"], "session");
    assert_eq!(me["subject"], "otto");
    assert_eq!(me["email"], "otto@example.test");
    assert_eq!(
        me["roles"],
        serde_json::json!([{"role": "operator", "repos": [REPO]}])
    );
    let csrf = me["csrf"].as_str().expect("a CSRF token").to_string();
    assert_eq!(otto.get(&format!("{}/", server.url)).status, 200);

    // The redeploy form: the CSRF token is needed, then 303 to the new job's run page.
    let form = format!("{}/stacks/{REPO}/app/redeploy", server.url);
    assert_eq!(otto.post(&form, &[]).status, 403);
    assert_eq!(otto.post(&form, &[("csrf", "not-the-token")]).status, 403);
    let done = otto.post(&form, &[("csrf", &csrf)]);
    assert_eq!(done.status, 303, "{done:?}");
    let id: i64 = done
        .location()
        .strip_prefix("/runs/")
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("{done:?}"));
    let job = otto.get(&format!("{}/api/v1/jobs/{id}", server.url)).json();
    assert_eq!(job["kind"], "deploy", "{job}");
    assert_eq!(job["stack"], "app");
    assert_eq!(job["trigger"], "manual");
    assert_eq!(
        otto.get(&format!("{}/runs/{id}", server.url)).status,
        200,
        "the run page"
    );
    // An unknown stack in the form is the API's 404, as text.
    let nope = otto.post(
        &format!("{}/stacks/{REPO}/nope/redeploy", server.url),
        &[("csrf", &csrf)],
    );
    assert_eq!(nope.status, 404, "{nope:?}");
    assert!(nope.body.contains("unknown stack"), "{}", nope.body);

    // The API with the session: only with the CSRF token in its header.
    let api = format!("{}/api/v1/stacks/{REPO}/app/redeploy", server.url);
    assert_eq!(otto.send("POST", &api, &[], &[], true).status, 403);
    let with_header = otto.send("POST", &api, &[], &[("X-CSRF-Token", &csrf)], true);
    assert_eq!(with_header.status, 202, "{with_header:?}");

    // The drift form: the same guard; once the stack is deployed, 303 to the check's run.
    wait_for(90, "otto's redeploy", || {
        let j = otto.get(&format!("{}/api/v1/jobs/{id}", server.url)).json();
        (j["state"] != "queued" && j["state"] != "running").then_some(())
    });
    let drift = format!("{}/stacks/{REPO}/app/drift", server.url);
    assert_eq!(otto.post(&drift, &[]).status, 403);
    let asked = otto.post(&drift, &[("csrf", &csrf)]);
    assert_eq!(asked.status, 303, "{asked:?}");
    let check: i64 = asked
        .location()
        .strip_prefix("/runs/")
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("{asked:?}"));
    let check = otto
        .get(&format!("{}/api/v1/jobs/{check}", server.url))
        .json();
    assert_eq!(
        (check["kind"].as_str(), check["trigger"].as_str()),
        (Some("drift"), Some("manual")),
        "{check}"
    );
    // An operator's stack page offers both actions.
    let page = otto.get(&format!("{}/stacks/{REPO}/app", server.url));
    assert!(
        page.body.contains(">Redeploy</button>") && page.body.contains(">Check drift now</button>"),
        "{}",
        page.body
    );

    // viola logs in: a viewer, so she reads and may not redeploy.
    let viola = Browser::new();
    let callback = viola.login(&server.url, &provider, VIOLA);
    assert_eq!(callback.status, 303, "{callback:?}");
    let her = viola.get(&format!("{}/auth/session", server.url)).json();
    assert_eq!(her["email"], "viola@example.test");
    assert_eq!(her["roles"], serde_json::json!([{"role": "viewer"}]));
    let her_csrf = her["csrf"].as_str().expect("csrf").to_string();
    assert_ne!(her_csrf, csrf, "a CSRF token is its session's");
    assert_eq!(viola.get(&format!("{}/", server.url)).status, 200);
    assert_eq!(viola.get(&format!("{}/runs/{id}", server.url)).status, 200);
    let refused = viola.post(&form, &[("csrf", &her_csrf)]);
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(
        refused.body.contains("viewer") && refused.body.contains("operator"),
        "{}",
        refused.body
    );
    // Nor check drift, and her stack page offers no action.
    assert_eq!(viola.post(&drift, &[("csrf", &her_csrf)]).status, 403);
    let page = viola.get(&format!("{}/stacks/{REPO}/app", server.url));
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains(">Redeploy</button>") && !page.body.contains("Check drift now"),
        "{}",
        page.body
    );
    // otto's token is no good in viola's session.
    assert_eq!(viola.post(&form, &[("csrf", &csrf)]).status, 403);

    // A tampered session cookie is no login.
    let mut forged = session.clone().into_bytes();
    let at = forged.len() / 3;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    let cookie = format!("sg_session={forged}");
    let tampered = anon.send(
        "GET",
        &format!("{}/auth/session", server.url),
        &[],
        &[("Cookie", &cookie)],
        false,
    );
    assert_eq!(tampered.status, 401, "{tampered:?}");
    let good = format!("sg_session={session}");
    let replayed = anon.send(
        "GET",
        &format!("{}/auth/session", server.url),
        &[],
        &[("Cookie", &good)],
        false,
    );
    assert_eq!(
        replayed.status, 200,
        "the untampered cookie works: {replayed:?}"
    );

    // Logout: CSRF-protected, and the session is gone.
    let logout = format!("{}/logout", server.url);
    assert_eq!(otto.post(&logout, &[]).status, 403);
    let out = otto.post(&logout, &[("csrf", &csrf)]);
    assert_eq!(out.status, 200, "{out:?}");
    let (cleared, _) = set_cookie(&out, "sg_session").expect("the session cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(
        otto.get(&format!("{}/auth/session", server.url)).status,
        401
    );
    assert_eq!(otto.get(&format!("{}/", server.url)).status, 303);
    assert_eq!(otto.post(&form, &[("csrf", &csrf)]).status, 401);

    // Scoped API tokens: a viewer token and an operator of another repository may not.
    for token in [SCOPED_VIEWER, SCOPED_ELSEWHERE] {
        let auth = format!("Bearer {token}");
        let r = anon.send("POST", &api, &[], &[("Authorization", &auth)], false);
        assert_eq!(r.status, 403, "{r:?}");
    }
    let auth = format!("Bearer {SCOPED_VIEWER}");
    let read = anon.send(
        "GET",
        &format!("{}/api/v1/jobs/{id}", server.url),
        &[],
        &[("Authorization", &auth)],
        false,
    );
    assert_eq!(read.status, 200, "a viewer token reads: {read:?}");
    // The unscoped token of `api_tokens` is still an admin everywhere.
    let auth = format!("Bearer {API_TOKEN}");
    let r = anon.send("POST", &api, &[], &[("Authorization", &auth)], false);
    assert_eq!(r.status, 202, "{r:?}");

    server.assert_no_secret_in_logs();
    let logs = server.logs();
    for secret in [
        support::oidc::CLIENT_SECRET,
        SESSION_KEY,
        session.as_str(),
        csrf.as_str(),
        SCOPED_VIEWER,
    ] {
        assert!(!logs.contains(secret), "a secret appears in the server log");
    }
}

#[test]
fn a_callback_that_is_not_this_logins_is_refused() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    param_stack(&repo, "app", &unique("login-state"), "s1");
    repo.commit("s1");
    let port = free_port();
    let server = server_with_login(&repo, &gh, port);
    let provider = Provider::start(port, &[&format!("{}/auth/callback", server.url)]);
    let b = Browser::new();
    let callback = format!("{}/auth/callback", server.url);

    // No login begun in this browser.
    let r = b.get(&format!("{callback}?code=abc&state=xyz"));
    assert_eq!(r.status, 400, "{r:?}");

    // A login begun, and a callback with another state.
    let start = b.get(&format!("{}/login", server.url));
    assert_eq!(start.status, 303, "{start:?}\n{}", server.logs());
    assert!(start.location().starts_with(&provider.issuer));
    let r = b.get(&format!("{callback}?code=abc&state=not-this-logins-state"));
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("state"), "{}", r.body);
    assert!(set_cookie(&r, "sg_session").is_none());

    // A real code for viola, but the state swapped for another: still refused, no session.
    let code_url = {
        let auth = b.get(start.location());
        let form = b.get(&Browser::absolute(&provider.issuer, auth.location()));
        let action = form
            .body
            .split("action=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("a form")
            .to_string();
        let submitted = b.post(
            &Browser::absolute(&provider.issuer, &action),
            &[("login", VIOLA.0), ("password", VIOLA.1)],
        );
        let resumed = b.get(&Browser::absolute(&provider.issuer, submitted.location()));
        resumed.location().to_string()
    };
    let state = code_url
        .split("state=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .expect("state")
        .to_string();
    let swapped = code_url.replace(&format!("state={state}"), "state=swapped");
    let r = b.get(&swapped);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(b.get(&format!("{}/auth/session", server.url)).status, 401);
    // The right state with that code works (the code was not used up).
    let r = b.get(&code_url);
    assert_eq!(r.status, 303, "{r:?}\n{}", server.logs());
    assert_eq!(b.get(&format!("{}/auth/session", server.url)).status, 200);

    // A wrong password stays at the provider.
    let other = Browser::new();
    let start = other.get(&format!("{}/login", server.url));
    let auth = other.get(start.location());
    let form_url = Browser::absolute(&provider.issuer, auth.location());
    let form = other.get(&form_url);
    let action = form
        .body
        .split("action=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a form")
        .to_string();
    let wrong = other.post(
        &Browser::absolute(&provider.issuer, &action),
        &[("login", OTTO.0), ("password", "not-ottos-password")],
    );
    assert_eq!(wrong.status, 401, "{wrong:?}");
}

#[test]
fn without_auth_the_local_console_is_an_operator_with_csrf() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    param_stack(&repo, "app", &unique("login-local"), "c1");
    repo.commit("c1");
    let server = Server::start(&repo, &gh, "");
    let b = Browser::new();
    let me = b.get(&format!("{}/auth/session", server.url)).json();
    assert_eq!(me["credential"], "local");
    assert_eq!(me["roles"], serde_json::json!([{"role": "operator"}]));
    let csrf = me["csrf"].as_str().expect("csrf").to_string();
    let form = format!("{}/stacks/{REPO}/app/redeploy", server.url);
    assert_eq!(b.post(&form, &[]).status, 403, "no CSRF token");
    let r = b.post(&form, &[("csrf", &csrf)]);
    assert_eq!(r.status, 303, "{r:?}");
    assert!(r.location().starts_with("/runs/"), "{r:?}");
    // The API still needs its token: any page in a browser could post to it.
    let api = format!("{}/api/v1/stacks/{REPO}/app/redeploy", server.url);
    assert_eq!(b.post(&api, &[]).status, 401);
    // A page of another site whose name points here (DNS rebinding) gets nothing.
    let r = b.send(
        "GET",
        &format!("{}/", server.url),
        &[],
        &[("Host", "evil.example:80")],
        true,
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(b.get(&format!("{}/login", server.url)).status, 404);
}
