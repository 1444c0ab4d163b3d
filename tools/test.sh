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
lane2=
# A Ctrl-C reaches lane one (the foreground) and this script; lane two, a background job, ignores
# SIGINT, so it is stopped here: a SIGTERM to its process group (pytest unwinds it like Ctrl-C, so
# the tests' clean-ups run; Packer stops its VM), then whatever is still running under the test
# run's folder (the VMs the tests launched in sessions of their own). A SIGTERM to the job's
# process group does the same; a SIGTERM to this script alone takes effect only when the command
# in the foreground (lane one's, or the other tests' pytest run) has ended: bash runs a trap
# between commands. A second Ctrl-C while stopping is ignored, so the clean-up always finishes.
stop() {
  local code=$1
  trap '' INT TERM
  echo "test.sh: stopped; stopping lane two (the release history) and every VM of the test run" >&2
  if [ -n "$lane2" ]; then
    kill -TERM -- "-$lane2" 2>/dev/null
    # Packer gives its VM up to 90 s to stop; whatever is still there after 100 s is killed.
    for _ in $(seq 100); do kill -0 -- "-$lane2" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$lane2" 2>/dev/null
    wait "$lane2" 2>/dev/null
  fi
  pkill -TERM -f -- "$tmp/" 2>/dev/null && sleep 5
  pkill -KILL -f -- "$tmp/" 2>/dev/null
  for log in "$tmp/beside.log" "$tmp/lane2.log"; do
    if [ -s "$log" ]; then echo "== the last lines of $(basename "$log"):" >&2; tail -n 20 "$log" >&2; fi
  done
  rm -rf "$tmp"
  exit "$code"
}
trap 'stop 130' INT
trap 'stop 143' TERM
# Lane two runs in a session of its own, so that one signal reaches all of it (-w: setsid waits
# and passes on the exit code should it ever need to fork).
setsid -w python -m pytest -p no:cacheprovider --durations=25 --basetemp="$tmp/lane2" "${LANE2[@]}" \
  </dev/null >"$tmp/lane2.log" 2>&1 &
lane2=$!
python -m pytest -p no:cacheprovider --durations=25 --basetemp="$tmp/lane1" "${LANE1[@]}"
lane1_rc=$?
# Lane one ends first: the other tests take its core while lane two goes on.
python -m pytest -p no:cacheprovider --basetemp="$tmp/beside" "${ignores[@]}" tests >"$tmp/beside.log" 2>&1
beside_rc=$?
echo "== the tests that ran beside the builds (exit code $beside_rc):"
cat "$tmp/beside.log"
wait "$lane2"
lane2_rc=$?
trap - INT TERM
echo "== the release history, built beside the session's release (exit code $lane2_rc):"
cat "$tmp/lane2.log"
rm -rf "$tmp"
if [ "$lane1_rc" -ne 0 ] || [ "$lane2_rc" -ne 0 ] || [ "$beside_rc" -ne 0 ]; then exit 1; fi
