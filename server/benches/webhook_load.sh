#!/usr/bin/env bash
# Webhook intake benchmark: `stackgate serve` against a bare axum server (examples/bare202.rs)
# on signed GitHub `push` deliveries to POST /webhooks/github, on the loopback interface.
#
#   server/benches/webhook_load.sh
#
# In one run:
#   1. maximum throughput, `wrk -t2 -c32 -d10s`: bare202, stackgate, the floor of this job
#      (bare202 checking the HMAC, parsing the event with stackgate's parser, and answering
#      only once the delivery id is fdatasync'd to a journal, group commit; no queue),
#      bare202 again (drift);
#   2. latency at a fixed offered rate (1,000 requests/s, paced by the Lua script): stackgate,
#      stackgate again at a lower rate (200/s: its latency when not saturated), then bare202;
#   3. the same for stackgate with `[state] synchronous = "normal"` (max and fixed rate), and
#      the disk alone: one fsync per request at the fixed rate;
#   4. durability: stackgate is SIGKILLed right after its last load (no graceful shutdown),
#      then every delivery answered `202 accepted` must be a row of `deliveries` and every job
#      id returned in those answers a row of `jobs`;
#   5. a table, printed and written to benches/results/webhook_load.md.
#
# Goals: stackgate ≥ 70 % of the floor's requests/s (and ≥ 50 % of bare202's); p99 ≤ 10 ms
# at 1,000 requests/s.
#
# Environment (all optional):
#   DURATION=10s RATE=1000 RATE_LOW=200 THREADS=2 CONNS=32 RATE_CONNS=32 SG_PORT=18080
#   BARE_PORT=18081 JOURNAL_PORT=18082 COMMITS=128
#   WORK=/tmp/sg-bench  RESULTS=server/benches/results/webhook_load.md  NO_BUILD=1
#   LABEL="..."  (a note printed under the title, e.g. for a variant)
#   SG_LD_PRELOAD=/path/to/shim.so  (LD_PRELOAD for stackgate only, e.g. a variant that
#                                    turns fsync into a no-op; never for real numbers)
#
# Needs wrk (Debian: `apt-get install -y wrk`), sqlite3, python3, git, curl. Everything binds
# to 127.0.0.1, every load run is bounded by -d (and `timeout`), and everything started here
# is killed by PID on exit; WORK is removed.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR="$ROOT/server/benches"
LUA="$BENCH_DIR/webhook_load.lua"
EXAMPLES="$ROOT/tests/doubles/github/node_modules/@octokit/webhooks-examples/api.github.com/index.json"

DURATION=${DURATION:-10s}
RATE=${RATE:-1000}
RATE_LOW=${RATE_LOW:-200}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
RATE_CONNS=${RATE_CONNS:-32}
SG_PORT=${SG_PORT:-18080}
BARE_PORT=${BARE_PORT:-18081}
JOURNAL_PORT=${JOURNAL_PORT:-18082}
WORK=${WORK:-/tmp/sg-bench}
RESULTS=${RESULTS:-$BENCH_DIR/results/webhook_load.md}
LABEL=${LABEL:-}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-60}
# wrk is stopped by -d; `timeout` is the backstop if it ever hangs.
WRK_TIMEOUT=$(( ${DURATION%s} + 30 ))

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- tools -----------------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing wrk"
        apt-get install -y wrk >/dev/null
    else
        die "wrk is not installed (Debian: apt-get install -y wrk)"
    fi
fi
for tool in sqlite3 python3 git curl; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
# wrk2 (constant-rate, coordinated-omission-corrected) would be the right tool for the fixed
# rate run; it is not packaged by Debian, so the Lua script paces plain wrk instead.
WRK2_NOTE="wrk2 not packaged here; fixed rate paced by the wrk Lua script (absolute schedule per thread)"
if apt-cache policy wrk2 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    WRK2_NOTE="wrk2 is packaged here but not used; fixed rate paced by the wrk Lua script"
fi
[ -f "$EXAMPLES" ] || die "missing $EXAMPLES (run npm ci in tests/doubles/github)"
for port in "$SG_PORT" "$BARE_PORT" "$JOURNAL_PORT"; do
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
        die "127.0.0.1:$port is already in use"
    fi
done

# --- build -----------------------------------------------------------------------------------
if [ -z "${NO_BUILD:-}" ]; then
    log "cargo build --release -p stackgate --bin stackgate --example bare202"
    (cd "$ROOT" && cargo build --release -p stackgate --bin stackgate --example bare202)
fi
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
SG_BIN="$TARGET_DIR/release/stackgate"
BARE_BIN="$TARGET_DIR/release/examples/bare202"
[ -x "$SG_BIN" ] && [ -x "$BARE_BIN" ] || die "release binaries not found under $TARGET_DIR"

# --- processes we start, and their cleanup ---------------------------------------------------
SG_PID=""
BARE_PID=""
JOURNAL_PID=""
PG_STARTED=""
PG_PORT=${PG_PORT:-18093}
cleanup() {
    local rc=$?
    for pid in $SG_PID $BARE_PID $JOURNAL_PID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
    [ -n "$PG_STARTED" ] && "$ROOT/deploy/local/postgres.sh" stop "$PG_PORT" >/dev/null 2>&1
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$WORK"
mkdir -p "$WORK/state" "$WORK/out"

# --- the repository, the delivery bodies, their signatures -----------------------------------
# Every push names a commit of its own, as real pushes do: a job for a commit that is
# already queued is that job (nothing is written), so one body sent again and again would
# measure that shortcut instead of recording a delivery, a job and a superseding.
COMMITS=${COMMITS:-128}
log "creating the git repository ($COMMITS commits) and the signed push bodies in $WORK"
REPO="$WORK/repo"
mkdir -p "$REPO/stacks"
git -C "$REPO" init -q -b main
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid \
    GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid
for i in $(seq 1 "$COMMITS"); do
    printf 'Stacks live here; this benchmark repository has none (%s).\n' "$i" \
        >"$REPO/stacks/README.md"
    git -C "$REPO" add -A
    git -C "$REPO" commit -q -m "bench: commit $i"
done
git -C "$REPO" log --format=%H >"$WORK/shas"

BENCH_HOOK_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
export BENCH_HOOK_SECRET
BODY="$WORK/push.json"      # the first body alone, for the hand-made delivery
BODIES="$WORK/pushes.txt"   # one `signature body` line per commit, for wrk
# GitHub's own example push (a branch push), pointed at one of our repository's commits and
# touching a path under stacks/ so that it is recorded and enqueues a sync job.
SIGNATURE=$(python3 - "$EXAMPLES" "$WORK/shas" "$BODY" "$BODIES" <<'PY'
import copy, hashlib, hmac, json, os, sys
examples, shas, first, out = sys.argv[1:5]
push = next(e for e in json.load(open(examples)) if e["name"] == "push")
example = next(e for e in push["examples"] if e["ref"].startswith("refs/heads/") and e["commits"])
secret = os.environ["BENCH_HOOK_SECRET"].encode()
lines = []
for sha in open(shas).read().split():
    body = copy.deepcopy(example)
    body["ref"] = "refs/heads/main"
    body["after"] = sha
    body["repository"]["full_name"] = "Codertocat/Hello-World"
    body["repository"]["default_branch"] = "main"
    body["repository"]["master_branch"] = "main"
    for c in body["commits"] + [body["head_commit"]]:
        c["id"] = sha
        c["added"], c["removed"], c["modified"] = [], [], ["stacks/README.md"]
    data = json.dumps(body, separators=(",", ":")).encode()
    lines.append((hmac.new(secret, data, hashlib.sha256).hexdigest(), data))
with open(out, "wb") as f:
    for sig, data in lines:
        f.write(b"sha256=" + sig.encode() + b" " + data + b"\n")
open(first, "wb").write(lines[0][1])
print("sha256=" + lines[0][0])
PY
)
BODY_BYTES=$(wc -c <"$BODY")

cat >"$WORK/stackgate.toml" <<EOF
listen = "127.0.0.1:$SG_PORT"
max_parallel_jobs = 2

[state]
path = "$WORK/state/stackgate.db"

[aws]
# Nothing listens here (the benchmark repository has no stacks, so nothing deploys).
endpoint_url = "http://127.0.0.1:1"
region = "us-east-1"

[[repos]]
name = "Codertocat/Hello-World"
url = "$REPO"
branch = "main"
webhook_secret_env = "BENCH_HOOK_SECRET"
EOF

# --- machine context -------------------------------------------------------------------------
NPROC=$(nproc)
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
KERNEL=$(uname -r)
WRK_VERSION=$( (wrk -v 2>&1 || true) | head -1 | awk '{print $2}')
RUSTC=$(rustc --version 2>/dev/null | awk '{print $2}')
FS=$(df -T "$WORK" | awk 'NR==2 {print $2" on "$1}')
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# What one fsync costs on the state folder's disk: the floor under each synchronous=FULL
# commit. Disks shared with other work vary a lot, so it is probed around every stackgate run.
fsync_probe() { # -> "p50_us p99_us" of 100 fsyncs of a 4 KiB append
    python3 - "$WORK/state/fsync-probe" <<'PY'
import os, statistics, sys, time
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o600)
samples = []
for i in range(100):
    os.write(fd, b"x" * 4096)
    t = time.perf_counter()
    os.fsync(fd)
    samples.append((time.perf_counter() - t) * 1e6)
os.close(fd)
os.unlink(sys.argv[1])
samples.sort()
print(f"{statistics.median(samples):.0f} {samples[98]:.0f}")
PY
}
FSYNC_START=$(fsync_probe)

# --- start the servers -----------------------------------------------------------------------
log "starting bare202 on 127.0.0.1:$BARE_PORT"
"$BARE_BIN" "$BARE_PORT" >"$WORK/bare202.log" 2>&1 &
BARE_PID=$!

# The floor of this job: bare202 checking each request's HMAC on the raw body, parsing the
# event with stackgate's parser, and answering only once its delivery id is fdatasync'd to
# a journal (written in place in a preallocated file, as SQLite reuses its log),
# group-committed by one writer thread. No queue, no SQLite: what every intake must do
# before its 202 here, whatever the design.
log "starting bare202 with a journal (the durable floor) on 127.0.0.1:$JOURNAL_PORT"
"$BARE_BIN" "$JOURNAL_PORT" "$WORK/state/journal" >"$WORK/bare202-journal.log" 2>&1 &
JOURNAL_PID=$!

log "starting stackgate serve on 127.0.0.1:$SG_PORT"
LD_PRELOAD=${SG_LD_PRELOAD:-} \
STACKGATE_LOG=warn AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 \
    "$SG_BIN" serve --config "$WORK/stackgate.toml" >"$WORK/stackgate.log" 2>&1 &
SG_PID=$!

wait_http() { # url pid name
    local i
    for i in $(seq 1 600); do
        if curl -sf -o /dev/null --max-time 1 "$1"; then return 0; fi
        kill -0 "$2" 2>/dev/null || { cat "$WORK"/*.log >&2; die "$3 exited during start-up"; }
        sleep 0.2
    done
    die "$3 did not answer $1 within 120 s"
}
wait_http "http://127.0.0.1:$SG_PORT/readyz" "$SG_PID" stackgate
wait_bare() { # port pid name
    local i code=""
    for i in $(seq 1 100); do
        # A real signed push: the journal floor checks the signature and parses the event.
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -X POST \
            -H 'X-GitHub-Delivery: probe' -H 'X-GitHub-Event: push' \
            -H "X-Hub-Signature-256: $SIGNATURE" "http://127.0.0.1:$1/webhooks/github" \
            --data-binary @"$BODY" || true)
        [ "$code" = 202 ] && return 0
        kill -0 "$2" 2>/dev/null || die "$3 exited during start-up"
        sleep 0.1
    done
    die "$3 does not answer 202"
}
wait_bare "$BARE_PORT" "$BARE_PID" bare202
wait_bare "$JOURNAL_PORT" "$JOURNAL_PID" "bare202 (journal)"

# One delivery by hand: the body must be accepted (recorded, one job), not ignored.
SANITY=$(curl -s --max-time 5 -X POST "http://127.0.0.1:$SG_PORT/webhooks/github" \
    -H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
    -H 'X-GitHub-Delivery: sanity-1' -H "X-Hub-Signature-256: $SIGNATURE" \
    --data-binary @"$BODY" -w ' %{http_code}')
case "$SANITY" in
    *'"result":"accepted"'*' 202') log "sanity delivery accepted: $SANITY" ;;
    *) die "the benchmark body is not accepted by stackgate: $SANITY" ;;
esac
SANITY_JOB=$(printf '%s' "$SANITY" | sed -n 's/.*"jobs":\[\([0-9]*\).*/\1/p')

# --- load ------------------------------------------------------------------------------------
RUN_ID=$(date +%s)
cpu_ticks() { # pid -> user + system clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat"
}
TICK_HZ=$(getconf CLK_TCK)
run_wrk() { # name url rate conns [server pid]
    local name=$1 url=$2 rate=$3 conns=$4 pid=${5:-} before after t0 t1
    before=$(fsync_probe)
    [ -n "$pid" ] && t0=$(cpu_ticks "$pid")
    log "$name: wrk -t$THREADS -c$conns -d$DURATION --latency, $( [ "$rate" = 0 ] && echo "as fast as possible" || echo "paced at $rate/s") -> $url"
    timeout "$WRK_TIMEOUT" wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency \
        -s "$LUA" "$url" -- "$BODIES" "$RUN_ID-$name" "$rate" \
        "$WORK/out/$name.txt" "$THREADS" | tee "$WORK/out/$name.wrk" >&2
    [ -n "$pid" ] && t1=$(cpu_ticks "$pid")
    after=$(fsync_probe)
    {
        echo "fsync_before_p50_us ${before% *}"
        echo "fsync_before_p99_us ${before#* }"
        echo "fsync_after_p50_us ${after% *}"
        echo "fsync_after_p99_us ${after#* }"
        if [ -n "$pid" ]; then
            echo "server_cpu_s $(python3 -c "print(($t1 - $t0) / $TICK_HZ)")"
        fi
    } >>"$WORK/out/$name.txt"
}

SG_URL="http://127.0.0.1:$SG_PORT/webhooks/github"
BARE_URL="http://127.0.0.1:$BARE_PORT/webhooks/github"

run_wrk bare_max_1 "$BARE_URL" 0 "$CONNS" "$BARE_PID"
run_wrk sg_max "$SG_URL" 0 "$CONNS" "$SG_PID"
run_wrk journal_max "http://127.0.0.1:$JOURNAL_PORT/webhooks/github" 0 "$CONNS" "$JOURNAL_PID"
kill -TERM "$JOURNAL_PID" 2>/dev/null || true
wait "$JOURNAL_PID" 2>/dev/null || true
JOURNAL_PID=""
JOURNAL_LINES=$(tr -d '\0' <"$WORK/state/journal" | grep -c "^$RUN_ID-journal_max-" || true)
run_wrk bare_max_2 "$BARE_URL" 0 "$CONNS" "$BARE_PID"

# The burst leaves work behind (sync jobs, commit statuses to mark posted, each a
# synchronous transaction); let it drain so the fixed-rate run measures a steady state.
log "waiting for stackgate's status backlog to drain (≤ ${DRAIN_TIMEOUT}s)"
DB="$WORK/state/stackgate.db"
drain_start=$(date +%s.%N)
BACKLOG_AFTER_BURST=$(sqlite3 -cmd '.timeout 5000' "$DB" \
    "SELECT COUNT(*) FROM statuses WHERE posted_at IS NULL" 2>/dev/null || echo "?")
DRAINED=no
for i in $(seq 1 $((DRAIN_TIMEOUT * 2))); do
    left=$(sqlite3 -cmd '.timeout 5000' "$DB" \
        "SELECT COUNT(*) FROM statuses WHERE posted_at IS NULL" 2>/dev/null || echo "?")
    if [ "$left" = 0 ]; then DRAINED=yes; break; fi
    sleep 0.5
done
DRAIN_S=$(python3 -c "import time; print(f'{time.time() - $drain_start:.1f}')")
log "backlog after burst: $BACKLOG_AFTER_BURST unposted statuses; drained=$DRAINED in ${DRAIN_S}s"

run_wrk sg_rate "$SG_URL" "$RATE" "$RATE_CONNS" "$SG_PID"
# The same at a lower rate: where does stackgate's p99 stand when it is not saturated?
run_wrk sg_rate_low "$SG_URL" "$RATE_LOW" "$RATE_CONNS" "$SG_PID"
# Not graceful: whatever was answered 202 must already be on disk.
kill -KILL "$SG_PID"
wait "$SG_PID" 2>/dev/null || true
SG_PID=""
log "stackgate SIGKILLed right after the load"

run_wrk bare_rate "$BARE_URL" "$RATE" "$RATE_CONNS" "$BARE_PID"
kill -TERM "$BARE_PID" 2>/dev/null || true
wait "$BARE_PID" 2>/dev/null || true
BARE_PID=""

# The same stackgate with `[state] synchronous = "normal"`: commits reach the OS, not the
# disk, so no request waits on fsync; it must still lose nothing to a SIGKILL.
mkdir -p "$WORK/state-normal"
sed -e "s|^path = .*|path = \"$WORK/state-normal/stackgate.db\"\nsynchronous = \"normal\"|" \
    "$WORK/stackgate.toml" >"$WORK/stackgate-normal.toml"
log "starting stackgate serve with synchronous = normal on 127.0.0.1:$SG_PORT"
LD_PRELOAD=${SG_LD_PRELOAD:-} \
STACKGATE_LOG=warn AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 \
    "$SG_BIN" serve --config "$WORK/stackgate-normal.toml" >"$WORK/stackgate-normal.log" 2>&1 &
SG_PID=$!
wait_http "http://127.0.0.1:$SG_PORT/readyz" "$SG_PID" "stackgate (normal)"
run_wrk sgn_max "$SG_URL" 0 "$CONNS" "$SG_PID"
run_wrk sgn_rate "$SG_URL" "$RATE" "$RATE_CONNS" "$SG_PID"
kill -KILL "$SG_PID"
wait "$SG_PID" 2>/dev/null || true
SG_PID=""
log "stackgate (normal) SIGKILLed right after the load"

# The same stackgate on PostgreSQL 15 (Debian's, a throwaway cluster of its own on this
# disk, fsync on, so a 202 is as durable as with SQLite's synchronous = full); the other
# settings as the SQLite run's. Its server processes' CPU is counted apart.
log "starting PostgreSQL 15 on 127.0.0.1:$PG_PORT (fsync on)"
PG_STARTED=yes
PG_ADMIN=$(STACKGATE_PG_FSYNC=on "$ROOT/deploy/local/postgres.sh" start "$PG_PORT" | tail -n 1)
psql "$PG_ADMIN" -q -c "CREATE DATABASE sg_bench" >/dev/null
PG_URL="${PG_ADMIN%/postgres}/sg_bench"
pg_ticks() { # user + system clock ticks of the cluster's server processes
    local pids t=0 p
    pids=$(pgrep -u stackgate-pg postgres 2>/dev/null || pgrep -f "postgres.*$PG_PORT" || true)
    for p in $pids; do t=$((t + $(cpu_ticks "$p" 2>/dev/null || echo 0))); done
    echo "$t"
}
mkdir -p "$WORK/state-pg"
sed -e "s|^path = .*|path = \"$WORK/state-pg/stackgate.db\"|" \
    "$WORK/stackgate.toml" >"$WORK/stackgate-pg.toml"
log "starting stackgate serve on PostgreSQL on 127.0.0.1:$SG_PORT"
STACKGATE_STATE_URL="$PG_URL" \
STACKGATE_LOG=warn AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 \
    "$SG_BIN" serve --config "$WORK/stackgate-pg.toml" >"$WORK/stackgate-pg.log" 2>&1 &
SG_PID=$!
wait_http "http://127.0.0.1:$SG_PORT/readyz" "$SG_PID" "stackgate (PostgreSQL)"
for name in sgp_max sgp_rate; do
    pg0=$(pg_ticks)
    if [ "$name" = sgp_max ]; then
        run_wrk "$name" "$SG_URL" 0 "$CONNS" "$SG_PID"
    else
        run_wrk "$name" "$SG_URL" "$RATE" "$RATE_CONNS" "$SG_PID"
    fi
    pg1=$(pg_ticks)
    echo "pg_cpu_s $(python3 -c "print(($pg1 - $pg0) / $TICK_HZ)")" >>"$WORK/out/$name.txt"
    if [ "$name" = sgp_max ]; then
        log "waiting for the PostgreSQL run's status backlog to drain (≤ ${DRAIN_TIMEOUT}s)"
        for i in $(seq 1 $((DRAIN_TIMEOUT * 2))); do
            left=$(psql "$PG_URL" -Atq -c "SELECT COUNT(*) FROM statuses WHERE posted_at IS NULL" || echo "?")
            [ "$left" = 0 ] && break
            sleep 0.5
        done
    fi
done
kill -KILL "$SG_PID"
wait "$SG_PID" 2>/dev/null || true
SG_PID=""
log "stackgate (PostgreSQL) SIGKILLed right after the load"
PG_DUR=$(python3 - "$WORK/out" "$RUN_ID" "$PG_URL" <<'PY'
import subprocess, sys
out, run, url = sys.argv[1:4]
def q(sql):
    return subprocess.run(["psql", url, "-Atq", "-c", sql], capture_output=True, text=True, check=True).stdout.split()
jobs = set(map(int, q("SELECT id FROM jobs")))
parts, ok = [], True
for name in ("sgp_max", "sgp_rate"):
    lines = [l.split() for l in open(f"{out}/{name}.txt")]
    accepted = int(next(v for k, v in lines if k == "accepted"))
    ids = [int(v) for k, v in lines if k == "job"]
    rows = int(q(f"SELECT COUNT(*) FROM deliveries WHERE id LIKE '{run}-{name}-%'")[0])
    missing = [i for i in ids if i not in jobs]
    ok &= rows >= accepted and not missing and len(ids) == accepted
    parts.append(f"{name}:accepted={accepted},rows={rows},job_ids_missing={len(missing)}")
print(("yes" if ok else "NO") + " " + ";".join(parts))
PY
)

# The disk alone at the fixed rate: one fsync of a 4 KiB append per request, paced.
log "probing fsync at $RATE/s for $DURATION"
read -r FLOOR_P50 FLOOR_P99 FLOOR_P999 FLOOR_MAX FLOOR_N < <(python3 - "$WORK/state/floor-probe" "$RATE" "${DURATION%s}" <<'PY'
import os, sys, time
path, rate, secs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
samples, start, k = [], time.perf_counter(), 0
while time.perf_counter() - start < secs:
    os.write(fd, b"x" * 4096)
    t = time.perf_counter()
    os.fsync(fd)
    samples.append((time.perf_counter() - t) * 1e3)
    k += 1
    time.sleep(max(0.0, start + k / rate - time.perf_counter()))
os.close(fd)
os.unlink(path)
samples.sort()
n = len(samples)
print(f"{samples[n // 2]:.2f} {samples[int(n * 0.99)]:.2f} {samples[int(n * 0.999)]:.2f} {samples[-1]:.2f} {n}")
PY
)

# --- durability ------------------------------------------------------------------------------
ROWS=$(sqlite3 "$DB" 'SELECT COUNT(*) FROM deliveries')
DB_NORMAL="$WORK/state-normal/stackgate.db"
ROWS_NORMAL=$(sqlite3 "$DB_NORMAL" 'SELECT COUNT(*) FROM deliveries')
read -r DUR_OK DUR_DETAIL < <(python3 - "$DB" "$WORK/out" "$RUN_ID" "$SANITY_JOB" "$DB_NORMAL" <<'PY'
import sqlite3, sys
db, out, run, sanity_job, db_normal = sys.argv[1:6]
parts, ok = [], True
for path, names in ((db_normal, ("sgn_max", "sgn_rate")), (db, ("sg_max", "sg_rate", "sg_rate_low"))):
  con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
  # Every job: an accepted delivery may get back a job queued for its commit by the
  # poller or by a sync handing over to the branch head, which has no delivery.
  jobs = {r[0] for r in con.execute("SELECT id FROM jobs")}
  for name in names:
    lines = [l.split() for l in open(f"{out}/{name}.txt")]
    accepted = int(next(v for k, v in lines if k == "accepted"))
    ids = [int(v) for k, v in lines if k == "job"]
    rows = con.execute("SELECT COUNT(*) FROM deliveries WHERE id LIKE ?", (f"{run}-{name}-%",)).fetchone()[0]
    missing = [i for i in ids if i not in jobs]
    ok &= rows >= accepted and not missing and len(ids) == accepted
    parts.append(f"{name}:accepted={accepted},rows={rows},job_ids_missing={len(missing)}")
sanity = con.execute("SELECT COUNT(*) FROM deliveries WHERE id = 'sanity-1'").fetchone()[0]
ok &= sanity == 1 and int(sanity_job) in jobs
parts.append(f"sanity:rows={sanity}")
print("yes" if ok else "NO", ";".join(parts))
PY
)

# --- report ----------------------------------------------------------------------------------
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
REPORT=$(OUT="$WORK/out" ROWS="$ROWS" ROWS_NORMAL="$ROWS_NORMAL" FLOOR="$FLOOR_P50 $FLOOR_P99 $FLOOR_P999 $FLOOR_MAX $FLOOR_N" DUR_OK="$DUR_OK" DUR_DETAIL="$DUR_DETAIL" LABEL="$LABEL" \
    BODY_BYTES="$BODY_BYTES" COMMITS="$COMMITS" THREADS="$THREADS" CONNS="$CONNS" RATE_CONNS="$RATE_CONNS" \
    DURATION="$DURATION" RATE="$RATE" RATE_LOW="$RATE_LOW" NPROC="$NPROC" CPU="$CPU" \
    DATE="$DATE" KERNEL="$KERNEL" LOAD_BEFORE="$LOAD_BEFORE" LOAD_AFTER="$LOAD_AFTER" FS="$FS" \
    FSYNC_START="$FSYNC_START" WRK_VERSION="$WRK_VERSION" RUSTC="$RUSTC" WRK2_NOTE="$WRK2_NOTE" \
    JOURNAL_LINES="$JOURNAL_LINES" BACKLOG="$BACKLOG_AFTER_BURST" DRAINED="$DRAINED" DRAIN_S="$DRAIN_S" \
    PRELOAD="${SG_LD_PRELOAD:-}" PG_DUR="$PG_DUR" python3 - <<'PY'
import os
E = os.environ
def load(name):
    d = {}
    for line in open(f"{E['OUT']}/{name}.txt"):
        k, v = line.split()
        if k != "job":
            d[k] = float(v)
    return d
names = ("bare_max_1", "sg_max", "journal_max", "bare_max_2", "sg_rate", "sg_rate_low", "bare_rate", "sgn_max", "sgn_rate", "sgp_max", "sgp_rate")
r = {n: load(n) for n in names}
bare = (r["bare_max_1"]["rps"] + r["bare_max_2"]["rps"]) / 2
ratio = r["sg_max"]["rps"] / bare
p99 = r["sg_rate"]["p99_ms"]
rate, rate_low = int(E["RATE"]), int(E["RATE_LOW"])
def codes(d):
    c = sorted((k[7:], int(v)) for k, v in d.items() if k.startswith("status_"))
    s = ", ".join(f"{k} × {v:,}" for k, v in c)
    errs = sum(int(d[k]) for k in ("errors_connect", "errors_read", "errors_write", "errors_timeout"))
    return s + (f"; {errs} socket errors/timeouts" if errs else "")
def ok(b):
    return "met" if b else "**NOT met**"
def lat(d):
    return f"{d['p50_ms']:.2f} / {d['p99_ms']:.2f}"
def late(d):
    return f"{int(d['late']):,} of {int(d['sent']):,}"
def fs(d):
    return f"{d['fsync_before_p50_us']:.0f} → {d['fsync_after_p50_us']:.0f}"
def cpu_per_req(d):
    return d["server_cpu_s"] * 1000 / max(d["requests"], 1)
rows = int(E["ROWS"])
acc_total = int(sum(r[n]["accepted"] for n in ("sg_max", "sg_rate", "sg_rate_low"))) + 1
rows_normal = int(E["ROWS_NORMAL"])
acc_normal = int(sum(r[n]["accepted"] for n in ("sgn_max", "sgn_rate")))
ratio_n = r["sgn_max"]["rps"] / bare
p99_n = r["sgn_rate"]["p99_ms"]
sgn_rate_met = r["sgn_rate"]["rps"] >= 0.95 * rate
f50, f99, f999, fmax, fn = E["FLOOR"].split()
sg_rate_met = r["sg_rate"]["rps"] >= 0.95 * rate
L = []
A = L.append
A("# Webhook intake benchmark")
A("")
A("Generated by `server/benches/webhook_load.sh` (wrk + `benches/webhook_load.lua`): signed")
A(f"GitHub `push` deliveries (GitHub's example payload, {E['BODY_BYTES']} bytes, a unique")
A(f"`X-GitHub-Delivery` each, naming {E['COMMITS']} real commits in turn) to `POST /webhooks/github`")
A("on 127.0.0.1. Every stackgate 202 here is an *accepted* delivery: signature checked, payload")
A("parsed, then the delivery, a sync job for its commit, the superseding of the job queued")
A("before it and the commit statuses written in one SQLite transaction (WAL,")
A("`synchronous=FULL`) before the answer.")
A("The floor, bare202, is `examples/bare202.rs`: the same axum/tokio stack answering 202 with")
A("nothing behind it. The `sgn_*` runs are the same stackgate with `[state] synchronous =")
A("\"normal\"`: commits reach the OS but are not fsynced, so they survive the process being")
A("killed, not a power cut.")
if E["LABEL"]:
    A("")
    A(f"**Variant:** {E['LABEL']}")
A("")
A("## Results")
A("")
A("| measure | stackgate | bare202 | goal | |")
A("|---|---:|---:|---|---|")
A(f"| max throughput, `wrk -t{E['THREADS']} -c{E['CONNS']} -d{E['DURATION']}` (req/s) | {r['sg_max']['rps']:,.0f} | {r['bare_max_1']['rps']:,.0f} before, {r['bare_max_2']['rps']:,.0f} after | | |")
A(f"| **stackgate / bare202** (bare = mean of both runs) | **{ratio:.1%}** | | ≥ 50 % | {ok(ratio >= 0.5)} |")
A(f"| latency at max throughput, p50 / p99 (ms) | {lat(r['sg_max'])} | {lat(r['bare_max_1'])} | | |")
A(f"| fixed rate {rate:,}/s: achieved (req/s) | {r['sg_rate']['rps']:,.0f} | {r['bare_rate']['rps']:,.0f} | {rate:,} | {ok(sg_rate_met)} |")
A(f"| fixed rate {rate:,}/s: p50 / **p99** (ms) | {r['sg_rate']['p50_ms']:.2f} / **{p99:.2f}** | {lat(r['bare_rate'])} | p99 ≤ 10 ms | {ok(p99 <= 10 and sg_rate_met)} |")
A(f"| fixed rate {rate:,}/s: p99.9 / max (ms) | {r['sg_rate']['p999_ms']:.2f} / {r['sg_rate']['max_ms']:.2f} | {r['bare_rate']['p999_ms']:.2f} / {r['bare_rate']['max_ms']:.2f} | | |")
A(f"| fixed rate {rate:,}/s: requests sent > 1 ms behind schedule | {late(r['sg_rate'])} | {late(r['bare_rate'])} | 0 | |")
A(f"| lower rate {rate_low:,}/s: achieved (req/s), p50 / p99 (ms) | {r['sg_rate_low']['rps']:,.0f}, {lat(r['sg_rate_low'])} | | | |")
A(f"| lower rate {rate_low:,}/s: requests sent > 1 ms behind schedule | {late(r['sg_rate_low'])} | | | |")
A(f"| accepted (202) answers vs `deliveries` rows after SIGKILL | {acc_total:,} vs {rows:,} | | every 202 a row | {ok(E['DUR_OK'] == 'yes')} |")
A(f"| *the disk alone:* one fsync of a 4 KiB append at {rate:,}/s, p50 / p99 / p99.9 / max (ms) | {f50} / {f99} / {f999} / {fmax} | | | |")
floor = r["journal_max"]["rps"] / bare
A(f"| *the durable floor:* bare202 + HMAC + parse + an fdatasync'd write per delivery (group commit), max req/s, / bare202 | | {r['journal_max']['rps']:,.0f}, **{floor:.1%}** | | |")
share = r['sg_max']['rps'] / r['journal_max']['rps']
A(f"| **stackgate / the durable floor** | **{share:.1%}** | | ≥ 70 % | {ok(share >= 0.7)} |")
A(f"| with `synchronous = \"normal\"`: max throughput (req/s), / bare202 | {r['sgn_max']['rps']:,.0f}, **{ratio_n:.1%}** | | ≥ 50 % | {ok(ratio_n >= 0.5)} |")
A(f"| with `synchronous = \"normal\"`: fixed rate {rate:,}/s, achieved, p50 / **p99** (ms) | {r['sgn_rate']['rps']:,.0f}, {r['sgn_rate']['p50_ms']:.2f} / **{p99_n:.2f}** | | p99 ≤ 10 ms | {ok(p99_n <= 10 and sgn_rate_met)} |")
A(f"| with `synchronous = \"normal\"`: accepted answers vs rows after SIGKILL | {acc_normal:,} vs {rows_normal:,} | | every 202 a row | {ok(E['DUR_OK'] == 'yes')} |")
pshare = r['sgp_max']['rps'] / r['journal_max']['rps']
pp99 = r['sgp_rate']['p99_ms']
pg_rate_met = r['sgp_rate']['rps'] >= 0.95 * rate
def pg_cpu(d):
    return d.get("pg_cpu_s", 0) * 1000 / max(d["requests"], 1)
A(f"| **on PostgreSQL 15** (fsync on): max throughput (req/s), **/ the durable floor** | {r['sgp_max']['rps']:,.0f}, **{pshare:.1%}** | | (reported) | |")
A(f"| on PostgreSQL: fixed rate {rate:,}/s, achieved, p50 / **p99** (ms) | {r['sgp_rate']['rps']:,.0f}, {r['sgp_rate']['p50_ms']:.2f} / **{pp99:.2f}** | | p99 ≤ 10 ms | {ok(pp99 <= 10 and pg_rate_met)} |")
A(f"| on PostgreSQL: CPU per request at max, stackgate + PostgreSQL's server processes (ms) | {cpu_per_req(r['sgp_max']):.3f} + {pg_cpu(r['sgp_max']):.3f} | | | |")
pg_ok, pg_detail = E['PG_DUR'].split(' ', 1)
A(f"| on PostgreSQL: every 202 a row after SIGKILL | {pg_ok} | | every 202 a row | {ok(pg_ok == 'yes')} |")
A("")
A(f"PostgreSQL durability, per run: `{pg_detail}`.")
A("")
A("Per run (fsync p50 probed on the state disk just before → just after the run; server CPU")
A("is the server process's user + system time during the run):")
A("")
A("| run | req/s | p50 ms | p99 ms | max ms | status codes | server CPU ms/req | fsync p50 µs |")
A("|---|---:|---:|---:|---:|---|---:|---:|")
for n in names:
    d = r[n]
    A(f"| {n} | {d['rps']:,.0f} | {d['p50_ms']:.2f} | {d['p99_ms']:.2f} | {d['max_ms']:.2f} | {codes(d)} | {cpu_per_req(d):.3f} | {fs(d)} |")
A("")
A("Durability: stackgate was killed with SIGKILL right after its last load (no graceful")
A("shutdown), then the SQLite file was opened. Per run: `deliveries` rows with that run's id")
A("prefix vs 202 `accepted` answers, and how many job ids returned in those answers are missing")
A("from `jobs` (rows may exceed answers by the requests still in flight when wrk stopped):")
A(f"`{E['DUR_DETAIL']}`.")
A("A SIGKILL shows that the transaction commits before the 202 is sent; it cannot tell")
A("`synchronous=FULL` from `NORMAL` (the page cache survives a killed process). FULL is what")
A("makes an accepted delivery survive a power cut or a kernel crash, which this does not test.")
A("")
A("The durable floor (`journal_max`) is `examples/bare202.rs` given a journal file: it checks")
A("the HMAC on the raw body, parses the event with stackgate's own parser, and answers 202")
A("only once the request's delivery id is fdatasync'd there, one writer thread")
A("group-committing whatever waits, as stackgate's writer does. It has no queue and no")
A("SQLite: at the same -c, no intake that verifies, parses and makes each delivery durable")
A("before answering can be faster here. It spent "
  f"{cpu_per_req(r['journal_max']):.3f} ms of server CPU per request.")
A(f"It answered 202 {int(r['journal_max'].get('status_202', 0)):,} times; its journal holds {int(E['JOURNAL_LINES']):,} of that run's ids.")
A("")
A(f"Between the burst and the fixed-rate runs: {E['BACKLOG']} commit statuses were waiting to be")
A(f"marked posted; drained: {E['DRAINED']} (after {E['DRAIN_S']} s).")
A("")
sg = r["sg_max"]
A("Where a stackgate delivery's time goes at max throughput: "
  f"{1000 / sg['rps']:.2f} ms of wall time per delivery, of which {cpu_per_req(sg):.2f} ms is "
  "server CPU (HTTP, HMAC, JSON, SQLite statements, and the sync jobs that the deliveries "
  "enqueue, which fetch the repository and run in the background). Deliveries are "
  "group-committed: a writer thread records every delivery waiting in one transaction and "
  "answers each once it is durable, so one fsync serves a batch; statuses are marked posted "
  "per batch too. " + (
  f"The fsync p50 probed around that run was {fs(sg)} µs."
  if not E["PRELOAD"] else
  "In this variant fsync is a no-op, so what is left is CPU."))
A("")
A("## Machine")
A("")
A(f"- {E['DATE']}; {E['NPROC']} CPUs ({E['CPU']}), Linux {E['KERNEL']}; load average (1/5/15 min) before: {E['LOAD_BEFORE']}, after: {E['LOAD_AFTER']}")
A("- wrk, stackgate and bare202 share these CPUs, and other work on the machine may share the")
A("  CPUs and the disk: bare202's figure is bounded by wrk as much as by the server, and")
A("  stackgate's by the disk's fsync latency, which other processes' writes change run to run.")
p50, p99s = E["FSYNC_START"].split()
A(f"- state on {E['FS']}; 100 fsyncs of a 4 KiB append there at the start: p50 {p50} µs, p99 {p99s} µs")
A(f"- wrk {E['WRK_VERSION']}; rustc {E['RUSTC']}, release profile; {E['WRK2_NOTE']};")
A(f"  -c{E['RATE_CONNS']} connections for the fixed-rate runs. wrk times a request from when it is")
A("  written, so a request sent late (every connection busy) hides its wait in the queue: when")
A("  the *late* row is not 0 the offered rate was not sustained and the percentiles are those of")
A("  a saturated server at the achieved rate, understated (coordinated omission).")
print("\n".join(L))
PY
)

mkdir -p "$(dirname "$RESULTS")"
printf '%s\n' "$REPORT" >"$RESULTS"
printf '\n%s\n\n(written to %s)\n' "$REPORT" "$RESULTS"
[ "$DUR_OK" = yes ] || exit 1
