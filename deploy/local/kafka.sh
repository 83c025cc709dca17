#!/usr/bin/env bash
# Runs a single-node Apache Kafka broker (KRaft, broker+controller in one JVM) for local
# development and tests, without Docker: the broker jars pinned in deploy/local/pom.xml are
# copied once with Maven into a git-ignored cache folder and started with plain `java`.
#
# Usage: deploy/local/kafka.sh start|stop|status
#   start   idempotent; reuses a broker that already answers at the bootstrap address
#           (and then never stops it); otherwise fetches jars, formats storage on first
#           use, starts the broker in the background and waits until it is ready.
#   stop    stops only a broker this script started (pid file); never anything else.
#   status  prints running/stopped; exit 0 when a broker answers, 3 when not.
#
# Environment:
#   CSAE_KAFKA_BOOTSTRAP        host:port of the broker (default 127.0.0.1:9092);
#                               the KRaft controller listens on port+1.
#   CSAE_LOCAL_DIR              state root (default <project>/.local); this script uses
#                               $CSAE_LOCAL_DIR/kafka: libs/ data/ server.properties
#                               kafka.pid kafka.log
#   CSAE_KAFKA_START_TIMEOUT    seconds to wait for readiness (default 90)
#   CSAE_KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default 30)
#   CSAE_MAVEN_OPTS             extra arguments for mvn when fetching the jars
#                               (e.g. "-Dmaven.repo.local=/tmp/m2 -o")
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${SCRIPT_DIR}/../.." && pwd)"
POM="${SCRIPT_DIR}/pom.xml"
LOG4J_CONFIG="${SCRIPT_DIR}/log4j2.properties"

LOCAL_DIR="${CSAE_LOCAL_DIR:-${ROOT}/.local}"
[[ "${LOCAL_DIR}" == /* ]] || LOCAL_DIR="${PWD}/${LOCAL_DIR}"
STATE="${LOCAL_DIR}/kafka"
LIBS="${STATE}/libs"
LIBS_MARKER="${LIBS}/.complete"
DATA="${STATE}/data"
PROPS="${STATE}/server.properties"
PID_FILE="${STATE}/kafka.pid"
LOG="${STATE}/kafka.log"
FORMATTED_FOR="${STATE}/formatted-for"

BOOTSTRAP="${CSAE_KAFKA_BOOTSTRAP:-127.0.0.1:9092}"
BOOTSTRAP="${BOOTSTRAP%%,*}"       # first entry of a list
BOOTSTRAP="${BOOTSTRAP#*://}"      # tolerate PLAINTEXT://host:port
HOST="${BOOTSTRAP%:*}"
PORT="${BOOTSTRAP##*:}"
CONTROLLER_PORT=$((PORT + 1))

START_TIMEOUT="${CSAE_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${CSAE_KAFKA_STOP_TIMEOUT:-30}"
# Logged once by KafkaRaftServer when broker and controller are both up:
#   [KafkaRaftServer nodeId=1] Kafka Server started (kafka.server.KafkaRaftServer)
READY_LINE="Kafka Server started"

say() { echo "kafka: $*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
  echo "usage: $0 start|stop|status" >&2
  exit 2
}

# Installs a missing tool from Debian's packages when root, as postgres.sh does; else says how.
install_package() {
  local tool="$1" package="$2"
  if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null; then
    die "${tool} not found; install it with: sudo apt-get install -y ${package}"
  fi
  say "${tool} not found: installing ${package} with apt-get"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${package}" >&2
  command -v "${tool}" >/dev/null || die "${tool} still not found after installing ${package}"
}

# True when something accepts TCP connections at $1:$2.
port_open() {
  # shellcheck disable=SC2016  # $1/$2 expand in the inner bash, on purpose
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# True when process $1 exists and is not a zombie (an exited child that init has not
# reaped yet still answers kill -0).
alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state="$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ "${state}" != "Z" ]]
}

# Prints the pid from our pid file if that process is alive and is a Kafka broker.
our_pid() {
  local pid
  [[ -f "${PID_FILE}" ]] || return 1
  pid="$(cat "${PID_FILE}")"
  [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
  alive "${pid}" || return 1
  # Guard against pid reuse: the process must be our kafka.Kafka.
  grep -qa 'kafka.Kafka' "/proc/${pid}/cmdline" 2>/dev/null || return 1
  echo "${pid}"
}

# Serialises concurrent start/stop calls (e.g. parallel make targets).
take_lock() {
  mkdir -p "${STATE}"
  command -v flock >/dev/null || return 0
  exec 9>"${STATE}/.lock"
  flock -w 300 9 || die "another kafka.sh is still running (lock ${STATE}/.lock)"
}

need_tools() {
  command -v java >/dev/null || install_package java openjdk-17-jre-headless
  command -v timeout >/dev/null || die "timeout (coreutils) not found"
}

pom_sha() {
  sha256sum "${POM}" | cut -d' ' -f1
}

# Copies the broker jars into libs/ unless the marker says they match the current pom.
fetch_jars() {
  local sha tmp
  sha="$(pom_sha)"
  if [[ -f "${LIBS_MARKER}" && "$(cat "${LIBS_MARKER}")" == "${sha}" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || install_package mvn maven
  local -a extra=()
  read -r -a extra <<<"${CSAE_MAVEN_OPTS:-}"
  tmp="${LIBS}.tmp"
  rm -rf "${tmp}"
  say "fetching Kafka jars with Maven into ${LIBS} (once)"
  if ! mvn -B -ntp -f "${POM}" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="${tmp}" "${extra[@]}" >"${STATE}/mvn.log" 2>&1; then
    rm -rf "${tmp}"
    tail -n 30 "${STATE}/mvn.log" >&2
    die "mvn dependency:copy-dependencies failed (full output in ${STATE}/mvn.log)"
  fi
  rm -rf "${LIBS}"
  mv "${tmp}" "${LIBS}"
  echo "${sha}" >"${LIBS_MARKER}"
}

write_properties() {
  cat >"${PROPS}" <<EOF
# Generated by deploy/local/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://${HOST}:${PORT},CONTROLLER://${HOST}:${CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://${HOST}:${PORT}
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=${HOST}:${CONTROLLER_PORT}
log.dirs=${DATA}
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
# The cleaner allocates this on the heap up front (default 128 MiB). Kafka requires more
# than 1 MiB per cleaner thread (exactly 1048576 is rejected), so 2 MiB for one thread.
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=2097152
num.network.threads=2
num.io.threads=4
EOF
}

# Formats the KRaft storage on first start, or again if the listener address changed
# (the standalone voter record written by format carries the controller endpoint).
format_storage() {
  local cluster_id
  if [[ -f "${DATA}/meta.properties" && -f "${FORMATTED_FOR}" \
        && "$(cat "${FORMATTED_FOR}")" == "${BOOTSTRAP}" ]]; then
    return 0
  fi
  if [[ -n "$(ls -A "${DATA}" 2>/dev/null)" ]]; then
    say "listener address changed or storage incomplete; discarding local data in ${DATA}"
  fi
  rm -rf "${DATA}"
  mkdir -p "${DATA}"
  cluster_id="$(run_java kafka.tools.StorageTool random-uuid | tail -n 1)"
  [[ "${cluster_id}" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "StorageTool random-uuid printed '${cluster_id}'"
  say "formatting storage in ${DATA} (cluster id ${cluster_id})"
  run_java kafka.tools.StorageTool format --standalone \
    -t "${cluster_id}" -c "${PROPS}" >&2
  echo "${BOOTSTRAP}" >"${FORMATTED_FOR}"
}

# Runs a Kafka command-line tool (log4j2's built-in default: errors only).
run_java() {
  java -Xmx256m -cp "${LIBS}/*" "$@"
}

launch_broker() {
  if [[ -f "${LOG}" ]]; then
    mv -f "${LOG}" "${LOG}.prev"
  fi
  say "starting broker at ${HOST}:${PORT} (controller ${HOST}:${CONTROLLER_PORT}); log ${LOG}"
  # setsid: own session, so the broker outlives this script and its terminal; the
  # background child is not a group leader, so setsid execs in place and $! is java.
  # 9>&-: the broker must not inherit (and hold) our lock.
  setsid nohup java -Xms256m -Xmx512m \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="${LOG4J_CONFIG}" \
    -cp "${LIBS}/*" kafka.Kafka "${PROPS}" \
    >"${LOG}" 2>&1 </dev/null 9>&- &
  echo "$!" >"${PID_FILE}"
}

# Kills the broker named in our pid file: SIGTERM, bounded wait, then SIGKILL.
kill_broker() {
  local pid="$1" waited=0
  kill -TERM "${pid}" 2>/dev/null || true
  while alive "${pid}"; do
    if ((waited >= STOP_TIMEOUT * 2)); then
      say "broker (pid ${pid}) still alive after ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "${pid}" 2>/dev/null || true
      break
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  rm -f "${PID_FILE}"
}

fail_start() {
  local reason="$1" pid
  say "error: ${reason}"
  if grep -qE '^\[[^]]*\] (ERROR|FATAL) ' "${LOG}" 2>/dev/null; then
    say "first errors in the log:"
    grep -m 3 -E '^\[[^]]*\] (ERROR|FATAL) ' "${LOG}" | cut -c1-400 >&2
  fi
  say "log file: ${LOG} (last 30 lines below)"
  tail -n 30 "${LOG}" >&2 2>/dev/null || true
  if pid="$(our_pid)"; then
    kill_broker "${pid}"
  fi
  rm -f "${PID_FILE}"
  exit 1
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! alive "${pid}"; then
      fail_start "broker process ${pid} exited during startup"
    fi
    if grep -q "${READY_LINE}" "${LOG}" 2>/dev/null && port_open "${HOST}" "${PORT}"; then
      return 0
    fi
    sleep 0.5
  done
  fail_start "broker not ready after ${START_TIMEOUT}s"
}

cmd_start() {
  local pid t0="${SECONDS}"
  need_tools
  take_lock
  if pid="$(our_pid)"; then
    if port_open "${HOST}" "${PORT}"; then
      say "already running (pid ${pid}, ${HOST}:${PORT})"
      return 0
    fi
    say "our broker (pid ${pid}) is starting; waiting"
    wait_ready "${pid}"
    say "ready at ${HOST}:${PORT}"
    return 0
  fi
  rm -f "${PID_FILE}"
  if port_open "${HOST}" "${PORT}"; then
    say "something already answers at ${HOST}:${PORT}; using that existing broker (not ours, stop will not touch it)"
    return 0
  fi
  fetch_jars
  write_properties
  format_storage
  launch_broker
  wait_ready "$(cat "${PID_FILE}")"
  say "ready at ${HOST}:${PORT} (pid $(cat "${PID_FILE}"), $((SECONDS - t0))s)"
}

cmd_stop() {
  local pid
  take_lock
  if ! pid="$(our_pid)"; then
    rm -f "${PID_FILE}"
    say "not started by us"
    return 0
  fi
  say "stopping broker (pid ${pid})"
  kill_broker "${pid}"
  say "stopped"
}

cmd_status() {
  local pid
  if pid="$(our_pid)"; then
    if port_open "${HOST}" "${PORT}"; then
      echo "kafka: running (pid ${pid}, ${HOST}:${PORT})"
    else
      echo "kafka: running (pid ${pid}, starting; ${HOST}:${PORT} not answering yet)"
    fi
    return 0
  fi
  if port_open "${HOST}" "${PORT}"; then
    echo "kafka: running (existing broker at ${HOST}:${PORT}, not started by us)"
    return 0
  fi
  echo "kafka: stopped"
  return 3
}

main() {
  [[ $# -eq 1 ]] || usage
  [[ "${PORT}" =~ ^[0-9]+$ ]] || die "cannot parse a port from CSAE_KAFKA_BOOTSTRAP=${BOOTSTRAP}"
  case "$1" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) usage ;;
  esac
}

main "$@"
