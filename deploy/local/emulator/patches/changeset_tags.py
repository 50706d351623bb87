"""Patch changeset_tags: executing an UPDATE change set that has Tags gives the stack those
tags."""

from __future__ import annotations

import functools
from typing import Any


def apply() -> None:
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
