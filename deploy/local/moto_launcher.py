#!/usr/bin/env python3
"""stackgate's local AWS emulator: moto's server with a few small, switchable patches.

    .local/venv/bin/python deploy/local/moto_launcher.py [--host 127.0.0.1] [--port 4566]
                                                         [--patches all|none|NAME,...]

Normally started through deploy/local/emulator.sh. moto (pinned in
deploy/local/requirements.txt) emulates CloudFormation well enough for stackgate's
end-to-end tests, except for the gaps below. Each patch closes one gap, following AWS's
documented behaviour, and wraps moto's own function rather than copying it:

  changeset_outputs  a stack created through a change set has Outputs (and exports)
  delete_order       delete_stack deletes resources dependents-first and leaks nothing;
                     a failed delete leaves the stack in DELETE_FAILED instead of losing it
  create_rollback    a resource failure yields CREATE_FAILED/UPDATE_FAILED events with the
                     error as ResourceStatusReason, a rollback and ROLLBACK_COMPLETE /
                     UPDATE_ROLLBACK_COMPLETE, instead of an API error and a stuck stack
  template_errors    an invalid template gives a 400 ValidationError "Template format
                     error: ..." instead of an HTML 500
  changeset_param_changes
                     an UPDATE change set lists the resources that new parameter values
                     modify; one with nothing to change ends FAILED, as in AWS
  route_table_association
                     an AWS::EC2::SubnetRouteTableAssociation is a real route table
                     association (DescribeRouteTables lists it; physical id rtbassoc-...)
  bucket_policy      AWS::S3::BucketPolicy puts (and on delete removes) the bucket policy
  instance_primary_eni
                     an instance's primary network interface is deleted when the instance
                     terminates (DeleteOnTermination true), instead of leaking
  expected_bucket_owner
                     an S3 call with ExpectedBucketOwner on a bucket of another account is
                     refused with 403 AccessDenied, instead of served
  changeset_tags     an executed UPDATE change set sets the stack's tags to its Tags

Which patches are applied: --patches, else $STACKGATE_MOTO_PATCHES, else "all". The value is
a comma list of tokens read left to right: "all", "none", a patch name (switch it on) or
"-name" (switch it off), e.g. "all,-delete_order". tests/emulator/test_moto_patches.py turns
each patch off in turn to prove that the gap is real and that the patch is what closes it.

Slow operations (a test knob, not a patch; always installed, idle until given a rule): moto
finishes a stack operation inside the API call, so races with a deploy in flight cannot be
staged. $STACKGATE_MOTO_SLOW="glob=seconds,..." (e.g. "race-*=3", "*=1"), or at run time
POST /stackgate-api/slow {"stack": "race-*", "seconds": 3} (0 removes the rule; GET lists
the rules, DELETE clears them), keeps ExecuteChangeSet (create or update) and DeleteStack
of the matching stacks in CREATE_/UPDATE_/DELETE_IN_PROGRESS for that long; meanwhile
CreateChangeSet, ExecuteChangeSet and DeleteStack on them are refused as AWS refuses them.
A rule naming a CloudFormation operation ("DescribeStacks:race-*=3", or "operation":
"DescribeStacks" in the POST) instead delays that call's answer for the stacks it names by
StackName, as a slow AWS would. See SlowOperations.
"""

from __future__ import annotations

import argparse
import copy
import functools
import inspect
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

PATCH_ENV = "STACKGATE_MOTO_PATCHES"
MOTO_SOURCE = "https://github.com/getmoto/moto/blob/5.2.5/moto"

# Attributes set on an exception raised by a resource handler, naming the resource.
_LOGICAL_ID = "_stackgate_logical_id"
_RESOURCE_TYPE = "_stackgate_resource_type"
_FAILED_IDS = "_stackgate_failed_ids"
# Set on a CloudFormation SubnetRouteTableAssociation made by associate_route_table.
_ASSOCIATION_ID = "_stackgate_association_id"


# --------------------------------------------------------------------------- helpers
# Shared by several patches; they only read or annotate moto's objects.


def _tag(exc: BaseException, logical_id: str, resource_type: str | None) -> None:
    """Name the resource that failed, once: the innermost (first) failure wins."""
    if not hasattr(exc, _LOGICAL_ID):
        setattr(exc, _LOGICAL_ID, logical_id)
        setattr(exc, _RESOURCE_TYPE, resource_type)


def _failure_reason(exc: BaseException) -> str:
    """ResourceStatusReason in the shape CloudFormation's resource handlers use."""
    code = getattr(exc, "error_type", None) or getattr(exc, "code", None)
    if not isinstance(code, str):
        code = type(exc).__name__
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    resource_type = getattr(exc, _RESOURCE_TYPE, None) or ""
    parts = resource_type.split("::")
    service = parts[1] if len(parts) == 3 else "Unknown"
    return (
        f'Resource handler returned message: "{message} (Service: {service}, '
        f'Error Code: {code})" (HandlerErrorCode: InvalidRequest)'
    )


def _resource_event(stack: Any, logical_id: str, resource_type: str | None,
                    status: str, reason: str | None = None,
                    physical_id: str | None = None) -> None:
    """Append a resource-level stack event (moto itself only records stack-level ones)."""
    from moto.cloudformation.models import Event

    event = Event(
        stack_id=stack.stack_id,
        stack_name=stack.name,
        logical_resource_id=logical_id,
        physical_resource_id=physical_id or "",
        resource_type=resource_type or "",
        resource_status=status,
        resource_status_reason=reason,
        resource_properties=None,
    )
    event.sendToSns(stack.account_id, stack.region_name, stack.notification_arns)
    stack.events.append(event)


def _set_stack_status(stack: Any, status: str, reason: str | None = None) -> None:
    stack.status = status
    stack.status_reason = reason  # serialised as StackStatusReason
    stack._add_stack_event(status, resource_status_reason=reason)


def _created_resources(resource_map: Any) -> dict[str, Any]:
    """Logical id -> moto object, for the template resources that exist right now."""
    return {
        name: obj
        for name, obj in resource_map._parsed_resources.items()
        if name in resource_map._resource_json_map
        and obj is not None
        and not isinstance(obj, str)
    }


def _forget_deleted_resources(resource_map: Any) -> None:
    """Keep only resources that still exist in the map.

    moto's ResourceMap is lazy: reading a resource that is not in _parsed_resources
    creates it. After a delete or a rollback, DescribeStackResources (or the Outputs)
    would therefore silently re-create what was just deleted.
    """
    live = _created_resources(resource_map)
    resource_map._resource_json_map = {
        name: body
        for name, body in resource_map._resource_json_map.items()
        if name in live
    }


def _disassociate_route_table(backend: Any, association_id: str) -> None:
    """EC2 DisassociateRouteTable; an association that is already gone counts as deleted."""
    from moto.ec2.exceptions import InvalidAssociationIdError

    try:
        backend.disassociate_route_table(association_id)
    except InvalidAssociationIdError:
        pass


def _drop_exports(backend: Any, stack: Any) -> None:
    for name in [n for n, e in backend.exports.items()
                 if e.exporting_stack_id == stack.stack_id]:
        del backend.exports[name]


def _resource_dependencies(body: Any, names: set[str]) -> set[str]:
    """Logical ids that one template resource uses: DependsOn, Ref, Fn::GetAtt, Fn::Sub."""
    found: set[str] = set()
    depends_on = body.get("DependsOn", []) if isinstance(body, dict) else []
    found.update([depends_on] if isinstance(depends_on, str) else depends_on)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "Ref" and isinstance(value, str):
                    found.add(value)
                elif key == "Fn::GetAtt":
                    if isinstance(value, list) and value and isinstance(value[0], str):
                        found.add(value[0])
                    elif isinstance(value, str):
                        found.add(value.split(".")[0])
                elif key == "Fn::Sub":
                    text = value[0] if isinstance(value, list) and value else value
                    if isinstance(text, str):
                        for var in re.findall(r"\$\{([^!}][^}]*)\}", text):
                            found.add(var.split(".")[0])
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    if isinstance(body, dict):
        walk({k: v for k, v in body.items() if k != "DependsOn"})
    return found & names


def _deletion_order(resource_json_map: dict[str, Any]) -> tuple[list[str], dict[str, set[str]]]:
    """Resources dependents-first (the reverse of a creation order), and each one's deps."""
    names = set(resource_json_map)
    deps = {n: _resource_dependencies(b, names) - {n} for n, b in resource_json_map.items()}
    creation: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str) -> None:
        if state.get(name):  # done, or a cycle (CloudFormation would reject the template)
            return
        state[name] = "visiting"
        for dep in sorted(deps[name]):
            visit(dep)
        state[name] = "done"
        creation.append(name)

    for name in resource_json_map:
        visit(name)
    return list(reversed(creation)), deps


# --------------------------------------------------------------------------- patch 1


def patch_changeset_outputs() -> None:
    """A stack created (or updated) by executing a change set gets its Outputs and exports.

    Gap: CloudFormationBackend.create_change_set builds the REVIEW_IN_PROGRESS stack with
    template={}, so its OutputMap is empty, and execute_change_set only applies the
    resources (ChangeSet.apply -> ResourceMap.update); it never rebuilds the OutputMap or
    registers exports the way create_stack / Stack.update do. DescribeStacks therefore shows
    no Outputs after CreateChangeSet(ChangeSetType=CREATE) + ExecuteChangeSet, and stale
    Outputs after an UPDATE change set.
    Source: {src}/cloudformation/models.py (CloudFormationBackend.execute_change_set,
    CloudFormationBackend.create_change_set). Same gap seen elsewhere:
    https://github.com/localstack/localstack/pull/2621 (patched execute_change_set the same way).

    Fix: after moto's execute_change_set succeeds, parse the executed template into the
    stack and rebuild its OutputMap and exports, as create_stack does.
    """
    from moto.cloudformation.models import CloudFormationBackend

    original = CloudFormationBackend.execute_change_set

    @functools.wraps(original)
    def execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
        original(self, change_set_name, stack_name)
        change_set = self.describe_change_set(change_set_name)
        stack = self.stacks.get(change_set.stack_id)
        if stack is None or not isinstance(stack.template, str):
            return
        stack._parse_template()
        stack.description = stack.template_dict.get("Description")
        stack.output_map = stack._create_output_map()
        _drop_exports(self, stack)
        self._validate_export_uniqueness(stack)
        for export in stack.exports:
            self.exports[export.name] = export

    CloudFormationBackend.execute_change_set = execute_change_set


# --------------------------------------------------------------------------- patch 2


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
    association_id = getattr(assoc, _ASSOCIATION_ID, None)
    if association_id:  # made by associate_route_table (patch route_table_association)
        _disassociate_route_table(backend, association_id)
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


def patch_delete_order() -> None:
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
        order, deps = _deletion_order(self._resource_json_map)
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
                _tag(exc, name, body.get("Type"))
                failures.append((name, exc))
                blocked |= deps[name]
                continue
            self._parsed_resources.pop(name, None)
        if failures:
            first = failures[0][1]
            setattr(first, _FAILED_IDS, [name for name, _ in failures])
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
                if not hasattr(exc, _LOGICAL_ID):
                    raise
                # moto popped the stack before deleting; AWS keeps it, in DELETE_FAILED.
                self.stacks[stack.stack_id] = stack
                _forget_deleted_resources(stack.resource_map)
                failed = getattr(exc, _FAILED_IDS, [getattr(exc, _LOGICAL_ID)])
                _resource_event(stack, getattr(exc, _LOGICAL_ID), getattr(exc, _RESOURCE_TYPE),
                                "DELETE_FAILED", _failure_reason(exc))
                _set_stack_status(
                    stack, "DELETE_FAILED",
                    f"The following resource(s) failed to delete: [{', '.join(failed)}]. ")
                continue
            _forget_deleted_resources(stack.resource_map)
        return None

    ResourceMap._delete_resource = _delete_resource
    ResourceMap.delete = delete
    CloudFormationBackend.delete_stack = delete_stack


# --------------------------------------------------------------------------- patch 3


def _roll_back_create(backend: Any, stack: Any, exc: BaseException) -> None:
    from moto.cloudformation.parsing import OutputMap

    logical_id = getattr(exc, _LOGICAL_ID)
    _resource_event(stack, logical_id, getattr(exc, _RESOURCE_TYPE), "CREATE_FAILED",
                    _failure_reason(exc))
    _set_stack_status(stack, "ROLLBACK_IN_PROGRESS",
                      f"The following resource(s) failed to create: [{logical_id}]. "
                      "Rollback requested by user.")
    resource_map = stack.resource_map
    created = _created_resources(resource_map)
    try:
        resource_map.delete()
        rollback_error = None
    except Exception as err:  # noqa: BLE001 - reported on the stack
        rollback_error = err
    for name in _deletion_order(resource_map._resource_json_map)[0]:
        obj = created.get(name)
        if obj is not None and name not in resource_map._parsed_resources:
            _resource_event(stack, name, getattr(obj, "cf_resource_type", None), "DELETE_COMPLETE",
                            physical_id=getattr(obj, "physical_resource_id", None))
    _forget_deleted_resources(resource_map)
    _drop_exports(backend, stack)
    # A stack that rolled back has no Outputs; an empty map also stops moto from
    # lazily re-creating resources to evaluate them.
    stack.output_map = OutputMap(resource_map, {}, stack.stack_id)
    if rollback_error is not None:
        failed = getattr(rollback_error, _FAILED_IDS, None) or [
            getattr(rollback_error, _LOGICAL_ID, "unknown")]
        if hasattr(rollback_error, _LOGICAL_ID):
            _resource_event(stack, getattr(rollback_error, _LOGICAL_ID),
                            getattr(rollback_error, _RESOURCE_TYPE), "DELETE_FAILED",
                            _failure_reason(rollback_error))
        _set_stack_status(stack, "ROLLBACK_FAILED",
                          f"The following resource(s) failed to delete: [{', '.join(failed)}]. ")
    else:
        _set_stack_status(stack, "ROLLBACK_COMPLETE")


def _snapshot(stack: Any) -> dict[str, Any]:
    resource_map = stack.resource_map
    return {
        "template": stack.template,
        "template_dict": resource_map._template,
        "resources": dict(resource_map._resource_json_map),
        "parsed": dict(resource_map._parsed_resources),
        "parameters": dict(resource_map.input_parameters or {}),
        "output_map": stack.output_map,
    }


def _roll_back_update(stack: Any, exc: BaseException, before: dict[str, Any]) -> None:
    logical_id = getattr(exc, _LOGICAL_ID)
    added = logical_id not in before["resources"]
    _resource_event(stack, logical_id, getattr(exc, _RESOURCE_TYPE),
                    "CREATE_FAILED" if added else "UPDATE_FAILED", _failure_reason(exc))
    _set_stack_status(stack, "UPDATE_ROLLBACK_IN_PROGRESS",
                      f"The following resource(s) failed to {'create' if added else 'update'}: "
                      f"[{logical_id}]. ")
    resource_map = stack.resource_map
    attempted = dict(resource_map._resource_json_map)
    for name, body in before["resources"].items():
        if name not in attempted:
            # moto deletes removed resources before adding new ones: re-create them.
            resource_map._parsed_resources.pop(name, None)
        elif resource_map._parsed_resources.get(name) is before["parsed"].get(name):
            # never modified: make the rollback leave it alone
            attempted[name] = body
    resource_map._resource_json_map = attempted
    try:
        resource_map.update(before["template_dict"], before["parameters"])
    except Exception as err:  # noqa: BLE001 - reported on the stack
        _set_stack_status(stack, "UPDATE_ROLLBACK_FAILED", _failure_reason(err))
        return
    for name in set(attempted) - set(before["resources"]):
        resource_map._parsed_resources.pop(name, None)  # deleted by the rollback
    stack.template = before["template"]
    if isinstance(stack.template, str):
        stack._parse_template()
    stack.output_map = before["output_map"]
    _set_stack_status(stack, "UPDATE_ROLLBACK_COMPLETE")


_nesting = threading.local()


def patch_create_rollback() -> None:
    """A resource that fails to create or update rolls the stack back, with a reason.

    Gap: a resource handler error (e.g. EC2's InvalidSubnet.Range for a subnet CIDR outside
    its VPC) propagates out of CloudFormationBackend.create_stack / execute_change_set /
    update_stack as an error of the API call itself. The stack stays CREATE_IN_PROGRESS /
    REVIEW_IN_PROGRESS (or keeps its old status with a dangling UPDATE_IN_PROGRESS event),
    the resources created before the failure leak, and no event carries the reason.
    Source: {src}/cloudformation/models.py, CloudFormationBackend.execute_change_set
    ("# TODO: handle execution errors and implement rollback"), Stack.create_resources,
    Stack.update; resources are created in {src}/cloudformation/parsing.py
    (parse_and_create_resource, parse_and_update_resource).
    AWS accepts the call, then emits CREATE_FAILED (or UPDATE_FAILED) for the resource with
    the handler's message as ResourceStatusReason, ROLLBACK_IN_PROGRESS, deletes what it
    created, and ends in ROLLBACK_COMPLETE (default OnFailure=ROLLBACK) or, for an update,
    UPDATE_ROLLBACK_COMPLETE
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/stack-failure-options.html).

    Fix: parse_and_create_resource / parse_and_update_resource name the failing resource on
    the exception; create_stack, execute_change_set and update_stack turn such a failure
    into events, a rollback and the final status. Nested stacks keep moto's behaviour.
    """
    from moto.cloudformation import parsing
    from moto.cloudformation.models import CloudFormationBackend

    def naming(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(logical_id: str, resource_json: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            try:
                return original(logical_id, resource_json, *args, **kwargs)
            except Exception as exc:
                _tag(exc, logical_id, resource_json.get("Type"))
                raise
        return wrapper

    parsing.parse_and_create_resource = naming(parsing.parse_and_create_resource)
    parsing.parse_and_update_resource = naming(parsing.parse_and_update_resource)

    def outermost(original: Callable[..., Any], on_failure: Callable[..., Any],
                  before: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            depth = getattr(_nesting, "depth", 0)
            if depth:  # a nested stack: its parent's resource fails, as in moto
                return original(self, *args, **kwargs)
            context = before(self, *args, **kwargs)
            _nesting.depth = 1
            try:
                return original(self, *args, **kwargs)
            except Exception as exc:
                if not hasattr(exc, _LOGICAL_ID):
                    raise  # not a resource failure: a real error of the API call
                return on_failure(self, exc, context)
            finally:
                _nesting.depth = 0
        return wrapper

    # create_stack
    def create_before(self: Any, *args: Any, **kwargs: Any) -> set[str]:
        return set(self.stacks)

    def create_failed(self: Any, exc: BaseException, existing: set[str]) -> Any:
        stack = next((s for sid, s in self.stacks.items() if sid not in existing), None)
        if stack is None:
            raise exc
        _roll_back_create(self, stack, exc)
        return stack

    # execute_change_set
    def execute_before(self: Any, change_set_name: str, stack_name: str | None = None) -> Any:
        change_set = self.describe_change_set(change_set_name)
        stack = self.stacks[change_set.stack_id]
        return change_set, stack, _snapshot(stack)

    def execute_failed(self: Any, exc: BaseException, context: Any) -> None:
        change_set, stack, before = context
        change_set.execution_status = "EXECUTE_FAILED"
        if change_set.change_set_type == "CREATE":
            stack.template = change_set.template
            _roll_back_create(self, stack, exc)
        else:
            _roll_back_update(stack, exc, before)

    # update_stack
    def update_before(self: Any, *args: Any, **kwargs: Any) -> Any:
        name = kwargs["name"] if "name" in kwargs else args[0]
        stack = self.get_stack(name)
        return stack, _snapshot(stack)

    def update_failed(self: Any, exc: BaseException, context: Any) -> Any:
        stack, before = context
        _roll_back_update(stack, exc, before)
        return stack

    CloudFormationBackend.create_stack = outermost(
        CloudFormationBackend.create_stack, create_failed, create_before)
    CloudFormationBackend.execute_change_set = outermost(
        CloudFormationBackend.execute_change_set, execute_failed, execute_before)
    CloudFormationBackend.update_stack = outermost(
        CloudFormationBackend.update_stack, update_failed, update_before)


# --------------------------------------------------------------------------- patch 4

_TOP_LEVEL_KEYS = {
    "AWSTemplateFormatVersion", "Description", "Metadata", "Parameters", "Rules",
    "Mappings", "Conditions", "Transform", "Resources", "Outputs", "Hooks",
}
_PSEUDO_PARAMETERS = {
    "AWS::AccountId", "AWS::NotificationARNs", "AWS::NoValue", "AWS::Partition",
    "AWS::Region", "AWS::StackId", "AWS::StackName", "AWS::URLSuffix",
}


def template_format_error(body: Any) -> str | None:
    """CloudFormation's message for a template that cannot be used, or None if it can.

    Checks what CloudFormation checks before it looks at any resource: well-formed JSON or
    YAML, a mapping with known top-level sections, at least one resource, a Type on every
    resource, and Ref / Fn::GetAtt / Fn::Sub / DependsOn names that exist.
    """
    import yaml

    from moto.cloudformation.utils import yaml_tag_constructor

    if not isinstance(body, str) or not body.strip():
        return None  # moto already answers "Either Template URL or Template Body ..."
    yaml.add_multi_constructor("", yaml_tag_constructor)  # as moto does before parsing
    try:
        template = yaml.load(body, Loader=yaml.Loader)
    except yaml.YAMLError as yaml_error:
        if body.lstrip().startswith("{"):
            try:
                template = json.loads(body)
            except json.JSONDecodeError as json_error:
                return (f"Template format error: JSON not well-formed. "
                        f"(line {json_error.lineno}, column {json_error.colno})")
        else:
            mark = getattr(yaml_error, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            return f"Template format error: YAML not well-formed.{where}"
    if not isinstance(template, dict):
        return "Template format error: unsupported structure."
    unknown = sorted(str(k) for k in template if k not in _TOP_LEVEL_KEYS)
    if unknown:
        return f"Template format error: Invalid template property or properties [{', '.join(unknown)}]"
    resources = template.get("Resources")
    if not isinstance(resources, dict) or not resources:
        return "Template format error: At least one Resources member must be defined."
    for name, resource in resources.items():
        if not isinstance(resource, dict) or not isinstance(resource.get("Type"), str):
            return f"Template format error: [/Resources/{name}] Every Resources object must contain a Type member."
    if "Transform" in template:
        return None  # macros may add resources and parameters
    parameters = template.get("Parameters") or {}
    known = set(resources) | set(parameters if isinstance(parameters, dict) else ()) | _PSEUDO_PARAMETERS
    for section in ("Resources", "Outputs"):
        refs, getatts = _references(template.get(section) or {})
        if section == "Resources":
            for resource in resources.values():
                depends_on = resource.get("DependsOn", [])
                refs |= set([depends_on] if isinstance(depends_on, str) else depends_on)
        missing_getatt = sorted(getatts - set(resources))
        if missing_getatt:
            return ("Template error: instance of Fn::GetAtt references undefined resource "
                    f"{missing_getatt[0]}")
        unresolved = sorted(r for r in refs - known if isinstance(r, str))
        if unresolved:
            return ("Template format error: Unresolved resource dependencies "
                    f"[{', '.join(unresolved)}] in the {section} block of the template")
    return None


def _references(node: Any, local: frozenset[str] = frozenset()) -> tuple[set[str], set[str]]:
    """(names used by Ref or ${Name}, resources used by Fn::GetAtt or ${Name.Attr})."""
    refs: set[str] = set()
    getatts: set[str] = set()
    if isinstance(node, list):
        for item in node:
            r, g = _references(item, local)
            refs |= r
            getatts |= g
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                refs.add(value)
                continue
            if key == "Fn::GetAtt":
                if isinstance(value, list) and value and isinstance(value[0], str):
                    getatts.add(value[0])
                elif isinstance(value, str):
                    getatts.add(value.split(".")[0])
            if key == "Fn::Sub":
                text, variables = (value + [{}])[:2] if isinstance(value, list) else (value, {})
                names = local | frozenset(variables if isinstance(variables, dict) else ())
                if isinstance(text, str):
                    for var in re.findall(r"\$\{([^!}][^}]*)\}", text):
                        var = var.strip()
                        if var in names:
                            continue
                        if "." in var and not var.startswith("AWS::"):
                            getatts.add(var.split(".")[0])
                        else:
                            refs.add(var)
                r, g = _references(variables, local)
                refs |= r
                getatts |= g
                continue
            r, g = _references(value, local)
            refs |= r
            getatts |= g
    return refs, getatts


def patch_template_errors() -> None:
    """An unusable template is a 400 ValidationError "Template format error: ...", not a 500.

    Gap: CloudFormationBackend.create_change_set (and create_stack, update_stack) parse the
    template with yaml, fall back to json.loads, and index template["Resources"] without
    checks, so malformed JSON/YAML raises JSONDecodeError and a template without Resources
    raises KeyError: moto's server answers with an HTML "500 Internal Server Error". A
    reference to an undefined name is accepted. Source: {src}/cloudformation/models.py
    (ChangeSet._parse_template, ChangeSet.diff, Stack.parse_template) and
    {src}/cloudformation/parsing.py (ResourceMap.build_resource_diff).
    Real CloudFormation answers 400 with <ErrorResponse><Error><Type>Sender</Type>
    <Code>ValidationError</Code><Message>Template format error: ...</Message>
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/CommonErrors.html).

    Fix: check the template first (template_format_error) in create_change_set,
    create_stack and update_stack, and raise moto's ValidationError, which its server
    already renders in that AWS shape.
    """
    from moto.cloudformation.exceptions import ValidationError
    from moto.cloudformation.models import CloudFormationBackend

    def validating(original: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(original)

        @functools.wraps(original)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(self, *args, **kwargs)
            error = template_format_error(bound.arguments.get("template"))
            if error:
                raise ValidationError(message=error)
            return original(self, *args, **kwargs)
        return wrapper

    for method in ("create_change_set", "create_stack", "update_stack"):
        setattr(CloudFormationBackend, method, validating(getattr(CloudFormationBackend, method)))


# --------------------------------------------------------------------------- patch 5

NO_CHANGES_REASON = ("The submitted information didn't contain changes. "
                     "Submit different information or contact AWS Support.")
KNOWN_AFTER_APPLY = "{{changeSet:KNOWN_AFTER_APPLY}}"  # how AWS shows a not-yet-known value
_RESOURCE_ATTRIBUTES = ("Metadata", "CreationPolicy", "UpdatePolicy", "DeletionPolicy",
                        "UpdateReplacePolicy")
_SAME_INPUTS = "_stackgate_same_inputs"


class _NotYetCreated:
    """A resource the stack does not have yet: its Ref and attributes are unknown."""

    physical_resource_id = KNOWN_AFTER_APPLY

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return KNOWN_AFTER_APPLY


def _property_resolver(stack: Any, template: dict[str, Any], parameters: dict[str, Any]) -> Any:
    """A moto ResourceMap for template + parameters whose intrinsics resolve against the
    stack's live resources; unlike moto's own map, it never creates a resource."""
    from moto.cloudformation.models import cloudformation_backends
    from moto.cloudformation.parsing import ResourceMap

    class Resolver(ResourceMap):
        def __getitem__(self, key: str) -> Any:
            if key in self._parsed_resources:
                return self._parsed_resources[key]
            if key in self._resource_json_map:
                return _NotYetCreated()
            raise KeyError(key)

    resolver = Resolver(
        stack.stack_id, stack.name, dict(parameters), stack.tags,
        region_name=stack.region_name, account_id=stack.account_id, template=template,
        cross_stack_resources=cloudformation_backends[stack.account_id][stack.region_name].exports)
    resolver.load_mapping()
    resolver.load_parameters()
    resolver.load_conditions()
    live = _created_resources(stack.resource_map)
    resolver._parsed_resources.update(
        {name: obj for name, obj in live.items() if name in resolver._resource_json_map})
    return resolver


def _resolved(resolver: Any, name: str) -> dict[str, Any] | None:
    """Properties and resource attributes of one resource with intrinsics resolved; None
    if the resource is switched off by its Condition or cannot be resolved."""
    from moto.cloudformation.parsing import clean_json

    body = copy.deepcopy(resolver._resource_json_map[name])
    try:
        condition = body.get("Condition")
        if condition and not resolver.lazy_condition_map[condition]:
            return None
        resolved = {key: clean_json(body[key], resolver)
                    for key in _RESOURCE_ATTRIBUTES if key in body}
        resolved["Properties"] = clean_json(body.get("Properties") or {}, resolver)
        return resolved
    except Exception:  # noqa: BLE001 - e.g. a missing export: say nothing about it
        return None


def _modification(old: Any, new: Any, name: str, changed: set[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """(Scope, Details) of an existing resource under the old and the new template/parameters."""
    before, after = _resolved(old, name), _resolved(new, name)
    old_body, new_body = old._resource_json_map[name], new._resource_json_map[name]
    scope: list[str] = []
    details: list[dict[str, Any]] = []
    if before is None or after is None:
        # Unknown: fall back to moto's own rule (ResourceMap.build_resource_diff), an
        # unchanged body that refers to a changed parameter.
        if old_body == new_body and _references(new_body)[0] & changed:
            scope.append("Properties")
        return scope, details
    raw_before, raw_after = old_body.get("Properties") or {}, new_body.get("Properties") or {}
    for prop in sorted(set(before["Properties"]) | set(after["Properties"])):
        if before["Properties"].get(prop) == after["Properties"].get(prop):
            continue
        target = {"Attribute": "Properties", "Name": prop, "RequiresRecreation": "Never"}
        if raw_before.get(prop) != raw_after.get(prop):
            details.append({"Target": target, "Evaluation": "Static",
                            "ChangeSource": "DirectModification"})
            continue
        causes = sorted(_references(raw_after.get(prop))[0] & changed)
        details.extend({"Target": target, "Evaluation": "Static",
                        "ChangeSource": "ParameterReference", "CausingEntity": cause}
                       for cause in causes)
        if not causes:  # e.g. through a Condition or a Mapping
            details.append({"Target": target, "Evaluation": "Dynamic", "ChangeSource": "Automatic"})
    if details:
        scope.append("Properties")
    for attribute in _RESOURCE_ATTRIBUTES:
        if before.get(attribute) != after.get(attribute):
            scope.append(attribute)
            details.append({"Target": {"Attribute": attribute, "RequiresRecreation": "Never"},
                            "Evaluation": "Static", "ChangeSource": "DirectModification"})
    return scope, details


def patch_changeset_param_changes() -> None:
    """An UPDATE change set lists the resources that new parameter values change, and one
    with nothing to change is FAILED, as in AWS.

    Gap: ChangeSet.diff (ResourceMap.build_change_set_actions -> build_resource_diff)
    compares template bodies only, so a change set with the same template and other
    parameter values is CREATE_COMPLETE with no Changes, although executing it updates
    resources. It also compares against the stack's own copy of the template, into which
    parse_resource inserted "Properties": {}, so a resource without Properties is always
    listed as Modify. With the same template and parameters, CreateChangeSet itself fails
    with "No updates are to be performed." when the body is the same text
    (CloudFormationResponse._validate_different_update, right for UpdateStack only);
    otherwise create_change_set compares Stack.parameters, which execute_change_set never
    updates, so it may end CREATE_COMPLETE with no changes, and its FAILED reason differs.
    ChangeSet.apply -> ResourceMap.update only re-applies bodies that changed or that Ref a
    changed parameter, missing one used through Fn::Sub or Fn::If.
    Source: {src}/cloudformation/models.py (ChangeSet.diff, ChangeSet.apply,
    CloudFormationBackend.create_change_set), {src}/cloudformation/parsing.py
    (ResourceMap.build_resource_diff, ResourceMap.update, parse_resource) and
    {src}/cloudformation/responses.py (CloudFormationResponse.create_change_set).
    AWS lists each resource whose properties resolve differently as Action Modify with
    PhysicalResourceId, Replacement, Scope and Details (ChangeSource ParameterReference,
    CausingEntity the parameter); a change set with nothing to change is created with
    Status FAILED, ExecutionStatus UNAVAILABLE and StatusReason "The submitted information
    didn't contain changes. Submit different information or contact AWS Support."
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-updating-stacks-changesets-create.html,
    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ResourceChange.html).

    Fix: after moto's diff, resolve each kept resource's Properties (and Metadata,
    DeletionPolicy, ...) under the old and under the new template and parameters with
    moto's clean_json, against the stack's live resources, and list each difference as one
    Modify row, merged with moto's Add/Remove/Modify rows (its spurious Modify rows dropped).
    Replacement is always "False" (RequiresRecreation "Never"): AWS's value depends on each
    property's update behaviour, which moto does not model. Executing the change set updates
    exactly the resources it lists. A change set with no resource changes and the same
    template, parameter values and tags is FAILED; CreateChangeSet no longer errors.
    """
    from moto.cloudformation.models import Change, ChangeSet, CloudFormationBackend, Stack
    from moto.cloudformation.responses import CloudFormationResponse

    original_diff = ChangeSet.diff

    @functools.wraps(original_diff)
    def diff(self: Any) -> list[Any]:
        changes = original_diff(self)
        stack = self.stack
        if self.change_set_type != "UPDATE" or not isinstance(stack.template, str):
            return changes
        old_params = dict(stack.resource_map.input_parameters or {})
        try:
            old = _property_resolver(stack, Stack.parse_template(stack.template), old_params)
            # ResourceMap.update keeps the old parameters when none are given
            new = _property_resolver(stack, self.template_dict, self.parameters or old_params)
        except Exception:  # noqa: BLE001 - e.g. a missing parameter: moto's answer stands
            return changes
        changed = {name for name in set(old.resolved_parameters) | set(new.resolved_parameters)
                   if old.resolved_parameters.get(name) != new.resolved_parameters.get(name)}
        setattr(self, _SAME_INPUTS, not changed and old._template == new._template)
        live = _created_resources(stack.resource_map)

        def modified(name: str) -> Any:
            change = Change("Modify", name, new._resource_json_map[name]["Type"])
            change.scope, change.details = _modification(old, new, name, changed)
            if not change.scope and old._resource_json_map[name] == new._resource_json_map[name]:
                return None  # nothing differs (moto's row only saw its own "Properties": {})
            change.replacement = "False"
            return change

        result = []
        for change in changes:
            if change.action == "Modify":
                change = modified(change.logical_resource_id)
            if change is not None:
                result.append(change)
        listed = {change.logical_resource_id for change in result}
        for name in new._resource_json_map:
            if name in old._resource_json_map and name not in listed:
                change = modified(name)
                if change is not None:
                    result.append(change)
        for change in result:
            if change.action != "Add" and change.logical_resource_id in live:
                change.physical_resource_id = getattr(
                    live[change.logical_resource_id], "physical_resource_id", None)
        return result

    original_create = CloudFormationBackend.create_change_set

    @functools.wraps(original_create)
    def create_change_set(self: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
        change_set_id, stack_id = original_create(self, *args, **kwargs)
        change_set = self.change_sets[change_set_id]
        if change_set.change_set_type == "UPDATE":
            same = getattr(change_set, _SAME_INPUTS, change_set.status == "FAILED")
            tags = change_set.tags  # no Tags: the stack keeps its tags
            if same and not change_set.changes and (not tags or tags == change_set.stack.tags):
                change_set.status, change_set.execution_status = "FAILED", "UNAVAILABLE"
                change_set.status_reason = NO_CHANGES_REASON
            else:
                change_set.status, change_set.execution_status = "CREATE_COMPLETE", "AVAILABLE"
                change_set.status_reason = None
        return change_set_id, stack_id

    original_validate = CloudFormationResponse._validate_different_update

    @functools.wraps(original_validate)
    def _validate_different_update(self: Any, *args: Any, **kwargs: Any) -> None:
        if self._get_action() == "CreateChangeSet":
            return None  # AWS creates the change set, FAILED (see create_change_set)
        return original_validate(self, *args, **kwargs)

    original_apply = ChangeSet.apply

    @functools.wraps(original_apply)
    def apply(self: Any) -> None:
        # moto's ResourceMap.update only re-applies resources whose body changed or that
        # Ref a changed parameter; make it update every resource this change set lists.
        resource_map = self.stack.resource_map
        listed = [c.logical_resource_id for c in self.changes if c.action == "Modify"]
        build_resource_diff = resource_map.build_resource_diff

        def with_listed(template: dict[str, Any], parameters: Any = None) -> dict[str, Any]:
            actions = build_resource_diff(template, parameters)
            actions["Modify"] += [name for name in listed if name not in actions["Modify"]
                                  and name in template["Resources"]]
            return actions

        resource_map.build_resource_diff = with_listed
        try:
            original_apply(self)
        finally:
            vars(resource_map).pop("build_resource_diff", None)

    ChangeSet.diff = diff
    ChangeSet.apply = apply
    CloudFormationBackend.create_change_set = create_change_set
    CloudFormationResponse._validate_different_update = _validate_different_update


# --------------------------------------------------------------------------- patch 6


def patch_route_table_association() -> None:
    """A CloudFormation SubnetRouteTableAssociation associates the subnet with the route table.

    Gap: SubnetRouteTableAssociation.create_from_cloudformation_json
    ({src}/ec2/models/subnets.py) calls SubnetBackend.create_subnet_association, which only
    records the pair in subnet_associations. DescribeRouteTables reads
    RouteTable._associations, filled by RouteTableBackend.associate_route_table
    ({src}/ec2/models/route_tables.py), so the route table shows no association with the
    subnet; the resource's physical id is the route table's id, and it has no delete.
    AWS associates the subnet with the route table (EC2 AssociateRouteTable): the table lists
    the association, whose id (rtbassoc-...) is the resource's physical id and Ref value, and
    deleting the resource disassociates the subnet (EC2 DisassociateRouteTable)
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-ec2-subnetroutetableassociation.html).

    Fix: create through associate_route_table and use the association id as the physical
    id; delete through disassociate_route_table (delete_from_cloudformation_json, and the
    delete_order handler). An association that is already gone counts as deleted.
    """
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.subnets import SubnetRouteTableAssociation

    original_physical_id = SubnetRouteTableAssociation.physical_resource_id

    def create_from_cloudformation_json(cls: Any, resource_name: str, cloudformation_json: Any,
                                        account_id: str, region_name: str, **kwargs: Any) -> Any:
        properties = cloudformation_json["Properties"]
        route_table_id, subnet_id = properties["RouteTableId"], properties["SubnetId"]
        association_id = ec2_backends[account_id][region_name].associate_route_table(
            route_table_id, subnet_id=subnet_id)
        association = cls(route_table_id, subnet_id)
        setattr(association, _ASSOCIATION_ID, association_id)
        return association

    def delete_from_cloudformation_json(cls: Any, resource_name: str, cloudformation_json: Any,
                                        account_id: str, region_name: str) -> None:
        # resource_name: the physical id, i.e. the association id
        if resource_name and resource_name.startswith("rtbassoc-"):
            _disassociate_route_table(ec2_backends[account_id][region_name], resource_name)

    def physical_resource_id(self: Any) -> str:
        return getattr(self, _ASSOCIATION_ID, None) or original_physical_id.fget(self)

    SubnetRouteTableAssociation.create_from_cloudformation_json = classmethod(
        create_from_cloudformation_json)
    SubnetRouteTableAssociation.delete_from_cloudformation_json = classmethod(
        delete_from_cloudformation_json)
    SubnetRouteTableAssociation.physical_resource_id = property(physical_resource_id)


# --------------------------------------------------------------------------- patch 7

# CloudFormationModel.__subclasses__(), moto's resource type registry, holds weak references.
_REGISTERED_MODELS: list[type] = []


def patch_bucket_policy() -> None:
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


# --------------------------------------------------------------------------- patch 8


def patch_instance_primary_eni() -> None:
    """An instance's primary network interface is deleted when the instance terminates.

    Gap: Instance.prep_nics ({src}/ec2/models/instances.py) creates the primary network
    interface of an instance launched without a NetworkInterfaces specification (as
    CloudFormation's AWS::EC2::Instance does: Instance.create_from_cloudformation_json ->
    run_instances with SubnetId) with delete_on_termination=False, so Instance.terminate
    keeps it: after the stack is deleted, DescribeNetworkInterfaces still lists it "in-use",
    attached to a terminated instance, in a subnet that no longer exists.
    In AWS that interface has Attachment.DeleteOnTermination true and is deleted with the
    instance (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-eni.html, "Primary
    network interface"); TerminateInstances is idempotent: terminating a terminated
    instance again succeeds
    (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_TerminateInstances.html).

    Fix: after prep_nics, the primary interface it created for a launch without a
    NetworkInterfaces specification gets delete_on_termination=True, so Instance.terminate
    deletes it; an explicit specification keeps moto's handling. Instance.terminate of a
    terminated instance does nothing (moto would delete the interface a second time and
    fail with InvalidNetworkInterfaceID.NotFound).
    """
    from moto.ec2.models.instances import Instance

    original_prep_nics = Instance.prep_nics

    @functools.wraps(original_prep_nics)
    def prep_nics(self: Any, nic_spec: list[dict[str, Any]], *args: Any, **kwargs: Any) -> None:
        original_prep_nics(self, nic_spec, *args, **kwargs)
        primary = self.nics.get(0)
        if not nic_spec and primary is not None:
            primary.delete_on_termination = True

    original_terminate = Instance.terminate

    @functools.wraps(original_terminate)
    def terminate(self: Any) -> Any:
        if self._state.name == "terminated":
            return copy.copy(self._state)
        return original_terminate(self)

    Instance.prep_nics = prep_nics
    Instance.terminate = terminate


# --------------------------------------------------------------------------- patch 9


def patch_expected_bucket_owner() -> None:
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


# --------------------------------------------------------------------------- patch 10


def patch_changeset_tags() -> None:
    """Executing an UPDATE change set that has Tags gives the stack those tags.

    Gap: CloudFormationBackend.create_change_set ({src}/cloudformation/models.py) keeps an
    UPDATE change set's Tags on the ChangeSet, and ChangeSet.apply only updates the
    resources: the stack keeps the tags it was created with.
    In AWS the change set's Tags become the stack's tags when it is executed
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateChangeSet.html,
    "Tags": "Key-value pairs to associate with this stack").

    Fix: ChangeSet.apply sets the stack's tags to the change set's, when it has any.
    """
    from moto.cloudformation.models import ChangeSet

    original_apply = ChangeSet.apply

    @functools.wraps(original_apply)
    def apply(self: Any) -> None:
        original_apply(self)
        if self.tags:
            self.stack.tags = dict(self.tags)

    ChangeSet.apply = apply


# --------------------------------------------------------------------------- slow operations
# Not a gap of moto's but a test knob: moto finishes every create, update and delete inside
# the API call, so a race with a stack operation in flight cannot be staged. This holds the
# chosen stacks' operations in *_IN_PROGRESS for a set time, as a real deploy would be.

SLOW_ENV = "STACKGATE_MOTO_SLOW"
SLOW_PATH = "/stackgate-api/slow"


class SlowOperations:
    """Rules (stack-name glob -> seconds) and the operations they hold back.

    Rules come from $STACKGATE_MOTO_SLOW ("glob=seconds,...", e.g. "race-*=3" or "*=1")
    and from the HTTP endpoint SLOW_PATH:
        POST   {"stack": "race-*", "seconds": 3}   add or replace a rule (0 removes it)
        POST   {"stack": "race-*", "seconds": 3, "operation": "DescribeStacks"}
        GET                                        {"rules": {"race-*": 3.0,
                                                              "DescribeStacks:race-*": 3.0}}
        DELETE                                     remove every rule
    A rule without an operation holds stack operations: a held stack answers DescribeStacks
    with CREATE_/UPDATE_/DELETE_IN_PROGRESS (and one stack event saying so) until the time
    is up; then moto (and the patches) run the operation. While it is held,
    CreateChangeSet, ExecuteChangeSet and DeleteStack on it are refused with AWS's
    ValidationError "... is in X_IN_PROGRESS state and can not be updated.".
    A rule "Operation:glob" delays the answer to that CloudFormation call when its
    StackName (a name or a stack ARN) matches: the call runs after the wait, so a client
    that gives up meanwhile leaves nothing half done by a read. /moto-api/reset does not
    forget the rules.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rules: dict[str, float] = {}
        self.held: set[str] = set()  # stack ids with an operation held back

    @staticmethod
    def rule_key(glob: str, operation: str | None) -> str:
        """"glob", or "Operation:glob" (stack names and globs never hold a colon)."""
        if not glob or ":" in glob:
            raise ValueError(f"stack glob {glob!r} must be non-empty, without ':'")
        if operation is None:
            return glob
        if not re.fullmatch(r"[A-Z][A-Za-z]+", operation):
            raise ValueError(f"operation {operation!r} is not a CloudFormation action name")
        return f"{operation}:{glob}"

    def parse(self, spec: str) -> dict[str, float]:
        rules: dict[str, float] = {}
        for item in filter(None, (s.strip() for s in spec.split(","))):
            key, sep, seconds = item.rpartition("=")
            operation, _, glob = key.rpartition(":")
            try:
                value = float(seconds)
                key = self.rule_key(glob, operation or None)
            except ValueError:
                value = -1.0
            if not sep or not 0 <= value <= 3600:
                raise SystemExit(f"moto_launcher: {SLOW_ENV}: {item!r} is not "
                                 "[Operation:]glob=seconds (0-3600)")
            rules[key] = value
        return rules

    def delay(self, stack_name: str, operation: str | None = None) -> float:
        """Seconds to hold `stack_name`'s stack operations, or to delay `operation` on it."""
        import fnmatch

        with self.lock:
            matches = [s for key, s in self.rules.items()
                       if key.rpartition(":")[0] == (operation or "")
                       and fnmatch.fnmatchcase(stack_name, key.rpartition(":")[2])]
        return max(matches, default=0.0)

    def refuse_if_held(self, stack: Any) -> None:
        from moto.cloudformation.exceptions import ValidationError

        if stack is not None and stack.stack_id in self.held:
            raise ValidationError(message=f"Stack:{stack.stack_id} is in {stack.status} state "
                                          "and can not be updated.")

    def hold(self, stack: Any, status: str, seconds: float, run: Callable[[], None]) -> None:
        """Show `status` now; run the operation itself after `seconds`, off the request."""
        stack.status = status
        stack._add_stack_event(status, resource_status_reason="User Initiated")
        self.held.add(stack.stack_id)

        def later() -> None:
            mark = len(stack.events)
            try:
                run()
                # moto's own "in progress" event repeats the one shown at the start.
                if len(stack.events) > mark and stack.events[mark].resource_status == status \
                        and stack.events[mark].logical_resource_id == stack.name:
                    del stack.events[mark]
            except Exception as exc:  # noqa: BLE001 - the caller's request is long gone
                failed = status.replace("_IN_PROGRESS", "_FAILED")
                _set_stack_status(stack, failed, str(exc) or type(exc).__name__)
            finally:
                self.held.discard(stack.stack_id)

        timer = threading.Timer(seconds, later)
        timer.daemon = True
        timer.start()

    def endpoint(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        status, body = "200 OK", None
        if method == "POST":
            try:
                length = min(int(environ.get("CONTENT_LENGTH") or 0), 64 * 1024)
                rule = json.loads(environ["wsgi.input"].read(length) or b"{}")
                seconds = float(rule["seconds"])
                operation = rule.get("operation")
                key = self.rule_key(str(rule["stack"]),
                                    None if operation is None else str(operation))
                if not 0 <= seconds <= 3600:
                    raise ValueError("seconds must be within 0-3600")
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                status, body = "400 Bad Request", {
                    "error": f"expected {{stack, seconds[, operation]}}: {exc}"}
            else:
                with self.lock:
                    if seconds:
                        self.rules[key] = seconds
                    else:
                        self.rules.pop(key, None)
        elif method == "DELETE":
            with self.lock:
                self.rules.clear()
        elif method != "GET":
            status, body = "405 Method Not Allowed", {"error": "GET, POST or DELETE"}
        with self.lock:
            body = body or {"rules": dict(self.rules)}
        data = json.dumps(body).encode()
        start_response(status, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(data)))])
        return [data]


SLOW = SlowOperations()


def install_slow_operations(spec: str | None) -> None:
    """Wrap execute_change_set, create_change_set and delete_stack (outermost, so the held
    operation still goes through every patch), delay named operations' answers, and serve
    SLOW_PATH."""
    from moto.cloudformation.models import CloudFormationBackend
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    SLOW.rules = SLOW.parse(spec or "")

    original_execute = CloudFormationBackend.execute_change_set

    @functools.wraps(original_execute)
    def execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
        change_set = self.describe_change_set(change_set_name)
        stack = self.stacks.get(change_set.stack_id)
        SLOW.refuse_if_held(stack)
        seconds = SLOW.delay(stack.name) if stack is not None else 0.0
        if not seconds:
            return original_execute(self, change_set_name, stack_name)
        kind = "CREATE" if change_set.change_set_type == "CREATE" else "UPDATE"
        change_set.execution_status = "EXECUTE_IN_PROGRESS"
        SLOW.hold(stack, f"{kind}_IN_PROGRESS", seconds,
                  lambda: original_execute(self, change_set.change_set_id, stack_name))

    original_create_change_set = CloudFormationBackend.create_change_set

    @functools.wraps(original_create_change_set)
    def create_change_set(self: Any, stack_name: str, *args: Any, **kwargs: Any) -> Any:
        SLOW.refuse_if_held(next((s for s in self.stacks.values() if s.name == stack_name), None))
        return original_create_change_set(self, stack_name, *args, **kwargs)

    original_delete = CloudFormationBackend.delete_stack

    @functools.wraps(original_delete)
    def delete_stack(self: Any, name_or_stack_id: str) -> None:
        stack = self.stacks.get(name_or_stack_id) or next(
            (s for s in self.stacks.values() if s.name == name_or_stack_id), None)
        SLOW.refuse_if_held(stack)
        seconds = SLOW.delay(stack.name) if stack is not None else 0.0
        if not seconds:
            return original_delete(self, name_or_stack_id)
        SLOW.hold(stack, "DELETE_IN_PROGRESS", seconds,
                  lambda: original_delete(self, stack.stack_id))

    CloudFormationBackend.execute_change_set = execute_change_set
    CloudFormationBackend.create_change_set = create_change_set
    CloudFormationBackend.delete_stack = delete_stack

    from moto.cloudformation.responses import CloudFormationResponse

    original_action = CloudFormationResponse.call_action

    @functools.wraps(original_action)
    def call_action(self: Any) -> Any:
        name = self._get_param("StackName")
        if isinstance(name, str) and name:
            if name.startswith("arn:"):  # arn:...:stack/<name>/<id>
                name = name.split(":")[-1].split("/")[1] if "/" in name else name
            seconds = SLOW.delay(name, self._get_action())
            if seconds:
                time.sleep(seconds)
        return original_action(self)

    CloudFormationResponse.call_action = call_action

    original_call = DomainDispatcherApplication.__call__

    @functools.wraps(original_call)
    def __call__(self: Any, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO", "").rstrip("/") == SLOW_PATH:
            return SLOW.endpoint(environ, start_response)
        return original_call(self, environ, start_response)

    DomainDispatcherApplication.__call__ = __call__


# --------------------------------------------------------------------------- launcher

PATCHES: dict[str, Callable[[], None]] = {
    "changeset_outputs": patch_changeset_outputs,
    "delete_order": patch_delete_order,
    "create_rollback": patch_create_rollback,
    "template_errors": patch_template_errors,
    "changeset_param_changes": patch_changeset_param_changes,
    "route_table_association": patch_route_table_association,
    "bucket_policy": patch_bucket_policy,
    "instance_primary_eni": patch_instance_primary_eni,
    "expected_bucket_owner": patch_expected_bucket_owner,
    "changeset_tags": patch_changeset_tags,
}
for _patch in PATCHES.values():
    _patch.__doc__ = (_patch.__doc__ or "").replace("{src}", MOTO_SOURCE)


def select_patches(spec: str | None) -> list[str]:
    """Patch names, in application order, for a spec such as "all,-delete_order"."""
    chosen: set[str] = set()
    for token in (spec if spec is not None else "all").split(","):
        token = token.strip()
        if not token:
            continue
        if token == "all":
            chosen = set(PATCHES)
        elif token == "none":
            chosen = set()
        elif token.lstrip("-") in PATCHES:
            (chosen.discard if token.startswith("-") else chosen.add)(token.lstrip("-"))
        else:
            raise SystemExit(
                f"moto_launcher: unknown patch {token!r} in {PATCH_ENV} or --patches; "
                f"use all, none, or any of {', '.join(PATCHES)} (prefix - to switch off)")
    return [name for name in PATCHES if name in chosen]


def apply_patches(names: list[str]) -> None:
    for name in names:
        PATCHES[name]()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int,
                        default=int(os.environ.get("STACKGATE_EMULATOR_PORT", "4566")))
    parser.add_argument("--patches", default=os.environ.get(PATCH_ENV),
                        help=f"all | none | comma list of {', '.join(PATCHES)} (-name = off)")
    args = parser.parse_args(argv)

    names = select_patches(args.patches)
    apply_patches(names)
    install_slow_operations(os.environ.get(SLOW_ENV))
    off = [n for n in PATCHES if n not in names]
    print(f"moto_launcher: moto patches on: {', '.join(names) or '-'}; off: {', '.join(off) or '-'}",
          flush=True)
    if SLOW.rules:
        print(f"moto_launcher: slow operations: {SLOW.rules}", flush=True)
    print(f"moto_launcher: serving http://{args.host}:{args.port}", flush=True)

    from moto.server import main as moto_main

    moto_main(["--host", args.host, "--port", str(args.port)])


if __name__ == "__main__":
    main(sys.argv[1:])
