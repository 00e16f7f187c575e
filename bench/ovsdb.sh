#!/usr/bin/env bash
# OVSDB benchmark, one run, same server (not a timed test): COUNT (default 1000) single-element
# additions to one NB address set, through veg-ovsdb (one long-lived connection, one mutate per
# change) and through one `ovn-nbctl add` process per change. Both go through a byte-counting
# unix-socket proxy, so bytes per change are measured the same way. Also prints veg's
# commit -> monitor-update latency (median, p99).
#   usage: bench/ovsdb.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-1000}
DIR=$(mktemp -d "/tmp/vob$$.XXXX")
cleanup() {
  [ -f "$DIR/proxy.pid" ] && kill "$(cat "$DIR/proxy.pid")" 2>/dev/null || true
  if [ -f "$DIR/pid" ] && grep -q "$DIR" "/proc/$(cat "$DIR/pid")/cmdline" 2>/dev/null; then kill "$(cat "$DIR/pid")"; fi
  rm -rf "$DIR"
}
trap cleanup EXIT
say() { printf '==> %s\n' "$*" >&2; }

say "building the driver (release)"
cargo build --quiet --release --package veg-ovsdb --example nb_bench
ovsdb-tool create "$DIR/nb.db" /usr/share/ovn/ovn-nb.ovsschema
ovsdb-server --detach --no-chdir --pidfile="$DIR/pid" --log-file="$DIR/log" --unixctl="$DIR/ctl" \
  --remote="punix:$DIR/nb.sock" "$DIR/nb.db"
sleep 0.3

# Byte-counting proxy: client -> server bytes per connection, summed into $DIR/bytes-<tag>.
python3 - "$DIR" > /dev/null 2>&1 <<'PY' &
import os, selectors, socket, sys
d = sys.argv[1]
tag_file = os.path.join(d, "tag")
lsock = socket.socket(socket.AF_UNIX); lsock.bind(os.path.join(d, "proxy.sock")); lsock.listen(64)
sel = selectors.DefaultSelector(); sel.register(lsock, selectors.EVENT_READ)
pairs = {}
def count(n):
    tag = open(tag_file).read().strip() if os.path.exists(tag_file) else "none"
    path = os.path.join(d, f"bytes-{tag}")
    total = int(open(path).read()) if os.path.exists(path) else 0
    open(path, "w").write(str(total + n))
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is lsock:
            c, _ = lsock.accept(); u = socket.socket(socket.AF_UNIX); u.connect(os.path.join(d, "nb.sock"))
            pairs[c] = (u, True); pairs[u] = (c, False)
            sel.register(c, selectors.EVENT_READ); sel.register(u, selectors.EVENT_READ)
            continue
        data = s.recv(65536)
        peer, upstream = pairs[s]
        if not data:
            for x in (s, peer):
                sel.unregister(x); x.close(); pairs.pop(x, None)
            continue
        if upstream: count(len(data))
        peer.sendall(data)
PY
echo $! > "$DIR/proxy.pid"
sleep 0.3
ovn-nbctl --db="unix:$DIR/nb.sock" create Address_Set name=veg-bench > /dev/null
ovn-nbctl --db="unix:$DIR/nb.sock" create Address_Set name=nbctl-bench > /dev/null

say "veg-ovsdb: $COUNT changes"
echo veg > "$DIR/tag"
VEG_OUT=$(target/release/examples/nb_bench "unix:$DIR/proxy.sock" "$COUNT")
VEG_BYTES=$(cat "$DIR/bytes-veg")

say "ovn-nbctl: $COUNT changes, one process each"
echo nbctl > "$DIR/tag"
start=$(date +%s.%N)
for i in $(seq 0 $((COUNT - 1))); do
  ovn-nbctl --db="unix:$DIR/proxy.sock" add Address_Set nbctl-bench addresses "\"198.18.$((i / 256)).$((i % 256))\""
done
end=$(date +%s.%N)
NBCTL_BYTES=$(cat "$DIR/bytes-nbctl")
VEG_SECONDS=$(echo "$VEG_OUT" | sed -E 's/.* in ([0-9.]+) s.*/\1/')
python3 - "$COUNT" "$VEG_SECONDS" "$start" "$end" "$VEG_BYTES" "$NBCTL_BYTES" "$VEG_OUT" <<'PY'
import sys
n, veg_s, start, end, veg_b, nbctl_b, veg_out = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
nbctl_s = end - start
print(veg_out)
print(f"ovn-nbctl: {n} changes in {nbctl_s:.3f} s")
print(f"time ratio veg / ovn-nbctl: {veg_s / nbctl_s:.4f}  ({veg_s / n * 1e3:.3f} ms vs {nbctl_s / n * 1e3:.3f} ms per change)")
print(f"bytes sent per change: veg {veg_b / n:.0f} (both veg clients, set-up and monitor included), ovn-nbctl {nbctl_b / n:.0f}")
PY
