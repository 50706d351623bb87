"""Patch changeset_outputs: a stack created (or updated) by a change set gets its Outputs and
exports."""

from __future__ import annotations

import functools
from typing import Any

from .shared import drop_exports


def apply() -> None:
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
        drop_exports(self, stack)
        self._validate_export_uniqueness(stack)
        for export in stack.exports:
            self.exports[export.name] = export

    CloudFormationBackend.execute_change_set = execute_change_set
