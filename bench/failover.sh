#!/usr/bin/env bash
# Failover benchmark, one run (not a timed test): for each OVN build and BFD mode (native: OVN's
# own BFD; monitor: veg monitor) and each BFD setting a fresh lab (real OVN, veg controller, a
# two-instance gateway), then KILLS kills of an
# instance (processes SIGKILLed, links cut, as a crashed node) while a client Pod sends FLOWS
# UDP flows to the external host, one probe per flow every 5 ms. Prints, per setting: the
# traffic gap per kill over the flows the killed instance carried (median / p95 / max), the time
# from the kill to the monitor's NB write, the gap's p95 as a ratio of the BFD detection time,
# and `lab up` → gateway Ready. Goals: p95 gap <= 350 ms at 100 ms x 3, <= 150 ms at 30 ms x 3.
# Needs root and the lab's packages (scripts/install-deps.sh). The labs are removed on exit.
#   usage: bench/failover.sh [KILLS] [TIMERS] [FLOWS] [OVN] [MODES] [STEADY]
#          (defaults 20, 100,30, 16, kube-ovn,debian, native,monitor, 0; native runs on kube-ovn
#          only; STEADY seconds of running without a kill first, counting false withdrawals)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
KILLS=${1:-20}
TIMERS=${2:-100,30}
FLOWS=${3:-16}
OVN=${4:-kube-ovn,debian}
MODES=${5:-native,monitor}
STEADY=${6:-0}
cargo bench -p veg-cli --bench failover -- --kills "$KILLS" --timers "$TIMERS" --flows "$FLOWS" \
  --ovn "$OVN" --mode "$MODES" --steady "$STEADY"
