#!/usr/bin/env bash
# The whole test suite: Rust unit and end-to-end tests, policy test cases, and the Python
# tests of the stack, the emulator patches and the GitHub stand-in. Idempotent: installs
# what is missing (deploy/local/setup.sh), starts its own emulator on a port of its own.
#
#   tests/run.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

deploy/local/setup.sh

# A separate emulator from the one the main job uses, so tests never touch its stacks.
export STACKGATE_EMULATOR_PORT="${STACKGATE_TEST_EMULATOR_PORT:-4599}"
# Restarted, so that it runs the launcher's current patches and starts empty.
deploy/local/emulator.sh stop >/dev/null 2>&1 || true
deploy/local/emulator.sh start
# A throwaway PostgreSQL cluster of its own; each test makes its own database in it.
PG_PORT="${STACKGATE_TEST_PG_PORT:-5498}"
# The TLS tests start a cluster serving TLS of their own, on the third port after it.
export STACKGATE_TEST_PG_TLS_PORT="${STACKGATE_TEST_PG_TLS_PORT:-$((PG_PORT + 3))}"
trap 'STACKGATE_EMULATOR_PORT='"$STACKGATE_EMULATOR_PORT"' deploy/local/emulator.sh stop >/dev/null 2>&1 || true
deploy/local/postgres.sh stop '"$PG_PORT"' >/dev/null 2>&1 || true
deploy/local/postgres.sh stop '"$STACKGATE_TEST_PG_TLS_PORT"' >/dev/null 2>&1 || true' EXIT
export STACKGATE_TEST_AWS_ENDPOINT="http://127.0.0.1:$STACKGATE_EMULATOR_PORT"
deploy/local/postgres.sh stop "$PG_PORT" >/dev/null 2>&1 || true
deploy/local/postgres.sh start "$PG_PORT"
STACKGATE_TEST_POSTGRES_URL="$(deploy/local/postgres.sh url "$PG_PORT")"
export STACKGATE_TEST_POSTGRES_URL
# The outage tests stop and start clusters of their own, on the next ports.
export STACKGATE_TEST_PG_OUTAGE_PORT="${STACKGATE_TEST_PG_OUTAGE_PORT:-$((PG_PORT + 1))}"
export STACKGATE_TEST_PG_HTTP_OUTAGE_PORT="${STACKGATE_TEST_PG_HTTP_OUTAGE_PORT:-$((PG_PORT + 2))}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo test"
# CI=true: insta fails on a snapshot that differs or is missing, and writes no .snap.new
# (INSTA_UPDATE then defaults to "no"). Review changes locally with `cargo insta review`.
CI=true cargo test --workspace --locked

echo "== pytest"
.local/venv/bin/python -m pytest -p no:cacheprovider -q tests/python
