//! S3: the artifact bucket, content-addressed uploads, and emptying a stack's buckets so
//! that CloudFormation can delete them.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, Delete,
    ObjectIdentifier, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    VersioningConfiguration,
};

use super::AwsError;

fn err<E>(
    op: &'static str,
) -> impl FnOnce(aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> AwsError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| {
        use aws_sdk_s3::error::ProvideErrorMetadata;
        AwsError {
            operation: op,
            code: e.code().map(str::to_string),
            message: e
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| aws_sdk_s3::error::DisplayErrorContext(&e).to_string()),
        }
    }
}

fn build_err(op: &'static str) -> impl FnOnce(aws_sdk_s3::error::BuildError) -> AwsError {
    move |e| AwsError {
        operation: op,
        code: None,
        message: e.to_string(),
    }
}

/// Makes sure the artifact bucket exists: versioned, encrypted, public access blocked.
pub async fn ensure_artifact_bucket(
    s3: &Client,
    bucket: &str,
    region: &str,
) -> Result<(), AwsError> {
    if s3.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(());
    }
    let mut create = s3.create_bucket().bucket(bucket);
    // us-east-1 is the one region that refuses an explicit location constraint.
    if region != "us-east-1" {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    match create.send().await.map_err(err("CreateBucket")) {
        Ok(_) => {}
        Err(e) if e.code.as_deref() == Some("BucketAlreadyOwnedByYou") => {}
        Err(mut e) => {
            if e.code.as_deref() == Some("BucketAlreadyExists") {
                e.message = format!(
                    "the artifact bucket name `{bucket}` belongs to another account; choose another with --artifact-bucket"
                );
            }
            return Err(e);
        }
    }
    s3.put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .block_public_policy(true)
                .ignore_public_acls(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(err("PutPublicAccessBlock"))?;
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(err("PutBucketVersioning"))?;
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::Aes256)
                .build()
                .map_err(build_err("PutBucketEncryption"))?,
        )
        .build();
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .map_err(build_err("PutBucketEncryption"))?,
        )
        .send()
        .await
        .map_err(err("PutBucketEncryption"))?;
    Ok(())
}

/// Uploads `bytes` under `key` unless the object is already there; returns whether it
/// uploaded. Keys are content hashes, so an existing key means identical bytes.
pub async fn put_if_absent(
    s3: &Client,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
) -> Result<bool, AwsError> {
    if s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .is_ok()
    {
        return Ok(false);
    }
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(bytes))
        .send()
        .await
        .map_err(err("PutObject"))?;
    Ok(true)
}

/// Deletes every object version and delete marker; returns how many it removed. A bucket
/// that is already gone counts as empty.
pub async fn empty_bucket(s3: &Client, bucket: &str) -> Result<usize, AwsError> {
    let mut removed = 0;
    loop {
        let page = match s3.list_object_versions().bucket(bucket).send().await {
            Ok(p) => p,
            Err(e) => {
                let e = err("ListObjectVersions")(e);
                if e.code.as_deref() == Some("NoSuchBucket") {
                    return Ok(removed);
                }
                return Err(e);
            }
        };
        let mut ids = Vec::new();
        for v in page.versions() {
            ids.push((v.key(), v.version_id()));
        }
        for m in page.delete_markers() {
            ids.push((m.key(), m.version_id()));
        }
        if ids.is_empty() {
            return Ok(removed);
        }
        // DeleteObjects takes at most 1000 keys; list pages are at most 1000 of each kind.
        for chunk in ids.chunks(1000) {
            let mut objects = Vec::with_capacity(chunk.len());
            for (key, version) in chunk {
                objects.push(
                    ObjectIdentifier::builder()
                        .key(key.unwrap_or_default())
                        .set_version_id(version.map(str::to_string))
                        .build()
                        .map_err(build_err("DeleteObjects"))?,
                );
            }
            let n = objects.len();
            s3.delete_objects()
                .bucket(bucket)
                .delete(
                    Delete::builder()
                        .set_objects(Some(objects))
                        .quiet(true)
                        .build()
                        .map_err(build_err("DeleteObjects"))?,
                )
                .send()
                .await
                .map_err(err("DeleteObjects"))?;
            removed += n;
        }
    }
}
