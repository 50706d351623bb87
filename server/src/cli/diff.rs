//! `stackgate diff STACK_DIR [--against deployed|GIT_REF]`: what the stack folder's
//! template widens against the deployed stack (GetTemplate; AWS needed) or against the same
//! folder at a git revision (no AWS calls). Exit 0 when nothing widens, 1 when something
//! widens or may, 2 when it cannot compare.

use std::path::Path;
use std::process::ExitCode;

use crate::cloud::{Aws, AwsTarget};
use crate::git::checkout::local_snapshot;
use crate::report::redact::Redactor;
use crate::report::review as reporter;
use crate::review::{self, Baseline, baseline};
use crate::stack::{DirFiles, Stack};

use super::DiffFormat;

/// `--against deployed`: the live stack.
pub const DEPLOYED: &str = "deployed";

/// Where the deployed stack is: `--endpoint-url`, `--region`.
pub struct Target<'a> {
    pub endpoint_url: &'a Option<String>,
    pub region: Option<String>,
}

pub async fn run(dir: &Path, against: &str, format: DiffFormat, target: Target<'_>) -> ExitCode {
    match diff(dir, against, target).await {
        Ok((name, review)) => {
            match format {
                DiffFormat::Text => print!("{}", reporter::text(&name, &review)),
                DiffFormat::Json => println!("{:#}", reporter::json(&name, &review)),
            }
            ExitCode::from(if review.widens.is_empty() { 0 } else { 1 })
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn diff(
    dir: &Path,
    against: &str,
    target: Target<'_>,
) -> Result<(String, review::Review), String> {
    let stack = DirFiles::open(dir)
        .and_then(|files| Stack::load(&files))
        .map_err(|e| e.to_string())?;
    let redact = Redactor::for_stack(&stack);
    let region = target.region.or_else(|| stack.deployment.region.clone());
    let (against, base, proposed) = if against == DEPLOYED {
        let aws = Aws::connect(&AwsTarget {
            region,
            endpoint_url: target.endpoint_url.clone(),
        })
        .await;
        let proposed = baseline::of_stack(&stack, &aws.region, Some(&aws)).await;
        let base = baseline::deployed(&aws, &stack.name, &aws.region)
            .await
            .map_err(|e| format!("stack {}: {e}", stack.name))?;
        let against = match base {
            Some(_) => Baseline::Deployed {
                stack: stack.name.clone(),
            },
            None => Baseline::NotDeployed,
        };
        (against, base, proposed)
    } else {
        let region = region.unwrap_or_else(|| "us-east-1".to_string());
        let (sha, base) = at_revision(dir, against, &region).await?;
        let proposed = baseline::of_stack(&stack, &region, None).await;
        let against = Baseline::Revision {
            name: against.to_string(),
            sha,
        };
        (against, base, proposed)
    };
    let review = review::compare(against, base.as_ref(), &proposed).map_text(|s| redact.text(s));
    Ok((stack.name, review))
}

/// The folder `dir` at git revision `rev`: `None` when the folder is not there.
async fn at_revision(
    dir: &Path,
    rev: &str,
    region: &str,
) -> Result<(String, Option<serde_json::Value>), String> {
    let (stacks_dir, folder) = in_work_tree(dir)?;
    let snap = local_snapshot(dir, rev, &stacks_dir).map_err(|e| e.to_string())?;
    let Some(files) = snap.files(&folder) else {
        return Ok((snap.sha, None));
    };
    let stack = Stack::load(&files).map_err(|e| format!("at {rev}: {e}"))?;
    let doc = baseline::of_stack(&stack, region, None).await;
    Ok((snap.sha, Some(doc)))
}

/// The folder holding `dir` relative to its git work tree, and `dir`'s own name.
fn in_work_tree(dir: &Path) -> Result<(String, String), String> {
    let shown = dir.display();
    let repo = git2::Repository::discover(dir)
        .map_err(|e| format!("{shown} is not in a git repository: {}", e.message()))?;
    let work = repo
        .workdir()
        .ok_or_else(|| format!("{shown}: the git repository has no work tree"))?;
    let canonical = |p: &Path| {
        p.canonicalize()
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    let rel = canonical(dir)?
        .strip_prefix(canonical(work)?)
        .map_err(|_| format!("{shown} is outside its git work tree"))?
        .to_path_buf();
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.split_last() {
        Some((folder, parent)) => Ok((parent.join("/"), folder.clone())),
        None => Err(format!(
            "{shown} is the work tree's root, not a stack folder"
        )),
    }
}
