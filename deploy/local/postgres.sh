#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for tests and local runs (Debian's postgresql-15).
#
#   deploy/local/postgres.sh start  [PORT]   a fresh cluster (initdb), wait until it answers
#   deploy/local/postgres.sh stop   [PORT]   stop it and remove its folder
#   deploy/local/postgres.sh url    [PORT]   print its URL
#   deploy/local/postgres.sh pause  [PORT]   stop the server, keep its data (a database outage)
#   deploy/local/postgres.sh resume [PORT]   start a paused cluster again, with its data
#   deploy/local/postgres.sh status [PORT]   exit 0 when it answers
#
# PORT defaults to STACKGATE_PG_PORT, else 5499. Each port is its own cluster in
# .local/pg/<port>/ (data, socket, log), so several run at once. It listens on 127.0.0.1
# only, trusts loopback connections (throwaway, loopback-only: there is nothing to protect)
# and runs as a non-root user: as root, the system user `stackgate-pg` (created if missing).
# fsync is off unless STACKGATE_PG_FSYNC=on: test data need not survive a power cut, and
# the disk is shared with every other build; benchmarks turn it on.
# STACKGATE_PG_TLS=1 (at start): the server also serves TLS (`ssl = on`), with a throwaway
# CA and a server certificate for 127.0.0.1 made by openssl in <cluster>/tls/ (clients
# check it against tls/ca.crt, as `sslrootcert`); plain connections are still accepted.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CMD="${1:-}"
PORT="${2:-${STACKGATE_PG_PORT:-5499}}"
[[ "$PORT" =~ ^[0-9]+$ ]] || { echo "postgres: error: port must be a number: $PORT" >&2; exit 2; }
BIN="${STACKGATE_PG_BIN:-/usr/lib/postgresql/15/bin}"
BASE="$ROOT/.local/pg"
DIR="$BASE/$PORT"
DATA="$DIR/data"
LOG="$DIR/postgres.log"
PG_USER=stackgate-pg
URL="postgres://postgres@127.0.0.1:${PORT}/postgres"
WAIT="${STACKGATE_PG_WAIT:-30}"
TLS_DIR="$DIR/tls"
WANT_TLS="${STACKGATE_PG_TLS:-0}"

say() { echo "postgres: $*"; }
die() { echo "postgres: error: $*" >&2; exit 1; }

# Runs a PostgreSQL binary as the non-root owner of the cluster, without the lock's file
# descriptor (a server that inherited it would hold the lock for its whole life).
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u "$PG_USER" -- "$@" 9>&-
  else
    "$@" 9>&-
  fi
}

ensure_user() {
  [[ $(id -u) -eq 0 ]] || return 0
  id -u "$PG_USER" >/dev/null 2>&1 && return 0
  say "creating system user $PG_USER"
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_USER" \
    || id -u "$PG_USER" >/dev/null 2>&1 # another start created it meanwhile
}

answers() {
  as_owner "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -t 2 2>/dev/null
}

running() {
  [[ -f "$DATA/postmaster.pid" ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

server_start() {
  as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t "$WAIT" start >/dev/null \
    || { tail -n 20 "$LOG" >&2 || true; die "the server did not start (log $LOG)"; }
  answers || die "started, but nothing answers on 127.0.0.1:$PORT (log $LOG)"
}

server_stop() {
  running || return 0
  as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w -t "$WAIT" stop >/dev/null \
    || as_owner "$BIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null || true
}

# Whether the running cluster serves what this start asks for (TLS or not).
same_tls() {
  if [[ "$WANT_TLS" == 1 ]]; then [[ -f "$TLS_DIR/ca.crt" ]]; else [[ ! -e "$TLS_DIR" ]]; fi
}

# A CA of this cluster's own, and the server's key and certificate (CN and SAN 127.0.0.1)
# signed by it: throwaway, made for each fresh cluster.
make_tls() {
  command -v openssl >/dev/null || die "no openssl; run deploy/local/setup.sh"
  mkdir -p "$TLS_DIR"
  (
    cd "$TLS_DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=stackgate test CA $PORT" \
      -keyout ca.key -out ca.crt
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr
    printf 'subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile server.ext -out server.crt
  ) >"$DIR/tls.log" 2>&1 || { cat "$DIR/tls.log" >&2; die "openssl could not make the certificates"; }
  chmod 600 "$TLS_DIR/server.key" # the server refuses a key others may read
  [[ $(id -u) -eq 0 ]] && chown -R "$PG_USER" "$TLS_DIR"
  cat >>"$DATA/postgresql.conf" <<EOF
ssl = on
ssl_cert_file = '$TLS_DIR/server.crt'
ssl_key_file = '$TLS_DIR/server.key'
EOF
}

cmd_start() {
  if running && answers && same_tls; then
    say "already running at $URL"
    echo "$URL"
    return 0
  fi
  [[ -x "$BIN/initdb" ]] || die "no $BIN/initdb; run deploy/local/setup.sh (postgresql-15)"
  ensure_user
  server_stop
  rm -rf "$DIR"
  mkdir -p "$DIR"
  [[ $(id -u) -eq 0 ]] && chown "$PG_USER" "$DIR"
  as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
  cat >>"$DATA/postgresql.conf" <<EOF
# deploy/local/postgres.sh
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
max_connections = 300
fsync = ${STACKGATE_PG_FSYNC:-off}
log_min_messages = warning
EOF
  if [[ "$WANT_TLS" == 1 ]]; then make_tls; fi
  server_start
  say "running at $URL (data $DATA, log $LOG)"
  if [[ "$WANT_TLS" == 1 ]]; then say "serving TLS too; its CA is $TLS_DIR/ca.crt"; fi
  echo "$URL"
}

cmd_stop() {
  server_stop
  rm -rf "$DIR"
  say "stopped; removed $DIR"
}

cmd_pause() {
  [[ -d "$DATA" ]] || die "no cluster at $DIR; start one first"
  server_stop
  say "paused (data kept in $DATA)"
}

cmd_resume() {
  [[ -d "$DATA" ]] || die "no cluster at $DIR; start one first"
  if running && answers; then
    say "already running at $URL"
  else
    server_start
    say "resumed at $URL"
  fi
  echo "$URL"
}

cmd_status() {
  if running && answers; then
    say "running at $URL"
    echo "$URL"
    return 0
  fi
  say "not running on port $PORT"
  return 1
}

mkdir -p "$BASE"
# One command at a time per port: tests of several binaries may start it together.
exec 9>"$BASE/$PORT.lock"
flock 9

case "$CMD" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  url) echo "$URL" ;;
  pause) cmd_pause ;;
  resume) cmd_resume ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 start|stop|url|pause|resume|status [PORT]   (default STACKGATE_PG_PORT or 5499)" >&2
    exit 2
    ;;
esac
