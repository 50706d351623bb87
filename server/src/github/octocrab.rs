//! Commit statuses, pull-request comments and check runs on GitHub, through octocrab, with
//! a token or as a GitHub App installation (only an App may write check runs).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use octocrab::Octocrab;
use octocrab::models::InstallationId;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::{CheckRunPost, GitCredential, GitHub, GithubError, GithubErrorKind, Reply, StatusPost};
use crate::config::{GithubAuth, GithubConfig};
use crate::domain::{Annotation, StatusState};

/// A check run's create or update body, as GitHub's REST API takes it (octocrab's builder
/// has no annotations).
#[derive(Serialize)]
struct CheckRunBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    head_sha: Option<&'a str>,
    name: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    conclusion: Option<&'static str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    details_url: &'a str,
    external_id: &'a str,
    output: CheckRunOutput<'a>,
}

#[derive(Serialize)]
struct CheckRunOutput<'a> {
    title: &'a str,
    summary: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    annotations: &'a [Annotation],
}

/// The part of GitHub's check run reply stackgate reads.
#[derive(Deserialize)]
struct CheckRunMade {
    id: u64,
}

/// What an octocrab error means: 5xx and rate limits (primary 429, secondary 403 "rate
/// limit") are worth retrying; a broken connection too.
pub(super) fn classify(operation: &'static str, e: octocrab::Error) -> GithubError {
    match &e {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code.as_u16();
            let msg = source.message.clone();
            let kind = match status {
                429 => GithubErrorKind::RateLimited,
                403 if msg.to_lowercase().contains("rate limit") => GithubErrorKind::RateLimited,
                401 | 403 => GithubErrorKind::Permission,
                404 => GithubErrorKind::NotFound,
                s => GithubErrorKind::Other { retry: s >= 500 },
            };
            GithubError {
                operation,
                message: format!("{status} {msg}"),
                kind,
                retry_after: None,
            }
        }
        other => GithubError {
            operation,
            message: other.to_string(),
            kind: GithubErrorKind::Other { retry: true },
            retry_after: None,
        },
    }
}

/// A reply as octocrab hands it before reading it.
type Raw =
    hyper::Response<http_body_util::combinators::BoxBody<hyper::body::Bytes, octocrab::Error>>;

/// How long a refusal asks to wait: `Retry-After` seconds, or until `x-ratelimit-reset`
/// (epoch seconds) once `x-ratelimit-remaining` is 0. An absurd value is capped at an hour.
fn asked_wait(headers: &hyper::HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let wait = match number("retry-after") {
        Some(secs) => Duration::from_secs(secs),
        None if number("x-ratelimit-remaining") == Some(0) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
            Duration::from_secs(number("x-ratelimit-reset")?).checked_sub(now)?
        }
        None => return None,
    };
    Some(wait.min(Duration::from_secs(3600)))
}

/// Statuses and comments through octocrab.
#[derive(Clone)]
pub struct Client(Octocrab);

impl Client {
    /// The reporter, and the credential git uses with the same identity.
    pub async fn from_config(cfg: &GithubConfig) -> Result<(Self, GitCredential), String> {
        let auth = cfg.auth().map_err(|e| e.to_string())?;
        let builder = Octocrab::builder()
            .base_uri(cfg.api_url.as_str())
            .map_err(|e| format!("github.api_url: {e}"))?
            // Retries are stackgate's own (the status outbox), so each is counted once.
            .add_retry_config(octocrab::service::middleware::retry::RetryConfig::None)
            .set_connect_timeout(Some(std::time::Duration::from_secs(10)))
            .set_read_timeout(Some(std::time::Duration::from_secs(30)));
        let (client, git) = match auth {
            GithubAuth::Token(t) => (
                builder
                    .personal_token(t.expose_secret().to_string())
                    .build()
                    .map_err(|e| format!("github: {e}"))?,
                GitCredential::Token(t),
            ),
            GithubAuth::App {
                app_id,
                private_key,
                installation_id,
            } => {
                let app = builder
                    .app_from_rsa_pem(app_id.into(), private_key.expose_secret().as_bytes())
                    .map_err(|_| "github: the App private key is not an RSA PEM key".to_string())?
                    .build()
                    .map_err(|e| format!("github: {e}"))?;
                let installation = app
                    .installation(InstallationId(installation_id))
                    .map_err(|e| format!("github: {e}"))?;
                (
                    installation.clone(),
                    GitCredential::Installation(installation),
                )
            }
        };
        Ok((Client(client), git))
    }

    async fn status(&self, s: StatusPost<'_>) -> Result<(), GithubError> {
        let (repo, sha, context, description, target_url) =
            (s.repo, s.sha, s.context, s.description, s.target_url);
        let gh = &self.0;
        let (owner, name) = split(repo);
        use octocrab::models::StatusState as Gh;
        let state = match s.state {
            StatusState::Success => Gh::Success,
            StatusState::Failure => Gh::Failure,
            StatusState::Pending => Gh::Pending,
            StatusState::Error => Gh::Error,
        };
        let repos = gh.repos(owner, name);
        let mut req = repos
            .create_status(sha.to_string(), state)
            .context(context.to_string())
            .description(description.to_string());
        if !target_url.is_empty() {
            req = req.target(target_url.to_string());
        }
        req.send()
            .await
            .map(|_| ())
            .map_err(|e| classify("create status", e))
    }

    /// Creates the check run, or updates the one made before. Returns its id.
    async fn check_run(
        &self,
        existing: Option<u64>,
        r: CheckRunPost<'_>,
    ) -> Result<Option<u64>, GithubError> {
        let (owner, name) = split(r.repo);
        let body = |head_sha| CheckRunBody {
            head_sha,
            name: r.name,
            status: if r.state.conclusion().is_some() {
                "completed"
            } else {
                "in_progress"
            },
            conclusion: r.state.conclusion(),
            details_url: r.details_url,
            external_id: r.external_id,
            output: CheckRunOutput {
                title: r.title,
                summary: r.summary,
                annotations: r.annotations,
            },
        };
        if let Some(id) = existing {
            let route = format!("/repos/{owner}/{name}/check-runs/{id}");
            let sent = self.0._patch(route, Some(&body(None))).await;
            match self.made("update check run", sent).await {
                Ok(id) => return Ok(Some(id)),
                // Gone (a repository moved, history rewritten): make a new one.
                Err(e) if matches!(e.kind, GithubErrorKind::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        let route = format!("/repos/{owner}/{name}/check-runs");
        let sent = self.0._post(route, Some(&body(Some(r.sha)))).await;
        self.made("create check run", sent).await.map(Some)
    }

    /// The id of the check run a reply made, or the error, with how long GitHub asked to
    /// wait (the raw reply, because octocrab's errors drop the headers).
    async fn made(
        &self,
        operation: &'static str,
        sent: Result<Raw, octocrab::Error>,
    ) -> Result<u64, GithubError> {
        let reply = sent.map_err(|e| classify(operation, e))?;
        let wait = asked_wait(reply.headers());
        let reply = octocrab::map_github_error(reply)
            .await
            .map_err(|e| GithubError {
                retry_after: wait,
                ..classify(operation, e)
            })?;
        let text = self
            .0
            .body_to_string(reply)
            .await
            .map_err(|e| classify(operation, e))?;
        serde_json::from_str::<CheckRunMade>(&text)
            .map(|made| made.id)
            .map_err(|e| GithubError {
                operation,
                message: format!("unreadable reply: {e}"),
                kind: GithubErrorKind::Other { retry: false },
                retry_after: None,
            })
    }

    /// Creates the PR comment, or updates the one stackgate made before. Returns its id.
    async fn comment(
        &self,
        repo: &str,
        pr: u64,
        existing: Option<u64>,
        body: &str,
    ) -> Result<Option<u64>, GithubError> {
        let gh = &self.0;
        let (owner, name) = split(repo);
        if let Some(id) = existing {
            // PATCH, as GitHub documents. octocrab 0.54's update_comment sends POST, which
            // GitHub's OpenAPI description does not have (the stand-in refuses it).
            let route = format!("/repos/{owner}/{name}/issues/comments/{id}");
            let update: Result<octocrab::models::issues::Comment, _> = gh
                .patch(route, Some(&serde_json::json!({ "body": body })))
                .await;
            match update {
                Ok(c) => return Ok(Some(c.id.0)),
                // Deleted by someone: make a new one.
                Err(octocrab::Error::GitHub { source, .. })
                    if source.status_code.as_u16() == 404 => {}
                Err(e) => return Err(classify("update comment", e)),
            }
        }
        gh.issues(owner, name)
            .create_comment(pr, body)
            .await
            .map(|c| Some(c.id.0))
            .map_err(|e| classify("create comment", e))
    }
}

impl GitHub for Client {
    fn post_status<'a>(&'a self, status: StatusPost<'a>) -> Reply<'a, ()> {
        Box::pin(self.status(status))
    }

    fn upsert_comment<'a>(
        &'a self,
        repo: &'a str,
        pr: u64,
        existing: Option<u64>,
        body: &'a str,
    ) -> Reply<'a, Option<u64>> {
        Box::pin(self.comment(repo, pr, existing, body))
    }

    fn upsert_check_run<'a>(
        &'a self,
        existing: Option<u64>,
        run: CheckRunPost<'a>,
    ) -> Reply<'a, Option<u64>> {
        Box::pin(self.check_run(existing, run))
    }
}

fn split(repo: &str) -> (String, String) {
    match repo.split_once('/') {
        Some((o, n)) => (o.to_string(), n.to_string()),
        None => (repo.to_string(), String::new()),
    }
}
