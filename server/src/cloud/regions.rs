//! One deployer per region: a stack's `region` gets CloudFormation and S3 clients of its
//! own, built on first use and kept.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::cloud::deployer::Deployer;
use crate::cloud::{Aws, AwsTarget};
use crate::stack::deployment::valid_region;

/// Regions kept besides the server's own. A repository picks regions, so their number is
/// bounded: each holds two clients.
pub const MAX_REGIONS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error("region `{0}` is not an AWS region name (like eu-west-1)")]
    Invalid(String),
    #[error("region `{0}`: stackgate already deploys to {MAX_REGIONS} other regions")]
    TooMany(String),
}

pub struct Regions {
    default: Arc<Deployer>,
    endpoint_url: Option<String>,
    others: Mutex<HashMap<String, Arc<Deployer>>>,
}

impl Regions {
    pub fn new(default: Arc<Deployer>, endpoint_url: Option<String>) -> Self {
        Self {
            default,
            endpoint_url,
            others: Mutex::new(HashMap::new()),
        }
    }

    /// The deployer for `region`; `None` is the server's own region. Other regions use the
    /// default artifact bucket name, `stackgate-artifacts-<region>`: a Lambda's code must be
    /// in a bucket of its own region.
    pub async fn get(&self, region: Option<&str>) -> Result<Arc<Deployer>, RegionError> {
        let Some(region) = region.filter(|r| *r != self.default.aws.region) else {
            return Ok(self.default.clone());
        };
        if !valid_region(region) {
            return Err(RegionError::Invalid(region.to_string()));
        }
        let mut others = self.others.lock().await;
        if let Some(d) = others.get(region) {
            return Ok(d.clone());
        }
        if others.len() >= MAX_REGIONS {
            return Err(RegionError::TooMany(region.to_string()));
        }
        let aws = Aws::connect(&AwsTarget {
            region: Some(region.to_string()),
            endpoint_url: self.endpoint_url.clone(),
        })
        .await;
        let mut deployer = Deployer::new(aws, None);
        deployer.poll = self.default.poll;
        let deployer = Arc::new(deployer);
        others.insert(region.to_string(), deployer.clone());
        Ok(deployer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_names() {
        for ok in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "eusc-de-east-1",
        ] {
            assert!(valid_region(ok), "{ok}");
        }
        for bad in [
            "",
            "us-east",
            "evil.example.com",
            "us-east-1.evil.com",
            "US-EAST-1",
            "us--1",
            "us-east-123",
            "u-east-1",
            "us-east-1/",
        ] {
            assert!(!valid_region(bad), "{bad}");
        }
    }
}
