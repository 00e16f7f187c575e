#!/usr/bin/env bash
# Gateway data-plane benchmark, one run, same machine, same script (not a timed test):
# iperf3 (TCP, one stream) from a client namespace through a gateway namespace to a server
# namespace, in three identical topologies built side by side:
#   plain     — the gateway only forwards (ip_forward, a return route on the server, no NAT);
#   conntrack — plain plus an empty nftables NAT chain, which turns connection tracking on
#               (the floor any SNAT gateway pays);
#   veg       — the gateway holds what `veg gateway init` applies (policy rules, routes, the
#               nftables table with fully-random masquerade and per-packet SNAT counters), run
#               as nobody with NET_ADMIN/NET_RAW.
# Runs alternate plain/conntrack/veg ROUNDS times for SECONDS each. Prints the median throughput of each,
# the ratio veg / plain (goal >= 0.95), the per-round ratios (single-stream veth throughput on a
# small machine varies by +-15% between runs, so use several rounds) and the machine's busy CPU
# seconds per Gbit transferred (its ratio is the price of conntrack + NAT + policy rules).
# Needs root, iproute2, nftables, iperf3, setpriv (scripts/install-deps.sh). Everything lives
# in namespaces named after this run and is removed on exit.
#   usage: bench/gateway.sh [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_RUN=${1:-10}
ROUNDS=${2:-3}
ID=vgb$$
DIR=$(mktemp -d "/tmp/$ID.XXXX")
chmod 755 "$DIR"
NETNS=()
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.2
  for ns in "${NETNS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT

say() { printf '==> %s\n' "$*" >&2; }

for tool in ip nft iperf3 setpriv; do
  command -v "$tool" >/dev/null || { echo "missing $tool (run scripts/install-deps.sh)" >&2; exit 1; }
done

say "building veg (release)"
cargo build --quiet --release --bin veg
install -m 755 target/release/veg "$DIR/veg"

# client 198.18.0.1 ── eth0 198.18.0.12 [gateway] net1 198.51.100.11 ── server 198.51.100.1
topology() {
  local p=$1
  for role in cli gw srv; do
    ip netns add "$p$role"; NETNS+=("$p$role")
    ip -n "$p$role" link set lo up
  done
  ip link add eth0 netns "${p}gw" type veth peer name eth0 netns "${p}cli"
  ip link add net1 netns "${p}gw" type veth peer name eth0 netns "${p}srv"
  ip -n "${p}cli" addr add 198.18.0.1/24 dev eth0
  ip -n "${p}gw" addr add 198.18.0.12/24 dev eth0
  ip -n "${p}gw" addr add 198.51.100.11/24 dev net1
  ip -n "${p}srv" addr add 198.51.100.1/24 dev eth0
  for pair in "cli eth0" "gw eth0" "gw net1" "srv eth0"; do
    set -- $pair; ip -n "$p$1" link set "$2" up
  done
  ip -n "${p}cli" route add default via 198.18.0.12
  ip -n "${p}gw" route add default via 198.18.0.1
}

say "building the three topologies"
topology "${ID}p"
topology "${ID}c"
topology "${ID}v"
# plain: forwarding and a return route, nothing else; conntrack: the same plus an empty NAT chain
for p in "${ID}p" "${ID}c"; do
  ip netns exec "${p}gw" sysctl -qw net.ipv4.ip_forward=1
  ip -n "${p}gw" route replace default via 198.51.100.1
  ip -n "${p}srv" route add 198.18.0.0/24 via 198.51.100.11
done
ip netns exec "${ID}cgw" nft add table ip bench
ip netns exec "${ID}cgw" nft 'add chain ip bench postrouting { type nat hook postrouting priority srcnat; }'
# veg: what the agent applies, as the agent applies it
ip netns exec "${ID}vgw" setpriv --reuid=65534 --regid=65534 --clear-groups \
  --inh-caps=-all,+net_admin,+net_raw --ambient-caps=-all,+net_admin,+net_raw \
  --bounding-set=-all,+net_admin,+net_raw \
  "$DIR/veg" gateway init --internal-gateway 198.18.0.1 --external-gateway 198.51.100.1 \
  --source 198.18.0.0/24 >&2


busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }

declare -A GBITS CPU
run_one() {
  local p=$1 kind=$2 round=$3
  ip netns exec "${p}srv" iperf3 -s -D -1 --logfile "$DIR/${p}.server.log" 2>/dev/null || true
  sleep 0.3
  local before after out
  before=$(busy_jiffies)
  out=$(ip netns exec "${p}cli" iperf3 -c 198.51.100.1 -t "$SECONDS_RUN" -J 2>/dev/null)
  after=$(busy_jiffies)
  local bps
  bps=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])')
  local gbit cpu_s
  gbit=$(python3 -c "print($bps/1e9)")
  cpu_s=$(python3 -c "print(($after-$before)/$(getconf CLK_TCK))")
  GBITS[$kind]+="$gbit "
  CPU[$kind]+="$(python3 -c "print($cpu_s/($gbit*$SECONDS_RUN))") "
  say "round $round $kind: $(printf '%.2f' "$gbit") Gbit/s, $(printf '%.2f' "$cpu_s") busy CPU s"
}

for round in $(seq 1 "$ROUNDS"); do
  run_one "${ID}p" plain "$round"
  run_one "${ID}c" conntrack "$round"
  run_one "${ID}v" veg "$round"
done

# the SNAT really happened: the veg server saw the gateway's external address
grep -q "198.51.100.11" "$DIR/${ID}v.server.log" || { echo "veg run was not masqueraded" >&2; exit 1; }
ip netns exec "${ID}vgw" nft list table ip veg | grep -o 'counter packets [0-9]* bytes [0-9]*' >&2

python3 - "${GBITS[plain]}" "${GBITS[conntrack]}" "${GBITS[veg]}" \
  "${CPU[plain]}" "${CPU[conntrack]}" "${CPU[veg]}" <<'PY'
import statistics, sys
plain, ct, veg, cpu_plain, cpu_ct, cpu_veg = (list(map(float, a.split())) for a in sys.argv[1:7])
med = statistics.median
for name, gbit, cpu in [("plain forwarding", plain, cpu_plain), ("conntrack only", ct, cpu_ct),
                        ("veg gateway", veg, cpu_veg)]:
    print(f"{name:17} median {med(gbit):6.2f} Gbit/s, {med(cpu):.3f} busy CPU s per Gbit "
          f"(rounds: {' '.join(f'{g:.2f}' for g in gbit)})")
paired = sorted(v / p for v, p in zip(veg, plain))
print("per-round ratios veg / plain: " + " ".join(f"{r:.3f}" for r in paired))
print(f"throughput ratio veg / plain: {med(veg)/med(plain):.3f} (medians; median of per-round "
      f"ratios {med(paired):.3f}; goal >= 0.95); CPU per Gbit ratio: {med(cpu_veg)/med(cpu_plain):.3f}")
print(f"throughput ratio veg / conntrack only: {med(veg)/med(ct):.3f}; "
      f"CPU per Gbit ratio: {med(cpu_veg)/med(cpu_ct):.3f}")
PY
