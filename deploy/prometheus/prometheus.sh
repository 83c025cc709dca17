#!/usr/bin/env bash
# Run the Prometheus server: from PATH, else from Debian's prometheus package as promtool.sh
# unpacks it once into .tools/ (nothing is installed system-wide and no service is started).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if command -v prometheus >/dev/null 2>&1; then
  exec prometheus "$@"
fi
UNPACKED="${HERE}/../../.tools/prometheus/usr/bin/prometheus"
[[ -x "${UNPACKED}" ]] || "${HERE}/promtool.sh" --version >/dev/null
[[ -x "${UNPACKED}" ]] || {
  echo "prometheus.sh: no prometheus on PATH (promtool is, so promtool.sh did not unpack it)" >&2
  exit 1
}
exec "${UNPACKED}" "$@"
