//! S3: the artifact bucket, content-addressed uploads, and emptying a stack's buckets so
//! that CloudFormation can delete them. Every call names the account that must own the
//! bucket (`ExpectedBucketOwner`): a bucket of someone else's is refused, never used.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, ChecksumAlgorithm, ChecksumMode,
    CreateBucketConfiguration, Delete, ObjectIdentifier, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule, VersioningConfiguration,
};

use sha2::{Digest, Sha256};

use super::AwsError;

/// What S3 refused, or found that stackgate must not use.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(
        "the artifact bucket `{bucket}` is not owned by this account ({account}), or this account \
         may not read it (403 with ExpectedBucketOwner); nothing uploaded. Choose another with \
         --artifact-bucket (aws.artifact_bucket in the service), or grant s3:ListBucket"
    )]
    NotOwned { bucket: String, account: String },
    #[error(
        "s3://{bucket}/{key} already exists with other content than this deploy's (SHA-256 \
         {expected}); nothing deployed: find out who wrote it, then delete it"
    )]
    ArtifactDiffers {
        bucket: String,
        key: String,
        expected: String,
    },
    #[error("S3 refused to delete s3://{bucket}/{key}{version}: {code}: {message}")]
    DeleteRefused {
        bucket: String,
        key: String,
        /// ` (version …)` when S3 names one.
        version: String,
        code: String,
        message: String,
    },
    #[error(
        "bucket {bucket} still holds objects after {rounds} rounds of deletes; empty it by hand"
    )]
    NotEmptied { bucket: String, rounds: usize },
}

/// Rounds of list-and-delete (each up to 2,000 versions and markers) before giving up.
pub const MAX_EMPTY_ROUNDS: usize = 1_000;

/// What [`put_verified`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Uploaded,
    /// The object was there already, with these very bytes.
    Unchanged,
}

fn status_of<E>(e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> u16 {
    e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0)
}

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

/// Makes sure the artifact bucket exists and is this account's: versioned, encrypted,
/// public access blocked. `owner` is the caller's account.
pub async fn ensure_artifact_bucket(
    s3: &Client,
    bucket: &str,
    region: &str,
    owner: &str,
) -> Result<(), S3Error> {
    let not_owned = || S3Error::NotOwned {
        bucket: bucket.to_string(),
        account: owner.to_string(),
    };
    match s3
        .head_bucket()
        .bucket(bucket)
        .expected_bucket_owner(owner)
        .send()
        .await
    {
        Ok(_) => return Ok(()),
        // Another owner, or no access: either way not a bucket to upload code to.
        Err(e) if status_of(&e) == 403 => return Err(not_owned()),
        Err(e) if status_of(&e) == 404 => {}
        Err(e) => return Err(err("HeadBucket")(e).into()),
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
        Err(e) if e.code.as_deref() == Some("BucketAlreadyExists") => return Err(not_owned()),
        Err(e) => return Err(e.into()),
    }
    s3.put_public_access_block()
        .bucket(bucket)
        .expected_bucket_owner(owner)
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
        .expected_bucket_owner(owner)
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
        .expected_bucket_owner(owner)
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

/// Uploads `bytes` under `key` with their SHA-256, which S3 checks on arrival, unless the
/// object is there already. An existing object must hold these very bytes: its stored
/// SHA-256 is compared, or, when it has none, its bytes.
pub async fn put_verified(
    s3: &Client,
    bucket: &str,
    owner: &str,
    key: &str,
    bytes: Vec<u8>,
) -> Result<Put, S3Error> {
    let digest = Sha256::digest(&bytes);
    let checksum = base64_encode(&digest);
    let differs = || S3Error::ArtifactDiffers {
        bucket: bucket.to_string(),
        key: key.to_string(),
        expected: hex::encode(digest),
    };
    match s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .expected_bucket_owner(owner)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
    {
        Ok(head) => {
            if let Some(stored) = head.checksum_sha256() {
                // A multipart upload's checksum is `<sum of parts>-<n>`: never ours.
                return if stored == checksum {
                    Ok(Put::Unchanged)
                } else {
                    Err(differs())
                };
            }
            if head.content_length() != Some(bytes.len() as i64) {
                return Err(differs());
            }
            let got = s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .expected_bucket_owner(owner)
                .send()
                .await
                .map_err(err("GetObject"))?;
            // Bounded: no more than the length checked above is read.
            let mut body = got.body;
            let mut read = Vec::with_capacity(bytes.len());
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| AwsError {
                    operation: "GetObject",
                    code: None,
                    message: e.to_string(),
                })?;
                if read.len() + chunk.len() > bytes.len() {
                    return Err(differs());
                }
                read.extend_from_slice(&chunk);
            }
            return if read == bytes {
                Ok(Put::Unchanged)
            } else {
                Err(differs())
            };
        }
        Err(e) if status_of(&e) == 404 => {}
        Err(e) if status_of(&e) == 403 => {
            return Err(S3Error::NotOwned {
                bucket: bucket.to_string(),
                account: owner.to_string(),
            });
        }
        Err(e) => return Err(err("HeadObject")(e).into()),
    }
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .expected_bucket_owner(owner)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(checksum)
        .body(ByteStream::from(bytes))
        .send()
        .await
        .map_err(err("PutObject"))?;
    Ok(Put::Uploaded)
}

/// Standard base64 with padding: the form S3 gives checksums in.
fn base64_encode(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Deletes every object version and delete marker; returns how many it removed. A bucket
/// that is already gone counts as empty. A delete S3 refuses (Object Lock, a deny policy)
/// fails with the object named; at most [`MAX_EMPTY_ROUNDS`] rounds.
pub async fn empty_bucket(s3: &Client, bucket: &str, owner: &str) -> Result<usize, S3Error> {
    let mut removed = 0;
    for _ in 0..MAX_EMPTY_ROUNDS {
        let page = match s3
            .list_object_versions()
            .bucket(bucket)
            .expected_bucket_owner(owner)
            .send()
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let e = err("ListObjectVersions")(e);
                if e.code.as_deref() == Some("NoSuchBucket") {
                    return Ok(removed);
                }
                return Err(e.into());
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
            let out = s3
                .delete_objects()
                .bucket(bucket)
                .expected_bucket_owner(owner)
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
            // A 200 can still refuse some keys: each is listed in Errors.
            if let Some(e) = out.errors().first() {
                return Err(S3Error::DeleteRefused {
                    bucket: bucket.to_string(),
                    key: e.key().unwrap_or_default().to_string(),
                    version: e
                        .version_id()
                        .map(|v| format!(" (version {v})"))
                        .unwrap_or_default(),
                    code: e.code().unwrap_or("unknown").to_string(),
                    message: e.message().unwrap_or("no message").to_string(),
                });
            }
            removed += n;
        }
    }
    Err(S3Error::NotEmptied {
        bucket: bucket.to_string(),
        rounds: MAX_EMPTY_ROUNDS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        // The SHA-256 of nothing, as S3 prints it.
        assert_eq!(
            base64_encode(&Sha256::digest(b"")),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }
}
