"""Patch drift: CloudFormation's drift API (DetectStackDrift, DescribeStackDriftDetectionStatus,
DescribeStackResourceDrifts, DetectStackResourceDrift, DriftInformation on stacks) and
REVERT_DRIFT change sets, for the resource types in drift_checks.CHECKS."""

from __future__ import annotations

import functools
import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from .changeset_param_changes import _property_resolver, _resolved
from .drift_checks import CHECKS, actual_properties, differences, expected_properties
from .shared import created_resources

DRIFT_SECONDS_ENV = "STACKGATE_MOTO_DRIFT_SECONDS"
MAX_RESULTS = 100  # DescribeStackResourceDrifts: AWS's bounds are 1..100
KEPT_DETECTIONS = 200  # per region; AWS too keeps only some ("may vary")
_DELAY = {"seconds": 0.0}  # from DRIFT_SECONDS_ENV, read by apply()
_STATE = "_stackgate_drift"  # on each CloudFormationBackend, so a moto reset forgets it
_LOCK = threading.Lock()


def _state(backend: Any) -> dict[str, Any]:
    if not hasattr(backend, _STATE):
        # detections: id -> record; resources: stack id -> logical id -> latest drift;
        # stacks: stack id -> (status, timestamp) of its latest completed detection.
        setattr(backend, _STATE, {"detections": {}, "resources": {}, "stacks": {}})
    return getattr(backend, _STATE)


def _settle(backend: Any) -> dict[str, Any]:
    """The state, with every detection whose delay is over merged in, oldest first."""
    state = _state(backend)
    now = time.monotonic()
    ready = sorted((d for d in state["detections"].values()
                    if not d["settled"] and d["ready_at"] <= now), key=lambda d: d["ready_at"])
    for detection in ready:
        detection["settled"] = True
        per_resource = state["resources"].setdefault(detection["StackId"], {})
        per_resource.update({d["LogicalResourceId"]: d for d in detection["drifts"]})
        state["stacks"][detection["StackId"]] = (detection["StackDriftStatus"],
                                                 detection["Timestamp"])
    return state


def _expected(stack: Any, template: dict[str, Any] | None = None,
              parameters: dict[str, Any] | None = None) -> Any:
    """A resolver of the template's properties (the stack's own unless given)."""
    from moto.cloudformation.models import Stack

    if template is None:
        template = (Stack.parse_template(stack.template) if isinstance(stack.template, str)
                    else stack.template)
    old = dict(stack.resource_map.input_parameters or {})
    return _property_resolver(stack, template, parameters or old)


def _resource_drift(stack: Any, resolver: Any, name: str) -> dict[str, Any] | None:
    """StackResourceDrift of one resource; None if its type is not checked."""
    body = resolver._resource_json_map.get(name) or {}
    check = CHECKS.get(body.get("Type"))
    live = created_resources(stack.resource_map).get(name)
    resolved = _resolved(resolver, name)
    if check is None or live is None or resolved is None:
        return None
    physical_id = getattr(live, "physical_resource_id", None)
    drift: dict[str, Any] = {
        "StackId": stack.stack_id, "LogicalResourceId": name,
        "PhysicalResourceId": physical_id, "ResourceType": body["Type"],
        "Timestamp": datetime.now(UTC)}
    expected = expected_properties(check, resolved["Properties"], stack.account_id,
                                   stack.region_name)
    drift["ExpectedProperties"] = json.dumps(expected)
    obj = check.find(stack.account_id, stack.region_name, physical_id)
    if obj is None:
        drift["StackResourceDriftStatus"] = "DELETED"
        return drift
    actual = actual_properties(check, obj, expected)
    found = differences(expected, actual)
    drift.update(ActualProperties=json.dumps(actual), PropertyDifferences=found,
                 StackResourceDriftStatus="MODIFIED" if found else "IN_SYNC")
    return drift


def _detect(stack: Any, names: list[str]) -> list[dict[str, Any]]:
    resolver = _expected(stack)
    drifts = [_resource_drift(stack, resolver, name) for name in resolver._resource_json_map
              if not names or name in names]
    return [d for d in drifts if d is not None]


def _stable(backend: Any, name: str) -> Any:
    """The stack, if no operation is changing it (drift is read from a settled stack)."""
    stack = backend.get_stack(name)
    if stack.status.endswith("_IN_PROGRESS") or stack.status == "DELETE_COMPLETE":
        raise _validation(f"Stack [{stack.name}] is in {stack.status} state: drift detection "
                          f"is not available")
    return stack


def _validation(message: str) -> Exception:
    from moto.cloudformation.exceptions import ValidationError

    return ValidationError(message=message)


# ------------------------------------------------------------------ the API calls


def detect_stack_drift(self: Any) -> Any:
    from moto.core.responses import ActionResult

    backend = self.cloudformation_backend
    stack = _stable(backend, self._get_param("StackName"))
    detection_id = str(uuid.uuid4())
    started = datetime.now(UTC)
    failure = None
    try:
        drifts = _detect(stack, self._get_param("LogicalResourceIds") or [])
    except Exception as exc:  # noqa: BLE001 - reported as AWS does, as a failed detection
        drifts, failure = [], f"Failed to detect drift on stack [{stack.name}]: {exc}"
    drifted = [d for d in drifts if d["StackResourceDriftStatus"] in ("MODIFIED", "DELETED")]
    with _LOCK:
        detections = _settle(backend)["detections"]
        for old in [k for k, d in detections.items() if d["settled"]][:-KEPT_DETECTIONS]:
            del detections[old]
        detections[detection_id] = {
            "StackId": stack.stack_id, "StackDriftDetectionId": detection_id,
            "StackDriftStatus": "UNKNOWN" if failure else ("DRIFTED" if drifted else "IN_SYNC"),
            "DetectionStatus": "DETECTION_FAILED" if failure else "DETECTION_COMPLETE",
            "DetectionStatusReason": failure or "Drift detection complete",
            "DriftedStackResourceCount": len(drifted),
            "Timestamp": started, "drifts": drifts, "settled": False,
            "ready_at": time.monotonic() + _DELAY["seconds"]}
    return ActionResult({"StackDriftDetectionId": detection_id})


def describe_stack_drift_detection_status(self: Any) -> Any:
    from moto.core.responses import ActionResult

    detection_id = self._get_param("StackDriftDetectionId")
    with _LOCK:
        detection = _settle(self.cloudformation_backend)["detections"].get(detection_id)
        if detection is None:
            raise _validation(f"Could not find stack drift detection with id {detection_id}")
        result = {k: v for k, v in detection.items() if k[0].isupper()}
        if not detection["settled"]:  # AWS: the count is null until the detection is over
            result = {k: result[k] for k in ("StackId", "StackDriftDetectionId", "Timestamp")}
            result.update(DetectionStatus="DETECTION_IN_PROGRESS",
                          DetectionStatusReason="Drift detection is in progress")
    return ActionResult(result)


def describe_stack_resource_drifts(self: Any) -> Any:
    from moto.core.responses import ActionResult

    backend = self.cloudformation_backend
    stack = backend.get_stack(self._get_param("StackName"))
    wanted = self._get_param("StackResourceDriftStatusFilters") or []
    size = self._get_param("MaxResults")
    size = MAX_RESULTS if size is None else int(size)
    if not 1 <= size <= MAX_RESULTS:
        raise _validation(f"1 validation error detected: Value '{size}' at 'maxResults' failed "
                          f"to satisfy constraint: Member must have value between 1 and "
                          f"{MAX_RESULTS}")
    token = self._get_param("NextToken") or "0"  # the offset of the page
    if not token.isdigit():
        raise _validation(f"Invalid NextToken: {token}")
    start = int(token)
    with _LOCK:
        latest = _settle(backend)["resources"].get(stack.stack_id, {})
        position = {name: i for i, name in enumerate(stack.resource_map._resource_json_map)}
        # As AWS documents: resources not checked are never in this answer (a NOT_CHECKED
        # filter matches nothing: "CloudFormation doesn't currently return this value").
        drifts = sorted((d for d in latest.values()
                         if not wanted or d["StackResourceDriftStatus"] in wanted),
                        key=lambda d: position.get(d["LogicalResourceId"], len(position)))
    page = drifts[start:start + size]
    result: dict[str, Any] = {"StackResourceDrifts": page}
    if start + size < len(drifts):
        result["NextToken"] = str(start + size)
    return ActionResult(result)


def detect_stack_resource_drift(self: Any) -> Any:
    from moto.core.responses import ActionResult

    backend = self.cloudformation_backend
    stack = _stable(backend, self._get_param("StackName"))
    name = self._get_param("LogicalResourceId")
    resolver = _expected(stack)
    if name not in resolver._resource_json_map:
        raise _validation(f"Resource {name} does not exist for stack {stack.name}")
    drift = _resource_drift(stack, resolver, name)
    if drift is None:
        kind = resolver._resource_json_map[name].get("Type")
        raise _validation(f"Drift detection is not supported for resource type {kind} "
                          f"in the emulator")
    with _LOCK:
        _settle(backend)["resources"].setdefault(stack.stack_id, {})[name] = drift
    return ActionResult({"StackResourceDrift": drift})


def _drift_information(stack: Any) -> dict[str, Any]:
    from moto.cloudformation.models import cloudformation_backends

    backend = cloudformation_backends[stack.account_id][stack.region_name]
    with _LOCK:
        status = _settle(backend)["stacks"].get(stack.stack_id)
    if status is None:
        return {"StackDriftStatus": "NOT_CHECKED"}
    return {"StackDriftStatus": status[0], "LastCheckTimestamp": status[1]}


# ------------------------------------------------- what moto drops from the template


def _keep_ingress(group: Any, properties: dict[str, Any]) -> None:
    """Give the group the template's ingress rules: moto authorizes them without their
    Description, and not at all when they name CidrIpv6 or SourcePrefixListId."""
    account, region = group.ec2_backend.account_id, group.ec2_backend.region_name
    check = CHECKS["AWS::EC2::SecurityGroup"]
    check.write(group, expected_properties(check, properties, account, region), account, region)


def _keep_versioning(bucket: Any, properties: dict[str, Any]) -> None:
    status = (properties.get("VersioningConfiguration") or {}).get("Status")
    if status:
        bucket.versioning_status = status


def _after(cls: Any, method: str, keep: Any) -> None:
    """Wrap a resource class's CloudFormation create/update: `keep` runs on the result."""
    original = getattr(cls, method).__func__

    @functools.wraps(original)
    def wrapped(klass: Any, *args: Any, **kwargs: Any) -> Any:
        obj = original(klass, *args, **kwargs)
        body = kwargs.get("cloudformation_json") or next(
            (a for a in args if isinstance(a, dict)), None)
        if obj is not None and isinstance(body, dict):
            keep(obj, body.get("Properties") or {})
        return obj

    setattr(cls, method, classmethod(wrapped))


# ------------------------------------------------------------- REVERT_DRIFT change sets

_DRIFT_ROW = "_stackgate_drift_row"  # on a Change this patch added
_REVERT = "_stackgate_revert"  # on a ChangeSet: the logical ids to put back


def _drift_details(drift: dict[str, Any]) -> list[dict[str, Any]]:
    expected = json.loads(drift["ExpectedProperties"])
    actual = json.loads(drift["ActualProperties"])
    names = {d["PropertyPath"].split("/")[1] for d in drift["PropertyDifferences"]}
    return [{"Target": {"Attribute": "Properties", "Name": name, "RequiresRecreation": "Never",
                        "Path": f"/{name}", "BeforeValue": json.dumps(actual.get(name)),
                        "AfterValue": json.dumps(expected.get(name)),
                        "BeforeValueFrom": "ACTUAL_STATE", "AfterValueFrom": "TEMPLATE",
                        "AttributeChangeType": "Modify"},
             "Evaluation": "Static", "ChangeSource": "DirectModification"}
            for name in sorted(names)]


def _list_drift(change_set: Any) -> None:
    """Mark the change set drift-aware and list each MODIFIED resource as a Modify row."""
    from moto.cloudformation.models import Change

    stack = change_set.stack
    resolver = _expected(stack)  # drift: the live state against the last deployment
    rows = {c.logical_resource_id: c for c in change_set.changes}
    revert = []
    for name in resolver._resource_json_map:
        drift = _resource_drift(stack, resolver, name)
        if drift is None:
            continue
        row = rows.get(name)
        if drift["StackResourceDriftStatus"] == "MODIFIED":
            revert.append(name)
            if row is None:
                row = Change("Modify", name, drift["ResourceType"])
                setattr(row, _DRIFT_ROW, True)
                row.physical_resource_id = drift["PhysicalResourceId"]
                row.replacement, row.scope = "False", ["Properties"]
                row.details = _drift_details(drift)
                change_set.changes.append(row)
        if row is not None:
            row.resource_drift_status = drift["StackResourceDriftStatus"]
    change_set.deployment_mode = "REVERT_DRIFT"
    change_set.stack_drift_status = "DRIFTED" if revert else "IN_SYNC"
    setattr(change_set, _REVERT, revert)
    if revert and "didn't contain changes" in (change_set.status_reason or ""):
        change_set.status, change_set.execution_status = "CREATE_COMPLETE", "AVAILABLE"
        change_set.status_reason = None


def _revert(change_set: Any) -> None:
    """Put the change set's template values back on each drifted resource."""
    stack = change_set.stack
    resolver = _expected(stack, change_set.template_dict, change_set.parameters or None)
    for name in getattr(change_set, _REVERT, []):
        drift = _resource_drift(stack, resolver, name)
        if drift is None or drift["StackResourceDriftStatus"] != "MODIFIED":
            continue
        check = CHECKS[drift["ResourceType"]]
        obj = check.find(stack.account_id, stack.region_name, drift["PhysicalResourceId"])
        check.write(obj, json.loads(drift["ExpectedProperties"]), stack.account_id,
                    stack.region_name)


def apply() -> None:
    """CloudFormation's drift API, and REVERT_DRIFT change sets.

    Gap: moto's CloudFormationResponse ({src}/cloudformation/responses.py) has no
    detect_stack_drift, describe_stack_drift_detection_status,
    describe_stack_resource_drifts or detect_stack_resource_drift: each answers an HTML
    500. Stack ({src}/cloudformation/models.py) has no DriftInformation, so DescribeStacks
    and ListStacks leave it out. CreateChangeSet ignores DeploymentMode. And moto drops two
    template properties that drift detection compares: SecurityGroup's
    create_from_cloudformation_json ({src}/ec2/models/security_groups.py) authorizes the
    ingress rules without their Description, and FakeBucket's
    ({src}/s3/models.py) ignores VersioningConfiguration.
    In AWS, DetectStackDrift compares each resource's live properties with the template's
    and DescribeStackDriftDetectionStatus tells how that went; DescribeStackResourceDrifts
    lists the resources checked (never those of a type drift detection does not check) with
    ExpectedProperties, ActualProperties and PropertyDifferences; a change set with
    DeploymentMode REVERT_DRIFT lists drifted resources and puts the template's values back
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DetectStackDrift.html,
    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeStackResourceDrifts.html,
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/drift-aware-change-sets.html).

    Fix: the four calls, for the types and properties in drift_checks.CHECKS (others are not
    checked): template properties resolved as changeset_param_changes resolves them, moto's
    live objects read in the same shape, set-like lists (ingress rules, Tags, Policies)
    compared as sets. A detection is computed at once and reported IN_PROGRESS for
    $STACKGATE_MOTO_DRIFT_SECONDS (default 0). Stacks get DriftInformation (NOT_CHECKED
    until a detection completes). Ingress rule descriptions and bucket versioning are kept
    at create. CreateChangeSet with DeploymentMode REVERT_DRIFT (an UPDATE) lists each
    MODIFIED resource as Modify (Scope Properties, Replacement False, ResourceDriftStatus)
    and executing it writes the template's values back; without it nothing changes. (With
    the same template text, CreateChangeSet needs changeset_param_changes, which lets moto
    create a change set with nothing to change.)
    """
    from moto.cloudformation.models import ChangeSet, Stack
    from moto.cloudformation.responses import CloudFormationResponse
    from moto.ec2.models.security_groups import SecurityGroup
    from moto.s3.models import FakeBucket

    try:
        _DELAY["seconds"] = max(0.0, float(os.environ.get(DRIFT_SECONDS_ENV) or 0))
    except ValueError:
        raise SystemExit(f"emulator: {DRIFT_SECONDS_ENV} must be a number of seconds, not "
                         f"{os.environ[DRIFT_SECONDS_ENV]!r}") from None

    for call in (detect_stack_drift, describe_stack_drift_detection_status,
                 describe_stack_resource_drifts, detect_stack_resource_drift):
        setattr(CloudFormationResponse, call.__name__, call)
    Stack.drift_information = property(_drift_information)
    _after(SecurityGroup, "create_from_cloudformation_json", _keep_ingress)
    _after(FakeBucket, "create_from_cloudformation_json", _keep_versioning)
    _after(FakeBucket, "update_from_cloudformation_json", _keep_versioning)

    original_create = CloudFormationResponse.create_change_set

    @functools.wraps(original_create)
    def create_change_set(self: Any) -> Any:
        mode = self._get_param("DeploymentMode")
        if mode is None:
            return original_create(self)
        if mode != "REVERT_DRIFT":
            raise _validation(f"Invalid DeploymentMode {mode}: the valid value is REVERT_DRIFT")
        if (self._get_param("ChangeSetType") or "UPDATE") != "UPDATE":
            raise _validation("DeploymentMode REVERT_DRIFT is only valid for an existing "
                              "stack (ChangeSetType UPDATE)")
        self.params["ChangeSetType"] = "UPDATE"  # AWS's default; moto's is CREATE
        result = original_create(self)
        _list_drift(self.cloudformation_backend.change_sets[result.result["Id"]])
        return result

    original_apply = ChangeSet.apply

    @functools.wraps(original_apply)
    def apply(self: Any) -> None:
        if not hasattr(self, _REVERT):
            return original_apply(self)
        # The drift rows are no template change: moto must not update (or replace) them.
        every = self.changes
        self.changes = [c for c in every if not getattr(c, _DRIFT_ROW, False)]
        try:
            original_apply(self)
        finally:
            self.changes = every
        _revert(self)

    CloudFormationResponse.create_change_set = create_change_set
    ChangeSet.apply = apply
