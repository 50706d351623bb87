//! What git offers a remote as the password of an https fetch, with the same identity as
//! the GitHub client.

use secrecy::SecretString;

use super::GithubError;
use super::octocrab::classify;

/// What git offers a remote as the password of an https fetch.
#[derive(Clone)]
pub enum GitCredential {
    None,
    Token(SecretString),
    /// The App installation's access token, minted and cached by the installation client.
    Installation(::octocrab::Octocrab),
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
