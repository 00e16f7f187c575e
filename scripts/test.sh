#!/usr/bin/env bash
# Runs the whole test suite: installs what it needs, then every test of every crate (all test
# binaries, even after one fails). Ends with `tests: N passed, N failed, N skipped` totalled over
# all test binaries, then what was skipped and why. A test that cannot run here (not root, a
# tool missing) is a skip, never a pass; under CI=true it is a failure instead.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

log=$(mktemp -t veg-test.XXXXXX)
skips=$(mktemp -t veg-skips.XXXXXX)
trap 'rm -f "$log" "$skips"' EXIT
export VEG_SKIP_LOG="$skips"
echo "==> cargo test --workspace --no-fail-fast"
set +e
cargo test --workspace --no-fail-fast --color never 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# Sum the per-binary "test result:" lines; a skipped test returned early and was counted as
# passed by the harness, so it moves from passed to skipped.
read -r passed failed < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) {
    if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  END { print p + 0, f + 0 }' "$log")
skipped=$(sort -u "$skips" | grep -c . || true)
passed=$((passed - skipped))
echo "tests: ${passed} passed, ${failed} failed, ${skipped} skipped"
if [ "$skipped" -gt 0 ]; then
  echo "skipped (run as root on a machine set up by scripts/install-deps.sh to run them):"
  sort -u "$skips" | sed 's/^/  /'
fi
if [ "$status" -ne 0 ]; then
  exit "$status"
fi
if [ "$passed" -eq 0 ]; then
  echo "no test ran" >&2
  exit 1
fi
