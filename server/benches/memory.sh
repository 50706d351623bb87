#!/usr/bin/env bash
# Memory of `stackgate serve`: resident set idle, and with DEPLOYS deploys in flight, held in
# CREATE_IN_PROGRESS by the emulator's slow knob (deploy/local/emulator/slow.py).
#
#   cargo build --release -p stackgate --bin stackgate
#   NO_BUILD=1 server/benches/memory.sh        # about a minute; writes results/memory.md
#
# In one run:
#   1. an emulator of its own (port MEM_EMULATOR_PORT) with STACKGATE_MOTO_SLOW holding every
#      operation on this run's stacks for HOLD seconds;
#   2. a real git repository with DEPLOYS stack folders (a one-topic template each), and
#      `stackgate serve` with max_parallel_jobs = DEPLOYS, no GitHub (log-only statuses);
#   3. idle: RSS sampled for IDLE_S seconds after /readyz answers, on the first start (the
#      policies compiled) and on a restart (loaded from the cache);
#   4. one signed push: its sync enqueues DEPLOYS deploys; once every one of them is running
#      in phase `executing` (the change set executed, the stack held in progress), RSS is
#      sampled for BUSY_S seconds;
#   5. /proc/PID/status (VmRSS, VmHWM, RssAnon, RssFile, VmSize) and smaps_rollup, printed
#      and written to benches/results/memory.md.
#
# Goals: ≤ 50 MB idle, ≤ 200 MB with 100 deploys in flight (RSS; VmSize is reserved address
# space, mostly wasmtime's pooling allocator, and costs no memory).
#
# Environment (all optional): DEPLOYS=100 HOLD=600 IDLE_S=5 BUSY_S=10 SG_PORT=18095
#   MEM_EMULATOR_PORT=4614 WORK=/tmp/sg-mem RESULTS=server/benches/results/memory.md NO_BUILD=1
#   WAIT_S=300 (the most to wait for the deploys to be in flight)
# Needs .local/venv (deploy/local/setup.sh), sqlite3, python3, git, curl. Binds 127.0.0.1
# only; every wait is bounded; what it starts is stopped by PID on exit; WORK is removed.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEPLOYS=${DEPLOYS:-100}
HOLD=${HOLD:-600}
IDLE_S=${IDLE_S:-5}
BUSY_S=${BUSY_S:-10}
WAIT_S=${WAIT_S:-300}
SG_PORT=${SG_PORT:-18095}
MEM_EMULATOR_PORT=${MEM_EMULATOR_PORT:-4614}
WORK=${WORK:-/tmp/sg-mem}
RESULTS=${RESULTS:-$ROOT/server/benches/results/memory.md}
ENDPOINT="http://127.0.0.1:$MEM_EMULATOR_PORT"

die() { printf 'error: %s\n' "$*" >&2; exit 1; }
log() { printf '==> %s\n' "$*" >&2; }

for tool in sqlite3 python3 git curl; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
if [ -z "${NO_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release -p stackgate --bin stackgate)
fi
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
SG_BIN=${SG_BIN:-$TARGET_DIR/release/stackgate}
[ -x "$SG_BIN" ] || die "no binary at $SG_BIN"
for port in "$SG_PORT" "$MEM_EMULATOR_PORT"; do
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
        die "127.0.0.1:$port is already in use"
    fi
done

RUN="mem$(date +%s)"
SG_PID=""
EMU_STARTED=""
cleanup() {
    local rc=$?
    if [ -n "$SG_PID" ] && kill -0 "$SG_PID" 2>/dev/null; then
        kill -KILL "$SG_PID" 2>/dev/null || true
        wait "$SG_PID" 2>/dev/null || true
    fi
    if [ -n "$EMU_STARTED" ]; then
        STACKGATE_EMULATOR_PORT=$MEM_EMULATOR_PORT "$ROOT/deploy/local/emulator.sh" stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -rf "$WORK"
mkdir -p "$WORK/state"

log "starting the emulator on $ENDPOINT, holding $RUN-* operations for $HOLD s"
STACKGATE_EMULATOR_PORT=$MEM_EMULATOR_PORT STACKGATE_MOTO_SLOW="$RUN-*=$HOLD" \
    "$ROOT/deploy/local/emulator.sh" start >&2
EMU_STARTED=yes

REPO="$WORK/repo"
mkdir -p "$REPO/stacks"
git -C "$REPO" init -q -b main
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid \
    GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid
echo "base" >"$REPO/README.md"
git -C "$REPO" add -A
git -C "$REPO" commit -q -m base
for i in $(seq -w 1 "$DEPLOYS"); do
    d="$REPO/stacks/s$i"
    mkdir -p "$d"
    printf 'template-file-path: template.yaml\nstack-name: %s-s%s\n' "$RUN" "$i" >"$d/deployment.yaml"
    printf "AWSTemplateFormatVersion: '2010-09-09'\nResources:\n  Topic:\n    Type: AWS::SNS::Topic\n    Properties:\n      DisplayName: topic-%s\n" "$i" >"$d/template.yaml"
done
git -C "$REPO" add -A
git -C "$REPO" commit -q -m "$DEPLOYS stacks"
HEAD_SHA=$(git -C "$REPO" rev-parse HEAD)

BENCH_HOOK_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
export BENCH_HOOK_SECRET
cat >"$WORK/stackgate.toml" <<EOF
listen = "127.0.0.1:$SG_PORT"
max_parallel_jobs = $DEPLOYS

[state]
path = "$WORK/state/stackgate.db"

[aws]
endpoint_url = "$ENDPOINT"
region = "us-east-1"
poll_seconds = 1

[[repos]]
name = "bench/memory"
url = "$REPO"
branch = "main"
webhook_secret_env = "BENCH_HOOK_SECRET"
EOF

start_sg() {
    STACKGATE_LOG=warn AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 \
        "$SG_BIN" serve --config "$WORK/stackgate.toml" >>"$WORK/stackgate.log" 2>&1 &
    SG_PID=$!
    local ready=no
    for _ in $(seq 1 600); do
        if curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$SG_PORT/readyz"; then ready=yes; break; fi
        kill -0 "$SG_PID" 2>/dev/null || { cat "$WORK/stackgate.log" >&2; die "stackgate exited"; }
        sleep 0.2
    done
    [ "$ready" = yes ] || die "stackgate did not get ready in 120 s"
}

# -> "rss_kb hwm_kb anon_kb file_kb vmsize_kb pss_kb threads"
sample() {
    python3 - "$SG_PID" <<'PY'
import sys
pid = sys.argv[1]
st = {}
for line in open(f"/proc/{pid}/status"):
    k, _, v = line.partition(":")
    st[k] = v.split()[0] if v.split() else "0"
pss = "0"
for line in open(f"/proc/{pid}/smaps_rollup"):
    if line.startswith("Pss:"):
        pss = line.split()[1]
print(st["VmRSS"], st["VmHWM"], st["RssAnon"], st["RssFile"], st["VmSize"], pss, st["Threads"])
PY
}
# Samples every 0.5 s for $1 seconds; prints the sample with the highest RSS.
peak() {
    local best="" b=0 s r
    for _ in $(seq 1 $(( $1 * 2 ))); do
        s=$(sample)
        r=${s%% *}
        if [ "$r" -gt "$b" ]; then b=$r; best=$s; fi
        sleep 0.5
    done
    echo "$best"
}

log "first start (the policies compiled into the empty cache): sampling for $IDLE_S s"
start_sg
FIRST=$(peak "$IDLE_S")
kill -TERM "$SG_PID"; wait "$SG_PID" 2>/dev/null || true
log "restart (the policies loaded from the cache): sampling for $IDLE_S s"
start_sg
IDLE=$(peak "$IDLE_S")

log "one push: $DEPLOYS stacks to deploy"
BODY=$(python3 -c "import json,sys; print(json.dumps({'ref':'refs/heads/main','after':sys.argv[1],'repository':{'full_name':'bench/memory'}},separators=(',',':')))" "$HEAD_SHA")
SIG=$(printf '%s' "$BODY" | python3 -c "import hmac,hashlib,os,sys; print('sha256='+hmac.new(os.environ['BENCH_HOOK_SECRET'].encode(), sys.stdin.buffer.read(), hashlib.sha256).hexdigest())")
ANSWER=$(curl -s --max-time 10 -X POST "http://127.0.0.1:$SG_PORT/webhooks/github" \
    -H 'Content-Type: application/json' -H 'X-GitHub-Event: push' -H "X-GitHub-Delivery: $RUN" \
    -H "X-Hub-Signature-256: $SIG" --data-binary "$BODY" -w ' %{http_code}')
case "$ANSWER" in *' 202') ;; *) die "push not accepted: $ANSWER" ;; esac

DB="$WORK/state/stackgate.db"
t0=$(date +%s)
inflight=0
while :; do
    inflight=$(sqlite3 -cmd '.timeout 5000' "$DB" \
        "SELECT COUNT(*) FROM jobs WHERE kind = 'deploy' AND state = 'running' AND phase = 'executing'" 2>/dev/null || echo 0)
    [ "$inflight" -ge "$DEPLOYS" ] && break
    [ $(( $(date +%s) - t0 )) -lt "$WAIT_S" ] || {
        sqlite3 "$DB" "SELECT kind, state, phase, COUNT(*) FROM jobs GROUP BY 1, 2, 3" >&2
        tail -20 "$WORK/stackgate.log" >&2
        die "only $inflight deploys in flight after $WAIT_S s"
    }
    kill -0 "$SG_PID" 2>/dev/null || die "stackgate exited"
    sleep 0.5
done
REACHED=$(( $(date +%s) - t0 ))
log "$inflight deploys in flight after $REACHED s; sampling for $BUSY_S s"
BUSY=$(peak "$BUSY_S")
STILL=$(sqlite3 -cmd '.timeout 5000' "$DB" \
    "SELECT COUNT(*) FROM jobs WHERE kind = 'deploy' AND state = 'running'")
HELD=$(AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x timeout 60 "$ROOT/.local/venv/bin/python" - "$ENDPOINT" "$RUN" <<'PY'
import sys, boto3
cfn = boto3.client("cloudformation", endpoint_url=sys.argv[1], region_name="us-east-1")
n = 0
for page in cfn.get_paginator("describe_stacks").paginate():
    n += sum(1 for s in page["Stacks"] if s["StackName"].startswith(sys.argv[2]) and s["StackStatus"] == "CREATE_IN_PROGRESS")
print(n)
PY
)

REPORT=$(FIRST="$FIRST" IDLE="$IDLE" BUSY="$BUSY" DEPLOYS="$DEPLOYS" STILL="$STILL" HELD="$HELD" REACHED="$REACHED" \
    LOAD="$(cut -d' ' -f1-3 /proc/loadavg)" DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" \
    CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" NPROC="$(nproc)" \
    COMMIT="$(git -C "$ROOT" rev-parse --short HEAD)" python3 - <<'PY'
import os
E = os.environ
def parse(s):
    k = ("rss", "hwm", "anon", "file", "vmsize", "pss", "threads")
    return dict(zip(k, (int(x) for x in s.split())))
f, i, b = parse(E["FIRST"]), parse(E["IDLE"]), parse(E["BUSY"])
mb = lambda kb: f"{kb / 1024:.1f}"
n = int(E["DEPLOYS"])
ok = lambda c: "met" if c else "**NOT met**"
L = []
A = L.append
A("# Memory of `stackgate serve`")
A("")
A("Generated by `server/benches/memory.sh`: `stackgate serve` (release) with")
A(f"`max_parallel_jobs = {n}`, a real git repository of {n} stack folders (one SNS topic each),")
A("no GitHub (statuses logged), and the emulator holding every operation on those stacks")
A("in progress (`STACKGATE_MOTO_SLOW`). Idle is after `/readyz` answers: on the first start")
A("(the policies compiled into an empty cache) and on a restart (loaded from the cache, the")
A(f"usual case); the deploys run on the restarted one. In flight is once one push's sync has enqueued {n} deploys and every")
A("one runs in phase `executing`: change set executed, stack `CREATE_IN_PROGRESS`, the deploy")
A("following its events. Each figure is the highest RSS sampled every 0.5 s over the window.")
A("")
A("| measure | first start, idle | restart, idle | " + f"{n} deploys in flight" + " | goal | |")
A("|---|---:|---:|---:|---|---|")
A(f"| **RSS** (MB) | {mb(f['rss'])} | **{mb(i['rss'])}** | **{mb(b['rss'])}** | ≤ 50 idle / ≤ 200 | {ok(i['rss'] <= 50 * 1024)} / {ok(b['rss'] <= 200 * 1024)} |")
for key, label in (("anon", "of which anonymous (heap, stacks)"), ("file", "of which file-backed (the binary's pages, libraries)"), ("pss", "PSS"), ("hwm", "peak RSS so far, VmHWM"), ("vmsize", "address space reserved, VmSize (not memory)")):
    A(f"| {label} (MB) | {mb(f[key])} | {mb(i[key])} | {mb(b[key])} | | |")
A(f"| threads | {f['threads']} | {i['threads']} | {b['threads']} | | |")
A("")
A(f"The deploys were all in flight {E['REACHED']} s after the push; {E['STILL']} deploy jobs were still")
A(f"running after the window, and the emulator had {E['HELD']} stacks in `CREATE_IN_PROGRESS`.")
A("")
A("## Machine")
A("")
A(f"- {E['DATE']}; {E['NPROC']} CPUs ({E['CPU']}); load average at the end: {E['LOAD']}")
A(f"- commit {E['COMMIT']}, release profile")
print("\n".join(L))
PY
)
mkdir -p "$(dirname "$RESULTS")"
printf '%s\n' "$REPORT" >"$RESULTS"
printf '\n%s\n\n(written to %s)\n' "$REPORT" "$RESULTS"
