//! report: commit statuses and pull-request comments on GitHub, through octocrab, with a
//! token or as a GitHub App installation.

use octocrab::Octocrab;
use octocrab::models::{InstallationId, StatusState};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{GithubAuth, GithubConfig};

/// A failed GitHub call; `retry` says whether trying again may help.
#[derive(Debug, thiserror::Error)]
#[error("GitHub {operation}: {message}")]
pub struct GithubError {
    pub operation: &'static str,
    pub message: String,
    pub retry: bool,
}

fn classify(operation: &'static str, e: octocrab::Error) -> GithubError {
    match &e {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code.as_u16();
            let msg = source.message.clone();
            // 5xx and rate limits (primary 429, secondary 403 "rate limit") are worth retrying.
            let retry = status >= 500
                || status == 429
                || (status == 403 && msg.to_lowercase().contains("rate limit"));
            GithubError {
                operation,
                message: format!("{status} {msg}"),
                retry,
            }
        }
        other => GithubError {
            operation,
            message: other.to_string(),
            retry: true,
        },
    }
}

/// Where statuses and comments go.
#[derive(Clone)]
pub enum Reporter {
    GitHub(Octocrab),
    /// No GitHub configured (the local default): statuses go to the log and the UI only.
    LogOnly,
}

/// What git offers a remote as the password of an https fetch.
#[derive(Clone)]
pub enum GitCredential {
    None,
    Token(SecretString),
    /// The App installation's access token, minted and cached by the installation client.
    Installation(Octocrab),
}

/// An installation token is refreshed once it has less than this left: a fetch of a large
/// repository must not outlive it.
const TOKEN_MARGIN_MINUTES: i64 = 5;

impl GitCredential {
    pub async fn password(&self) -> Result<Option<SecretString>, GithubError> {
        match self {
            GitCredential::None => Ok(None),
            GitCredential::Token(t) => Ok(Some(t.clone())),
            GitCredential::Installation(gh) => gh
                .installation_token_with_buffer(chrono::Duration::minutes(TOKEN_MARGIN_MINUTES))
                .await
                .map(Some)
                .map_err(|e| classify("create installation token", e)),
        }
    }
}

impl Reporter {
    /// The reporter, and the credential git uses with the same identity.
    pub async fn from_config(cfg: Option<&GithubConfig>) -> Result<(Self, GitCredential), String> {
        let Some(cfg) = cfg else {
            return Ok((Reporter::LogOnly, GitCredential::None));
        };
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
        Ok((Reporter::GitHub(client), git))
    }

    pub async fn post_status(
        &self,
        repo: &str,
        sha: &str,
        context: &str,
        state: &str,
        description: &str,
        target_url: &str,
    ) -> Result<(), GithubError> {
        let Reporter::GitHub(gh) = self else {
            tracing::info!(%repo, %sha, %context, %state, %description, "status");
            return Ok(());
        };
        let (owner, name) = split(repo);
        let state = match state {
            "success" => StatusState::Success,
            "failure" => StatusState::Failure,
            "pending" => StatusState::Pending,
            _ => StatusState::Error,
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

    /// Creates the PR comment, or updates the one stackgate made before. Returns its id.
    pub async fn upsert_comment(
        &self,
        repo: &str,
        pr: u64,
        existing: Option<u64>,
        body: &str,
    ) -> Result<Option<u64>, GithubError> {
        let Reporter::GitHub(gh) = self else {
            tracing::info!(%repo, pr, "pull request comment:\n{body}");
            return Ok(None);
        };
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

fn split(repo: &str) -> (String, String) {
    match repo.split_once('/') {
        Some((o, n)) => (o.to_string(), n.to_string()),
        None => (repo.to_string(), String::new()),
    }
}
