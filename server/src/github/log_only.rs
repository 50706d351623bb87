//! No GitHub configured (the local default): statuses, comments and check runs go to the
//! log only.

use super::{CheckRunPost, GitHub, Reply, StatusPost};

pub struct LogOnly;

impl GitHub for LogOnly {
    fn post_status<'a>(&'a self, s: StatusPost<'a>) -> Reply<'a, ()> {
        tracing::info!(repo = %s.repo, sha = %s.sha, context = %s.context, state = %s.state, description = %s.description, "status");
        Box::pin(async { Ok(()) })
    }

    fn upsert_comment<'a>(
        &'a self,
        repo: &'a str,
        pr: u64,
        _existing: Option<u64>,
        body: &'a str,
    ) -> Reply<'a, Option<u64>> {
        tracing::info!(%repo, pr, "pull request comment:\n{body}");
        Box::pin(async { Ok(None) })
    }

    fn upsert_check_run<'a>(
        &'a self,
        _existing: Option<u64>,
        r: CheckRunPost<'a>,
    ) -> Reply<'a, Option<u64>> {
        tracing::info!(repo = %r.repo, sha = %r.sha, name = %r.name, state = %r.state, title = %r.title, annotations = r.annotations.len(), "check run");
        Box::pin(async { Ok(None) })
    }
}
