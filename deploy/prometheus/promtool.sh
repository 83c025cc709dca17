#!/usr/bin/env bash
# Run promtool: from PATH, else from Debian's prometheus package unpacked once into .tools/
# (nothing is installed system-wide and no service is started).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
UNPACKED="${ROOT}/.tools/prometheus"
if command -v promtool >/dev/null 2>&1; then
  exec promtool "$@"
fi
if [[ ! -x "${UNPACKED}/usr/bin/promtool" ]]; then
  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' EXIT
  (cd "${work}" && apt-get download prometheus >/dev/null) \
    || { echo "promtool.sh: cannot download Debian's prometheus package (try apt-get update)" >&2; exit 1; }
  mkdir -p "${UNPACKED}"
  dpkg-deb -x "${work}"/prometheus_*.deb "${UNPACKED}"
fi
exec "${UNPACKED}/usr/bin/promtool" "$@"
