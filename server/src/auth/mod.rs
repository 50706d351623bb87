//! auth: who may do what. People log in through an OpenID provider (`[auth]`) and carry a
//! signed session cookie; machines send a bearer token (`api_tokens`, `[[api_token]]`);
//! without `[auth]`, on a loopback address, whoever reaches the port is a local operator.
//! The [`Viewer`] extractor says which, with a [`Role`] per repository, and the CSRF token
//! that every form which changes something must carry back.
//!
//! Nothing here imports the HTTP state: a state that holds an [`Auth`] implements
//! [`AuthState`], and the extractor works on it.

pub mod cookie;
pub mod http;
pub mod oidc;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AuthSetting, Config, ConfigError, RoleClaim, RoleRule};
use crate::domain::Role;
use cookie::{Attributes, Signer};
use oidc::{Identity, LoginError, Provider};

/// The session cookie's name (`__Host-` first behind https).
const SESSION: &str = "sg_session";
/// The cookie of a login in progress: state, nonce, PKCE verifier, where to go after.
const LOGIN: &str = "sg_login";
/// How long a login may take at the provider.
const LOGIN_SECONDS: u64 = 600;
/// The header that carries the CSRF token on API calls made with a session cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field that carries it.
pub const CSRF_FIELD: &str = "csrf";

/// A role on some repositories, or on all of them (`repos` absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repos: Option<Vec<String>>,
}

impl Grant {
    fn covers(&self, repo: &str) -> bool {
        self.repos
            .as_ref()
            .is_none_or(|rs| rs.iter().any(|r| r.eq_ignore_ascii_case(repo)))
    }
}

/// The highest role `grants` give on `repo`.
pub fn role_on(grants: &[Grant], repo: &str) -> Option<Role> {
    grants
        .iter()
        .filter(|g| g.covers(repo))
        .map(|g| g.role)
        .max()
}

/// What the role rules give whoever `id` is.
pub fn grants_for(rules: &[RoleRule], id: &Identity) -> Vec<Grant> {
    rules
        .iter()
        .filter(|r| match r.claim {
            RoleClaim::Groups => id.groups.iter().any(|g| g == &r.value),
            RoleClaim::Email => {
                id.email_verified != Some(false)
                    && id
                        .email
                        .as_deref()
                        .is_some_and(|e| e.eq_ignore_ascii_case(r.value.trim()))
            }
        })
        .map(|r| Grant {
            role: r.role,
            repos: r.repos.clone(),
        })
        .collect()
}

/// How the request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Credential {
    /// A bearer token (`api_tokens`, `[[api_token]]`).
    Token,
    /// A login's session cookie.
    Session,
    /// Nobody: no `[auth]`, on a loopback address.
    Local,
}

/// Who is asking, and what they may do. Handlers take it as an extractor.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub credential: Credential,
    /// The ID token's subject, `api-token`, or `local`.
    pub subject: String,
    pub email: Option<String>,
    grants: Vec<Grant>,
    /// The CSRF token for forms (none for tokens: they are not sent by browsers on their
    /// own).
    csrf: Option<String>,
    expires: Option<u64>,
}

impl Viewer {
    /// The highest role on `repo`, if any.
    pub fn role_on(&self, repo: &str) -> Option<Role> {
        role_on(&self.grants, repo)
    }

    /// Whether the viewer holds `role` (or a higher one) on `repo`.
    pub fn may(&self, repo: &str, role: Role) -> bool {
        self.role_on(repo).is_some_and(|r| r >= role)
    }

    /// `Ok` when the viewer holds `role` on `repo`, else 403 saying what is missing.
    pub fn require(&self, repo: &str, role: Role) -> Result<(), Refusal> {
        if self.may(repo, role) {
            return Ok(());
        }
        let has = match self.role_on(repo) {
            Some(r) => format!("is {} {r} on {repo}", article(r)),
            None => format!("has no role on {repo}"),
        };
        Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!("{} {has}; this needs {} {role}", self.name(), article(role)),
        ))
    }

    /// The CSRF token that forms carry back (as the `csrf` field).
    pub fn csrf_token(&self) -> Option<&str> {
        self.csrf.as_deref()
    }

    /// `<input type="hidden" name="csrf" value="…">` for a form, or nothing.
    pub fn csrf_field(&self) -> String {
        self.csrf
            .as_deref()
            .map(|t| format!("<input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{t}\">"))
            .unwrap_or_default()
    }

    /// `Ok` when a form's `csrf` field is this viewer's token (compared in constant time);
    /// a bearer token needs none.
    pub fn check_csrf(&self, given: Option<&str>) -> Result<(), Refusal> {
        match (&self.csrf, self.credential) {
            (_, Credential::Token) => Ok(()),
            (Some(want), _)
                if given.is_some_and(|g| bool::from(want.as_bytes().ct_eq(g.as_bytes()))) =>
            {
                Ok(())
            }
            _ => Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or wrong: reload the page and try again",
            )),
        }
    }

    /// For a console form that changes something on `repo`: its CSRF token first (403),
    /// then `role` there (403). What every action's handler calls.
    pub fn check_form(&self, csrf: Option<&str>, repo: &str, role: Role) -> Result<(), Refusal> {
        self.check_csrf(csrf)?;
        self.require(repo, role)
    }

    /// For an API call that changes something: a bearer token, or a session cookie with
    /// its CSRF token in `X-CSRF-Token` (which no other site can send without our leave).
    /// Nobody's local credential does not count: any page in a browser could post.
    pub fn check_api_call(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        match self.credential {
            Credential::Token => Ok(()),
            Credential::Session => self.check_csrf(
                headers
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim),
            ),
            Credential::Local => Err(Refusal::bad_token()),
        }
    }

    /// How the viewer is named in messages and logs: an email, a subject, or what it is.
    pub fn name(&self) -> String {
        match (&self.email, self.credential) {
            (Some(e), _) => e.clone(),
            (None, Credential::Session) => format!("user {}", self.subject),
            (None, Credential::Token) => "this API token".into(),
            (None, Credential::Local) => "the local user".into(),
        }
    }

    /// What `GET /auth/session` shows: nothing secret (the CSRF token is for this viewer's
    /// own pages, and other sites cannot read the answer).
    pub fn summary(&self) -> serde_json::Value {
        json!({
            "credential": self.credential,
            "subject": self.subject,
            "email": self.email,
            "roles": self.grants,
            "csrf": self.csrf,
            "expires": self.expires,
        })
    }
}

fn article(r: Role) -> &'static str {
    match r {
        Role::Admin | Role::Operator => "an",
        Role::Viewer => "a",
    }
}

/// A refused request: its status and what to say (JSON under `/api/`, plain text
/// elsewhere), or, for a page that needs a login, a redirect to `/login`.
#[derive(Debug)]
pub struct Refusal {
    pub code: StatusCode,
    pub message: String,
    json: bool,
    login: Option<String>,
}

impl Refusal {
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            json: false,
            login: None,
        }
    }

    /// The same refusal, answered in JSON (`{"error": …}`).
    pub fn json(self) -> Self {
        Self { json: true, ..self }
    }

    pub fn bad_token() -> Self {
        Refusal::new(
            StatusCode::UNAUTHORIZED,
            "a valid `Authorization: Bearer <token>` is required",
        )
        .json()
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        if let Some(next) = self.login {
            let to = format!(
                "/login?next={}",
                url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            );
            return Redirect::to(&to).into_response();
        }
        let mut r = if self.json {
            (self.code, Json(json!({"error": self.message}))).into_response()
        } else {
            (self.code, self.message).into_response()
        };
        if self.code == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

/// A state that holds the [`Auth`]: what the [`Viewer`] extractor needs.
pub trait AuthState {
    fn auth(&self) -> &Auth;
}

impl<S: AuthState + Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        state.auth().viewer(parts)
    }
}

/// How people get in.
enum Mode {
    /// No `[auth]`, a loopback `listen`: whoever reaches the port is an operator.
    Local,
    /// `auth = "none"` on an address that is not loopback: no console, tokens only.
    Headless,
    /// `[auth]`: a login through the OpenID provider.
    Login(Box<Login>),
}

struct Login {
    provider: Provider,
    rules: Vec<RoleRule>,
    session_seconds: u64,
}

/// A token's sha256 and what it may do.
struct TokenGrant {
    sha256: Vec<u8>,
    grant: Grant,
}

/// The session cookie's content. Nothing secret: who, their roles, until when, and a
/// random id that the CSRF token is derived from.
#[derive(Debug, Serialize, Deserialize)]
struct Session {
    sid: String,
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    grants: Vec<Grant>,
    exp: u64,
}

/// The login cookie's content, for the callback.
#[derive(Serialize, Deserialize)]
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    next: String,
    exp: u64,
}

/// Who may do what: built once from the configuration.
pub struct Auth {
    mode: Mode,
    signer: Signer,
    cookies: Attributes,
    tokens: Vec<TokenGrant>,
}

/// A response's cookie changes and where it sends the browser.
pub struct Outcome {
    pub location: String,
    pub set_cookies: Vec<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A path of this site to return to after the login: anything else becomes `/`.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.chars().any(char::is_control)
                && p.len() <= 2048 =>
        {
            p.to_string()
        }
        _ => "/".into(),
    }
}

/// Whether the request's `Host` (if it has one) names this machine only: a page of another
/// site whose name resolves to 127.0.0.1 (DNS rebinding) must not drive the local console.
fn host_is_local(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return true;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    crate::config::host_is_loopback(name)
}

impl Auth {
    /// From the configuration: the OpenID client, the session key and the tokens. Refuses
    /// a `listen` that is not loopback without `[auth]` or `auth = "none"`.
    pub fn from_config(cfg: &Config) -> Result<Self, ConfigError> {
        cfg.check_exposure()?;
        let mut tokens: Vec<TokenGrant> = cfg
            .api_tokens
            .iter()
            .filter_map(|t| hex::decode(t).ok())
            .map(|sha256| TokenGrant {
                sha256,
                grant: Grant {
                    role: Role::Admin,
                    repos: None,
                },
            })
            .collect();
        for t in &cfg.api_token {
            if let Ok(sha256) = hex::decode(&t.sha256) {
                tokens.push(TokenGrant {
                    sha256,
                    grant: Grant {
                        role: t.role,
                        repos: t.repos.clone(),
                    },
                });
            }
        }
        let secure_url = |u: Option<&str>| u.is_some_and(|u| u.starts_with("https://"));
        let (mode, key, secure) = match cfg.login() {
            Some(a) => {
                let public = a
                    .public_url(cfg.public_url.as_deref())
                    .ok_or_else(|| ConfigError::Invalid("auth.public_url: not set".into()))?;
                let provider = Provider::new(
                    &a.issuer,
                    &a.client_id,
                    a.client_secret()?.expose_secret().to_string(),
                    format!("{public}/auth/callback"),
                    &a.scopes,
                )
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
                let key = a.session_key()?.expose_secret().as_bytes().to_vec();
                let login = Login {
                    provider,
                    rules: a.roles.clone(),
                    session_seconds: a.session_hours * 3600,
                };
                (Mode::Login(Box::new(login)), key, secure_url(Some(public)))
            }
            None => {
                // Forms still carry a CSRF token, signed with a key of this process's own.
                let key = openidconnect::CsrfToken::new_random_len(32)
                    .secret()
                    .as_bytes()
                    .to_vec();
                let mode = match (&cfg.auth, crate::config::listen_is_loopback(&cfg.listen)) {
                    (_, true) => Mode::Local,
                    (Some(AuthSetting::None), false) => Mode::Headless,
                    // check_exposure refused it above already.
                    _ => return Err(ConfigError::Invalid("auth: not loopback".into())),
                };
                (mode, key, secure_url(cfg.public_url.as_deref()))
            }
        };
        Ok(Self {
            mode,
            signer: Signer::new(&key),
            cookies: Attributes { secure },
            tokens,
        })
    }

    /// Whether people log in (`[auth]`).
    pub fn has_login(&self) -> bool {
        matches!(self.mode, Mode::Login(_))
    }

    fn session_name(&self) -> String {
        self.cookies.name(SESSION)
    }

    fn login_name(&self) -> String {
        self.cookies.name(LOGIN)
    }

    /// Who sent the request, from its bearer token, its session cookie, or the mode.
    pub fn viewer(&self, parts: &Parts) -> Result<Viewer, Refusal> {
        let path = parts.uri.path();
        let api = path.starts_with("/api/") || path == "/auth/session";
        let headers = &parts.headers;
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            return self.token_viewer(value.to_str().unwrap_or_default());
        }
        match &self.mode {
            Mode::Login(_) => {
                if let Some(v) = self.session_viewer(headers) {
                    return Ok(v);
                }
                let wants_page = !api && parts.method == Method::GET;
                let mut r = Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    "log in first (GET /login), or send `Authorization: Bearer <token>`",
                );
                if wants_page {
                    r.login = Some(local_path(parts.uri.path_and_query().map(|p| p.as_str())));
                }
                Err(if api { r.json() } else { r })
            }
            Mode::Local if !host_is_local(headers) => Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "without [auth], stackgate answers only requests for 127.0.0.1 or localhost",
            )),
            Mode::Local => Ok(Viewer {
                credential: Credential::Local,
                subject: "local".into(),
                email: None,
                grants: vec![Grant {
                    role: Role::Operator,
                    repos: None,
                }],
                csrf: Some(self.signer.csrf("local")),
                expires: None,
            }),
            Mode::Headless if api => Err(Refusal::bad_token()),
            Mode::Headless => Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "no console here: it needs [auth] (or a loopback listen address)",
            )),
        }
    }

    fn token_viewer(&self, authorization: &str) -> Result<Viewer, Refusal> {
        let Some(token) = authorization.strip_prefix("Bearer ") else {
            return Err(Refusal::bad_token());
        };
        // The token is hashed at once, and never logged or stored.
        let digest = Sha256::digest(token.trim().as_bytes());
        let mut grants = Vec::new();
        for t in &self.tokens {
            if bool::from(t.sha256.as_slice().ct_eq(digest.as_slice())) {
                grants.push(t.grant.clone());
            }
        }
        if grants.is_empty() {
            return Err(Refusal::bad_token());
        }
        Ok(Viewer {
            credential: Credential::Token,
            subject: "api-token".into(),
            email: None,
            grants,
            csrf: None,
            expires: None,
        })
    }

    fn session_viewer(&self, headers: &HeaderMap) -> Option<Viewer> {
        let raw = cookie::read(headers, &self.session_name())?;
        let s: Session = self.signer.open(SESSION, raw)?;
        if s.exp <= now() || s.grants.is_empty() {
            return None;
        }
        Some(Viewer {
            credential: Credential::Session,
            csrf: Some(self.signer.csrf(&s.sid)),
            subject: s.sub,
            email: s.email,
            grants: s.grants,
            expires: Some(s.exp),
        })
    }

    fn login(&self) -> Result<&Login, Refusal> {
        match &self.mode {
            Mode::Login(l) => Ok(l),
            _ => Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "no login here: stackgate has no [auth]",
            )),
        }
    }

    /// `GET /login`: to the provider, with the flow's state, nonce and PKCE verifier kept
    /// in a short-lived signed cookie.
    pub async fn begin(&self, next: Option<&str>) -> Result<Outcome, Refusal> {
        let login = self.login()?;
        let started = login.provider.start().await.map_err(provider_refusal)?;
        let flow = Flow {
            state: started.state,
            nonce: started.nonce,
            verifier: started.verifier,
            next: local_path(next),
            exp: now() + LOGIN_SECONDS,
        };
        Ok(Outcome {
            location: started.url,
            set_cookies: vec![self.cookies.set(
                &self.login_name(),
                &self.signer.seal(LOGIN, &flow),
                LOGIN_SECONDS,
            )],
        })
    }

    /// `GET /auth/callback`: checks the state against the login cookie, exchanges the code,
    /// verifies the ID token, and sets the session from the role rules.
    pub async fn finish(
        &self,
        headers: &HeaderMap,
        query: &CallbackQuery,
    ) -> Result<Outcome, Refusal> {
        let login = self.login()?;
        let bad = |m: &str| Refusal::new(StatusCode::BAD_REQUEST, m.to_string());
        let flow: Flow = cookie::read(headers, &self.login_name())
            .and_then(|raw| self.signer.open(LOGIN, raw))
            .filter(|f: &Flow| f.exp > now())
            .ok_or_else(|| {
                bad("no login in progress in this browser (or it took over 10 minutes): start again at /login")
            })?;
        let state_ok = query
            .state
            .as_deref()
            .is_some_and(|s| bool::from(s.as_bytes().ct_eq(flow.state.as_bytes())));
        if !state_ok {
            return Err(bad(
                "the callback's state is not this login's: start again at /login",
            ));
        }
        if let Some(error) = &query.error {
            let said = query.error_description.as_deref().unwrap_or("");
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                format!(
                    "the OpenID provider refused the login: {} {}",
                    clip(error),
                    clip(said)
                ),
            ));
        }
        // RFC 9207: a provider that names itself must be ours.
        if let Some(iss) = &query.iss
            && iss.trim_end_matches('/') != login.provider.issuer().trim_end_matches('/')
        {
            return Err(bad("the callback's issuer is not the configured one"));
        }
        let code = query
            .code
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| bad("the callback has no code"))?;
        let id = login
            .provider
            .finish(code, flow.verifier, flow.nonce)
            .await
            .map_err(provider_refusal)?;
        let grants = grants_for(&login.rules, &id);
        let who = id.email.clone().unwrap_or_else(|| id.subject.clone());
        if grants.is_empty() {
            tracing::info!(subject = %id.subject, email = ?id.email, "login refused: no role rule matches");
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{who} logged in, but no [[auth.roles]] rule gives them a role in stackgate: ask its admins"
                ),
            ));
        }
        tracing::info!(subject = %id.subject, email = ?id.email, roles = ?grants, "login");
        let session = Session {
            sid: openidconnect::CsrfToken::new_random().secret().clone(),
            sub: id.subject,
            email: id.email,
            grants,
            exp: now() + login.session_seconds,
        };
        Ok(Outcome {
            location: flow.next,
            set_cookies: vec![
                self.cookies.set(
                    &self.session_name(),
                    &self.signer.seal(SESSION, &session),
                    login.session_seconds,
                ),
                self.cookies.clear(&self.login_name()),
            ],
        })
    }

    /// `POST /logout`: the session cookie removed (the form's CSRF token checked first).
    pub fn logout(&self, viewer: &Viewer, csrf: Option<&str>) -> Result<Vec<String>, Refusal> {
        viewer.check_csrf(csrf)?;
        Ok(vec![self.cookies.clear(&self.session_name())])
    }
}

/// The query of `GET /auth/callback`.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// What a provider said, cut short (it comes from outside).
fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

fn provider_refusal(e: LoginError) -> Refusal {
    tracing::warn!(error = %e, "login failed");
    let code = match e {
        LoginError::IdToken(_) | LoginError::NoIdToken => StatusCode::UNAUTHORIZED,
        _ => StatusCode::BAD_GATEWAY,
    };
    Refusal::new(code, format!("login failed: {e}"))
}

/// The shared form of the parts above for callers that hold the state in an `Arc`.
impl<T: AuthState> AuthState for Arc<T> {
    fn auth(&self) -> &Auth {
        (**self).auth()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(role: Role, claim: RoleClaim, value: &str, repos: Option<&[&str]>) -> RoleRule {
        RoleRule {
            role,
            claim,
            value: value.into(),
            repos: repos.map(|r| r.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn roles_come_from_the_rules_and_rank() {
        let rules = [
            rule(Role::Viewer, RoleClaim::Groups, "viewers", None),
            rule(
                Role::Operator,
                RoleClaim::Groups,
                "ops",
                Some(&["acme/infra"]),
            ),
            rule(Role::Admin, RoleClaim::Email, "Boss@Example.com", None),
        ];
        let otto = Identity {
            subject: "otto".into(),
            groups: vec!["ops".into(), "viewers".into()],
            ..Default::default()
        };
        let g = grants_for(&rules, &otto);
        assert_eq!(role_on(&g, "acme/infra"), Some(Role::Operator));
        assert_eq!(role_on(&g, "ACME/Infra"), Some(Role::Operator));
        assert_eq!(role_on(&g, "acme/other"), Some(Role::Viewer));
        let boss = Identity {
            subject: "b".into(),
            email: Some("boss@example.com".into()),
            ..Default::default()
        };
        assert_eq!(
            role_on(&grants_for(&rules, &boss), "x/y"),
            Some(Role::Admin)
        );
        let unverified = Identity {
            email_verified: Some(false),
            ..boss.clone()
        };
        assert!(grants_for(&rules, &unverified).is_empty());
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
    }

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(local_path(Some("/runs/4?x=1")), "/runs/4?x=1");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil",
            "runs",
            "",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn the_local_console_answers_only_to_local_host_names() {
        let mut h = HeaderMap::new();
        assert!(host_is_local(&h));
        for (host, ok) in [
            ("127.0.0.1:8080", true),
            ("localhost:8080", true),
            ("[::1]:8080", true),
            ("localhost", true),
            ("evil.example:8080", false),
            ("10.0.0.1", false),
        ] {
            h.insert(header::HOST, host.parse().unwrap());
            assert_eq!(host_is_local(&h), ok, "{host}");
        }
    }

    fn auth(toml_text: &str) -> Auth {
        let cfg: Config = toml::from_str(toml_text).expect("config");
        Auth::from_config(&cfg).unwrap_or_else(|e| panic!("{e}"))
    }

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = axum::http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    fn hash(t: &str) -> String {
        hex::encode(Sha256::digest(t.as_bytes()))
    }

    #[test]
    fn auth_none_off_loopback_serves_tokens_and_no_console() {
        let a = auth(&format!(
            "listen = '0.0.0.0:8080'\nauth = 'none'\napi_tokens = ['{}']\n\
             [[api_token]]\nsha256 = '{}'\nrole = 'viewer'\n\
             [[api_token]]\nsha256 = '{}'\nrole = 'operator'\nrepos = ['acme/infra']\n",
            hash("admin-token"),
            hash("viewer-token"),
            hash("ops-token")
        ));
        let page = a.viewer(&parts("GET", "/", &[])).unwrap_err();
        assert_eq!(page.code, StatusCode::NOT_FOUND, "{}", page.message);
        let api = a.viewer(&parts("GET", "/api/v1/jobs/1", &[])).unwrap_err();
        assert_eq!(api.code, StatusCode::UNAUTHORIZED);
        let bearer = |t: &str| {
            a.viewer(&parts(
                "GET",
                "/",
                &[("authorization", &format!("Bearer {t}"))],
            ))
        };
        let admin = bearer("admin-token").unwrap();
        assert_eq!(admin.credential, Credential::Token);
        assert_eq!(admin.role_on("any/repo"), Some(Role::Admin));
        assert_eq!(admin.csrf_token(), None);
        assert!(admin.check_form(None, "any/repo", Role::Operator).is_ok());
        let viewer = bearer("viewer-token").unwrap();
        assert!(viewer.may("acme/infra", Role::Viewer));
        let refused = viewer.require("acme/infra", Role::Operator).unwrap_err();
        assert_eq!(refused.code, StatusCode::FORBIDDEN);
        let ops = bearer("ops-token").unwrap();
        assert!(ops.may("Acme/Infra", Role::Operator));
        assert_eq!(ops.role_on("acme/other"), None);
        assert_eq!(
            bearer("unknown").unwrap_err().code,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn a_login_is_needed_and_only_a_good_session_is_one() {
        // SAFETY: this test's own variables; no other test reads them.
        unsafe {
            std::env::set_var("SG_AUTH_UNIT_SECRET", "client-secret");
            std::env::set_var("SG_AUTH_UNIT_KEY", "k".repeat(32));
        }
        let a = auth(
            "listen = '0.0.0.0:8080'\n[auth]\nissuer = 'https://idp.example.com'\nclient_id = 'sg'\n\
             client_secret_env = 'SG_AUTH_UNIT_SECRET'\nsession_key_env = 'SG_AUTH_UNIT_KEY'\n\
             public_url = 'https://sg.example.com'\n\
             [[auth.roles]]\nrole = 'viewer'\nclaim = 'groups'\nvalue = 'v'\n",
        );
        assert!(a.has_login());
        // A page asks for the login (and comes back); the API and forms say 401.
        let page = a
            .viewer(&parts("GET", "/runs/3?x=1", &[]))
            .unwrap_err()
            .into_response();
        assert_eq!(page.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            page.headers()[header::LOCATION],
            "/login?next=%2Fruns%2F3%3Fx%3D1"
        );
        for (m, u) in [
            ("GET", "/api/v1/jobs/1"),
            ("POST", "/stacks/a/b/c/redeploy"),
            ("GET", "/auth/session"),
        ] {
            let r = a.viewer(&parts(m, u, &[])).unwrap_err();
            assert_eq!(r.code, StatusCode::UNAUTHORIZED, "{m} {u}");
        }
        let signer = Signer::new("k".repeat(32).as_bytes());
        let session = |exp: u64| Session {
            sid: "sid".into(),
            sub: "otto".into(),
            email: None,
            grants: vec![Grant {
                role: Role::Viewer,
                repos: None,
            }],
            exp,
        };
        // Behind https the cookie is __Host-sg_session.
        let with = |value: String| {
            a.viewer(&parts(
                "GET",
                "/",
                &[("cookie", &format!("__Host-sg_session={value}"))],
            ))
        };
        let v = with(signer.seal(SESSION, &session(now() + 60))).unwrap();
        assert_eq!(v.credential, Credential::Session);
        assert_eq!(v.csrf_token(), Some(signer.csrf("sid").as_str()));
        assert!(v.check_csrf(Some(&signer.csrf("other"))).is_err());
        assert!(
            v.check_form(Some(&signer.csrf("sid")), "a/b", Role::Viewer)
                .is_ok()
        );
        assert!(
            with(signer.seal(SESSION, &session(now() - 1))).is_err(),
            "expired"
        );
        assert!(
            with(signer.seal(LOGIN, &session(now() + 60))).is_err(),
            "not a session"
        );
        let other = Signer::new("j".repeat(32).as_bytes());
        assert!(
            with(other.seal(SESSION, &session(now() + 60))).is_err(),
            "another key"
        );
        let plain = a.viewer(&parts(
            "GET",
            "/",
            &[(
                "cookie",
                &format!("sg_session={}", signer.seal(SESSION, &session(now() + 60))),
            )],
        ));
        assert!(
            plain.is_err(),
            "behind https only the __Host- cookie counts"
        );
    }

    #[test]
    fn the_local_user_is_an_operator_whose_forms_need_their_token() {
        let a = auth("listen = '127.0.0.1:8080'\n");
        let v = a
            .viewer(&parts("GET", "/", &[("host", "127.0.0.1:8080")]))
            .unwrap();
        assert_eq!(v.credential, Credential::Local);
        assert!(v.may("any/repo", Role::Operator) && !v.may("any/repo", Role::Admin));
        let token = v.csrf_token().expect("a token").to_string();
        assert!(
            v.check_form(Some(&token), "any/repo", Role::Operator)
                .is_ok()
        );
        assert!(v.check_form(None, "any/repo", Role::Operator).is_err());
        assert!(
            v.check_api_call(&HeaderMap::new()).is_err(),
            "the API wants a token"
        );
        let rebound = a.viewer(&parts("GET", "/", &[("host", "evil.example")]));
        assert_eq!(rebound.unwrap_err().code, StatusCode::FORBIDDEN);
        assert!(!v.csrf_field().is_empty());
    }
}
