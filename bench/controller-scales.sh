#!/usr/bin/env bash
# The controller benchmark at three cluster sizes in one run: 10 000 Pods / 1 000 namespaces /
# 100 gateways, 100 000 / 10 000 / 100 and 100 000 / 10 000 / 1 000 (bench/controller.sh each:
# free API writes, then API_DELAY_MS per request). Prints a Markdown table of both variants.
# Goal at the largest size with free writes: Pod → Port_Group p99 ≤ 20 ms, full resync ≤ 5 s,
# peak RSS ≤ 300 MiB, the 1 000-Pod relabel ≤ 1 s.
#   usage: bench/controller-scales.sh [EVENTS] [API_DELAY_MS]   (defaults 200, 5)
#   SIZES="PODS NAMESPACES GATEWAYS,..." replaces the three sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-200}
API_DELAY_MS=${2:-5}
OUT=$(mktemp -d "/tmp/vcs$$.XXXX")
trap 'rm -rf "$OUT"' EXIT
field() { # $1: file, $2: sed expression
  sed -n "$2" "$1" | head -1
}
echo "| Pods / namespaces / gateways | API delay | full resync | Pod → Port_Group median / p99 | Pod deleted → out, median / p99 | relabel of 1 000 Pods | peak RSS |"
echo "|---|---|---|---|---|---|---|"
IFS=',' read -ra sizes <<<"${SIZES:-10000 1000 100,100000 10000 100,100000 10000 1000}"
for size in "${sizes[@]}"; do
  read -r pods namespaces gateways <<<"$size"
  echo "==> $pods Pods, $namespaces namespaces, $gateways gateways" >&2
  bash bench/controller.sh "$pods" "$namespaces" "$gateways" "$EVENTS" "$API_DELAY_MS" \
    >"$OUT/all" 2>"$OUT/err" || { cat "$OUT/err" >&2; exit 1; }
  # controller.sh prints the free-writes run, then the delayed one: split them.
  awk -v out="$OUT" '/^full resync/ { n++ } { print > (out "/run-" n) }' "$OUT/all"
  for n in 1 2; do
    f="$OUT/run-$n"
    delay=$([ "$n" = 1 ] && echo 0 || echo "$API_DELAY_MS")
    resync=$(field "$f" 's/^full resync.*: \([0-9.]*\) ms$/\1/p')
    add=$(field "$f" 's/^Pod added -> port in Port_Group.* median \([0-9.]*\) ms, p99 \([0-9.]*\) ms.*/\1 \/ \2/p')
    del=$(field "$f" 's/^Pod deleted.* median \([0-9.]*\) ms, p99 \([0-9.]*\) ms.*/\1 \/ \2/p')
    relabel=$(field "$f" 's/^namespace relabel.*: \([0-9.]*\) ms$/\1/p')
    rss=$(field "$f" 's/^peak RSS: \(.*\)$/\1/p')
    echo "| $pods / $namespaces / $gateways | $delay ms | $resync ms | $add ms | $del ms | $relabel ms | $rss |"
  done
done
