#!/usr/bin/env bash
# Runs a PostgreSQL server for local development and tests, without Docker.
#
# Usage: deploy/local/postgres.sh start|stop|crash|status
#   start   idempotent. If a server already answers at the URL's host:port it is used as is
#           (only the database is created if missing; nothing is recorded, stop leaves it).
#           Otherwise a private cluster is created once (initdb, trust auth, superuser = the
#           URL's user) under the state folder, started with pg_ctl, waited for, and the
#           database is created. Debian's postgresql package is installed when the server
#           binaries are missing (root only); its own "main" cluster is never used.
#   stop    stops only the private cluster started by this script.
#   crash   stops it at once, as a power cut would to the processes (pg_ctl -m immediate): for
#           tests that check nothing acknowledged is lost.
#   status  prints running/stopped; exit 0 when a server answers, 3 when not.
#
# Environment:
#   CSAE_DATABASE_URL             default postgresql+asyncpg://postgres@127.0.0.1:5432/csae;
#                                 host, port, user, database and optional password are used
#   CSAE_LOCAL_DIR                state root (default <project>/.local); this script uses
#                                 $CSAE_LOCAL_DIR/postgres: data/ run/ postgres.log started-by-us
#   CSAE_POSTGRES_START_TIMEOUT   seconds to wait for readiness (default 60)
#   CSAE_POSTGRES_BIN             directory holding initdb/pg_ctl (default: newest
#                                 /usr/lib/postgresql/*/bin)
#   CSAE_POSTGRES_UNSAFE_FOR_TESTS  1: start the cluster with fsync, synchronous_commit and
#                                 full_page_writes off. For the test suite only (`make test`
#                                 sets it): a crash of the host may lose or corrupt the data.
#                                 Unset, the cluster keeps PostgreSQL's durable defaults.
#   CSAE_POSTGRES_OPTIONS         more server options for a cluster this script starts
#                                 (e.g. "-c wal_writer_delay=10s" in a test)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${SCRIPT_DIR}/../.." && pwd)"

LOCAL_DIR="${CSAE_LOCAL_DIR:-${ROOT}/.local}"
[[ "${LOCAL_DIR}" == /* ]] || LOCAL_DIR="${PWD}/${LOCAL_DIR}"
STATE="${LOCAL_DIR}/postgres"
DATA="${STATE}/data"
LOG="${STATE}/postgres.log"
MARKER="${STATE}/started-by-us"
SOCKET_DIR="${STATE}/run"

URL="${CSAE_DATABASE_URL:-postgresql+asyncpg://postgres@127.0.0.1:5432/csae}"
START_TIMEOUT="${CSAE_POSTGRES_START_TIMEOUT:-60}"
PG_OS_USER="postgres"   # the OS account the server runs as when this script runs as root

PG_HOST="" PG_PORT="" PG_USER="" PG_DB="" PG_PASSWORD=""
PG_BIN=""

say() { echo "postgres: $*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
  echo "usage: $0 start|stop|crash|status" >&2
  exit 2
}

# Decodes %XX escapes (e.g. in a password).
urldecode() {
  printf '%b' "${1//%/\\x}"
}

# Splits scheme://[user[:password]@]host[:port]/database[?query] into PG_* variables.
parse_url() {
  local rest hostport cred
  rest="${URL#*://}"
  rest="${rest%%\?*}"
  hostport="${rest%%/*}"
  PG_DB="csae"
  if [[ "${rest}" == */* && -n "${rest#*/}" ]]; then
    PG_DB="$(urldecode "${rest#*/}")"
  fi
  PG_USER="postgres"
  if [[ "${hostport}" == *@* ]]; then
    cred="${hostport%@*}"
    hostport="${hostport##*@}"
    PG_USER="$(urldecode "${cred%%:*}")"
    if [[ "${cred}" == *:* ]]; then
      PG_PASSWORD="$(urldecode "${cred#*:}")"
    fi
  fi
  PG_HOST="${hostport%%:*}"
  PG_PORT="5432"
  if [[ "${hostport}" == *:* ]]; then
    PG_PORT="${hostport##*:}"
  fi
  [[ -n "${PG_HOST}" ]] || PG_HOST="127.0.0.1"
  [[ "${PG_PORT}" =~ ^[0-9]+$ ]] || die "cannot parse a port from CSAE_DATABASE_URL"
  if [[ -n "${PG_PASSWORD}" ]]; then
    export PGPASSWORD="${PG_PASSWORD}"
  fi
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

is_local_host() {
  [[ "${PG_HOST}" == "localhost" || "${PG_HOST}" == 127.* || "${PG_HOST}" == "::1" ]]
}

# Runs a command as the server's OS user (postgres refuses to run as root).
as_pg() {
  if is_root; then
    runuser -u "${PG_OS_USER}" -- "$@"
  else
    "$@"
  fi
}

# Finds a client tool: from the server bin dir if known, else from PATH.
client() {
  local name="$1"
  if [[ -n "${PG_BIN}" && -x "${PG_BIN}/${name}" ]]; then
    echo "${PG_BIN}/${name}"
  elif command -v "${name}" >/dev/null; then
    command -v "${name}"
  else
    return 1
  fi
}

# Newest /usr/lib/postgresql/<version>/bin with initdb, or $CSAE_POSTGRES_BIN.
find_server_bin() {
  local -a found
  if [[ -n "${CSAE_POSTGRES_BIN:-}" ]]; then
    [[ -x "${CSAE_POSTGRES_BIN}/initdb" ]] || return 1
    PG_BIN="${CSAE_POSTGRES_BIN}"
    return 0
  fi
  found=(/usr/lib/postgresql/*/bin/initdb)
  [[ -x "${found[0]}" ]] || return 1
  PG_BIN="$(dirname "$(printf '%s\n' "${found[@]}" | sort -V | tail -n 1)")"
}

# True when a server accepts connections at host:port.
server_answers() {
  local isready
  if isready="$(client pg_isready)"; then
    "${isready}" -q -h "${PG_HOST}" -p "${PG_PORT}" -U "${PG_USER}" -d "${PG_DB}" -t 2 \
      >/dev/null 2>&1
  else
    # shellcheck disable=SC2016  # $1/$2 expand in the inner bash, on purpose
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "${PG_HOST}" "${PG_PORT}" 2>/dev/null
  fi
}

apt_install() {
  is_root || die "PostgreSQL is not installed and this script is not root; install it with: sudo apt-get install -y $*"
  command -v apt-get >/dev/null || die "PostgreSQL is not installed and apt-get is missing; install PostgreSQL server binaries (or set CSAE_POSTGRES_BIN)"
  say "installing $* with apt-get"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# The Debian package creates (and may start) its own "main" cluster on 5432; we never rely
# on it: stop it and keep it from starting at boot. Only called right after we installed it.
park_debian_main_cluster() {
  local version conf
  command -v pg_lsclusters >/dev/null || return 0
  version="$(basename "$(dirname "${PG_BIN}")")"
  conf="/etc/postgresql/${version}/main/start.conf"
  [[ -f "${conf}" ]] || return 0
  say "stopping Debian's own ${version}/main cluster and setting it to manual start"
  pg_ctlcluster "${version}" main stop >/dev/null 2>&1 || true
  echo "manual" >"${conf}"
}

ensure_server_bin() {
  find_server_bin && return 0
  apt_install postgresql
  find_server_bin || die "PostgreSQL server binaries still not found after installing"
  park_debian_main_cluster
}

# Makes the state folder usable by the postgres OS account when we run as root: it must own
# the folder and be able to traverse every parent (adds o+x where missing, e.g. /root).
prepare_state_dir() {
  local dir part
  mkdir -p "${STATE}" "${SOCKET_DIR}"
  is_root || return 0
  id "${PG_OS_USER}" >/dev/null 2>&1 || die "OS user '${PG_OS_USER}' does not exist (it comes with Debian's postgresql package)"
  # Walk from / downwards, so each check only depends on parents already fixed.
  dir=""
  while IFS= read -r part; do
    [[ -n "${part}" ]] || continue
    dir+="/${part}"
    if ! runuser -u "${PG_OS_USER}" -- test -x "${dir}"; then
      say "allowing ${PG_OS_USER} to traverse ${dir} (chmod o+x)"
      chmod o+x "${dir}"
    fi
  done < <(tr '/' '\n' <<<"${STATE}")
  chown -R "${PG_OS_USER}:" "${STATE}"
}

pick_locale() {
  if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then
    echo "C.UTF-8"
  else
    echo "C"
  fi
}

init_cluster() {
  [[ -f "${DATA}/PG_VERSION" ]] && return 0
  rm -rf "${DATA}"
  say "creating cluster in ${DATA} (initdb, once)"
  (cd "${STATE}" && as_pg "${PG_BIN}/initdb" -D "${DATA}" --auth=trust -U "${PG_USER}" \
    --encoding=UTF8 --locale="$(pick_locale)" >"${STATE}/initdb.log" 2>&1) \
    || { tail -n 30 "${STATE}/initdb.log" >&2; die "initdb failed (log ${STATE}/initdb.log)"; }
}

# Socket paths are limited to ~107 bytes; fall back to /tmp for deep checkouts.
socket_dir() {
  if ((${#SOCKET_DIR} > 80)); then
    echo "/tmp"
  else
    echo "${SOCKET_DIR}"
  fi
}

# True when our own cluster (our data dir) has a live postmaster.
our_cluster_running() {
  [[ -n "${PG_BIN}" && -f "${DATA}/postmaster.pid" ]] || return 1
  (cd / && as_pg "${PG_BIN}/pg_ctl" -D "${DATA}" status >/dev/null 2>&1)
}

# Port our running cluster listens on (4th line of postmaster.pid).
our_cluster_port() {
  sed -n 4p "${DATA}/postmaster.pid"
}

launch_cluster() {
  local opts out
  opts="-p ${PG_PORT} -k '$(socket_dir)' -c listen_addresses=${PG_HOST}"
  if [[ "${CSAE_POSTGRES_UNSAFE_FOR_TESTS:-}" == "1" ]]; then
    # The test suite's throwaway data only: speed over crash safety. The worker still asks
    # for synchronous_commit=on in its own transactions, which the tests rely on.
    say "UNSAFE FOR TESTS: fsync, synchronous_commit and full_page_writes off"
    opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
  if [[ -n "${CSAE_POSTGRES_OPTIONS:-}" ]]; then
    opts+=" ${CSAE_POSTGRES_OPTIONS}"
  fi
  if [[ -f "${LOG}" ]]; then
    mv -f "${LOG}" "${LOG}.prev"
  fi
  say "starting cluster at ${PG_HOST}:${PG_PORT}; log ${LOG}"
  # 9>&-: the postmaster must not inherit (and hold) our lock.
  if ! out="$(cd "${STATE}" && as_pg "${PG_BIN}/pg_ctl" -D "${DATA}" -l "${LOG}" -o "${opts}" \
        -w -t "${START_TIMEOUT}" start 2>&1 9>&-)"; then
    fail_start "server exited or was not ready within ${START_TIMEOUT}s ($(grep -m 1 'pg_ctl:' <<<"${out}" || echo "${out}"))"
  fi
  echo "port=${PG_PORT} started=$(date -Is)" >"${MARKER}"
}

fail_start() {
  say "error: $1"
  if grep -qE ' (FATAL|PANIC): ' "${LOG}" 2>/dev/null; then
    say "first errors in the log:"
    grep -m 3 -E ' (FATAL|PANIC): ' "${LOG}" >&2
  fi
  say "log file: ${LOG} (last 30 lines below)"
  tail -n 30 "${LOG}" >&2 2>/dev/null || true
  (cd / && as_pg "${PG_BIN}/pg_ctl" -D "${DATA}" stop -m immediate >/dev/null 2>&1) || true
  rm -f "${MARKER}"
  exit 1
}

# pg_ctl -w waits for the postmaster; also wait until TCP connections are accepted.
wait_ready() {
  local deadline=$((SECONDS + START_TIMEOUT))
  until server_answers; do
    ((SECONDS < deadline)) || fail_start "server not accepting connections at ${PG_HOST}:${PG_PORT} after ${START_TIMEOUT}s"
    sleep 0.5
  done
}

# Creates the database unless it exists (connecting to it is the existence check, so a user
# without CREATEDB can still use an existing database).
ensure_database() {
  local psql createdb out
  psql="$(client psql)" || die "psql not found (apt-get install -y postgresql-client)"
  createdb="$(client createdb)" || die "createdb not found (apt-get install -y postgresql-client)"
  if "${psql}" -h "${PG_HOST}" -p "${PG_PORT}" -U "${PG_USER}" -d "${PG_DB}" -qtAc 'select 1' \
      >/dev/null 2>&1; then
    return 0
  fi
  say "creating database ${PG_DB}"
  if ! out="$("${createdb}" -h "${PG_HOST}" -p "${PG_PORT}" -U "${PG_USER}" "${PG_DB}" 2>&1)"; then
    [[ "${out}" == *"already exists"* ]] || die "createdb ${PG_DB} failed: ${out}"
  fi
}

# Serialises concurrent start/stop calls (e.g. parallel make targets).
take_lock() {
  mkdir -p "${STATE}"
  command -v flock >/dev/null || return 0
  exec 9>"${STATE}/.lock"
  flock -w 300 9 || die "another postgres.sh is still running (lock ${STATE}/.lock)"
}

cmd_start() {
  local t0="${SECONDS}" port
  take_lock
  find_server_bin || true
  if our_cluster_running; then
    port="$(our_cluster_port)"
    [[ "${port}" == "${PG_PORT}" ]] \
      || die "our cluster already runs on port ${port}, but CSAE_DATABASE_URL wants ${PG_PORT}; run '$0 stop' first"
    say "already running (our cluster, ${PG_HOST}:${PG_PORT})"
    ensure_database
    return 0
  fi
  if server_answers; then
    say "a server already answers at ${PG_HOST}:${PG_PORT}; using that existing server (not ours, stop will not touch it)"
    if ! client psql >/dev/null; then
      apt_install postgresql-client
    fi
    ensure_database
    return 0
  fi
  is_local_host || die "no server answers at ${PG_HOST}:${PG_PORT} and that is not a local address; cannot start one there"
  ensure_server_bin
  prepare_state_dir
  init_cluster
  launch_cluster
  wait_ready
  ensure_database
  say "ready at ${PG_HOST}:${PG_PORT}, database ${PG_DB} ($((SECONDS - t0))s)"
}

cmd_stop() {
  take_lock
  find_server_bin || true
  if ! our_cluster_running; then
    rm -f "${MARKER}"
    say "not started by us"
    return 0
  fi
  say "stopping our cluster (${DATA})"
  (cd / && as_pg "${PG_BIN}/pg_ctl" -D "${DATA}" stop -m fast -w -t 60 >/dev/null) \
    || die "pg_ctl stop failed; see ${LOG}"
  rm -f "${MARKER}"
  say "stopped"
}

cmd_crash() {
  take_lock
  find_server_bin || true
  our_cluster_running || die "not started by us: refusing to crash a server we did not start"
  say "crashing our cluster (pg_ctl stop -m immediate)"
  (cd / && as_pg "${PG_BIN}/pg_ctl" -D "${DATA}" stop -m immediate -w -t 60 >/dev/null) \
    || die "pg_ctl stop -m immediate failed; see ${LOG}"
  rm -f "${MARKER}"
}

cmd_status() {
  find_server_bin || true
  if our_cluster_running; then
    echo "postgres: running (our cluster, port $(our_cluster_port), ${DATA})"
    return 0
  fi
  if server_answers; then
    echo "postgres: running (existing server at ${PG_HOST}:${PG_PORT}, not started by us)"
    return 0
  fi
  echo "postgres: stopped"
  return 3
}

main() {
  [[ $# -eq 1 ]] || usage
  parse_url
  case "$1" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    crash) cmd_crash ;;
    status) cmd_status ;;
    *) usage ;;
  esac
}

main "$@"
