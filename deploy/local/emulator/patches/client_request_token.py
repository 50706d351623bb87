"""Patch client_request_token: ExecuteChangeSet and DeleteStack take a ClientRequestToken,
the stack events they cause carry it, and an ExecuteChangeSet repeated with the same token
is the same request; CreateChangeSet's ClientToken is checked."""

from __future__ import annotations

import functools
import re
import threading
from typing import Any

# The pattern and length CloudFormation documents for both tokens.
TOKEN = re.compile(r"[a-zA-Z][-a-zA-Z0-9]*")
TOKEN_MAX = 128

# stack id -> the token of the operation in flight on it (its events carry it).
_TOKENS: dict[str, str | None] = {}
_LOCK = threading.Lock()


def _check(name: str, token: str | None) -> None:
    from moto.cloudformation.exceptions import ValidationError

    if token is None:
        return
    if len(token) > TOKEN_MAX or not TOKEN.fullmatch(token):
        raise ValidationError(message=(
            f"1 validation error detected: Value '{token}' at '{name}' failed to satisfy "
            f"constraint: Member must satisfy regular expression pattern: "
            f"[a-zA-Z][-a-zA-Z0-9]* and have length less than or equal to {TOKEN_MAX}"))


def apply() -> None:
    """ExecuteChangeSet and DeleteStack take a ClientRequestToken; the events they cause
    carry it; a repeated ExecuteChangeSet with the same token is the same request.

    Gap: CloudFormationResponse.execute_change_set and delete_stack
    ({src}/cloudformation/responses.py) never read ClientRequestToken, and Event
    ({src}/cloudformation/models.py) sets client_request_token to None, so
    DescribeStackEvents never shows one. CloudFormationBackend.execute_change_set runs a
    change set again however often it is asked, whatever its ExecutionStatus.
    In AWS the token is "a unique identifier for this ExecuteChangeSet request. Specify
    this token if you plan to retry requests so that CloudFormation knows that you're not
    attempting to execute a change set to update a stack with the same name"; "all events
    triggered by a given stack operation are assigned the same client request token"
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ExecuteChangeSet.html,
    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackEvent.html).
    A change set that is not AVAILABLE cannot be executed (InvalidChangeSetStatus). Both
    tokens (and CreateChangeSet's ClientToken) match [a-zA-Z][-a-zA-Z0-9]*, up to 128
    characters.

    Fix: the response layer checks the tokens, records the operation's token for its stack,
    and each new Event of that stack takes it. ExecuteChangeSet of a change set already
    executed answers as the first time when its token is the one that executed it, and
    refuses it (InvalidChangeSetStatus) otherwise.
    """
    from moto.cloudformation.exceptions import CloudFormationError
    from moto.cloudformation.models import Event
    from moto.cloudformation.responses import CloudFormationResponse

    class InvalidChangeSetStatus(CloudFormationError):
        code = "InvalidChangeSetStatus"

    original_event_init = Event.__init__

    @functools.wraps(original_event_init)
    def event_init(self: Any, stack_id: str, *args: Any, **kwargs: Any) -> None:
        original_event_init(self, stack_id, *args, **kwargs)
        with _LOCK:
            self.client_request_token = _TOKENS.get(stack_id)

    Event.__init__ = event_init

    def run(stack_id: str, token: str | None, call: Any) -> Any:
        """Runs the operation's call with its token on the stack; a refused call leaves
        the token of the operation before it (which may still be in flight)."""
        with _LOCK:
            before = _TOKENS.get(stack_id)
            _TOKENS[stack_id] = token
        try:
            return call()
        except Exception:
            with _LOCK:
                _TOKENS[stack_id] = before
            raise

    original_execute = CloudFormationResponse.execute_change_set

    @functools.wraps(original_execute)
    def execute_change_set(self: Any) -> Any:
        from moto.core.responses import EmptyResult

        token = self._get_param("ClientRequestToken")
        _check("clientRequestToken", token)
        change_set = self.cloudformation_backend.describe_change_set(
            self._get_param("ChangeSetName"))
        if change_set.execution_status != "AVAILABLE":
            if token is not None and getattr(change_set, "stackgate_token", None) == token:
                return EmptyResult()  # the same request again: it ran once
            raise InvalidChangeSetStatus(
                f"ChangeSet [{change_set.change_set_id}] cannot be executed in its current "
                f"execution status of [{change_set.execution_status}]")
        result = run(change_set.stack_id, token, lambda: original_execute(self))
        change_set.stackgate_token = token
        return result

    original_delete = CloudFormationResponse.delete_stack

    @functools.wraps(original_delete)
    def delete_stack(self: Any) -> Any:
        token = self._get_param("ClientRequestToken")
        _check("clientRequestToken", token)
        name = self._get_param("StackName")
        backend = self.cloudformation_backend
        stack = backend.stacks.get(name) or next(
            (s for s in backend.stacks.values() if s.name == name), None)
        if stack is None:
            return original_delete(self)
        return run(stack.stack_id, token, lambda: original_delete(self))

    original_create = CloudFormationResponse.create_change_set

    @functools.wraps(original_create)
    def create_change_set(self: Any) -> Any:
        _check("clientToken", self._get_param("ClientToken"))
        return original_create(self)

    CloudFormationResponse.execute_change_set = execute_change_set
    CloudFormationResponse.delete_stack = delete_stack
    CloudFormationResponse.create_change_set = create_change_set
