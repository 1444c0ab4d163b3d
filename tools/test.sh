#!/usr/bin/env bash
# The test run of `make test`. The tests that build and boot images run in two lanes side by side:
# a build VM keeps about one of the machine's 2 cores busy (TCG), so two lanes use both. Lane one
# is the session's release and every test of it; lane two is the release history (two tagged
# releases, upgrades, rebuilds), which builds its own and takes longer. Every other test (unit
# tests, previews of the real engine, the AWS and Azure emulators) runs after lane one, beside lane
# two. Each report follows in turn; a test file not listed in a lane runs beside lane two.
set -uo pipefail
cd "$(dirname "$0")/.."
LANE1=(
  tests/integration/test_release.py
  tests/integration/test_failures.py
  tests/integration/test_faults.py
)
LANE2=(
  tests/integration/test_releases.py
)
ignores=()
for file in "${LANE1[@]}" "${LANE2[@]}"; do ignores+=("--ignore=$file"); done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/imagefactory-tests-XXXXXX")
# Lane two runs in a session of its own (setsid): a background job of a script ignores SIGINT, so
# a Ctrl-C would stop lane one and leave lane two building. On an interrupt, or when this script is
# terminated, the whole of lane two (pytest, Pulumi, Packer, QEMU) is terminated and waited for.
setsid python -m pytest -p no:cacheprovider --durations=25 --basetemp="$tmp/lane2" "${LANE2[@]}" \
  </dev/null >"$tmp/lane2.log" 2>&1 &
lane2=$!
stop_lane2() {
  trap - INT TERM
  echo "test.sh: interrupted; stopping lane two (the release history)" >&2
  kill -TERM -- "-$lane2" 2>/dev/null
  # Packer cleans up after a SIGTERM; whatever is still there after a minute is killed.
  for _ in $(seq 60); do kill -0 -- "-$lane2" 2>/dev/null || break; sleep 1; done
  kill -KILL -- "-$lane2" 2>/dev/null
  wait "$lane2" 2>/dev/null
  rm -rf "$tmp"
  exit 130
}
trap stop_lane2 INT TERM
python -m pytest -p no:cacheprovider --durations=25 --basetemp="$tmp/lane1" "${LANE1[@]}"
lane1_rc=$?
# Lane one ends first: the other tests take its core while lane two goes on.
python -m pytest -p no:cacheprovider --basetemp="$tmp/beside" "${ignores[@]}" tests >"$tmp/beside.log" 2>&1
beside_rc=$?
echo "== the tests that ran beside the builds (exit code $beside_rc):"
cat "$tmp/beside.log"
wait "$lane2"
lane2_rc=$?
echo "== the release history, built beside the session's release (exit code $lane2_rc):"
cat "$tmp/lane2.log"
rm -rf "$tmp"
if [ "$lane1_rc" -ne 0 ] || [ "$lane2_rc" -ne 0 ] || [ "$beside_rc" -ne 0 ]; then exit 1; fi
