"""The slow-operation knob: a test aid, not a patch (see the package docstring)."""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from .patches.shared import set_stack_status


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
                raise SystemExit(f"emulator: {SLOW_ENV}: {item!r} is not "
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
                set_stack_status(stack, failed, str(exc) or type(exc).__name__)
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


def install(spec: str | None) -> None:
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
