#!/usr/bin/env bash
# Runs every cargo-fuzz target for RUNS executions each (default 10 million), on stable Rust
# (`-s none`: no sanitizer, which would need nightly). Installs cargo-fuzz when missing.
# CI runs it with a small RUNS as a smoke test, so the targets keep building.
#   usage: scripts/fuzz.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10000000}
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi
cd fuzz
targets=$(cargo fuzz list)
if [ -z "$targets" ]; then
  echo "cargo fuzz list found no target: nothing would be fuzzed" >&2
  exit 1
fi
ran=0
for target in $targets; do
  ran=$((ran + 1))
  echo "==> fuzzing $target for $RUNS runs"
  # A scratch copy of the seed corpus, so runs do not grow the committed one.
  work=$(mktemp -d -t "veg-fuzz-$target.XXXXXX")
  cp -r "corpus/$target/." "$work/"
  set +e
  cargo fuzz run -s none "$target" "$work" -- -runs="$RUNS" -max_len=512 -print_final_stats=1 2>&1 \
    | grep -E "^(Done|stat::number_of_executed_units)|ERROR|panicked|SUMMARY"
  status=${PIPESTATUS[0]}
  set -e
  rm -rf "$work"
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $target failed (exit $status); the input is under fuzz/artifacts/$target" >&2
    exit 1
  fi
done
echo "==> fuzzed $ran target(s)"
