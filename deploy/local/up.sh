#!/usr/bin/env bash
# stackgate's main job on its embedded default: installs what is missing, starts the local
# AWS emulator, builds, and deploys stacks/hybrid-alb to it. Idempotent: a second run finds
# nothing to change.
#
#   deploy/local/up.sh
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
STACKGATE=target/debug/stackgate

"$STACKGATE" check stacks/hybrid-alb
"$STACKGATE" deploy stacks/hybrid-alb --poll-seconds 0.5
cat <<MSG

The hybrid ALB stack is deployed to the local emulator at $AWS_ENDPOINT_URL.
  plan again:   AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL $STACKGATE plan stacks/hybrid-alb
  remove it:    AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL $STACKGATE remove stacks/hybrid-alb
  stop the emulator: deploy/local/emulator.sh stop
MSG
