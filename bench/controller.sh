#!/usr/bin/env bash
# Controller benchmark (not a timed test): a snapshot of PODS Pods (default 10000) in
# NAMESPACES namespaces (1000) and GATEWAYS gateways (100) selecting them, against a fresh
# ovsdb-server with OVN's NB schema. Prints the full resync time, "Pod added -> its port in the
# Port_Group" latency over EVENTS (200) additions (median, p99; goal p99 <= 50 ms), "Pod added
# -> pass done", API requests, NB bytes per Pod event and the driver's peak RSS.
# Two runs: the reference with free Kubernetes writes, then each API request taking
# API_DELAY_MS (default 5, a round trip to an API server); the ratios of the second to the
# first close the output.
#   usage: bench/controller.sh [PODS] [NAMESPACES] [GATEWAYS] [EVENTS] [API_DELAY_MS]
set -euo pipefail
cd "$(dirname "$0")/.."
PODS=${1:-10000}
NAMESPACES=${2:-1000}
GATEWAYS=${3:-100}
EVENTS=${4:-200}
API_DELAY_MS=${5:-5}
DIR=$(mktemp -d "/tmp/vcb$$.XXXX")
cleanup() {
  if [ -f "$DIR/pid" ] && grep -q "$DIR" "/proc/$(cat "$DIR/pid")/cmdline" 2>/dev/null; then kill "$(cat "$DIR/pid")"; fi
  rm -rf "$DIR"
}
trap cleanup EXIT
echo "==> building the driver (release)" >&2
cargo build --quiet --release --package veg-controller --example controller_bench
run() { # $1: API delay in ms; the output goes to $DIR/out-$1 and stdout
  rm -f "$DIR/nb.db"
  ovsdb-tool create "$DIR/nb.db" /usr/share/ovn/ovn-nb.ovsschema
  ovsdb-server --detach --no-chdir --pidfile="$DIR/pid" --log-file="$DIR/log" --unixctl="$DIR/ctl" \
    --remote="punix:$DIR/nb.sock" "$DIR/nb.db"
  sleep 0.3
  echo "==> API requests take $1 ms" >&2
  target/release/examples/controller_bench "unix:$DIR/nb.sock" "$PODS" "$NAMESPACES" "$GATEWAYS" \
    "$EVENTS" "$1" | tee "$DIR/out-$1"
  kill "$(cat "$DIR/pid")"; sleep 0.2; rm -f "$DIR/pid"
}
value() { # $1: delay, $2: sed expression printing one number
  sed -n "$2" "$DIR/out-$1"
}
run 0
run "$API_DELAY_MS"
echo "ratios, API requests of $API_DELAY_MS ms / free ones:"
for what in "full resync|s/^full resync.*: \([0-9.]*\) ms$/\1/p" \
  "Pod -> Port_Group p99|s/^Pod added -> port in Port_Group.* p99 \([0-9.]*\) ms.*/\1/p" \
  "Pod -> pass done p99|s/^Pod added -> pass done.* p99 \([0-9.]*\) ms.*/\1/p"; do
  name=${what%%|*}; expression=${what#*|}
  awk -v name="$name" -v a="$(value 0 "$expression")" -v b="$(value "$API_DELAY_MS" "$expression")" \
    'BEGIN { printf "  %s: %.2f (%s ms / %s ms)\n", name, b / a, b, a }'
done
