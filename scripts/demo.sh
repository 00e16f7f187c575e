#!/usr/bin/env bash
# The main job, until the embedded lab lands: build veg, print the CRD it generates, and check
# the example manifests (the product description's NAD, Subnet, Vpc and VpcEgressGateways) the
# way the controller will, then show what an invalid manifest gets back.
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
echo "==> demo done"
