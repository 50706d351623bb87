//! The deployers of `[[targets]]`: clients whose credentials come from STS `AssumeRole` on
//! the target's role, with its external id and a session name that names the job, so that
//! CloudTrail says which job did what. The SDK's identity cache holds the credentials and
//! refreshes them before they expire (a deploy may outlast one session). The assumed
//! credentials must belong to the target's account, or nothing is done with them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::identity::IdentityCache;
use aws_config::sts::AssumeRoleProvider;
use aws_sdk_cloudformation::config::SharedCredentialsProvider;
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

use crate::cloud::deployer::Deployer;
use crate::cloud::{Aws, AwsError};
use crate::config::targets::{TargetConfig, TargetRefusal};

/// Deployers kept for reuse by the same job (a sync judges several stacks of one target).
/// Each holds one job's credentials: few, and the oldest go first.
pub const MAX_CACHED: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Refused(#[from] TargetRefusal),
    #[error("target `{target}`: cannot assume its role: {source}")]
    Assume { target: String, source: AwsError },
    #[error(
        "target `{target}`: the assumed role's credentials belong to account {actual}, not \
         the target's {expected}; nothing done"
    )]
    WrongAccount {
        target: String,
        expected: String,
        actual: String,
    },
    #[error("target `{0}`: its external id cannot be read: {1}")]
    ExternalId(String, String),
}

/// (target, region, session): one job's deployer in one region of one target.
type Key = (String, String, String);

pub struct Targets {
    /// The server's own configuration: its credentials assume the roles.
    base: SdkConfig,
    poll: Duration,
    cache: Mutex<VecDeque<(Key, Arc<Deployer>)>>,
}

impl Targets {
    pub fn new(base: SdkConfig, poll: Duration) -> Self {
        Self {
            base,
            poll,
            cache: Mutex::new(VecDeque::new()),
        }
    }

    /// The deployer for a stack of `target` in `region` (refused outside its regions),
    /// acting for the job named by `session` (`stackgate-job-42`).
    pub async fn deployer(
        &self,
        target: &TargetConfig,
        region: Option<&str>,
        session: &str,
    ) -> Result<Arc<Deployer>, TargetError> {
        let region = target.region(region)?.to_string();
        let key = (target.name.clone(), region.clone(), session.to_string());
        if let Some((_, d)) = self.cache.lock().await.iter().find(|(k, _)| *k == key) {
            return Ok(d.clone());
        }
        let external_id = target
            .external_id()
            .map_err(|e| TargetError::ExternalId(target.name.clone(), e.to_string()))?;
        let mut assume = AssumeRoleProvider::builder(&target.role_arn)
            .configure(&self.base)
            .session_name(session);
        if let Some(id) = &external_id {
            assume = assume.external_id(id.expose_secret());
        }
        let provider = assume.build().await;
        let conf = self
            .base
            .to_builder()
            .region(aws_config::Region::new(region.clone()))
            .credentials_provider(SharedCredentialsProvider::new(provider))
            // A cache of this job's own: dropped with its clients.
            .identity_cache(IdentityCache::lazy().build())
            .build();
        let aws = Aws::from_conf(&conf);
        let actual = aws.account().await.map_err(|source| TargetError::Assume {
            target: target.name.clone(),
            source,
        })?;
        if actual != target.account_id {
            return Err(TargetError::WrongAccount {
                target: target.name.clone(),
                expected: target.account_id.clone(),
                actual: actual.to_string(),
            });
        }
        // Bucket names are global: the account keeps two targets' buckets apart.
        let bucket = format!("stackgate-artifacts-{}-{region}", target.account_id);
        let mut deployer = Deployer::new(aws, Some(bucket));
        deployer.poll = self.poll;
        deployer.service_role = target.cloudformation_role_arn.clone();
        let deployer = Arc::new(deployer);
        let mut cache = self.cache.lock().await;
        if cache.len() >= MAX_CACHED {
            cache.pop_front();
        }
        cache.push_back((key, deployer.clone()));
        Ok(deployer)
    }
}

/// The STS session name of a job's calls: CloudTrail shows it on every one.
pub fn session_name(job: crate::domain::JobId) -> String {
    format!("stackgate-job-{job}")
}
