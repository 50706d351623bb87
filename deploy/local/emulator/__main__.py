"""Runs the emulator: `python deploy/local/emulator ...` or `python -m emulator ...`."""

import sys
from pathlib import Path

if not __package__:
    # Run as a folder: import it as the package `emulator` (never its modules bare).
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from emulator.launcher import main  # noqa: E402 - after the path is set

main(sys.argv[1:])
