//! AWS: the CloudFormation and S3 calls stackgate makes, with the SDK's retries.

pub mod cfn;
pub mod deployer;
pub mod drift;
pub mod guard;
pub mod nested;
pub mod package;
pub mod regions;
pub mod s3;
pub mod targets;

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use tokio::sync::OnceCell;

/// Where AWS is. Everything unset comes from the standard chain (`AWS_PROFILE`,
/// `AWS_REGION`, `AWS_ENDPOINT_URL`, instance roles …).
#[derive(Debug, Clone, Default)]
pub struct AwsTarget {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

/// The clients stackgate needs.
#[derive(Clone, Debug)]
pub struct Aws {
    pub cfn: aws_sdk_cloudformation::Client,
    pub s3: aws_sdk_s3::Client,
    pub sts: aws_sdk_sts::Client,
    /// Only to read plain SSM parameters the policies must judge (`policy::lookup`).
    pub ssm: aws_sdk_ssm::Client,
    pub region: String,
    /// The caller's account, asked once (GetCallerIdentity) when first needed.
    account: Arc<OnceCell<String>>,
}

/// The standard chain's configuration, with stackgate's retries and timeouts.
pub async fn load(target: &AwsTarget) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        // Throttling and transient errors back off and retry; CloudFormation throttles
        // DescribeStackEvents readily when many stacks deploy at once.
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(8)
                .with_initial_backoff(Duration::from_millis(500))
                .with_max_backoff(Duration::from_secs(20)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(Duration::from_secs(60))
                .build(),
        );
    if let Some(r) = &target.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(url) = &target.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    loader.load().await
}

impl Aws {
    pub async fn connect(target: &AwsTarget) -> Self {
        Self::from_conf(&load(target).await)
    }

    /// The clients of a loaded configuration, in its region (else us-east-1).
    pub fn from_conf(conf: &aws_config::SdkConfig) -> Self {
        let region = conf
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".to_string());
        let s3_conf = aws_sdk_s3::config::Builder::from(conf)
            // An emulator on 127.0.0.1 has no per-bucket host names.
            .force_path_style(conf.endpoint_url().is_some())
            .region(Region::new(region.clone()))
            .build();
        let cfn_conf = aws_sdk_cloudformation::config::Builder::from(conf)
            .region(Region::new(region.clone()))
            .build();
        let sts_conf = aws_sdk_sts::config::Builder::from(conf)
            .region(Region::new(region.clone()))
            .build();
        let ssm_conf = aws_sdk_ssm::config::Builder::from(conf)
            .region(Region::new(region.clone()))
            .build();
        Self {
            cfn: aws_sdk_cloudformation::Client::from_conf(cfn_conf),
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            sts: aws_sdk_sts::Client::from_conf(sts_conf),
            ssm: aws_sdk_ssm::Client::from_conf(ssm_conf),
            region,
            account: Arc::new(OnceCell::new()),
        }
    }

    /// The account the credentials belong to: the owner every S3 call expects, and part
    /// of a stack's identity.
    pub async fn account(&self) -> Result<&str, AwsError> {
        let id = self
            .account
            .get_or_try_init(|| async {
                let out = self
                    .sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("GetCallerIdentity", e))?;
                out.account()
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .ok_or(AwsError {
                        operation: "GetCallerIdentity",
                        code: None,
                        message: "the answer names no account".into(),
                    })
            })
            .await?;
        Ok(id)
    }
}

/// An AWS call that failed after the SDK's retries.
#[derive(Debug, thiserror::Error)]
#[error("AWS {operation} failed: {message}")]
pub struct AwsError {
    pub operation: &'static str,
    pub code: Option<String>,
    pub message: String,
}

impl AwsError {
    pub fn from_sdk<E, R>(
        operation: &'static str,
        err: aws_sdk_cloudformation::error::SdkError<E, R>,
    ) -> Self
    where
        E: aws_sdk_cloudformation::error::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
        R: std::fmt::Debug,
    {
        use aws_sdk_cloudformation::error::ProvideErrorMetadata;
        let code = err.code().map(str::to_string);
        let message = match err.message() {
            Some(m) => m.to_string(),
            None => aws_sdk_cloudformation::error::DisplayErrorContext(&err).to_string(),
        };
        Self {
            operation,
            code,
            message,
        }
    }
}
