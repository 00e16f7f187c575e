#!/usr/bin/env bash
# Runs one test RUNS times in a row with every core kept busy by `stress -c <cores>`, and
# reports how many runs passed; every run's log (with --nocapture) is kept in a temp dir. For timing bounds that
# must hold on a loaded machine, and for flaps that only show under load.
#   usage: scripts/under-stress.sh RUNS CARGO_TEST_ARGS...
#   e.g.:  scripts/under-stress.sh 50 -p veg-cli --test lab_e2e bfd_withdraws_a_dead_instance
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:?usage: scripts/under-stress.sh RUNS CARGO_TEST_ARGS...}
shift
export PATH="$HOME/.cargo/bin:$PATH"
# Built before the load starts; a run then measures the test, not the compiler.
cargo test --no-run "$@" >/dev/null 2>&1 || cargo test --no-run "$@"
logs=$(mktemp -d -t veg-stress.XXXXXX)
stress -c "$(nproc)" >/dev/null 2>&1 &
load=$!
trap 'kill "$load" 2>/dev/null; pkill -P "$load" 2>/dev/null || true' EXIT
passed=0
for run in $(seq 1 "$runs"); do
  if CI=true cargo test "$@" -- --nocapture >"$logs/run-$run.log" 2>&1; then
    passed=$((passed + 1))
    echo "run $run/$runs: passed"
  else
    echo "run $run/$runs: FAILED (log: $logs/run-$run.log)"
  fi
done
echo "under stress -c $(nproc): ${passed} of ${runs} runs passed (logs: $logs)"
[ "$passed" -eq "$runs" ]
