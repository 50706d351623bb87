//! A fake GitHub for tests: records every call in memory, in order, and can be told to
//! fail the next calls.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::{CheckRunPost, GitHub, GithubError, Reply, StatusPost};
use crate::domain::{Annotation, CheckState, StatusState};

/// One call the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Status {
        repo: String,
        sha: String,
        context: String,
        state: StatusState,
        description: String,
    },
    /// `existing`: the comment it was asked to update; `id`: the comment written.
    Comment {
        repo: String,
        pr: u64,
        existing: Option<u64>,
        id: u64,
        body: String,
    },
    /// `existing`: the check run it was asked to update; `id`: the check run written.
    CheckRun {
        repo: String,
        sha: String,
        name: String,
        existing: Option<u64>,
        id: u64,
        state: CheckState,
        title: String,
        summary: String,
        annotations: Vec<Annotation>,
        external_id: String,
    },
}

#[derive(Default)]
pub struct FakeGithub {
    calls: Mutex<Vec<Call>>,
    failures: Mutex<VecDeque<GithubError>>,
    comment_failures: Mutex<VecDeque<GithubError>>,
    next_comment: Mutex<u64>,
    next_check_run: Mutex<u64>,
    /// A call to fail later: after this many more calls.
    fail_later: Mutex<Option<(usize, GithubError)>>,
}

impl FakeGithub {
    /// The calls so far, oldest first (failed ones are not recorded).
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The next call fails with `e`.
    pub fn fail_next(&self, e: GithubError) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(e);
    }

    /// The next comment call fails with `e`; status calls go on.
    pub fn fail_next_comment(&self, e: GithubError) {
        self.comment_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(e);
    }

    /// The call after the next `after` calls fails with `e`.
    pub fn fail_call(&self, after: usize, e: GithubError) {
        *self.fail_later.lock().unwrap_or_else(|p| p.into_inner()) = Some((after, e));
    }

    fn failure(&self) -> Option<GithubError> {
        let mut later = self.fail_later.lock().unwrap_or_else(|p| p.into_inner());
        match later.as_mut() {
            Some((0, _)) => return later.take().map(|(_, e)| e),
            Some((n, _)) => *n -= 1,
            None => {}
        }
        drop(later);
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    fn record(&self, call: Call) {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call);
    }
}

impl GitHub for FakeGithub {
    fn post_status<'a>(&'a self, s: StatusPost<'a>) -> Reply<'a, ()> {
        let out = match self.failure() {
            Some(e) => Err(e),
            None => {
                self.record(Call::Status {
                    repo: s.repo.into(),
                    sha: s.sha.into(),
                    context: s.context.into(),
                    state: s.state,
                    description: s.description.into(),
                });
                Ok(())
            }
        };
        Box::pin(async { out })
    }

    fn upsert_comment<'a>(
        &'a self,
        repo: &'a str,
        pr: u64,
        existing: Option<u64>,
        body: &'a str,
    ) -> Reply<'a, Option<u64>> {
        let failure = self
            .comment_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
            .or_else(|| self.failure());
        let out = match failure {
            Some(e) => Err(e),
            None => {
                let id = existing.unwrap_or_else(|| {
                    let mut n = self.next_comment.lock().unwrap_or_else(|p| p.into_inner());
                    *n += 1;
                    1000 + *n
                });
                self.record(Call::Comment {
                    repo: repo.into(),
                    pr,
                    existing,
                    id,
                    body: body.into(),
                });
                Ok(Some(id))
            }
        };
        Box::pin(async move { out })
    }

    fn upsert_check_run<'a>(
        &'a self,
        existing: Option<u64>,
        r: CheckRunPost<'a>,
    ) -> Reply<'a, Option<u64>> {
        let out = match self.failure() {
            Some(e) => Err(e),
            None => {
                let id = existing.unwrap_or_else(|| {
                    let mut n = self
                        .next_check_run
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    *n += 1;
                    5000 + *n
                });
                self.record(Call::CheckRun {
                    repo: r.repo.into(),
                    sha: r.sha.into(),
                    name: r.name.into(),
                    existing,
                    id,
                    state: r.state,
                    title: r.title.into(),
                    summary: r.summary.into(),
                    annotations: r.annotations.to_vec(),
                    external_id: r.external_id.into(),
                });
                Ok(Some(id))
            }
        };
        Box::pin(async move { out })
    }
}
