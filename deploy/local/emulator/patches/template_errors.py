"""Patch template_errors: an unusable template is a 400 ValidationError "Template format
error: ...", not a 500."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from typing import Any

from .shared import references


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
        refs, getatts = references(template.get(section) or {})
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




def apply() -> None:
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
