#!/bin/bash
# The isolation check: `nox -s tests` twice in a row while `nox -s bench` runs beside it, over
# and over, in a fresh clone (the README's two quick-start lines, as written).
#
#   bash tests/bench/tests_beside_bench.sh [CLONE_DIR] [LOG_DIR]
#
# Prints one line per bench and per test run (exit status, seconds); exits with the first test
# run's failure, if any.
set -u
repo=$(cd "$(dirname "$0")/../.." && pwd)
clone=${1:-/tmp/harness-beside}
logs=${2:-/tmp/harness-beside-logs}
rm -rf "$clone" && git clone -q "$repo" "$clone" && mkdir -p "$logs" || exit 2
cd "$clone" || exit 2
python3 -m pip install -q nox
done_flag="$logs/tests-done"
rm -f "$done_flag"
( while [ ! -e "$done_flag" ]; do
    start=$(date +%s); nox -s bench > "$logs/bench-$(date +%H%M%S).log" 2>&1
    echo "bench rc=$? $(( $(date +%s) - start ))s"
  done ) &
sleep 20
status=0
for i in 1 2; do
  start=$(date +%s)
  HARNESS_REQUIRE_REAL_PARTS=1 nox -s tests -- -p no:cacheprovider > "$logs/tests-$i.log" 2>&1
  rc=$?
  echo "tests $i rc=$rc $(( $(date +%s) - start ))s"
  [ "$status" -eq 0 ] && status=$rc
done
touch "$done_flag"
wait
exit "$status"
