#!/usr/bin/env bash
# Controller benchmark, one run (not a timed test): a snapshot of PODS Pods (default 10000) in
# NAMESPACES namespaces (1000) and GATEWAYS gateways (100) selecting them, against a fresh
# ovsdb-server with OVN's NB schema. Prints the full resync time, "Pod added -> its port in the
# Port_Group" latency over EVENTS (200) additions (median, p99; goal p99 <= 50 ms), NB bytes
# per Pod event and the driver's peak RSS.
#   usage: bench/controller.sh [PODS] [NAMESPACES] [GATEWAYS] [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
PODS=${1:-10000}
NAMESPACES=${2:-1000}
GATEWAYS=${3:-100}
EVENTS=${4:-200}
DIR=$(mktemp -d "/tmp/vcb$$.XXXX")
cleanup() {
  if [ -f "$DIR/pid" ] && grep -q "$DIR" "/proc/$(cat "$DIR/pid")/cmdline" 2>/dev/null; then kill "$(cat "$DIR/pid")"; fi
  rm -rf "$DIR"
}
trap cleanup EXIT
echo "==> building the driver (release)" >&2
cargo build --quiet --release --package veg-controller --example controller_bench
ovsdb-tool create "$DIR/nb.db" /usr/share/ovn/ovn-nb.ovsschema
ovsdb-server --detach --no-chdir --pidfile="$DIR/pid" --log-file="$DIR/log" --unixctl="$DIR/ctl" \
  --remote="punix:$DIR/nb.sock" "$DIR/nb.db"
sleep 0.3
target/release/examples/controller_bench "unix:$DIR/nb.sock" "$PODS" "$NAMESPACES" "$GATEWAYS" "$EVENTS"
