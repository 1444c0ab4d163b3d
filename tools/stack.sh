#!/usr/bin/env bash
# tools/stack.sh select <stack>: select a stack of the file backend, creating it on first use.
set -euo pipefail
[ "${1:-}" = "select" ] || { echo "usage: tools/stack.sh select <stack>" >&2; exit 2; }
stack=${2:?stack name}
case "${PULUMI_BACKEND_URL:-}" in
  file://*) mkdir -p "${PULUMI_BACKEND_URL#file://}" ;;
esac
if ! pulumi stack select "$stack" --non-interactive 2>/dev/null; then
  pulumi stack init "$stack" --secrets-provider passphrase --non-interactive >/dev/null
fi
