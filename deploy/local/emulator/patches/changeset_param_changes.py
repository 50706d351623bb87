"""Patch changeset_param_changes: an UPDATE change set lists what new parameter values
change; one with nothing to change is FAILED, as in AWS."""

from __future__ import annotations

import copy
import functools
from typing import Any

from .shared import created_resources, references


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
    live = created_resources(stack.resource_map)
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
        if old_body == new_body and references(new_body)[0] & changed:
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
        causes = sorted(references(raw_after.get(prop))[0] & changed)
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


def apply() -> None:
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
        live = created_resources(stack.resource_map)

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
