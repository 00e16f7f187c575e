#!/usr/bin/env bash
# The main job: build veg, print the CRD it generates, check the example manifests the way the
# controller will (and what an invalid one gets back), then run the embedded lab's demo: a real
# OVN on this machine, veg's controller, monitor and gateway Pods, client Pods, an external host;
# SNAT, failover, scaling and deletion, printed as they happen. Needs root (namespaces, OVS).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "==> building veg"
cargo build --quiet --bin veg
veg=target/debug/veg

echo "==> veg crd (the CustomResourceDefinition; kubectl apply -f deploy/crds/ installs it)"
"$veg" crd | grep -E '^  (group|scope)|shortNames|^    - (veg|vpc-egress-gw)$|name: (VPC|REPLICAS|BFD ENABLED|EXTERNAL SUBNET|PHASE|READY|AGE)$'

echo "==> veg validate examples/*.yaml"
"$veg" validate examples/*.yaml
echo "    all examples are valid"

echo "==> veg validate on a broken manifest (expected to fail, exit 1)"
set +e
"$veg" validate crates/cli/tests/data/invalid.yaml
code=$?
set -e
echo "    exit code $code"
[ "$code" -eq 1 ]

echo "==> veg lab demo (the whole system on this machine; everything is removed at the end)"
if [ "$(id -u)" -eq 0 ]; then
  "$veg" lab demo --examples examples
else
  sudo "$veg" lab demo --examples examples
fi
echo "==> demo done"
