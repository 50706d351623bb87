"""Patch create_rollback: a resource that fails to create or update rolls the stack back,
with a reason."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from .shared import (
    FAILED_IDS,
    LOGICAL_ID,
    RESOURCE_TYPE,
    created_resources,
    deletion_order,
    drop_exports,
    failure_reason,
    forget_deleted_resources,
    resource_event,
    set_stack_status,
    tag_failure,
)


def _roll_back_create(backend: Any, stack: Any, exc: BaseException) -> None:
    from moto.cloudformation.parsing import OutputMap

    logical_id = getattr(exc, LOGICAL_ID)
    resource_event(stack, logical_id, getattr(exc, RESOURCE_TYPE), "CREATE_FAILED",
                    failure_reason(exc))
    set_stack_status(stack, "ROLLBACK_IN_PROGRESS",
                      f"The following resource(s) failed to create: [{logical_id}]. "
                      "Rollback requested by user.")
    resource_map = stack.resource_map
    created = created_resources(resource_map)
    try:
        resource_map.delete()
        rollback_error = None
    except Exception as err:  # noqa: BLE001 - reported on the stack
        rollback_error = err
    for name in deletion_order(resource_map._resource_json_map)[0]:
        obj = created.get(name)
        if obj is not None and name not in resource_map._parsed_resources:
            resource_event(stack, name, getattr(obj, "cf_resource_type", None), "DELETE_COMPLETE",
                            physical_id=getattr(obj, "physical_resource_id", None))
    forget_deleted_resources(resource_map)
    drop_exports(backend, stack)
    # A stack that rolled back has no Outputs; an empty map also stops moto from
    # lazily re-creating resources to evaluate them.
    stack.output_map = OutputMap(resource_map, {}, stack.stack_id)
    if rollback_error is not None:
        failed = getattr(rollback_error, FAILED_IDS, None) or [
            getattr(rollback_error, LOGICAL_ID, "unknown")]
        if hasattr(rollback_error, LOGICAL_ID):
            resource_event(stack, getattr(rollback_error, LOGICAL_ID),
                            getattr(rollback_error, RESOURCE_TYPE), "DELETE_FAILED",
                            failure_reason(rollback_error))
        set_stack_status(stack, "ROLLBACK_FAILED",
                          f"The following resource(s) failed to delete: [{', '.join(failed)}]. ")
    else:
        set_stack_status(stack, "ROLLBACK_COMPLETE")


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
    logical_id = getattr(exc, LOGICAL_ID)
    added = logical_id not in before["resources"]
    resource_event(stack, logical_id, getattr(exc, RESOURCE_TYPE),
                    "CREATE_FAILED" if added else "UPDATE_FAILED", failure_reason(exc))
    set_stack_status(stack, "UPDATE_ROLLBACK_IN_PROGRESS",
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
        set_stack_status(stack, "UPDATE_ROLLBACK_FAILED", failure_reason(err))
        return
    for name in set(attempted) - set(before["resources"]):
        resource_map._parsed_resources.pop(name, None)  # deleted by the rollback
    stack.template = before["template"]
    if isinstance(stack.template, str):
        stack._parse_template()
    stack.output_map = before["output_map"]
    set_stack_status(stack, "UPDATE_ROLLBACK_COMPLETE")


_nesting = threading.local()


def apply() -> None:
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
                tag_failure(exc, logical_id, resource_json.get("Type"))
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
                if not hasattr(exc, LOGICAL_ID):
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
