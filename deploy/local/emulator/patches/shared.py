"""Helpers shared by several patches (and the slow knob); they only read or annotate
moto's objects."""

from __future__ import annotations

import re
from typing import Any

# Attributes set on an exception raised by a resource handler, naming the resource.
LOGICAL_ID = "_stackgate_logical_id"
RESOURCE_TYPE = "_stackgate_resource_type"
FAILED_IDS = "_stackgate_failed_ids"
# Set on a CloudFormation SubnetRouteTableAssociation made by associate_route_table.
ASSOCIATION_ID = "_stackgate_association_id"



def tag_failure(exc: BaseException, logical_id: str, resource_type: str | None) -> None:
    """Name the resource that failed, once: the innermost (first) failure wins."""
    if not hasattr(exc, LOGICAL_ID):
        setattr(exc, LOGICAL_ID, logical_id)
        setattr(exc, RESOURCE_TYPE, resource_type)


def failure_reason(exc: BaseException) -> str:
    """ResourceStatusReason in the shape CloudFormation's resource handlers use."""
    code = getattr(exc, "error_type", None) or getattr(exc, "code", None)
    if not isinstance(code, str):
        code = type(exc).__name__
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    resource_type = getattr(exc, RESOURCE_TYPE, None) or ""
    parts = resource_type.split("::")
    service = parts[1] if len(parts) == 3 else "Unknown"
    return (
        f'Resource handler returned message: "{message} (Service: {service}, '
        f'Error Code: {code})" (HandlerErrorCode: InvalidRequest)'
    )


def resource_event(stack: Any, logical_id: str, resource_type: str | None,
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


def set_stack_status(stack: Any, status: str, reason: str | None = None) -> None:
    stack.status = status
    stack.status_reason = reason  # serialised as StackStatusReason
    stack._add_stack_event(status, resource_status_reason=reason)


def created_resources(resource_map: Any) -> dict[str, Any]:
    """Logical id -> moto object, for the template resources that exist right now."""
    return {
        name: obj
        for name, obj in resource_map._parsed_resources.items()
        if name in resource_map._resource_json_map
        and obj is not None
        and not isinstance(obj, str)
    }


def forget_deleted_resources(resource_map: Any) -> None:
    """Keep only resources that still exist in the map.

    moto's ResourceMap is lazy: reading a resource that is not in _parsed_resources
    creates it. After a delete or a rollback, DescribeStackResources (or the Outputs)
    would therefore silently re-create what was just deleted.
    """
    live = created_resources(resource_map)
    resource_map._resource_json_map = {
        name: body
        for name, body in resource_map._resource_json_map.items()
        if name in live
    }


def disassociate_route_table(backend: Any, association_id: str) -> None:
    """EC2 DisassociateRouteTable; an association that is already gone counts as deleted."""
    from moto.ec2.exceptions import InvalidAssociationIdError

    try:
        backend.disassociate_route_table(association_id)
    except InvalidAssociationIdError:
        pass


def drop_exports(backend: Any, stack: Any) -> None:
    for name in [n for n, e in backend.exports.items()
                 if e.exporting_stack_id == stack.stack_id]:
        del backend.exports[name]


def resource_dependencies(body: Any, names: set[str]) -> set[str]:
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


def deletion_order(resource_json_map: dict[str, Any]) -> tuple[list[str], dict[str, set[str]]]:
    """Resources dependents-first (the reverse of a creation order), and each one's deps."""
    names = set(resource_json_map)
    deps = {n: resource_dependencies(b, names) - {n} for n, b in resource_json_map.items()}
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


def references(node: Any, local: frozenset[str] = frozenset()) -> tuple[set[str], set[str]]:
    """(names used by Ref or ${Name}, resources used by Fn::GetAtt or ${Name.Attr})."""
    refs: set[str] = set()
    getatts: set[str] = set()
    if isinstance(node, list):
        for item in node:
            r, g = references(item, local)
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
                r, g = references(variables, local)
                refs |= r
                getatts |= g
                continue
            r, g = references(value, local)
            refs |= r
            getatts |= g
    return refs, getatts
