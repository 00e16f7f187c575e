#!/usr/bin/env bash
# Runs the whole test suite: installs what it needs, then every test of every crate.
# Ends with one line `tests: N passed, N failed` totalled over all test binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

log=$(mktemp -t veg-test.XXXXXX)
trap 'rm -f "$log"' EXIT
echo "==> cargo test --workspace"
set +e
cargo test --workspace --color never 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# Sum the per-binary "test result:" lines into one total.
read -r passed failed < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) {
    if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  END { print p + 0, f + 0 }' "$log")
echo "tests: ${passed} passed, ${failed} failed"
if [ "$status" -ne 0 ]; then
  exit "$status"
fi
if [ "$passed" -eq 0 ]; then
  echo "no test ran" >&2
  exit 1
fi
