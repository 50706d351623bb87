"""Patch expected_bucket_owner: an S3 call whose ExpectedBucketOwner is not the bucket's
owner is refused."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


def apply() -> None:
    """An S3 call whose ExpectedBucketOwner is not the bucket's owner is refused.

    Gap: moto's S3Response ({src}/s3/responses.py) ignores the x-amz-expected-bucket-owner
    header, so HeadBucket, PutObject, ListObjectVersions ... on another account's bucket
    succeed (moto serves cross-account buckets by default, see get_bucket in
    {src}/s3/models.py).
    In AWS a request whose ExpectedBucketOwner is not the bucket owner's account fails with
    403 Access Denied
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-owner-condition.html).

    Fix: S3Response.bucket_response and key_response, which every bucket and object
    request goes through, answer AccessDenied (403) when the header is set and names
    another account than the one that owns the bucket (moto's s3_backends.bucket_accounts).
    Requests without the header, and buckets that do not exist, are moto's as before.
    """
    from moto.core.responses import ActionResult
    from moto.s3.exceptions import S3AccessDeniedError
    from moto.s3.models import s3_backends
    from moto.s3.responses import S3Response

    def guarded(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def response(self: Any, request: Any, full_url: str, headers: Any) -> Any:
            expected = request.headers.get("x-amz-expected-bucket-owner")
            self.setup_class(request)
            bucket = self.parse_bucket_name_from_url(request, full_url) or ""
            owner = s3_backends.bucket_accounts.get(bucket)
            if expected and owner is not None and owner[1] != expected:
                return self._send_response(self.serialized(ActionResult(S3AccessDeniedError())))
            return original(self, request, full_url, headers)

        return response

    S3Response.bucket_response = guarded(S3Response.bucket_response)
    S3Response.key_response = guarded(S3Response.key_response)
