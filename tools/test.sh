#!/usr/bin/env bash
# The test run of `make test`. The tests that build and boot images run one after the other (the
# machine has 2 cores and each build takes both); every other test (unit tests, previews of the
# real engine, the AWS and Azure emulators) runs beside them, in its own pytest, and its report
# follows. A test file not listed in BUILDS runs beside the builds.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILDS=(
  tests/integration/test_failures.py
  tests/integration/test_faults.py
  tests/integration/test_release.py
  tests/integration/test_releases.py
)
ignores=()
for file in "${BUILDS[@]}"; do ignores+=("--ignore=$file"); done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/imagefactory-tests-XXXXXX")
python -m pytest -p no:cacheprovider --basetemp="$tmp/beside" "${ignores[@]}" tests >"$tmp/beside.log" 2>&1 &
beside=$!
python -m pytest -p no:cacheprovider --durations=25 --basetemp="$tmp/builds" "${BUILDS[@]}"
builds_rc=$?
wait "$beside"
beside_rc=$?
echo "== the tests that ran beside the builds (exit code $beside_rc):"
cat "$tmp/beside.log"
rm -rf "$tmp"
if [ "$builds_rc" -ne 0 ] || [ "$beside_rc" -ne 0 ]; then exit 1; fi
