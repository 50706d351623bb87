"""The moto patches: one module each, with an `apply()` whose docstring says which gap it
closes. PATCHES maps each name to its `apply`, in the order they are applied."""

from __future__ import annotations

import importlib
from collections.abc import Callable

MOTO_SOURCE = "https://github.com/getmoto/moto/blob/5.2.5/moto"

# Later patches wrap what earlier ones wrapped.
NAMES = (
    "changeset_outputs",
    "delete_order",
    "create_rollback",
    "template_errors",
    "changeset_param_changes",
    "route_table_association",
    "bucket_policy",
    "instance_primary_eni",
    "expected_bucket_owner",
    "changeset_tags",
    "client_request_token",
    "drift",
)

PATCHES: dict[str, Callable[[], None]] = {
    name: importlib.import_module(f".{name}", __name__).apply for name in NAMES
}
for _apply in PATCHES.values():
    _apply.__doc__ = (_apply.__doc__ or "").replace("{src}", MOTO_SOURCE)
