#!/usr/bin/env bash
# The controller benchmark (bench/controller.sh's driver) for two versions in one run: REF (a
# git commit, built from a temporary worktree) and the working tree, alternating ROUNDS times,
# each against its own fresh ovsdb-server. Prints every run and the median ratios
# (working tree / REF) of the full resync and of the Pod-event median and p99; < 1 is faster.
#   usage: bench/compare-controller.sh REF [ROUNDS] [PODS] [NAMESPACES] [GATEWAYS] [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
# One codegen unit for both builds: with the default 16, how rustc happens to partition the
# crate moves the result a lot (measured for the controller's move into layers: 23 % slower
# with 16 units, no measurable difference with one), which would swamp what is compared.
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
REF=${1:?usage: bench/compare-controller.sh REF [ROUNDS] [PODS] [NAMESPACES] [GATEWAYS] [EVENTS]}
ROUNDS=${2:-3}
ARGS=("${3:-10000}" "${4:-1000}" "${5:-100}" "${6:-200}")
DIR=$(mktemp -d "/tmp/vcc$$.XXXX")
cleanup() {
  if [ -f "$DIR/pid" ] && grep -q "$DIR" "/proc/$(cat "$DIR/pid")/cmdline" 2>/dev/null; then kill "$(cat "$DIR/pid")"; fi
  git worktree remove --force "$DIR/base" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
echo "==> building $REF (release, worktree under $DIR)" >&2
git worktree add --quiet --detach "$DIR/base" "$REF"
(cd "$DIR/base" && CARGO_TARGET_DIR="$PWD/../target-base" cargo build --quiet --release \
  --package veg-controller --example controller_bench)
echo "==> building the working tree (release)" >&2
cargo build --quiet --release --package veg-controller --example controller_bench
cp "$DIR/target-base/release/examples/controller_bench" "$DIR/bench-base"
cp target/release/examples/controller_bench "$DIR/bench-head"

run() { # $1: base|head
  rm -f "$DIR/nb.db"
  ovsdb-tool create "$DIR/nb.db" /usr/share/ovn/ovn-nb.ovsschema
  ovsdb-server --detach --no-chdir --pidfile="$DIR/pid" --log-file="$DIR/log" --unixctl="$DIR/ctl" \
    --remote="punix:$DIR/nb.sock" "$DIR/nb.db"
  sleep 0.3
  "$DIR/bench-$1" "unix:$DIR/nb.sock" "${ARGS[@]}" 2>/dev/null | tee "$DIR/out" | sed "s/^/$1: /" >&2
  kill "$(cat "$DIR/pid")"; sleep 0.2
  local resync median p99
  resync=$(sed -n 's/^full resync.*: \([0-9.]*\) ms$/\1/p' "$DIR/out")
  median=$(sed -n 's/^Pod added -> port in Port_Group.* median \([0-9.]*\) ms.*/\1/p' "$DIR/out")
  p99=$(sed -n 's/^Pod added -> port in Port_Group.* p99 \([0-9.]*\) ms.*/\1/p' "$DIR/out")
  echo "$1 $resync $median $p99" >> "$DIR/results"
}
for round in $(seq "$ROUNDS"); do
  echo "==> round $round of $ROUNDS" >&2
  run base
  run head
done
python3 - "$DIR/results" "$REF" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
def med(version, column):
    return statistics.median(float(r[column]) for r in rows if r[0] == version)
print(f"median of {len(rows)//2} runs each   {'REF ' + sys.argv[2][:10]:>16} {'working tree':>14} {'ratio':>7}")
for name, column in [("full resync, ms", 1), ("Pod event median, ms", 2), ("Pod event p99, ms", 3)]:
    base, head = med("base", column), med("head", column)
    print(f"{name:24} {base:16.2f} {head:14.2f} {head / base:7.3f}")
PY
