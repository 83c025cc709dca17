#!/usr/bin/env bash
# `make run`: starts local Kafka and PostgreSQL, migrates, starts the router, the referral
# worker and the API, publishes the sample flags, prints the cases they made, and keeps running
# until Ctrl-C; then stops everything it started. Service logs go to .local/logs/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/../.." && pwd)"
LOCAL="${CSAE_LOCAL_DIR:-${ROOT}/.local}"
CSAE="${ROOT}/.venv/bin/csae"
LOGS="${LOCAL}/logs"
export CSAE_API_KEYS_FILE="${CSAE_API_KEYS_FILE:-${LOCAL}/api-keys}"
API_HOST="${CSAE_API_HOST:-127.0.0.1}"
API_PORT="${CSAE_API_PORT:-8000}"

started=()
pids=()
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "${pid}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "${pid}" 2>/dev/null || true; done
  for service in "${started[@]}"; do "${HERE}/${service}.sh" stop || true; done
  echo "stopped."
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "${LOGS}"
for service in kafka postgres; do
  "${HERE}/${service}.sh" status >/dev/null 2>&1 || started+=("${service}")
  "${HERE}/${service}.sh" start
done
"${CSAE}" db upgrade
"${CSAE}" topics create

key="$("${CSAE}" keys create --role investigator)"
"${CSAE}" router >"${LOGS}/router.log" 2>&1 & pids+=($!)
"${CSAE}" referral worker >"${LOGS}/worker.log" 2>&1 & pids+=($!)
"${CSAE}" referral api >"${LOGS}/api.log" 2>&1 & pids+=($!)

for _ in $(seq 1 100); do
  curl -fsS "http://${API_HOST}:${API_PORT}/readyz" >/dev/null 2>&1 && break
  for pid in "${pids[@]}"; do
    kill -0 "${pid}" 2>/dev/null || { echo "a service exited early; see ${LOGS}/" >&2; exit 1; }
  done
  sleep 0.2
done
curl -fsS "http://${API_HOST}:${API_PORT}/readyz" >/dev/null || {
  echo "the API did not become ready; see ${LOGS}/api.log" >&2; exit 1; }

echo
"${CSAE}" demo "${ROOT}/schemas/examples/sample-flags.jsonl"
cat <<MSG

Console:  http://${API_HOST}:${API_PORT}/console   (the safeguarding console: sign in with the key below)
API:      http://${API_HOST}:${API_PORT}/docs   (OpenAPI)
Key:      ${key}   (an investigator's)
Try:      curl -H 'Authorization: Bearer ${key}' http://${API_HOST}:${API_PORT}/v1/cases
Metrics:  http://${API_HOST}:${API_PORT}/metrics, router :9101/metrics, worker :9102/metrics
Logs:     ${LOGS}/
Ctrl-C stops the pipeline and the servers this run started.
MSG
wait -n "${pids[@]}" || true
echo "a service stopped; see ${LOGS}/" >&2
exit 1
