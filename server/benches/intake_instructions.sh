#!/usr/bin/env bash
# Instructions per webhook delivery, counted by valgrind's callgrind: a number the machine's
# load does not change, for finding where intake time goes and comparing two builds.
#
#   server/benches/intake_instructions.sh [SG_BIN]
#
# Starts `SG_BIN serve` (default: this tree's release build) under callgrind with collection
# off, turns it on once the server is ready, sends COUNT signed `push` deliveries
# (benches/send_pushes.py), waits until every commit status is marked posted and SETTLE
# seconds more (the background loops: dispatcher, outbox poster, the debounced sync), then
# dumps. What is counted is every thread of the process from the first delivery to the dump,
# divided by the deliveries accepted. It prints the total, the per-delivery figure and the
# top functions by inclusive count, and keeps the profile in OUT.
#
# Environment (all optional):
#   COUNT=2000 CONNS=1 GAP_MS=0 SETTLE=3 SG_PORT=18090 WORK=/tmp/sg-instr OUT=$WORK-out
#   COMMITS=128  TOP=40  MAX_PARALLEL=2 (max_parallel_jobs; older builds reserve more address
#   space for the policy pool than valgrind allows: 1 there)
# CONNS=1 GAP_MS=20: every delivery alone (one transaction each, the background loops woken
# each time), as at a modest rate; CONNS=32: batches, as at maximum throughput.
#
# Needs valgrind, sqlite3, python3, git, curl. Binds 127.0.0.1 only; every wait is bounded;
# the server is killed by PID on exit; WORK is removed (OUT is kept).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR="$ROOT/server/benches"
EXAMPLES="$ROOT/tests/doubles/github/node_modules/@octokit/webhooks-examples/api.github.com/index.json"
COUNT=${COUNT:-2000}
CONNS=${CONNS:-1}
GAP_MS=${GAP_MS:-0}
SETTLE=${SETTLE:-3}
SG_PORT=${SG_PORT:-18090}
WORK=${WORK:-/tmp/sg-instr}
OUT=${OUT:-$WORK-out}
COMMITS=${COMMITS:-128}
TOP=${TOP:-40}

die() { printf 'error: %s\n' "$*" >&2; exit 1; }
log() { printf '==> %s\n' "$*" >&2; }

for tool in valgrind callgrind_control callgrind_annotate sqlite3 python3 git curl; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[ -f "$EXAMPLES" ] || die "missing $EXAMPLES (run npm ci in tests/doubles/github)"
if [ $# -ge 1 ]; then
    SG_BIN=$1
else
    TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    SG_BIN="$TARGET_DIR/release/stackgate"
fi
[ -x "$SG_BIN" ] || die "no binary at $SG_BIN"
if ss -Hltn "sport = :$SG_PORT" 2>/dev/null | grep -q .; then
    die "127.0.0.1:$SG_PORT is already in use"
fi

SG_PID=""
cleanup() {
    local rc=$?
    if [ -n "$SG_PID" ] && kill -0 "$SG_PID" 2>/dev/null; then
        kill -KILL "$SG_PID" 2>/dev/null || true
        wait "$SG_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$WORK"
mkdir -p "$WORK/state" "$OUT"

# The same repository and bodies as webhook_load.sh: every push names a commit of its own.
REPO="$WORK/repo"
mkdir -p "$REPO/stacks"
git -C "$REPO" init -q -b main
git -C "$REPO" config user.email bench@example.invalid
git -C "$REPO" config user.name bench
for i in $(seq 1 "$COMMITS"); do
    printf 'Stacks live here; this benchmark repository has none (%s).\n' "$i" \
        >"$REPO/stacks/README.md"
    git -C "$REPO" add -A
    git -C "$REPO" commit -q -m "bench: commit $i"
done
git -C "$REPO" log --format=%H >"$WORK/shas"
BENCH_HOOK_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
export BENCH_HOOK_SECRET
BODIES="$WORK/pushes.txt"
python3 - "$EXAMPLES" "$WORK/shas" "$BODIES" <<'PY'
import copy, hashlib, hmac, json, os, sys
examples, shas, out = sys.argv[1:4]
push = next(e for e in json.load(open(examples)) if e["name"] == "push")
example = next(e for e in push["examples"] if e["ref"].startswith("refs/heads/") and e["commits"])
secret = os.environ["BENCH_HOOK_SECRET"].encode()
with open(out, "wb") as f:
    for sha in open(shas).read().split():
        body = copy.deepcopy(example)
        body["ref"] = "refs/heads/main"
        body["after"] = sha
        body["repository"]["full_name"] = "Codertocat/Hello-World"
        for c in body["commits"] + [body["head_commit"]]:
            c["id"] = sha
            c["added"], c["removed"], c["modified"] = [], [], ["stacks/README.md"]
        data = json.dumps(body, separators=(",", ":")).encode()
        sig = hmac.new(secret, data, hashlib.sha256).hexdigest()
        f.write(b"sha256=" + sig.encode() + b" " + data + b"\n")
PY

cat >"$WORK/stackgate.toml" <<EOF
listen = "127.0.0.1:$SG_PORT"
max_parallel_jobs = ${MAX_PARALLEL:-2}

[state]
path = "$WORK/state/stackgate.db"

[aws]
endpoint_url = "http://127.0.0.1:1"
region = "us-east-1"

[[repos]]
name = "Codertocat/Hello-World"
url = "$REPO"
branch = "main"
webhook_secret_env = "BENCH_HOOK_SECRET"
EOF

# Once natively first: the policies are compiled into the state's cache, so the run under
# valgrind loads them (compiling them there would take minutes).
STACKGATE_LOG=warn AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 \
    "$SG_BIN" serve --config "$WORK/stackgate.toml" >"$OUT/warm.log" 2>&1 &
SG_PID=$!
for _ in $(seq 1 600); do
    curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$SG_PORT/readyz" && break
    kill -0 "$SG_PID" 2>/dev/null || { cat "$OUT/warm.log" >&2; die "stackgate exited"; }
    sleep 0.2
done
kill -TERM "$SG_PID"; wait "$SG_PID" 2>/dev/null || true
SG_PID=""

log "starting $SG_BIN under callgrind (collection off until ready)"
STACKGATE_LOG=warn AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 \
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out" \
    "$SG_BIN" serve --config "$WORK/stackgate.toml" >"$OUT/stackgate.log" 2>&1 &
SG_PID=$!
ready=no
for _ in $(seq 1 1200); do
    if curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$SG_PORT/readyz"; then ready=yes; break; fi
    kill -0 "$SG_PID" 2>/dev/null || { cat "$OUT/stackgate.log" >&2; die "stackgate exited"; }
    sleep 0.5
done
[ "$ready" = yes ] || die "stackgate did not get ready within 600 s"
sleep 2
timeout 60 callgrind_control -i on "$SG_PID" >/dev/null

log "sending $COUNT deliveries (conns=$CONNS, gap=${GAP_MS} ms)"
t0=$(date +%s.%N)
SENT=$(timeout 3600 python3 "$BENCH_DIR/send_pushes.py" "http://127.0.0.1:$SG_PORT/webhooks/github" \
    "$BODIES" "$COUNT" --conns "$CONNS" --gap-ms "$GAP_MS")
t1=$(date +%s.%N)
log "$SENT in $(python3 -c "print(f'{$t1 - $t0:.1f}')") s"
ACCEPTED=$(printf '%s' "$SENT" | sed -n 's/.*accepted=\([0-9]*\).*/\1/p')
for _ in $(seq 1 600); do
    left=$(sqlite3 -cmd '.timeout 5000' "$WORK/state/stackgate.db" \
        "SELECT COUNT(*) FROM statuses WHERE posted_at IS NULL" 2>/dev/null || echo "?")
    [ "$left" = 0 ] && break
    sleep 0.5
done
[ "$left" = 0 ] || log "warning: $left statuses still unposted"
sleep "$SETTLE"
timeout 120 callgrind_control -d "$SG_PID" >/dev/null
sleep 1
ROWS=$(sqlite3 -cmd '.timeout 5000' "$WORK/state/stackgate.db" \
    "SELECT (SELECT COUNT(*) FROM deliveries), (SELECT COUNT(*) FROM jobs), (SELECT COUNT(*) FROM statuses)")
kill -TERM "$SG_PID" 2>/dev/null || true
for _ in $(seq 1 120); do kill -0 "$SG_PID" 2>/dev/null || break; sleep 0.5; done
kill -KILL "$SG_PID" 2>/dev/null || true
wait "$SG_PID" 2>/dev/null || true
SG_PID=""

# The dump (.1) covers the deliveries; the file written at exit, the shutdown.
PROFILE="$OUT/callgrind.out.1"
[ -f "$PROFILE" ] || die "no dump at $PROFILE"
TOTAL=$(awk '/^summary:/ {print $2; exit}' "$PROFILE")
callgrind_annotate --inclusive=yes --threshold=100 "$PROFILE" 2>/dev/null | head -$((TOP + 30)) >"$OUT/inclusive.txt" || true
callgrind_annotate --threshold=100 "$PROFILE" 2>/dev/null | head -$((TOP + 30)) >"$OUT/self.txt" || true
printf 'binary: %s\ncount=%s conns=%s gap_ms=%s\n%s\ndeliveries|jobs|statuses rows: %s\ninstructions: %s total, %s per accepted delivery\nprofile: %s (inclusive.txt, self.txt beside it)\n' \
    "$SG_BIN" "$COUNT" "$CONNS" "$GAP_MS" "$SENT" "$ROWS" "$TOTAL" \
    "$(python3 -c "print(f'{$TOTAL / max($ACCEPTED, 1):,.0f}')")" "$PROFILE" | tee "$OUT/summary.txt"
