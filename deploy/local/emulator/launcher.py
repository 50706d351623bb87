"""The emulator's command line: choose the patches, apply them, install the slow knob,
serve moto."""

from __future__ import annotations

import argparse
import os

import emulator

from .patches import PATCHES
from .slow import SLOW, SLOW_ENV
from .slow import install as install_slow_operations

PATCH_ENV = "STACKGATE_MOTO_PATCHES"


def select_patches(spec: str | None) -> list[str]:
    """Patch names, in application order, for a spec such as "all,-delete_order"."""
    chosen: set[str] = set()
    for token in (spec if spec is not None else "all").split(","):
        token = token.strip()
        if not token:
            continue
        if token == "all":
            chosen = set(PATCHES)
        elif token == "none":
            chosen = set()
        elif token.lstrip("-") in PATCHES:
            (chosen.discard if token.startswith("-") else chosen.add)(token.lstrip("-"))
        else:
            raise SystemExit(
                f"emulator: unknown patch {token!r} in {PATCH_ENV} or --patches; "
                f"use all, none, or any of {', '.join(PATCHES)} (prefix - to switch off)")
    return [name for name in PATCHES if name in chosen]


def apply_patches(names: list[str]) -> None:
    for name in names:
        PATCHES[name]()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="emulator",
                                     description=(emulator.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int,
                        default=int(os.environ.get("STACKGATE_EMULATOR_PORT", "4566")))
    parser.add_argument("--patches", default=os.environ.get(PATCH_ENV),
                        help=f"all | none | comma list of {', '.join(PATCHES)} (-name = off)")
    args = parser.parse_args(argv)

    names = select_patches(args.patches)
    apply_patches(names)
    install_slow_operations(os.environ.get(SLOW_ENV))
    off = [n for n in PATCHES if n not in names]
    print(f"emulator: moto patches on: {', '.join(names) or '-'}; off: {', '.join(off) or '-'}",
          flush=True)
    if SLOW.rules:
        print(f"emulator: slow operations: {SLOW.rules}", flush=True)
    print(f"emulator: serving http://{args.host}:{args.port}", flush=True)

    from moto.server import main as moto_main

    moto_main(["--host", args.host, "--port", str(args.port)])
