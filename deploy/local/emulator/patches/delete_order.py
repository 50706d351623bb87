"""Patch delete_order: delete_stack deletes every resource, dependents first; a failure
leaves DELETE_FAILED."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .shared import (
    ASSOCIATION_ID,
    FAILED_IDS,
    LOGICAL_ID,
    RESOURCE_TYPE,
    deletion_order,
    disassociate_route_table,
    failure_reason,
    forget_deleted_resources,
    resource_event,
    set_stack_status,
    tag_failure,
)


def _delete_route(route: Any, account_id: str, region: str) -> None:
    from moto.ec2.models import ec2_backends

    ec2_backends[account_id][region].delete_route(
        route.route_table.id,
        route.destination_cidr_block,
        destination_ipv6_cidr_block=route.destination_ipv6_cidr_block,
    )


def _delete_subnet_route_table_association(assoc: Any, account_id: str, region: str) -> None:
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[account_id][region]
    association_id = getattr(assoc, ASSOCIATION_ID, None)
    if association_id:  # made by associate_route_table (patch route_table_association)
        disassociate_route_table(backend, association_id)
        return
    # moto's CloudFormation create_subnet_association only records the pair here.
    backend.subnet_associations.pop(f"{assoc.route_table_id}:{assoc.subnet_id}", None)
    table = backend.route_tables.get(assoc.route_table_id)
    if table is not None:
        for association_id, target in list(table._associations.items()):
            if target == assoc.subnet_id:
                del table._associations[association_id]


def _delete_route_table(table: Any, account_id: str, region: str) -> None:
    from moto.ec2.models import ec2_backends

    ec2_backends[account_id][region].delete_route_table(table.id)


def _delete_gateway_attachment(attachment: Any, account_id: str, region: str) -> None:
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[account_id][region]
    gateway_id = attachment.gateway_id or ""
    if gateway_id.startswith("igw-"):
        backend.detach_internet_gateway(gateway_id, attachment.vpc_id)
    elif gateway_id.startswith("vgw-"):
        backend.detach_vpn_gateway(gateway_id, attachment.vpc_id)


def _delete_internet_gateway(igw: Any, account_id: str, region: str) -> None:
    from moto.ec2.models import ec2_backends

    ec2_backends[account_id][region].delete_internet_gateway(igw.id)


def _delete_bucket(bucket: Any, account_id: str, region: str) -> None:
    from moto.s3.exceptions import BucketNotEmpty
    from moto.s3.models import s3_backends
    from moto.utilities.utils import get_partition

    backend = s3_backends[account_id][get_partition(region)]
    # moto's S3Backend.delete_bucket quietly keeps a non-empty bucket (only its API layer
    # raises); CloudFormation fails the delete. Object versions count, as in S3.
    if backend.get_bucket(bucket.name).keys:
        raise BucketNotEmpty(bucket.name)
    backend.delete_bucket(bucket.name)


def _delete_elbv2(method: str) -> Callable[[Any, str, str], None]:
    def delete(resource: Any, account_id: str, region: str) -> None:
        from moto.elbv2.models import elbv2_backends

        getattr(elbv2_backends[account_id][region], method)(resource.arn)

    return delete


# Resource types whose moto model has no CloudFormation delete at all (moto then skips
# them silently, and whatever they hang on - the VPC, the IGW - cannot be deleted), or
# one that does not fail where AWS does.
_DELETE_HANDLERS: dict[str, Callable[[Any, str, str], None]] = {
    "AWS::EC2::Route": _delete_route,
    "AWS::EC2::SubnetRouteTableAssociation": _delete_subnet_route_table_association,
    "AWS::EC2::RouteTable": _delete_route_table,
    "AWS::EC2::VPCGatewayAttachment": _delete_gateway_attachment,
    "AWS::EC2::InternetGateway": _delete_internet_gateway,
    "AWS::S3::Bucket": _delete_bucket,  # has one, but it ignores "not empty"
    "AWS::ElasticLoadBalancingV2::ListenerRule": _delete_elbv2("delete_rule"),
    "AWS::ElasticLoadBalancingV2::Listener": _delete_elbv2("delete_listener"),
    "AWS::ElasticLoadBalancingV2::TargetGroup": _delete_elbv2("delete_target_group"),
}


def apply() -> None:
    """delete_stack deletes every resource, dependents first; a failure leaves DELETE_FAILED.

    Gap, three parts, all in {src}/cloudformation/parsing.py and models.py:
    - ResourceMap._delete_resource falls back to the model's delete_from_cloudformation_json;
      RouteTable, Route, SubnetRouteTableAssociation, VPCGatewayAttachment and
      InternetGateway (moto/ec2/models/route_tables.py, subnets.py, vpn_gateway.py,
      internet_gateways.py), and ELBv2 Listener, ListenerRule and TargetGroup
      (moto/elbv2/models.py) have none, so they are skipped silently; and S3Backend.delete_bucket
      (moto/s3/models.py) quietly keeps a non-empty bucket, so the stack says
      DELETE_COMPLETE while the bucket leaks (AWS: DELETE_FAILED, BucketNotEmpty);
    - ResourceMap.delete tries resources in set order and retries while the count drops,
      so once those are skipped the VPC fails with DependencyViolation (its route table is
      still there) and the IGW is never deleted;
    - CloudFormationBackend.delete_stack pops the stack before deleting its resources, so
      on that error the stack vanishes from DescribeStacks while its resources leak.
    AWS deletes in reverse dependency order and, on a failure, keeps the stack in
    DELETE_FAILED with a DELETE_FAILED event that says why
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/troubleshooting.html#troubleshooting-errors-delete-stack-fails).

    Fix: delete handlers for those types; ResourceMap.delete in reverse dependency order
    (DependsOn, Ref, Fn::GetAtt, Fn::Sub), skipping what a failed resource still needs and
    what DeletionPolicy Retain or RetainExceptOnCreate keeps
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html);
    delete_stack that restores the stack as DELETE_FAILED when a resource cannot be deleted.
    """
    from moto.cloudformation.models import CloudFormationBackend
    from moto.cloudformation.parsing import ResourceMap

    original_delete_resource = ResourceMap._delete_resource

    @functools.wraps(original_delete_resource)
    def _delete_resource(self: Any, parsed_resource: Any, resource_json: dict[str, Any]) -> None:
        resource_type = getattr(parsed_resource, "cf_resource_type", None) or resource_json.get("Type")
        handler = _DELETE_HANDLERS.get(resource_type)
        if handler is None:
            original_delete_resource(self, parsed_resource, resource_json)
        else:
            handler(parsed_resource, self._account_id, self._region_name)

    @functools.wraps(ResourceMap.delete)
    def delete(self: Any) -> None:
        order, deps = deletion_order(self._resource_json_map)
        blocked: set[str] = set()
        failures: list[tuple[str, BaseException]] = []
        for name in order:
            body = self._resource_json_map[name]
            if name in blocked:  # something that uses it could not be deleted
                blocked |= deps[name]
                continue
            # RetainExceptOnCreate keeps the resource on a stack delete, as Retain does.
            if body.get("DeletionPolicy") in ("Retain", "RetainExceptOnCreate"):
                continue
            parsed = self._parsed_resources.get(name)
            if parsed is None or isinstance(parsed, str):
                continue
            try:
                self._delete_resource(parsed, body)
            except Exception as exc:  # noqa: BLE001 - reported on the stack, as AWS does
                tag_failure(exc, name, body.get("Type"))
                failures.append((name, exc))
                blocked |= deps[name]
                continue
            self._parsed_resources.pop(name, None)
        if failures:
            first = failures[0][1]
            setattr(first, FAILED_IDS, [name for name, _ in failures])
            raise first

    original_delete_stack = CloudFormationBackend.delete_stack

    @functools.wraps(original_delete_stack)
    def delete_stack(self: Any, name_or_stack_id: str) -> None:
        if name_or_stack_id in self.stacks:
            targets = [self.stacks[name_or_stack_id]]
        else:
            targets = [s for s in self.stacks.values() if s.name == name_or_stack_id]
        if not targets:
            return original_delete_stack(self, name_or_stack_id)
        for stack in targets:
            try:
                original_delete_stack(self, stack.stack_id)
            except Exception as exc:
                if not hasattr(exc, LOGICAL_ID):
                    raise
                # moto popped the stack before deleting; AWS keeps it, in DELETE_FAILED.
                self.stacks[stack.stack_id] = stack
                forget_deleted_resources(stack.resource_map)
                failed = getattr(exc, FAILED_IDS, [getattr(exc, LOGICAL_ID)])
                resource_event(stack, getattr(exc, LOGICAL_ID), getattr(exc, RESOURCE_TYPE),
                                "DELETE_FAILED", failure_reason(exc))
                set_stack_status(
                    stack, "DELETE_FAILED",
                    f"The following resource(s) failed to delete: [{', '.join(failed)}]. ")
                continue
            forget_deleted_resources(stack.resource_map)
        return None

    ResourceMap._delete_resource = _delete_resource
    ResourceMap.delete = delete
    CloudFormationBackend.delete_stack = delete_stack
