#!/usr/bin/env bash
# The local AWS emulator (moto + stackgate's patches, deploy/local/emulator/).
#
#   deploy/local/emulator.sh start    start it in the background, wait until it answers
#   deploy/local/emulator.sh status   say whether it runs (exit 0) or not (exit 1)
#   deploy/local/emulator.sh reset    forget every emulated resource (POST /moto-api/reset)
#   deploy/local/emulator.sh stop     stop it
#
# Environment:
#   STACKGATE_EMULATOR_PORT   port on 127.0.0.1 (default 4566)
#   STACKGATE_MOTO_PATCHES    which moto patches to apply (default all; see emulator/patches/)
#   STACKGATE_MOTO_SLOW       stacks whose operations stay *_IN_PROGRESS, "glob=seconds,..."
#                             (or at run time: POST $URL/stackgate-api/slow; emulator/slow.py)
#   STACKGATE_MOTO_DRIFT_SECONDS  seconds a DetectStackDrift stays DETECTION_IN_PROGRESS
#                             (default 0; emulator/patches/drift.py)
#   STACKGATE_EMULATOR_WAIT   seconds to wait for it to answer (default 30)
#
# Needs .local/venv from deploy/local/setup.sh. Pid and log: .local/emulator-<port>.{pid,log}.
# Every command prints the endpoint, e.g. AWS_ENDPOINT_URL=http://127.0.0.1:4566.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PORT="${STACKGATE_EMULATOR_PORT:-4566}"
HOST=127.0.0.1
URL="http://${HOST}:${PORT}"
WAIT="${STACKGATE_EMULATOR_WAIT:-30}"
PYTHON="$ROOT/.local/venv/bin/python"
PID_FILE="$ROOT/.local/emulator-${PORT}.pid"
LOG_FILE="$ROOT/.local/emulator-${PORT}.log"

say() { echo "emulator: $*"; }
die() { echo "emulator: error: $*" >&2; exit 1; }

# The pid in the pid file, if that process is alive and is our launcher.
live_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # moto_launcher: what a checkout from before deploy/local/emulator/ started.
  grep -qaE 'deploy/local/emulator|moto_launcher' "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

# 0 when a moto server answers on the port.
answers() {
  curl -fsS --max-time 2 -o /dev/null "$URL/moto-api/config" 2>/dev/null
}

# 0 when anything listens on the port.
port_busy() {
  (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

endpoint() { echo "AWS_ENDPOINT_URL=$URL"; }

cmd_start() {
  local pid
  if pid="$(live_pid)"; then
    if answers; then
      say "already running (pid $pid) at $URL"
      endpoint
      return 0
    fi
  elif [[ -f "$PID_FILE" ]]; then
    say "removing stale pid file $PID_FILE"
    rm -f "$PID_FILE"
  fi
  if [[ -z "${pid:-}" ]]; then
    if answers; then
      say "a moto server not started by this script already answers at $URL; using it"
      endpoint
      return 0
    fi
    port_busy && die "port $PORT is taken by another program; set STACKGATE_EMULATOR_PORT"
    [[ -x "$PYTHON" ]] || die "no $PYTHON; run deploy/local/setup.sh first"
    mkdir -p "$ROOT/.local"
    say "starting moto on $URL (patches: ${STACKGATE_MOTO_PATCHES:-all}), log $LOG_FILE"
    # setsid: its own session, so it outlives this shell and `stop` can end its group.
    setsid "$PYTHON" "$ROOT/deploy/local/emulator" --host "$HOST" --port "$PORT" \
      >"$LOG_FILE" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PID_FILE"
  else
    say "pid $pid is up but not answering yet; waiting"
  fi
  local deadline=$((SECONDS + WAIT))
  until answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      tail -n 20 "$LOG_FILE" >&2 || true
      die "the emulator exited during start-up (log above, full log $LOG_FILE)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 20 "$LOG_FILE" >&2 || true
      die "no answer from $URL after ${WAIT}s (pid $pid still running; see $LOG_FILE)"
    fi
    sleep 0.2
  done
  say "running (pid $pid) at $URL"
  endpoint
}

cmd_stop() {
  local pid
  if ! pid="$(live_pid)"; then
    [[ -f "$PID_FILE" ]] && { say "removing stale pid file $PID_FILE"; rm -f "$PID_FILE"; }
    if answers; then
      say "a moto server not started by this script answers at $URL; not stopping it"
    else
      say "not running at $URL"
    fi
    return 0
  fi
  say "stopping pid $pid at $URL"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      say "pid $pid ignored TERM for 10s; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  rm -f "$PID_FILE"
  say "stopped"
}

cmd_status() {
  local pid
  if pid="$(live_pid)" && answers; then
    say "running (pid $pid) at $URL"
    endpoint
    return 0
  fi
  if answers; then
    say "a moto server not started by this script answers at $URL"
    endpoint
    return 0
  fi
  if [[ -n "${pid:-}" ]]; then
    say "pid $pid is alive but $URL does not answer (see $LOG_FILE)"
  else
    say "not running at $URL"
  fi
  return 1
}

cmd_reset() {
  answers || die "nothing answers at $URL; run: deploy/local/emulator.sh start"
  curl -fsS --max-time 10 -X POST -o /dev/null "$URL/moto-api/reset" \
    || die "POST $URL/moto-api/reset failed"
  say "reset: all emulated resources forgotten at $URL"
  endpoint
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  reset) cmd_reset ;;
  *)
    echo "usage: $0 start|stop|status|reset   (port: STACKGATE_EMULATOR_PORT, default 4566)" >&2
    exit 2
    ;;
esac
