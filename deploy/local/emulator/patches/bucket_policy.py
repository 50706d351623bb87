"""Patch bucket_policy: AWS::S3::BucketPolicy puts the policy on the bucket, and removes it
on delete."""

from __future__ import annotations

import json
from typing import Any


# CloudFormationModel.__subclasses__(), moto's resource type registry, holds weak references.
_REGISTERED_MODELS: list[type] = []


def apply() -> None:
    """AWS::S3::BucketPolicy puts the policy on the bucket, and removes it on delete.

    Gap: moto has no CloudFormation model for AWS::S3::BucketPolicy. resource_class_from_type
    ({src}/cloudformation/parsing.py) looks the type up in get_model_map() (built from
    CloudFormationModel.__subclasses__()), logs "No Moto CloudFormation support for
    AWS::S3::BucketPolicy", and the resource is skipped: the stack lists it with no logical
    id, type or physical id, and GetBucketPolicy answers NoSuchBucketPolicy.
    S3Backend.put_bucket_policy and delete_bucket_policy ({src}/s3/models.py) exist; nothing
    calls them.
    AWS puts PolicyDocument on Bucket (PutBucketPolicy) on create and update, deletes it
    (DeleteBucketPolicy) on delete; the physical id and Ref value is the bucket name
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-s3-bucketpolicy.html).

    Fix: a minimal CloudFormationModel for the type that does just that, registered as a
    CloudFormationModel subclass (moto's resource type map; its lru_caches are cleared).
    """
    from moto.cloudformation import parsing
    from moto.core.common_models import CloudFormationModel
    from moto.s3.exceptions import MissingBucket
    from moto.s3.models import s3_backends
    from moto.utilities.utils import get_partition

    def s3(account_id: str, region_name: str) -> Any:
        return s3_backends[account_id][get_partition(region_name)]

    class FakeBucketPolicy(CloudFormationModel):
        # moto's model metaclass files each model under its service, from the module name
        __module__ = "moto.s3.models"

        def __init__(self, bucket_name: str):
            self.bucket_name = bucket_name

        @property
        def physical_resource_id(self) -> str:
            return self.bucket_name

        @staticmethod
        def cloudformation_name_type() -> str:
            return ""

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::S3::BucketPolicy"

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return False  # no Fn::GetAtt attributes

        @classmethod
        def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: Any,
                                            account_id: str, region_name: str,
                                            **kwargs: Any) -> "FakeBucketPolicy":
            properties = cloudformation_json["Properties"]
            document = properties["PolicyDocument"]
            if not isinstance(document, str):
                document = json.dumps(document)
            s3(account_id, region_name).put_bucket_policy(properties["Bucket"], document.encode())
            return cls(properties["Bucket"])

        @classmethod
        def update_from_cloudformation_json(cls, original_resource: Any, new_resource_name: str,
                                            cloudformation_json: Any, account_id: str,
                                            region_name: str) -> "FakeBucketPolicy":
            updated = cls.create_from_cloudformation_json(
                new_resource_name, cloudformation_json, account_id, region_name)
            if updated.bucket_name != original_resource.bucket_name:  # a new Bucket: replaced
                cls.delete_from_cloudformation_json(
                    original_resource.bucket_name, cloudformation_json, account_id, region_name)
            return updated

        @classmethod
        def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: Any,
                                            account_id: str, region_name: str) -> None:
            try:
                s3(account_id, region_name).delete_bucket_policy(resource_name)
            except MissingBucket:
                pass  # the bucket, and so its policy, is gone already

    _REGISTERED_MODELS.append(FakeBucketPolicy)
    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()
