//! Polls a branch head, so a missed webhook or a repository without webhooks still deploys.

use std::sync::Arc;
use std::time::Duration;

use crate::config::RepoConfig;
use crate::domain::{Kind, Trigger, short};
use crate::pipeline::Pipeline;
use crate::queue::NewJob;

pub async fn run(app: Arc<Pipeline>, repo: RepoConfig, every: Duration) {
    let mut last: Option<String> = None;
    loop {
        match app.fetch(&repo, None).await.map(|h| h.branch) {
            Ok(Some(sha)) if last.as_deref() != Some(sha.as_str()) => {
                tracing::info!(repo = %repo.name, sha = %short(&sha), "new head");
                let job = NewJob {
                    kind: Kind::Sync,
                    repo: repo.name.clone(),
                    sha: sha.clone(),
                    trigger: Trigger::Poll,
                    stack: None,
                    pr: None,
                    fork: false,
                };
                match app.enqueue(&[job]) {
                    Ok(_) => last = Some(sha),
                    Err(e) => tracing::error!(error = %e, "cannot enqueue a polled head"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(repo = %repo.name, error = %e, "poll failed"),
        }
        tokio::time::sleep(every).await;
    }
}
