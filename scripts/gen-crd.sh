#!/usr/bin/env bash
# Regenerates deploy/crds/vpc-egress-gateways.yaml from the Rust types (veg crd).
# The test `committed_crd_is_current` fails until this has been run after a type change.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --package veg-cli --bin veg -- crd > deploy/crds/vpc-egress-gateways.yaml
echo "wrote deploy/crds/vpc-egress-gateways.yaml"
