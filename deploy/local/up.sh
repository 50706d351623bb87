#!/usr/bin/env bash
# stackgate's main job on its embedded default: installs what is missing, starts the local
# AWS emulator, builds, checks stacks/hybrid-alb against the policies, and runs
# `stackgate serve` in the foreground: SQLite state in .local/state, a local git repository
# .local/gitops-repo seeded from stacks/ and polled. The hybrid stack deploys within
# seconds. Idempotent: a second run finds the stack deployed and changes nothing.
#
#   deploy/local/up.sh            (Ctrl-C stops the service; the emulator keeps running)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

deploy/local/setup.sh
export STACKGATE_EMULATOR_PORT="${STACKGATE_EMULATOR_PORT:-4566}"
deploy/local/emulator.sh start
export AWS_ENDPOINT_URL="http://127.0.0.1:$STACKGATE_EMULATOR_PORT"
# The emulator takes any credentials; real ones are never needed or used here.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_EC2_METADATA_DISABLED=true

cargo build --locked -p stackgate
target/debug/stackgate check stacks/hybrid-alb
cat <<MSG

Starting stackgate on its embedded default. By hand, against the same emulator:
  AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL target/debug/stackgate plan   stacks/hybrid-alb
  AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL target/debug/stackgate remove stacks/hybrid-alb
Stop the emulator with: deploy/local/emulator.sh stop

MSG
exec target/debug/stackgate serve
