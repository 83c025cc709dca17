#!/usr/bin/env bash
# Runs a command with local Kafka and PostgreSQL up, then stops whichever of them this script
# started (a broker or database that was already running is left as it was). Exits with the
# command's status. Used by `make test`.
#
# Usage: deploy/local/with-infra.sh COMMAND [ARGS...]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
started=()

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local status=$?
  for service in "${started[@]}"; do
    "${HERE}/${service}.sh" stop || true
  done
  exit "${status}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for service in kafka postgres; do
  if ! "${HERE}/${service}.sh" status >/dev/null 2>&1; then
    started+=("${service}")
  fi
  "${HERE}/${service}.sh" start
done

"$@"
