#!/usr/bin/env bash
# Webhook intake benchmark: `stackgate serve` against a bare axum server (examples/bare202.rs)
# on signed GitHub `push` deliveries to POST /webhooks/github, on the loopback interface.
#
#   server/benches/webhook_load.sh
#
# In one run:
#   1. maximum throughput, `wrk -t2 -c32 -d10s`: bare202, stackgate, bare202 again (drift);
#   2. latency at a fixed offered rate (1,000 requests/s, paced by the Lua script), stackgate
#      then bare202;
#   3. durability: stackgate is SIGKILLed right after its last load (no graceful shutdown),
#      then every delivery answered `202 accepted` must be a row of `deliveries` and every job
#      id returned in those answers a row of `jobs`;
#   4. a table, printed and written to benches/results/webhook_load.md.
#
# Goals: stackgate ≥ 50 % of bare202's requests/s; p99 ≤ 10 ms at 1,000 requests/s.
#
# Environment (all optional):
#   DURATION=10s RATE=1000 THREADS=2 CONNS=32 RATE_CONNS=32 SG_PORT=18080 BARE_PORT=18081
#   WORK=/tmp/sg-bench  RESULTS=server/benches/results/webhook_load.md  NO_BUILD=1
#   LABEL="..."  (a note printed under the title, e.g. for a variant build)
#
# Needs wrk (Debian: `apt-get install -y wrk`), sqlite3, python3, git, curl. Everything binds
# to 127.0.0.1, every load run is bounded by -d (and `timeout`), and everything started here
# is killed by PID on exit; WORK is removed.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR="$ROOT/server/benches"
LUA="$BENCH_DIR/webhook_load.lua"
EXAMPLES="$ROOT/tests/github/node_modules/@octokit/webhooks-examples/api.github.com/index.json"

DURATION=${DURATION:-10s}
RATE=${RATE:-1000}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
RATE_CONNS=${RATE_CONNS:-32}
SG_PORT=${SG_PORT:-18080}
BARE_PORT=${BARE_PORT:-18081}
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
[ -f "$EXAMPLES" ] || die "missing $EXAMPLES (run npm ci in tests/github)"
for port in "$SG_PORT" "$BARE_PORT"; do
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
cleanup() {
    local rc=$?
    for pid in $SG_PID $BARE_PID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$WORK"
mkdir -p "$WORK/state" "$WORK/out"

# --- the repository, the delivery body, its signature ---------------------------------------
log "creating the git repository and the signed push body in $WORK"
REPO="$WORK/repo"
mkdir -p "$REPO/stacks"
printf 'Stacks live here; this benchmark repository has none.\n' >"$REPO/stacks/README.md"
git -C "$REPO" init -q -b main
git -C "$REPO" add -A
GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid \
GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid \
    git -C "$REPO" commit -q -m "bench: initial commit"
SHA=$(git -C "$REPO" rev-parse HEAD)

BENCH_HOOK_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
export BENCH_HOOK_SECRET
BODY="$WORK/push.json"
# GitHub's own example push (a branch push), pointed at our repository's commit and touching
# a path under stacks/ so that it is recorded and enqueues a sync job.
SIGNATURE=$(python3 - "$EXAMPLES" "$SHA" "$BODY" <<'PY'
import hashlib, hmac, json, os, sys
examples, sha, out = sys.argv[1:4]
push = next(e for e in json.load(open(examples)) if e["name"] == "push")
body = next(e for e in push["examples"] if e["ref"].startswith("refs/heads/") and e["commits"])
body["ref"] = "refs/heads/main"
body["after"] = sha
body["repository"]["full_name"] = "Codertocat/Hello-World"
body["repository"]["default_branch"] = "main"
body["repository"]["master_branch"] = "main"
for c in body["commits"] + [body["head_commit"]]:
    c["id"] = sha
    c["added"], c["removed"], c["modified"] = [], [], ["stacks/README.md"]
data = json.dumps(body, separators=(",", ":")).encode()
open(out, "wb").write(data)
secret = os.environ["BENCH_HOOK_SECRET"].encode()
print("sha256=" + hmac.new(secret, data, hashlib.sha256).hexdigest())
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
# What one fsync costs on the state folder's disk: the floor under a synchronous=FULL commit.
FSYNC_US=$(python3 - "$WORK/state/fsync-probe" <<'PY'
import os, statistics, sys, time
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o600)
samples = []
for i in range(200):
    os.write(fd, b"x" * 4096)
    t = time.perf_counter()
    os.fsync(fd)
    samples.append((time.perf_counter() - t) * 1e6)
os.close(fd)
os.unlink(sys.argv[1])
samples.sort()
print(f"{statistics.median(samples):.0f} {samples[int(len(samples)*0.99)]:.0f}")
PY
)
FSYNC_P50=${FSYNC_US% *}
FSYNC_P99=${FSYNC_US#* }

# --- start the servers -----------------------------------------------------------------------
log "starting bare202 on 127.0.0.1:$BARE_PORT"
"$BARE_BIN" "$BARE_PORT" >"$WORK/bare202.log" 2>&1 &
BARE_PID=$!

log "starting stackgate serve on 127.0.0.1:$SG_PORT"
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
for i in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -X POST \
        "http://127.0.0.1:$BARE_PORT/webhooks/github" -d '{}' || true)
    [ "$code" = 202 ] && break
    kill -0 "$BARE_PID" 2>/dev/null || die "bare202 exited during start-up"
    sleep 0.1
done
[ "$code" = 202 ] || die "bare202 does not answer 202"

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
run_wrk() { # name url rate conns
    local name=$1 url=$2 rate=$3 conns=$4
    log "$name: wrk -t$THREADS -c$conns -d$DURATION --latency (rate ${rate:-max}) $url"
    timeout "$WRK_TIMEOUT" wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency \
        -s "$LUA" "$url" -- "$BODY" "$SIGNATURE" "$RUN_ID-$name" "$rate" \
        "$WORK/out/$name.txt" "$THREADS" | tee "$WORK/out/$name.wrk" >&2
}

SG_URL="http://127.0.0.1:$SG_PORT/webhooks/github"
BARE_URL="http://127.0.0.1:$BARE_PORT/webhooks/github"

run_wrk bare_max_1 "$BARE_URL" 0 "$CONNS"
run_wrk sg_max "$SG_URL" 0 "$CONNS"
run_wrk bare_max_2 "$BARE_URL" 0 "$CONNS"

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

run_wrk sg_rate "$SG_URL" "$RATE" "$RATE_CONNS"
# Not graceful: whatever was answered 202 must already be on disk.
kill -KILL "$SG_PID"
wait "$SG_PID" 2>/dev/null || true
SG_PID=""
log "stackgate SIGKILLed right after the load"

run_wrk bare_rate "$BARE_URL" "$RATE" "$RATE_CONNS"
kill -TERM "$BARE_PID" 2>/dev/null || true
wait "$BARE_PID" 2>/dev/null || true
BARE_PID=""

# --- durability ------------------------------------------------------------------------------
ROWS=$(sqlite3 "$DB" 'SELECT COUNT(*) FROM deliveries')
read -r DUR_OK DUR_DETAIL < <(python3 - "$DB" "$WORK/out" "$RUN_ID" "$SANITY_JOB" <<'PY'
import sqlite3, sys
db, out, run, sanity_job = sys.argv[1:5]
con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
jobs = {r[0] for r in con.execute("SELECT id FROM jobs WHERE delivery IS NOT NULL")}
parts, ok = [], True
for name in ("sg_max", "sg_rate"):
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
REPORT=$(python3 - "$WORK/out" <<PY
import sys
out = sys.argv[1]
def load(name):
    d = {}
    for line in open(f"{out}/{name}.txt"):
        k, v = line.split()
        if k != "job":
            d[k] = float(v)
    return d
r = {n: load(n) for n in ("bare_max_1", "sg_max", "bare_max_2", "sg_rate", "bare_rate")}
bare = (r["bare_max_1"]["rps"] + r["bare_max_2"]["rps"]) / 2
ratio = r["sg_max"]["rps"] / bare
drift = abs(r["bare_max_1"]["rps"] - r["bare_max_2"]["rps"]) / bare
p99 = r["sg_rate"]["p99_ms"]
def codes(d):
    c = sorted((k[7:], int(v)) for k, v in d.items() if k.startswith("status_"))
    s = " ".join(f"{k}×{v}" for k, v in c)
    errs = sum(int(d[k]) for k in ("errors_connect", "errors_read", "errors_write", "errors_timeout"))
    return s + (f", {errs} socket errors" if errs else "")
def ok(b): return "met" if b else "**NOT met**"
rows = int("$ROWS")
acc_total = int(r["sg_max"]["accepted"] + r["sg_rate"]["accepted"]) + 1
L = []
L.append("# Webhook intake benchmark")
L.append("")
L.append("Generated by \`server/benches/webhook_load.sh\` (wrk + \`benches/webhook_load.lua\`): signed")
L.append("GitHub \`push\` deliveries (GitHub's example payload, $BODY_BYTES bytes, a unique")
L.append("\`X-GitHub-Delivery\` each) to \`POST /webhooks/github\` on 127.0.0.1. Every stackgate 202")
L.append("is an *accepted* delivery: signature checked, payload parsed, delivery + sync job + queued")
L.append("status written in one SQLite transaction (WAL, \`synchronous=FULL\`). The floor is")
L.append("\`examples/bare202.rs\`: the same axum/tokio stack answering 202 with nothing behind it.")
if "$LABEL":
    L.append("")
    L.append("**Variant:** $LABEL")
L.append("")
L.append("## Results")
L.append("")
L.append("| measure | stackgate | bare202 | goal | |")
L.append("|---|---:|---:|---|---|")
L.append(f"| max throughput, wrk -t$THREADS -c$CONNS -d$DURATION (req/s) | {r['sg_max']['rps']:,.0f} | {r['bare_max_1']['rps']:,.0f} / {r['bare_max_2']['rps']:,.0f} (before / after) | | |")
L.append(f"| stackgate / bare202 (mean of both bare runs) | **{ratio:.1%}** | | ≥ 50 % | {ok(ratio >= 0.5)} |")
L.append(f"| latency at max throughput p50 / p99 (ms) | {r['sg_max']['p50_ms']:.2f} / {r['sg_max']['p99_ms']:.2f} | {r['bare_max_1']['p50_ms']:.2f} / {r['bare_max_1']['p99_ms']:.2f} | | |")
L.append(f"| fixed rate: offered / achieved (req/s) | $RATE / {r['sg_rate']['rps']:,.0f} | $RATE / {r['bare_rate']['rps']:,.0f} | | |")
L.append(f"| fixed rate p50 (ms) | {r['sg_rate']['p50_ms']:.2f} | {r['bare_rate']['p50_ms']:.2f} | | |")
L.append(f"| fixed rate p99 (ms) | **{p99:.2f}** | {r['bare_rate']['p99_ms']:.2f} | ≤ 10 ms | {ok(p99 <= 10)} |")
L.append(f"| fixed rate p99.9 / max (ms) | {r['sg_rate']['p999_ms']:.2f} / {r['sg_rate']['max_ms']:.2f} | {r['bare_rate']['p999_ms']:.2f} / {r['bare_rate']['max_ms']:.2f} | | |")
L.append(f"| fixed rate: requests sent late (> 1 ms behind schedule) | {int(r['sg_rate']['late'])} of {int(r['sg_rate']['sent'])} | {int(r['bare_rate']['late'])} of {int(r['bare_rate']['sent'])} | | |")
L.append(f"| accepted (202) answers vs \`deliveries\` rows after SIGKILL | {acc_total:,} vs {rows:,} | | every 202 a row | {'met' if '$DUR_OK' == 'yes' else '**NOT met**'} |")
L.append("")
L.append("Status codes seen by wrk:")
L.append("")
for n in r:
    L.append(f"- {n}: {codes(r[n])}")
L.append("")
L.append("Durability: stackgate was killed with SIGKILL right after its last load (no graceful")
L.append("shutdown), then the SQLite file was opened. Per run, \`deliveries\` rows with that run's id")
L.append("prefix vs 202 \`accepted\` answers, and whether every job id returned in a 202 is in \`jobs\`")
L.append("(rows may exceed answers by the requests still in flight when wrk stopped):")
L.append("\`$DUR_DETAIL\`.")
L.append("")
L.append(f"Backlog after the burst: $BACKLOG_AFTER_BURST commit statuses not yet marked posted; drained: $DRAINED after $DRAIN_S s (waited before the fixed-rate run).")
L.append("")
L.append("## Machine")
L.append("")
L.append("- $DATE; $NPROC CPUs ($CPU), Linux $KERNEL; load average before the runs: $LOAD_BEFORE")
L.append("- wrk, stackgate and bare202 share these CPUs (and other work on the machine may too):")
L.append("  the max-throughput figures are bounded by the load generator as much as by the servers.")
L.append("- state on $FS; one fsync of a 4 KiB write there: p50 ${FSYNC_P50} µs, p99 ${FSYNC_P99} µs")
L.append("- wrk $WRK_VERSION; rustc $RUSTC, release profile; $WRK2_NOTE;")
L.append("  -c$RATE_CONNS connections for the fixed-rate runs. wrk times a request from when it is written,")
L.append("  so a request sent late (all connections busy) hides its wait: see the *late* row.")
print("\n".join(L))
PY
)

mkdir -p "$(dirname "$RESULTS")"
printf '%s\n' "$REPORT" >"$RESULTS"
printf '\n%s\n\n(written to %s)\n' "$REPORT" "$RESULTS"
[ "$DUR_OK" = yes ] || exit 1
