#!/usr/bin/env bash
# Installs what stackgate's build, tests and local emulator need. Idempotent: each step
# checks first and does nothing when it is already done, so a second run takes about a second.
#
#   deploy/local/setup.sh
#
# Steps:
#   1. Debian packages, only the missing ones: pkg-config libssl-dev (git2), openssl and git
#      (service tests), wrk
#      (benchmarks), sqlite3, curl (deploy/local/emulator.sh), postgresql-15 (the PostgreSQL
#      backend's tests, deploy/local/postgres.sh; binaries in /usr/lib/postgresql/15/bin; the
#      `main` cluster its postinst may create is not used), chromium and fonts-liberation (the
#      browser test, tests/browser.rs: Debian's Chromium, driven by Playwright's driver).
#   2. rustup target wasm32-unknown-unknown (the policies), if not installed.
#   3. Python venv .local/venv with deploy/local/requirements.txt (moto, cfn-lint, pytest,
#      boto3, ...), reinstalled only when that file (or the Python) changed since the
#      last install (stamp: .local/stamps/venv.sha256).
#   4. npm packages of the GitHub stand-in, tests/doubles/github/, if it has a package.json,
#      only when node_modules is missing or package.json / package-lock.json changed (stamp:
#      .local/stamps/npm-tests-github.sha256, the name it had before the folder moved).
#   5. npm packages of the OpenID provider for the login tests, tests/doubles/oidc/
#      (oidc-provider), the same way (stamp: .local/stamps/npm-tests-oidc.sha256).
#   6. npm packages of the browser test, tests/browser/ (playwright-core, which downloads no
#      browser, and axe-core), the same way (stamp: .local/stamps/npm-tests-browser.sha256).
#
# Environment: PYTHON (default python3) picks the interpreter for a new venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL="$ROOT/.local"
STAMPS="$LOCAL/stamps"
VENV="$LOCAL/venv"
REQUIREMENTS="$ROOT/deploy/local/requirements.txt"
APT_PACKAGES=(pkg-config libssl-dev wrk sqlite3 curl openssl git postgresql-15 chromium fonts-liberation)
WASM_TARGET=wasm32-unknown-unknown
export DEBIAN_FRONTEND=noninteractive

say() { echo "setup: $*"; }
die() { echo "setup: error: $*" >&2; exit 1; }

mkdir -p "$STAMPS"
# One setup at a time (the lead, CI and helpers may start it together).
exec 9>"$LOCAL/setup.lock"
flock 9

as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    die "need root (or sudo) for: $*"
  fi
}

# sha256 of the given files' contents plus any extra words, for stamps.
fingerprint() {
  local extra="$1"
  shift
  { printf '%s\n' "$extra"; cat "$@"; } | sha256sum | cut -d' ' -f1
}

# --------------------------------------------------------------------- 1. apt
step_apt() {
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    say "apt: ${APT_PACKAGES[*]} already installed"
    return
  fi
  say "apt: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  say "apt: installed ${missing[*]}"
}

# ------------------------------------------------------------------- 2. rustup
step_rust_target() {
  command -v rustup >/dev/null 2>&1 \
    || die "rustup not found; install the Rust toolchain with rustup first"
  # From the repo root, so a rust-toolchain.toml there would pick the toolchain.
  if (cd "$ROOT" && rustup target list --installed) | grep -qx "$WASM_TARGET"; then
    say "rust: target $WASM_TARGET already installed"
    return
  fi
  say "rust: adding target $WASM_TARGET"
  (cd "$ROOT" && rustup target add "$WASM_TARGET")
}

# ---------------------------------------------------------------- 3. python venv
step_venv() {
  local python="${PYTHON:-python3}"
  if [[ -d "$VENV" ]] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    say "venv: $VENV is broken (its Python is gone); recreating it"
    rm -rf "$VENV"
  fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    command -v "$python" >/dev/null 2>&1 || die "$python not found (set PYTHON to a Python 3.11)"
    say "venv: creating $VENV with $("$python" --version 2>&1)"
    "$python" -m venv "$VENV"
    rm -f "$STAMPS/venv.sha256"
  fi
  local want have=""
  want="$(fingerprint "$("$VENV/bin/python" --version 2>&1)" "$REQUIREMENTS")"
  [[ -f "$STAMPS/venv.sha256" ]] && have="$(cat "$STAMPS/venv.sha256")"
  if [[ "$want" == "$have" ]]; then
    say "venv: requirements unchanged since the last install ($VENV)"
    return
  fi
  say "venv: pip install -r deploy/local/requirements.txt"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  echo "$want" >"$STAMPS/venv.sha256"
  say "venv: installed ($("$VENV/bin/python" -m pip --disable-pip-version-check list 2>/dev/null \
    | awk '$1 ~ /^(moto|boto3|cfn-lint|pytest)$/ {printf "%s %s  ", $1, $2}'))"
}

# ------------------------------------------------------- 4.-6. npm test doubles, browser
# npm_install DIR STAMP: `npm ci` in DIR (a folder under tests/) when its node_modules
# is missing or its package.json / package-lock.json changed since the stamp.
npm_install() {
  local rel="$1" stamp="$STAMPS/$2.sha256"
  local dir="$ROOT/$rel"
  if [[ ! -f "$dir/package.json" ]]; then
    say "npm: no $rel/package.json; nothing to install"
    return
  fi
  command -v npm >/dev/null 2>&1 || die "npm not found; install Node.js 20 with npm"
  local files=("$dir/package.json") want have=""
  [[ -f "$dir/package-lock.json" ]] && files+=("$dir/package-lock.json")
  want="$(fingerprint "node $(node --version 2>/dev/null)" "${files[@]}")"
  [[ -f "$stamp" ]] && have="$(cat "$stamp")"
  if [[ -d "$dir/node_modules" && "$want" == "$have" ]]; then
    say "npm: $rel/node_modules up to date"
    return
  fi
  if [[ -f "$dir/package-lock.json" ]]; then
    say "npm: npm ci in $rel"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  else
    say "npm: npm install in $rel (no package-lock.json)"
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
    # npm install may have written the lock file: stamp what is there now.
    [[ -f "$dir/package-lock.json" ]] && files+=("$dir/package-lock.json")
    want="$(fingerprint "node $(node --version 2>/dev/null)" "${files[@]}")"
  fi
  echo "$want" >"$stamp"
}

step_npm() {
  npm_install tests/doubles/github npm-tests-github
  npm_install tests/doubles/oidc npm-tests-oidc
  npm_install tests/browser npm-tests-browser
}

start=$SECONDS
step_apt
step_rust_target
step_venv
step_npm
say "done in $((SECONDS - start))s (venv: $VENV/bin/python)"
