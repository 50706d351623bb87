//! `stackgate serve` configuration: a TOML file, every key also settable as
//! `STACKGATE_<SECTION>_<KEY>` in the environment. Unknown keys are an error. Secrets are
//! never inline: they come from an environment variable or a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::domain::Role;

pub mod targets;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Base of the links in commit statuses, e.g. `https://stackgate.example.com`.
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub github: Option<GithubConfig>,
    #[serde(default)]
    pub repos: Vec<RepoConfig>,
    #[serde(default)]
    pub aws: AwsConfig,
    /// `[[targets]]`: the AWS accounts stackgate deploys to through an assumed role, and
    /// which repository paths may use each (`[[repos]] targets`). None: the server's own
    /// credentials, as before.
    #[serde(default)]
    pub targets: Vec<targets::TargetConfig>,
    #[serde(default)]
    pub policies: PoliciesConfig,
    /// sha256 (hex) of each bearer token that may call the manual API: admin on every
    /// repository.
    #[serde(default)]
    pub api_tokens: Vec<String>,
    /// Bearer tokens for machines with a role, on some repositories or all:
    /// `[[api_token]] sha256 = "…", role = "operator", repos = ["owner/name"]`.
    #[serde(default)]
    pub api_token: Vec<ApiTokenConfig>,
    /// `[auth]`: people log in through an OpenID provider. `auth = "none"`: no login, and no
    /// console unless `listen` is a loopback address. Absent: like `"none"`, and a `listen`
    /// that is not loopback is refused.
    #[serde(default)]
    pub auth: Option<AuthSetting>,
    /// Jobs of different stacks that may run at once.
    #[serde(default = "default_parallel")]
    pub max_parallel_jobs: usize,
    /// The longest git waits to connect, for each read, and for one whole fetch.
    #[serde(default = "default_git_timeout")]
    pub git_timeout_seconds: u64,
    #[serde(default)]
    pub listener: ListenerConfig,
    /// Stack outputs that may be shown on run pages and `/api/v1/jobs/{id}`; the others are
    /// redacted (an output may be a secret).
    #[serde(default)]
    pub public_outputs: Vec<String>,
    #[serde(default)]
    pub drift: DriftConfig,
    #[serde(default)]
    pub approvals: ApprovalsConfig,
}

/// Held change sets: which stacks wait for an operator, and for how long.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// What every stack gets; a deployment file's `approval` may only make it stricter.
    #[serde(default = "default_approval")]
    pub default: crate::domain::Approval,
    /// Seconds a held change set waits for a decision; then it expires and is deleted.
    #[serde(default = "default_approval_expiry")]
    pub expire_after_seconds: u64,
}

fn default_approval() -> crate::domain::Approval {
    crate::domain::Approval::None
}

fn default_approval_expiry() -> u64 {
    // Three days: a change held on Friday is still there on Monday.
    3 * 24 * 3600
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self {
            default: default_approval(),
            expire_after_seconds: default_approval_expiry(),
        }
    }
}

/// Drift checks: how often each deployed stack is asked, how many at once, and who hears of
/// a new drift or a failed deploy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftConfig {
    /// Seconds between two checks of one stack (each jittered by up to a tenth); 0: only
    /// on demand.
    #[serde(default = "default_drift_interval")]
    pub interval_seconds: u64,
    /// Checks that may run at once (DetectStackDrift is throttled per account).
    #[serde(default = "default_drift_concurrency")]
    pub concurrency: usize,
    /// A Slack-compatible incoming webhook URL (a secret: it lets anyone post), from this
    /// environment variable…
    #[serde(default)]
    pub notify_url_env: Option<String>,
    /// …or this file.
    #[serde(default)]
    pub notify_url_file: Option<PathBuf>,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            interval_seconds: default_drift_interval(),
            concurrency: default_drift_concurrency(),
            notify_url_env: None,
            notify_url_file: None,
        }
    }
}

impl DriftConfig {
    /// The notification webhook, when one is configured.
    pub fn notify_url(&self) -> Result<Option<SecretString>, ConfigError> {
        if self.notify_url_env.is_none() && self.notify_url_file.is_none() {
            return Ok(None);
        }
        secret_from(
            "drift.notify_url",
            self.notify_url_env.as_deref(),
            self.notify_url_file.as_deref(),
        )
        .map(Some)
    }
}

fn default_drift_interval() -> u64 {
    3600
}

fn default_drift_concurrency() -> usize {
    2
}

fn default_git_timeout() -> u64 {
    120
}

/// Bounds on what one HTTP client can hold: every wait and every connection is counted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Seconds a client has to send a request's headers (also an idle keep-alive's limit).
    #[serde(default = "default_header_timeout")]
    pub header_timeout_seconds: u64,
    /// Seconds a client has to send a request's whole body, counted from its headers.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_seconds: u64,
    /// Connections served at once; more wait in the kernel's backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            header_timeout_seconds: default_header_timeout(),
            body_timeout_seconds: default_body_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

fn default_header_timeout() -> u64 {
    10
}

fn default_body_timeout() -> u64 {
    30
}

fn default_max_connections() -> usize {
    512
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_parallel() -> usize {
    4
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// The SQLite file; its folder also holds git mirrors and the policy cache.
    #[serde(default = "default_state_path")]
    pub path: PathBuf,
    /// When a commit, an accepted delivery among them, counts as written.
    #[serde(default)]
    pub synchronous: Synchronous,
    /// Days of history kept: finished jobs (the last of each stack is always kept), posted
    /// statuses and delivery ids. 0 keeps everything.
    #[serde(default = "default_retain_days")]
    pub retain_days: u64,
    /// `postgres://…`: the queue in PostgreSQL, shared by every replica, instead of the
    /// SQLite file (whose folder still holds git mirrors and the policy cache).
    #[serde(default)]
    pub url: Option<StateUrl>,
    /// How long a claim on a running job holds without renewal: the heartbeat renews it
    /// every third of it, and a job whose replica stopped renewing is taken over after it.
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u64,
}

/// The state database's URL. It may hold a password: its `Debug` and [`StateUrl::redacted`]
/// hide it, and only the store reads it whole.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct StateUrl(String);

impl StateUrl {
    pub fn new(url: impl Into<String>) -> Self {
        StateUrl(url.into())
    }

    /// The whole URL, password and all: for connecting, never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password, if any, as `***`: the userinfo's, and a `password`
    /// query pair's (tokio-postgres reads `?password=…` too, its key in any case or
    /// percent-encoded).
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                if let Some(q) = u.query().map(mask_password_pairs) {
                    u.set_query(Some(&q));
                }
                u.to_string()
            }
            Err(_) => "(an unreadable URL)".into(),
        }
    }
}

/// A query string with the value of every `password` pair as `***`, the other pairs as
/// they were written.
fn mask_password_pairs(query: &str) -> String {
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| {
            let key = pair.split_once('=').map_or(pair, |(k, _)| k);
            let decoded = url::form_urlencoded::parse(key.as_bytes())
                .next()
                .map(|(k, _)| k.into_owned())
                .unwrap_or_default();
            if decoded.trim().eq_ignore_ascii_case("password") {
                format!("{key}=***")
            } else {
                pair.to_string()
            }
        })
        .collect();
    masked.join("&")
}

impl std::fmt::Debug for StateUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn default_retain_days() -> u64 {
    30
}

fn default_lease_seconds() -> u64 {
    10
}

/// GitHub redelivers a delivery, under its old id, for up to 3 days: its id must be kept
/// at least that long to be recognised.
pub const MIN_RETAIN_DAYS: u64 = 3;

/// sha256(""): what `printf '' | sha256sum` gives when `$TOKEN` was unset.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// SQLite's `synchronous` for the state database (in WAL mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Every commit waits for fsync: it survives a power cut or a kernel crash.
    #[default]
    Full,
    /// Commits reach the OS, not the disk: they survive the process being killed at any
    /// moment, and a power cut may lose the last ones. No request waits on the disk.
    Normal,
}

impl Synchronous {
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            path: default_state_path(),
            synchronous: Synchronous::default(),
            retain_days: default_retain_days(),
            url: None,
            lease_seconds: default_lease_seconds(),
        }
    }
}

fn default_state_path() -> PathBuf {
    PathBuf::from(".local/state/stackgate.db")
}

impl StateConfig {
    pub fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Personal or fine-grained token, from this environment variable…
    #[serde(default)]
    pub token_env: Option<String>,
    /// …or this file.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub app_id: Option<u64>,
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    #[serde(default)]
    pub installation_id: Option<u64>,
    /// Check runs for pull request dry runs: `auto` writes them when stackgate is a GitHub
    /// App (only an App may), `off` never.
    #[serde(default)]
    pub checks: ChecksMode,
    /// Whether dry runs keep their commit statuses beside check runs, so that branch
    /// protection rules that require the statuses keep working.
    #[serde(default = "yes")]
    pub statuses_with_checks: bool,
}

/// Whether pull request dry runs write check runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksMode {
    #[default]
    Auto,
    Off,
}

fn yes() -> bool {
    true
}

fn default_api_url() -> String {
    "https://api.github.com".into()
}

/// How stackgate authenticates to GitHub.
#[derive(Clone)]
pub enum GithubAuth {
    Token(SecretString),
    App {
        app_id: u64,
        private_key: SecretString,
        installation_id: u64,
    },
}

impl std::fmt::Debug for GithubAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GithubAuth::Token(_) => f.write_str("Token([redacted])"),
            GithubAuth::App {
                app_id,
                installation_id,
                ..
            } => write!(
                f,
                "App {{ app_id: {app_id}, installation_id: {installation_id}, private_key: [redacted] }}"
            ),
        }
    }
}

impl GithubConfig {
    pub fn auth(&self) -> Result<GithubAuth, ConfigError> {
        match (&self.app_id, &self.private_key_file, &self.installation_id) {
            (Some(app_id), Some(key), Some(inst)) => Ok(GithubAuth::App {
                app_id: *app_id,
                private_key: read_secret_file(key)?,
                installation_id: *inst,
            }),
            (None, None, None) => secret_from(
                "github.token",
                self.token_env.as_deref(),
                self.token_file.as_deref(),
            )
            .map(GithubAuth::Token),
            _ => Err(ConfigError::Invalid(
                "github: a GitHub App needs app_id, private_key_file and installation_id together"
                    .into(),
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// `owner/repo`.
    pub name: String,
    /// Clone URL: https, ssh, or a local path.
    pub url: String,
    #[serde(default = "default_branch")]
    pub branch: String,
    #[serde(default = "default_stacks_dir")]
    pub stacks_dir: String,
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    #[serde(default)]
    pub webhook_secret_file: Option<PathBuf>,
    /// Seconds between polls of the branch head; unset means webhooks only.
    #[serde(default)]
    pub poll_interval: Option<u64>,
    /// Remove the stacks whose folders were deleted from the branch.
    #[serde(default)]
    pub prune: bool,
    /// The most stacks prune removes for one commit; more gone at once is refused.
    #[serde(default = "default_max_prune")]
    pub max_prune: usize,
    /// Stack folder pattern (from the repository root, `*` within one path segment) →
    /// the target its stacks may name. Empty: the server's own account, and no target.
    #[serde(default)]
    pub targets: BTreeMap<String, String>,
}

/// One: deleting one stack folder does what it says; several at once is what a botched
/// move, rename or `stacks_dir` looks like.
fn default_max_prune() -> usize {
    1
}

fn default_branch() -> String {
    "main".into()
}

fn default_stacks_dir() -> String {
    "stacks".into()
}

impl RepoConfig {
    pub fn webhook_secret(&self) -> Result<Option<SecretString>, ConfigError> {
        if self.webhook_secret_env.is_none() && self.webhook_secret_file.is_none() {
            return Ok(None);
        }
        secret_from(
            &format!("repos[{}].webhook_secret", self.name),
            self.webhook_secret_env.as_deref(),
            self.webhook_secret_file.as_deref(),
        )
        .map(Some)
    }

    pub fn poll(&self) -> Option<Duration> {
        self.poll_interval.map(Duration::from_secs)
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub endpoint_url: Option<String>,
    #[serde(default)]
    pub artifact_bucket: Option<String>,
    /// Seconds between CloudFormation polls.
    #[serde(default)]
    pub poll_seconds: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoliciesConfig {
    /// Folder of `*.wasm` policies; unset means the policies built into stackgate.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default = "default_deadline")]
    pub deadline_ms: u64,
    #[serde(default = "default_memory")]
    pub memory_mib: usize,
    /// Per policy: its pinned digest and its settings.
    #[serde(default)]
    pub policy: BTreeMap<String, PolicyConfig>,
}

impl Default for PoliciesConfig {
    fn default() -> Self {
        Self {
            dir: None,
            deadline_ms: default_deadline(),
            memory_mib: default_memory(),
            policy: BTreeMap::new(),
        }
    }
}

fn default_deadline() -> u64 {
    1000
}

fn default_memory() -> usize {
    64
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub settings: serde_json::Value,
}

/// `[[api_token]]`: a bearer token's sha256 (never the token), its role and repositories.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenConfig {
    pub sha256: String,
    pub role: Role,
    /// `owner/name` of each repository the role holds on; absent: all of them.
    #[serde(default)]
    pub repos: Option<Vec<String>>,
}

/// `[auth]` as written: a table, or `auth = "none"` spelled out.
#[derive(Debug, Clone)]
pub enum AuthSetting {
    /// No login: the console only on a loopback `listen`.
    None,
    /// Logins through an OpenID provider.
    Login(Box<AuthConfig>),
}

impl<'de> Deserialize<'de> for AuthSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Setting;
        impl<'de> serde::de::Visitor<'de> for Setting {
            type Value = AuthSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an [auth] table, or auth = \"none\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AuthSetting, E> {
                match v {
                    "none" => Ok(AuthSetting::None),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<AuthSetting, A::Error> {
                AuthConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|c| AuthSetting::Login(Box::new(c)))
            }
        }
        d.deserialize_any(Setting)
    }
}

/// `[auth]`: login through an OpenID provider (authorization code with PKCE), and the rules
/// that turn the ID token's claims into roles.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The provider's issuer URL; its discovery document is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Where people reach stackgate (the redirect URI is `<public_url>/auth/callback`);
    /// default: the top-level `public_url`. `https://…` makes the cookies `Secure`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The key that signs the session cookies (at least 32 bytes; the same on every replica).
    #[serde(default)]
    pub session_key_env: Option<String>,
    #[serde(default)]
    pub session_key_file: Option<PathBuf>,
    /// How long a login lasts.
    #[serde(default = "default_session_hours")]
    pub session_hours: u64,
    /// Scopes asked for besides `openid`; `groups` where the provider has such a scope
    /// (Okta, Dex), not where it refuses unknown ones (Google, Entra ID).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// `[[auth.roles]]`: who gets which role.
    #[serde(default)]
    pub roles: Vec<RoleRule>,
}

fn default_session_hours() -> u64 {
    12
}

fn default_scopes() -> Vec<String> {
    vec!["email".into()]
}

/// The shortest session key: 32 bytes, as many as HMAC-SHA256's output.
pub const MIN_SESSION_KEY_BYTES: usize = 32;

/// `[[auth.roles]]`: whoever's ID token has `value` in `claim` gets `role`, on `repos` (all
/// of them when absent).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRule {
    pub role: Role,
    pub claim: RoleClaim,
    pub value: String,
    #[serde(default)]
    pub repos: Option<Vec<String>>,
}

/// The ID token claims a role rule may match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleClaim {
    /// One of the strings of the `groups` claim.
    Groups,
    /// The `email` claim (not when `email_verified` is false), compared without case.
    Email,
}

impl AuthConfig {
    /// The OAuth client secret.
    pub fn client_secret(&self) -> Result<SecretString, ConfigError> {
        secret_from(
            "auth.client_secret",
            self.client_secret_env.as_deref(),
            self.client_secret_file.as_deref(),
        )
    }

    /// The session cookies' signing key: refused when shorter than 32 bytes.
    pub fn session_key(&self) -> Result<SecretString, ConfigError> {
        use secrecy::ExposeSecret;
        let key = secret_from(
            "auth.session_key",
            self.session_key_env.as_deref(),
            self.session_key_file.as_deref(),
        )?;
        let len = key.expose_secret().len();
        if len < MIN_SESSION_KEY_BYTES {
            return Err(ConfigError::Invalid(format!(
                "auth.session_key: {len} bytes; at least {MIN_SESSION_KEY_BYTES} (e.g. `openssl rand -hex 32`)"
            )));
        }
        Ok(key)
    }

    fn validate(&self, top_public_url: Option<&str>) -> Result<(), ConfigError> {
        let issuer = url::Url::parse(&self.issuer)
            .map_err(|e| ConfigError::Invalid(format!("auth.issuer = `{}`: {e}", self.issuer)))?;
        let loopback_http = issuer.scheme() == "http"
            && issuer
                .host_str()
                .is_some_and(|h| host_is_loopback(h.trim_start_matches('[').trim_end_matches(']')));
        if issuer.scheme() != "https" && !loopback_http {
            return Err(ConfigError::Invalid(format!(
                "auth.issuer = `{}`: an https:// URL (plain http only on a loopback address)",
                self.issuer
            )));
        }
        if self.client_id.trim().is_empty() {
            return Err(ConfigError::Invalid("auth.client_id is empty".into()));
        }
        for (what, env, file) in [
            (
                "client_secret",
                self.client_secret_env.is_some(),
                self.client_secret_file.is_some(),
            ),
            (
                "session_key",
                self.session_key_env.is_some(),
                self.session_key_file.is_some(),
            ),
        ] {
            if env == file {
                return Err(ConfigError::Invalid(format!(
                    "auth: give one of {what}_env and {what}_file"
                )));
            }
        }
        let public = self
            .public_url
            .as_deref()
            .or(top_public_url)
            .ok_or_else(|| {
                ConfigError::Invalid(
                    "auth.public_url: where people reach stackgate (the redirect URI is \
                 <public_url>/auth/callback); or set the top-level public_url"
                        .into(),
                )
            })?;
        match url::Url::parse(public) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "auth.public_url = `{public}`: an http(s):// URL"
                )));
            }
        }
        if !(1..=720).contains(&self.session_hours) {
            return Err(ConfigError::Invalid(format!(
                "auth.session_hours = {}: between 1 and 720",
                self.session_hours
            )));
        }
        if self.roles.is_empty() {
            return Err(ConfigError::Invalid(
                "auth.roles: no [[auth.roles]] rule, so nobody who logs in would get a role".into(),
            ));
        }
        for (i, r) in self.roles.iter().enumerate() {
            if r.value.trim().is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "auth.roles[{i}].value is empty"
                )));
            }
            check_repo_names(&format!("auth.roles[{i}].repos"), r.repos.as_deref())?;
        }
        Ok(())
    }

    /// Where people reach stackgate, without a trailing `/`.
    pub fn public_url<'a>(&'a self, top: Option<&'a str>) -> Option<&'a str> {
        self.public_url
            .as_deref()
            .or(top)
            .map(|u| u.trim_end_matches('/'))
    }
}

fn check_repo_names(what: &str, repos: Option<&[String]>) -> Result<(), ConfigError> {
    for r in repos.unwrap_or_default() {
        let parts: Vec<&str> = r.split('/').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.trim().is_empty()) {
            return Err(ConfigError::Invalid(format!(
                "{what}: `{r}` must be owner/name"
            )));
        }
    }
    Ok(())
}

fn check_token_hash(what: &str, t: &str) -> Result<(), ConfigError> {
    if t.len() != 64 || !t.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ConfigError::Invalid(format!(
            "{what}: each entry is the sha256 hex of a token (never the token itself)"
        )));
    }
    if t.eq_ignore_ascii_case(EMPTY_SHA256) {
        return Err(ConfigError::Invalid(format!(
            "{what}: {t} is the sha256 of the empty string; hash the token itself \
             (printf %s \"$TOKEN\" | sha256sum)"
        )));
    }
    Ok(())
}

/// `127.0.0.1`, `::1`, `localhost` and the like: a host only this machine reaches.
pub fn host_is_loopback(host: &str) -> bool {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Whether a `listen` address (`127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`) is one
/// only this machine reaches.
pub fn listen_is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
        return addr.ip().is_loopback();
    }
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
    host_is_loopback(host.trim_start_matches('[').trim_end_matches(']'))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("configuration: {0}")]
    Invalid(String),
}

fn read_secret_file(path: &Path) -> Result<SecretString, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        // An empty key signs anything anyone can compute: refuse it.
        return Err(ConfigError::File {
            path: path.display().to_string(),
            message: "the secret file is empty or blank".into(),
        });
    }
    Ok(SecretString::from(secret.to_string()))
}

fn secret_from(
    what: &str,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<SecretString, ConfigError> {
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(SecretString::from(v)),
            Ok(_) => Err(ConfigError::Invalid(format!(
                "{what}: environment variable {var} is empty or blank"
            ))),
            Err(_) => Err(ConfigError::Invalid(format!(
                "{what}: environment variable {var} is not set"
            ))),
        };
    }
    if let Some(f) = file {
        return read_secret_file(f);
    }
    Err(ConfigError::Invalid(format!(
        "{what}: give `*_env` or `*_file`"
    )))
}

impl Config {
    /// Reads the file, then applies `STACKGATE_*` environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut value = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::File {
                    path: p.display().to_string(),
                    message: e.to_string(),
                })?;
                toml::from_str::<toml::Value>(&text).map_err(|e| ConfigError::File {
                    path: p.display().to_string(),
                    message: e.to_string(),
                })?
            }
            None => toml::Value::Table(Default::default()),
        };
        apply_env(&mut value, std::env::vars())?;
        let cfg: Config = value
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::File {
                path: path
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "environment".into()),
                message: e.to_string(),
            })?;
        let mut cfg = cfg;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the values, and writes each repository's `stacks_dir` in one form.
    fn validate(&mut self) -> Result<(), ConfigError> {
        if let Some(url) = &self.state.url {
            let scheme = url::Url::parse(url.expose()).map(|u| u.scheme().to_string());
            if !matches!(scheme.as_deref(), Ok("postgres" | "postgresql")) {
                return Err(ConfigError::Invalid(format!(
                    "state.url = {}: a postgres://user:password@host:port/database URL",
                    url.redacted()
                )));
            }
        }
        let keep = self.state.retain_days;
        if keep > 36_500 {
            return Err(ConfigError::Invalid(format!(
                "state.retain_days = {keep}: at most 36500 (100 years); 0 keeps everything"
            )));
        }
        if keep != 0 && keep < MIN_RETAIN_DAYS {
            return Err(ConfigError::Invalid(format!(
                "state.retain_days = {keep}: keep at least {MIN_RETAIN_DAYS} days (GitHub \
                 redelivers for 3 days, and a forgotten delivery id would run again), or 0 for \
                 everything"
            )));
        }
        if !(1..=3600).contains(&self.state.lease_seconds) {
            return Err(ConfigError::Invalid(format!(
                "state.lease_seconds = {}: between 1 and 3600",
                self.state.lease_seconds
            )));
        }
        let d = &self.drift;
        if !(1..=16).contains(&d.concurrency)
            || (d.interval_seconds != 0 && d.interval_seconds < 60)
        {
            return Err(ConfigError::Invalid(format!(
                "drift: interval_seconds = {} (0 for checks on demand only, else at least 60) and \
                 concurrency = {} (1 to 16)",
                d.interval_seconds, d.concurrency
            )));
        }
        if !(1..=3600).contains(&self.git_timeout_seconds) {
            return Err(ConfigError::Invalid(format!(
                "git_timeout_seconds = {}: between 1 and 3600",
                self.git_timeout_seconds
            )));
        }
        for r in &mut self.repos {
            r.stacks_dir = folder_path(&r.stacks_dir).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "repos[{}].stacks_dir = `{}`: a folder inside the repository, such as `stacks`",
                    r.name, r.stacks_dir
                ))
            })?;
            if r.max_prune == 0 {
                return Err(ConfigError::Invalid(format!(
                    "repos[{}].max_prune = 0: at least 1; to remove nothing, set prune = false",
                    r.name
                )));
            }
            if r.name.split('/').count() != 2 {
                return Err(ConfigError::Invalid(format!(
                    "repos: name `{}` must be owner/repo",
                    r.name
                )));
            }
        }
        for t in &self.api_tokens {
            check_token_hash("api_tokens", t)?;
        }
        for (i, t) in self.api_token.iter().enumerate() {
            check_token_hash(&format!("api_token[{i}].sha256"), &t.sha256)?;
            check_repo_names(&format!("api_token[{i}].repos"), t.repos.as_deref())?;
        }
        if let Some(AuthSetting::Login(auth)) = &self.auth {
            auth.validate(self.public_url.as_deref())?;
        }
        targets::validate(&self.targets, &self.repos).map_err(ConfigError::Invalid)?;
        self.check_exposure()?;
        let l = &self.listener;
        if l.header_timeout_seconds == 0 || l.body_timeout_seconds == 0 || l.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "listener: header_timeout_seconds, body_timeout_seconds and max_connections \
                 must be at least 1"
                    .into(),
            ));
        }
        if self.approvals.expire_after_seconds == 0 {
            return Err(ConfigError::Invalid(
                "approvals: expire_after_seconds must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Refuses a `listen` address that is not loopback when nobody has to log in, unless
    /// `auth = "none"` says so: the console would be open to the network.
    pub fn check_exposure(&self) -> Result<(), ConfigError> {
        if self.auth.is_none() && !listen_is_loopback(&self.listen) {
            return Err(ConfigError::Invalid(format!(
                "listen = \"{}\" is not a loopback address and there is no [auth]: anyone who \
                 reaches the port would use the console. Configure [auth] (README, \"Login\"), \
                 listen on 127.0.0.1, or write auth = \"none\" to serve no console there \
                 (webhooks, the API with bearer tokens and health only)",
                self.listen
            )));
        }
        Ok(())
    }

    /// The `[auth]` table, when people log in.
    pub fn login(&self) -> Option<&AuthConfig> {
        match &self.auth {
            Some(AuthSetting::Login(a)) => Some(a),
            _ => None,
        }
    }

    pub fn repo(&self, name: &str) -> Option<&RepoConfig> {
        self.repos
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
    }

    /// The link to a job's run page.
    /// Whether pull request dry runs write check runs: with `github.checks = "auto"` and
    /// App auth.
    pub fn check_runs(&self) -> bool {
        self.github
            .as_ref()
            .is_some_and(|g| g.checks == ChecksMode::Auto && g.app_id.is_some())
    }

    /// Whether pull request dry runs post commit statuses: unless check runs replace them.
    pub fn pr_statuses(&self) -> bool {
        !self.check_runs() || self.github.as_ref().is_none_or(|g| g.statuses_with_checks)
    }

    pub fn run_url(&self, job: crate::domain::JobId) -> String {
        let base = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen));
        format!("{}/runs/{job}", base.trim_end_matches('/'))
    }
}

/// `./stacks/` → `stacks`: the form of a folder in the stacks' `stackgate:path` tags (the
/// CLI's too). `None` for the root, or a path leaving the repository.
fn folder_path(dir: &str) -> Option<String> {
    let parts: Vec<&str> = dir
        .trim()
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    (!parts.is_empty() && !parts.contains(&"..")).then(|| parts.join("/"))
}

/// `STACKGATE_LISTEN`, `STACKGATE_AWS_ENDPOINT_URL`, `STACKGATE_GITHUB_API_URL`,
/// `STACKGATE_STATE_PATH` …: one variable per scalar key of the top level or of a section.
/// An unknown `STACKGATE_` variable is an error, like an unknown key.
fn apply_env(
    value: &mut toml::Value,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    const TOP: &[&str] = &[
        "listen",
        "public_url",
        "max_parallel_jobs",
        "api_tokens",
        "git_timeout_seconds",
        "public_outputs",
        "auth",
    ];
    const SECTIONS: &[(&str, &[&str])] = &[
        (
            "state",
            &["path", "synchronous", "retain_days", "url", "lease_seconds"],
        ),
        (
            "aws",
            &["region", "endpoint_url", "artifact_bucket", "poll_seconds"],
        ),
        (
            "github",
            &[
                "api_url",
                "token_env",
                "token_file",
                "app_id",
                "private_key_file",
                "installation_id",
            ],
        ),
        ("policies", &["dir", "deadline_ms", "memory_mib"]),
        (
            "drift",
            &[
                "interval_seconds",
                "concurrency",
                "notify_url_env",
                "notify_url_file",
            ],
        ),
        (
            "auth",
            &[
                "issuer",
                "client_id",
                "client_secret_env",
                "client_secret_file",
                "public_url",
                "session_key_env",
                "session_key_file",
                "session_hours",
            ],
        ),
        (
            "listener",
            &[
                "header_timeout_seconds",
                "body_timeout_seconds",
                "max_connections",
            ],
        ),
    ];
    // Variables the CLI reads for itself.
    const NOT_CONFIG: &[&str] = &["LOG", "CACHE_DIR", "ARTIFACT_BUCKET", "CONFIG"];
    let Some(root) = value.as_table_mut() else {
        return Err(ConfigError::Invalid(
            "the configuration must be a table".into(),
        ));
    };
    for (var, raw) in vars {
        let Some(key) = var.strip_prefix("STACKGATE_") else {
            continue;
        };
        if NOT_CONFIG.contains(&key)
            || key.starts_with("TEST_")
            || key.starts_with("EMULATOR_")
            || key.starts_with("POLICY_TARGET")
        {
            continue;
        }
        let key = key.to_ascii_lowercase();
        let parsed = parse_env_value(&raw);
        if TOP.contains(&key.as_str()) {
            let v = if key == "api_tokens" || key == "public_outputs" {
                toml::Value::Array(
                    raw.split(',')
                        .map(|s| toml::Value::String(s.trim().into()))
                        .collect(),
                )
            } else {
                parsed
            };
            root.insert(key, v);
            continue;
        }
        let mut placed = false;
        for (section, keys) in SECTIONS {
            if let Some(rest) = key.strip_prefix(&format!("{section}_"))
                && keys.contains(&rest)
            {
                let table = root
                    .entry(section.to_string())
                    .or_insert_with(|| toml::Value::Table(Default::default()));
                if let Some(t) = table.as_table_mut() {
                    t.insert(rest.to_string(), parsed.clone());
                }
                placed = true;
                break;
            }
        }
        if !placed {
            return Err(ConfigError::Invalid(format!(
                "unknown environment variable {var}"
            )));
        }
    }
    Ok(())
}

fn parse_env_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = raw.parse::<f64>()
        && raw.contains('.')
    {
        return toml::Value::Float(f);
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut v: toml::Value = toml::from_str(text).unwrap();
        apply_env(
            &mut v,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )?;
        let c: Config = v
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        let mut c = c;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn file_and_env_combine() {
        let c = parse(
            "listen = '127.0.0.1:9000'\n[[repos]]\nname = 'acme/infra'\nurl = 'https://github.com/acme/infra.git'\nwebhook_secret_env = 'HOOK'\npoll_interval = 30\n",
            &[("STACKGATE_AWS_ENDPOINT_URL", "http://127.0.0.1:4566"), ("STACKGATE_LISTEN", "127.0.0.1:9001")],
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9001");
        assert_eq!(c.aws.endpoint_url.as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!(c.repos[0].branch, "main");
        assert_eq!(c.repos[0].stacks_dir, "stacks");
        assert_eq!(c.repos[0].poll(), Some(Duration::from_secs(30)));
    }

    #[test]
    fn stacks_dir_is_written_in_one_form() {
        let repo = |dir: &str| {
            format!("[[repos]]\nname = 'acme/infra'\nurl = 'x'\nstacks_dir = '{dir}'\n")
        };
        for (dir, want) in [
            ("stacks/", "stacks"),
            (" ./infra//stacks/ ", "infra/stacks"),
        ] {
            let c = parse(&repo(dir), &[]).unwrap();
            assert_eq!(c.repos[0].stacks_dir, want, "{dir}");
        }
        for dir in ["", "/", "./", "../stacks"] {
            let err = parse(&repo(dir), &[]).unwrap_err().to_string();
            assert!(err.contains("stacks_dir"), "{dir}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse("lisen = 'x'\n", &[]).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
        let err = parse(
            "[[repos]]\nname='a/b'\nurl='x'\nwebhook_secret='inline'\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("webhook_secret"), "{err}");
        let err = parse("", &[("STACKGATE_AWS_ENDPOIN", "x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("STACKGATE_AWS_ENDPOIN"), "{err}");
    }

    #[test]
    fn the_state_url_picks_postgres_env_wins_and_its_password_never_shows() {
        assert!(parse("", &[]).unwrap().state.url.is_none());
        let c = parse(
            "[state]\nurl = 'postgres://sg:file-secret@db:5432/sg'\n",
            &[(
                "STACKGATE_STATE_URL",
                "postgres://sg:env-secret@db2:5432/sg",
            )],
        )
        .unwrap();
        let url = c.state.url.as_ref().unwrap();
        assert_eq!(url.expose(), "postgres://sg:env-secret@db2:5432/sg");
        assert_eq!(url.redacted(), "postgres://sg:***@db2:5432/sg");
        let shown = format!("{c:?}");
        assert!(!shown.contains("env-secret"), "{shown}");
        let err = parse("[state]\nurl = 'mysql://u:pw@h/d'\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("state.url") && !err.contains("pw@"), "{err}");
    }

    #[test]
    fn a_password_in_the_state_urls_query_never_shows() {
        for (url, secret) in [
            ("postgres://sg@db/sg?password=q-secret", "q-secret"),
            (
                "postgres://sg@db/sg?sslmode=require&PassWord=q-secret",
                "q-secret",
            ),
            (
                "postgres://sg@db/sg?pass%77ord=q%2Dsecret&sslmode=require",
                "q%2Dsecret",
            ),
            ("postgres://sg:u-secret@db/sg?password=q-secret", "secret"),
        ] {
            let shown = StateUrl::new(url).redacted();
            assert!(!shown.contains(secret), "{url} shows as {shown}");
            assert!(shown.contains("=***"), "{url} shows as {shown}");
        }
        // The other pairs show as written.
        assert_eq!(
            StateUrl::new("postgres://sg@db/sg?password=x&sslrootcert=/etc/rds.pem").redacted(),
            "postgres://sg@db/sg?password=***&sslrootcert=/etc/rds.pem"
        );
        assert_eq!(
            StateUrl::new("postgres://sg@db/sg?passwords=x").redacted(),
            "postgres://sg@db/sg?passwords=x"
        );
    }

    #[test]
    fn state_synchronous_defaults_to_full() {
        assert_eq!(parse("", &[]).unwrap().state.synchronous, Synchronous::Full);
        let c = parse("[state]\nsynchronous = 'normal'\n", &[]).unwrap();
        assert_eq!(c.state.synchronous, Synchronous::Normal);
        let c = parse("", &[("STACKGATE_STATE_SYNCHRONOUS", "normal")]).unwrap();
        assert_eq!(c.state.synchronous, Synchronous::Normal);
        let err = parse("[state]\nsynchronous = 'off'\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("off"), "{err}");
    }

    #[test]
    fn lease_seconds_default_to_ten_and_are_bounded() {
        assert_eq!(parse("", &[]).unwrap().state.lease_seconds, 10);
        let c = parse("", &[("STACKGATE_STATE_LEASE_SECONDS", "3")]).unwrap();
        assert_eq!(c.state.lease_seconds, 3);
        let err = parse("[state]\nlease_seconds = 0\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("state.lease_seconds"), "{err}");
    }

    #[test]
    fn retain_days_keeps_redeliverable_ids() {
        assert_eq!(parse("", &[]).unwrap().state.retain_days, 30);
        let c = parse("", &[("STACKGATE_STATE_RETAIN_DAYS", "0")]).unwrap();
        assert_eq!(c.state.retain_days, 0);
        assert_eq!(
            parse("[state]\nretain_days = 3\n", &[])
                .unwrap()
                .state
                .retain_days,
            3
        );
        assert!(parse("[state]\nretain_days = 100000\n", &[]).is_err());
        let err = parse("[state]\nretain_days = 1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("state.retain_days") && err.contains("3 days"),
            "{err}"
        );
    }

    #[test]
    fn git_timeout_is_bounded() {
        assert_eq!(parse("", &[]).unwrap().git_timeout_seconds, 120);
        let c = parse("", &[("STACKGATE_GIT_TIMEOUT_SECONDS", "5")]).unwrap();
        assert_eq!(c.git_timeout_seconds, 5);
        for bad in ["git_timeout_seconds = 0\n", "git_timeout_seconds = 3601\n"] {
            let err = parse(bad, &[]).unwrap_err().to_string();
            assert!(err.contains("git_timeout_seconds"), "{err}");
        }
    }

    #[test]
    fn the_hash_of_an_empty_token_is_refused() {
        let err = parse(&format!("api_tokens = ['{EMPTY_SHA256}']\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("api_tokens") && err.contains("empty string"),
            "{err}"
        );
        let upper = EMPTY_SHA256.to_ascii_uppercase();
        assert!(parse(&format!("api_tokens = ['{upper}']\n"), &[]).is_err());
    }

    #[test]
    fn a_blank_webhook_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hook-secret");
        std::fs::write(&file, " \n\t\n").unwrap();
        let c = parse(
            &format!(
                "[[repos]]\nname = 'acme/infra'\nurl = 'x'\nwebhook_secret_file = '{}'\n",
                file.display()
            ),
            &[],
        )
        .unwrap();
        let err = c.repos[0].webhook_secret().unwrap_err().to_string();
        assert!(
            err.contains("hook-secret") && err.contains("empty"),
            "{err}"
        );
        // SAFETY: this test's own variable; no other test reads it.
        unsafe { std::env::set_var("STACKGATE_TEST_BLANK_SECRET", "  ") };
        let c = parse(
            "[[repos]]\nname = 'acme/infra'\nurl = 'x'\nwebhook_secret_env = 'STACKGATE_TEST_BLANK_SECRET'\n",
            &[],
        )
        .unwrap();
        let err = c.repos[0].webhook_secret().unwrap_err().to_string();
        assert!(
            err.contains("STACKGATE_TEST_BLANK_SECRET") && err.contains("blank"),
            "{err}"
        );
    }

    #[test]
    fn listener_bounds_have_defaults_and_env() {
        let c = parse("", &[]).unwrap();
        assert_eq!(c.listener.header_timeout_seconds, 10);
        assert_eq!(c.listener.max_connections, 512);
        let c = parse("", &[("STACKGATE_LISTENER_MAX_CONNECTIONS", "8")]).unwrap();
        assert_eq!(c.listener.max_connections, 8);
        assert!(parse("[listener]\nbody_timeout_seconds = 0\n", &[]).is_err());
    }

    #[test]
    fn api_tokens_must_be_hashes() {
        let err = parse("api_tokens = ['hunter2']\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("sha256") && !err.contains("hunter2"), "{err}");
    }

    const AUTH: &str = "[auth]\nissuer = 'https://login.example.com/oauth2/default'\nclient_id = 'sg'\n\
        client_secret_env = 'SG_OIDC_SECRET'\nsession_key_env = 'SG_SESSION_KEY'\n\
        public_url = 'https://stackgate.example.com'\n\
        [[auth.roles]]\nrole = 'operator'\nclaim = 'groups'\nvalue = 'ops'\nrepos = ['acme/infra']\n\
        [[auth.roles]]\nrole = 'viewer'\nclaim = 'email'\nvalue = 'v@example.com'\n";

    #[test]
    fn a_public_listen_address_without_auth_is_refused() {
        for listen in [
            "0.0.0.0:8080",
            "10.1.2.3:8080",
            "[::]:8080",
            "stackgate.internal:8080",
        ] {
            let err = parse(&format!("listen = '{listen}'\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(listen) && err.contains("[auth]") && err.contains("auth = \"none\""),
                "{err}"
            );
            let err = parse("", &[("STACKGATE_LISTEN", listen)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("loopback"), "{err}");
        }
        for listen in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "127.0.0.2:9",
        ] {
            assert!(
                parse(&format!("listen = '{listen}'\n"), &[]).is_ok(),
                "{listen}"
            );
        }
    }

    #[test]
    fn auth_none_written_out_allows_a_public_listen_address() {
        let c = parse("listen = '0.0.0.0:8080'\nauth = 'none'\n", &[]).unwrap();
        assert!(matches!(c.auth, Some(AuthSetting::None)));
        assert!(c.login().is_none());
        let c = parse("listen = '0.0.0.0:8080'\n", &[("STACKGATE_AUTH", "none")]).unwrap();
        assert!(matches!(c.auth, Some(AuthSetting::None)));
        let err = parse("listen = '0.0.0.0:8080'\nauth = 'off'\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("off") && err.contains("none"), "{err}");
    }

    #[test]
    fn auth_reads_its_table_roles_and_scoped_tokens() {
        let token = "ab".repeat(32);
        let c = parse(
            &format!(
                "listen = '0.0.0.0:8080'\n{AUTH}\n[[api_token]]\nsha256 = '{token}'\nrole = 'operator'\nrepos = ['acme/infra']\n"
            ),
            &[("STACKGATE_AUTH_SESSION_HOURS", "8")],
        )
        .unwrap();
        let a = c.login().unwrap();
        assert_eq!(a.session_hours, 8);
        assert_eq!(a.scopes, vec!["email".to_string()]);
        assert_eq!(a.roles.len(), 2);
        assert_eq!(a.roles[0].role, Role::Operator);
        assert_eq!(a.roles[0].claim, RoleClaim::Groups);
        assert_eq!(a.roles[1].repos, None);
        assert_eq!(c.api_token[0].role, Role::Operator);
        assert_eq!(
            c.api_token[0].repos.as_deref(),
            Some(&["acme/infra".to_string()][..])
        );
        assert_eq!(parse(AUTH, &[]).unwrap().login().unwrap().session_hours, 12);

        for (bad, want) in [
            (AUTH.replace("role = 'viewer'", "role = 'root'"), "root"),
            (AUTH.replace("claim = 'email'", "claim = 'sub'"), "sub"),
            (AUTH.replace("https://login", "http://login"), "auth.issuer"),
            (
                AUTH.replace("session_key_env = 'SG_SESSION_KEY'\n", ""),
                "session_key",
            ),
            (
                AUTH.replace("value = 'ops'", "value = ' '"),
                "auth.roles[0].value",
            ),
            (AUTH.replace("['acme/infra']", "['infra']"), "owner/name"),
            (format!("{AUTH}client_secret = 'inline'\n"), "client_secret"),
        ] {
            let err = parse(&bad, &[]).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        let no_url = AUTH.replace("public_url = 'https://stackgate.example.com'\n", "");
        assert!(
            parse(&no_url, &[])
                .unwrap_err()
                .to_string()
                .contains("public_url")
        );
        let c = parse(
            &format!("public_url = 'https://sg.example.com/'\n{no_url}"),
            &[],
        )
        .unwrap();
        assert_eq!(
            c.login().unwrap().public_url(c.public_url.as_deref()),
            Some("https://sg.example.com")
        );
        // A loopback issuer may be plain http (the tests' provider).
        let local = AUTH.replace(
            "https://login.example.com/oauth2/default",
            "http://127.0.0.1:4444",
        );
        assert!(parse(&local, &[]).is_ok());
        let bad_token = "[[api_token]]\nsha256 = 'hunter2'\nrole = 'viewer'\n";
        let err = parse(bad_token, &[]).unwrap_err().to_string();
        assert!(
            err.contains("api_token[0]") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn a_short_or_missing_session_key_is_refused() {
        let c = parse(AUTH, &[]).unwrap();
        let auth = c.login().unwrap();
        // SAFETY: these tests' own variables; no other test reads them.
        unsafe { std::env::remove_var("SG_SESSION_KEY") };
        let err = auth.session_key().unwrap_err().to_string();
        assert!(
            err.contains("SG_SESSION_KEY") && err.contains("not set"),
            "{err}"
        );
        unsafe { std::env::set_var("SG_SESSION_KEY", "short-key-31-bytes-long-xxxxxxx") };
        let err = auth.session_key().unwrap_err().to_string();
        assert!(
            err.contains("31 bytes") && err.contains("at least 32"),
            "{err}"
        );
        assert!(!err.contains("short-key"), "the key shows: {err}");
        unsafe { std::env::set_var("SG_SESSION_KEY", "a-session-key-of-32-bytes-long!!") };
        assert!(auth.session_key().is_ok());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("session-key");
        std::fs::write(&file, "0123456789abcdef\n").unwrap();
        let from_file = AUTH.replace(
            "session_key_env = 'SG_SESSION_KEY'",
            &format!("session_key_file = '{}'", file.display()),
        );
        let c = parse(&from_file, &[]).unwrap();
        let err = c.login().unwrap().session_key().unwrap_err().to_string();
        assert!(err.contains("16 bytes"), "{err}");
    }
}
