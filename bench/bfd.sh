#!/usr/bin/env bash
# BFD benchmark, one run, same machine, same script (not a timed test):
#   1. N sessions (default 1000) at 100 ms x 3 for D seconds (default 30) between two veg bfdd,
#      then the same between two FRR bfdd: CPU seconds per session-second of each pair, and
#      the ratio veg / FRR (goal: <= 0.5).
#   2. Detection time over C cuts (default 50) of a veg (passive) <-> FRR (active) session:
#      min / median / p95 / max, on both sides.
# Needs root, FRR, nftables, iproute2, python3 (scripts/install-deps.sh). Everything lives in
# namespaces and a temp dir named after this run; all of it is removed on exit.
#   usage: bench/bfd.sh [SESSIONS] [SECONDS] [CUTS]
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${1:-1000}
SECONDS_RUN=${2:-30}
CUTS=${3:-50}
ID=vbb$$
DIR=$(mktemp -d "/tmp/$ID.XXXX")
chown frr:frr "$DIR"
PIDS=()
NETNS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for file in "$DIR"/*.pid; do
    [ -f "$file" ] || continue
    pid=$(cat "$file")
    grep -q "$DIR" "/proc/$pid/cmdline" 2>/dev/null && kill "$pid" 2>/dev/null || true
  done
  sleep 0.3
  for ns in "${NETNS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT

say() { printf '==> %s\n' "$*" >&2; }

echo "building veg (release)" >&2
cargo build --quiet --release --bin veg
VEG=$PWD/target/release/veg

# Two namespaces, one veth, N IPv6 addresses per side (a session per address pair). The
# session addresses are reached through one next hop per side, so each namespace needs one
# neighbour entry instead of N (N on-link neighbours overflow the kernel's neighbour table).
topology() {
  local a=$1 b=$2
  ip netns add "$a"; ip netns add "$b"; NETNS+=("$a" "$b")
  ip link add "$ID-a" netns "$a" type veth peer name "$ID-b" netns "$b"
  for side in a b; do
    local ns host other; ns=$([ $side = a ] && echo "$a" || echo "$b")
    host=$([ $side = a ] && echo 1 || echo 2); other=$([ $side = a ] && echo 2 || echo 1)
    ip -n "$ns" link set lo up
    python3 - "$host" "$SESSIONS" > "$DIR/addr-$side.batch" <<'EOF'
import sys
host, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    print(f"address add 2001:db8:{host}::{i + 1:x}/128 dev lo")
EOF
    ip -n "$ns" -batch "$DIR/addr-$side.batch"
    ip -n "$ns" addr add "2001:db8:ffff::$host/64" dev "$ID-$side" nodad
    ip -n "$ns" link set "$ID-$side" up
    ip -n "$ns" route add "2001:db8:$other::/48" via "2001:db8:ffff::$other"
  done
}

addresses() { python3 -c "import sys; print(','.join(f'2001:db8:$1::{i + 1:x}' for i in range($SESSIONS)))"; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

measure() { # pid_a pid_b -> cpu seconds of both over SECONDS_RUN
  local a0 b0 a1 b1 hz
  hz=$(getconf CLK_TCK)
  a0=$(cpu_ticks "$1"); b0=$(cpu_ticks "$2")
  sleep "$SECONDS_RUN"
  a1=$(cpu_ticks "$1"); b1=$(cpu_ticks "$2")
  python3 -c "print(($a1 - $a0 + $b1 - $b0) / $hz)"
}

veg_up() { # socket -> number of Up sessions
  python3 - "$1" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b'{"command":"status"}\n')
data = b""
while not data.endswith(b"\n"):
    chunk = s.recv(1 << 20)
    if not chunk: break
    data += chunk
print(sum(1 for x in json.loads(data)["sessions"] if x["state"] == "Up"))
EOF
}

frr_up() { # ns dir -> number of up peers
  ip netns exec "$1" vtysh --vty_socket "$2" -c "show bfd peers json" | python3 -c "import json,sys; print(sum(1 for p in json.load(sys.stdin) if p['status'] == 'up'))"
}

wait_for() { # description command... (until it prints SESSIONS)
  local what=$1; shift
  for _ in $(seq 1 240); do
    [ "$("$@" 2>/dev/null || echo 0)" -ge "$SESSIONS" ] && return 0
    sleep 0.5
  done
  say "timeout waiting for $what ($("$@" 2>/dev/null || echo 0) of $SESSIONS)"; return 1
}

# ---------------------------------------------------------------- 1a. veg <-> veg
say "veg <-> veg: $SESSIONS sessions at 100 ms x 3"
topology "$ID-va" "$ID-vb"
ip netns exec "$ID-vb" env VEG_BFD_ALLOW="$(addresses 1)" "$VEG" bfdd --min-tx-ms 100 --min-rx-ms 100 \
  --control-socket "$DIR/veg-b.sock" 2> "$DIR/veg-b.log" & PIDS+=($!); VEG_B=$!
ip netns exec "$ID-va" "$VEG" bfdd --min-tx-ms 100 --min-rx-ms 100 --control-socket "$DIR/veg-a.sock" \
  2> "$DIR/veg-a.log" & PIDS+=($!); VEG_A=$!
sleep 1
python3 - "$DIR/veg-a.sock" "$SESSIONS" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
for i in range(int(sys.argv[2])):
    f.write(json.dumps({"command": "add", "peer": f"2001:db8:2::{i + 1:x}", "local": f"2001:db8:1::{i + 1:x}"}) + "\n"); f.flush()
    assert json.loads(f.readline())["ok"], "add failed"
EOF
wait_for "veg sessions Up" veg_up "$DIR/veg-a.sock"
wait_for "veg passive sessions Up" veg_up "$DIR/veg-b.sock"
sleep 3
say "measuring veg for ${SECONDS_RUN}s"
VEG_CPU=$(measure "$VEG_A" "$VEG_B")
VEG_STILL_UP=$(veg_up "$DIR/veg-a.sock")
kill "$VEG_A" "$VEG_B"; wait "$VEG_A" "$VEG_B" 2>/dev/null || true
ip netns del "$ID-va"; ip netns del "$ID-vb"

# ---------------------------------------------------------------- 1b. FRR <-> FRR
say "FRR <-> FRR: $SESSIONS sessions at 100 ms x 3"
topology "$ID-fa" "$ID-fb"
for side in a b; do
  local_host=$([ $side = a ] && echo 1 || echo 2); remote_host=$([ $side = a ] && echo 2 || echo 1)
  mkdir -p "$DIR/frr-$side"; chown frr:frr "$DIR/frr-$side"
  python3 - "$SESSIONS" "$local_host" "$remote_host" > "$DIR/frr-$side/bfdd.conf" <<'EOF'
import sys
n, local, remote = int(sys.argv[1]), sys.argv[2], sys.argv[3]
print("log stdout warnings\nbfd")
for i in range(n):
    print(f" peer 2001:db8:{remote}::{i + 1:x} local-address 2001:db8:{local}::{i + 1:x}")
    print("  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n !")
print("!")
EOF
  ns=$([ $side = a ] && echo "$ID-fa" || echo "$ID-fb")
  ip netns exec "$ns" /usr/lib/frr/bfdd -d -f "$DIR/frr-$side/bfdd.conf" -i "$DIR/frr-$side.pid" \
    --vty_socket "$DIR/frr-$side" --bfdctl "$DIR/frr-$side/bfdd.sock" -z "$DIR/frr-$side/zserv.api" -P 0 \
    > /dev/null 2>&1
done
sleep 1
FRR_A=$(cat "$DIR/frr-a.pid"); FRR_B=$(cat "$DIR/frr-b.pid")
wait_for "FRR sessions Up" frr_up "$ID-fa" "$DIR/frr-a"
wait_for "FRR sessions Up" frr_up "$ID-fb" "$DIR/frr-b"
sleep 3
say "measuring FRR for ${SECONDS_RUN}s"
FRR_CPU=$(measure "$FRR_A" "$FRR_B")
FRR_STILL_UP=$(frr_up "$ID-fa" "$DIR/frr-a")
kill "$FRR_A" "$FRR_B"; sleep 0.5
ip netns del "$ID-fa"; ip netns del "$ID-fb"

# ---------------------------------------------------------------- 2. detection distribution
say "detection: $CUTS cuts of veg (passive) <-> FRR (active), 100 ms x 3, IPv4"
ip netns add "$ID-da"; ip netns add "$ID-db"; NETNS+=("$ID-da" "$ID-db")
ip link add "$ID-c" netns "$ID-da" type veth peer name "$ID-d" netns "$ID-db"
ip -n "$ID-da" link set lo up; ip -n "$ID-db" link set lo up
ip -n "$ID-da" addr add 203.0.113.1/24 dev "$ID-c"; ip -n "$ID-db" addr add 203.0.113.2/24 dev "$ID-d"
ip -n "$ID-da" link set "$ID-c" up; ip -n "$ID-db" link set "$ID-d" up
mkdir -p "$DIR/frr-d"; chown frr:frr "$DIR/frr-d"
cat > "$DIR/frr-d/bfdd.conf" <<EOF
log file $DIR/frr-d/bfdd.log debugging
log timestamp precision 6
debug bfd peer
bfd
 peer 203.0.113.2 local-address 203.0.113.1
  receive-interval 100
  transmit-interval 100
  detect-multiplier 3
 !
!
EOF
TZ=UTC ip netns exec "$ID-da" /usr/lib/frr/bfdd -d -f "$DIR/frr-d/bfdd.conf" -i "$DIR/frr-d.pid" \
  --vty_socket "$DIR/frr-d" --bfdctl "$DIR/frr-d/bfdd.sock" -z "$DIR/frr-d/zserv.api" -P 0 > /dev/null 2>&1
ip netns exec "$ID-db" "$VEG" bfdd --allow 203.0.113.1 --min-tx-ms 100 --min-rx-ms 100 --no-ipv6 \
  --control-socket "$DIR/veg-d.sock" --log-format json 2> "$DIR/veg-d.log" & PIDS+=($!)
SESSIONS=1 wait_for "the detection session" veg_up "$DIR/veg-d.sock"
: > "$DIR/cuts"
for i in $(seq 1 "$CUTS"); do
  SESSIONS=1 wait_for "recovery" veg_up "$DIR/veg-d.sock"
  sleep 0.6
  date +%s.%N >> "$DIR/cuts"
  ip netns exec "$ID-db" nft -f - <<'EOF'
table inet cut {
  chain i { type filter hook input priority 0; udp dport 3784 drop; }
  chain o { type filter hook output priority 0; udp dport 3784 drop; }
}
EOF
  sleep 0.8
  ip netns exec "$ID-db" nft delete table inet cut
  printf '.' >&2
done
echo >&2
SESSIONS=1 wait_for "final recovery" veg_up "$DIR/veg-d.sock"

python3 - "$DIR" "$SESSIONS" "$SECONDS_RUN" "$VEG_CPU" "$FRR_CPU" "$VEG_STILL_UP" "$FRR_STILL_UP" <<'EOF'
import json, statistics, sys, datetime
d, n, secs, veg_cpu, frr_cpu, veg_up, frr_up = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6], sys.argv[7]
session_seconds = n * secs
veg_rate, frr_rate = veg_cpu / session_seconds, frr_cpu / session_seconds
print(f"sessions: {n} per pair, 100 ms x 3, {secs:.0f} s measured, IPv6, both daemons of a pair counted")
print(f"veg <-> veg: {veg_cpu:.2f} CPU s -> {veg_rate * 1e6:.1f} us CPU per session-second ({veg_up} still Up)")
print(f"FRR <-> FRR: {frr_cpu:.2f} CPU s -> {frr_rate * 1e6:.1f} us CPU per session-second ({frr_up} still Up)")
print(f"ratio veg / FRR: {veg_rate / frr_rate:.3f} (goal <= 0.5)")
cuts = [float(x) for x in open(f"{d}/cuts")]
def unix(ts):
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
veg = [unix(e["timestamp"]) for e in map(json.loads, open(f"{d}/veg-d.log")) if e.get("message") == "bfd session state changed" and e.get("new_state") == "Down" and e.get("diag") == "ctl-detect-expired"]
frr = []
for line in open(f"{d}/frr-d/bfdd.log"):
    if "up -> down" in line and "control-expired" in line:
        frr.append(datetime.datetime.strptime(line[:26], "%Y/%m/%d %H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc).timestamp())
def after(events, t):
    later = [e - t for e in events if t <= e <= t + 1.5]
    return min(later) if later else None
for name, events in (("veg", veg), ("FRR", frr)):
    samples = sorted(x * 1000 for x in (after(events, c) for c in cuts) if x is not None)
    if not samples:
        print(f"{name}: no detections found"); continue
    p95 = samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]
    print(f"detection {name}: n={len(samples)}/{len(cuts)} min {samples[0]:.0f} median {statistics.median(samples):.0f} p95 {p95:.0f} max {samples[-1]:.0f} ms")
EOF
