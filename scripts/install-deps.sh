#!/usr/bin/env bash
# Installs what building and testing veg needs on Debian 12, and nothing when it is all there
# (safe to run again). Needs root, or sudo.
#   - Debian packages: the list below;
#   - a stable Rust toolchain with rustfmt and clippy, through rustup when cargo is missing.
set -euo pipefail

PACKAGES=(
  build-essential   # cc/ld for crates with build scripts
  pkg-config
  ca-certificates
  curl              # also the HTTP client of the BFD interop tests
  git
  iproute2          # network namespaces and veth for netns tests
  nftables          # cutting links and rewriting TTL in BFD interop tests
  frr               # FRR bfdd, the reference BFD peer
  python3           # crafts a stranger's packet (BFD tests), echo service (gateway tests)
  util-linux        # setpriv: the gateway tests run the agent with only NET_ADMIN/NET_RAW
  iperf3            # bench/gateway.sh
  openvswitch-common  # ovsdb-server, ovsdb-tool, ovs-appctl for the OVSDB client tests
  ovn-central       # the OVN Northbound schema, ovn-northd
  openvswitch-switch  # ovs-vswitchd (userspace netdev datapath) for the embedded lab
  ovn-host          # ovn-controller for the embedded lab
  ethtool           # the lab turns TX checksum offload off on veths attached to OVS
  tcpdump           # the lab e2e tests watch which instance a flow leaves through
  procps            # pgrep/kill in the lab and the tests
  iputils-ping      # ping, used by the README's walk-through
  stress            # scripts/under-stress.sh: tests repeated with both cores busy
  autoconf automake libtool libssl-dev libcap-ng-dev  # building Kube-OVN's OVN (below)
  xz-utils patch    # unpacking and patching its sources
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  # Packages like openvswitch-switch and frr start system services on install; veg runs its own
  # daemons with private paths, so keep the system ones from starting (policy-rc.d, 101 = no).
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || { [ -n "$policy" ] && as_root rm -f "$policy"; exit 1; }
  [ -n "$policy" ] && as_root rm -f "$policy"
else
  echo "==> Debian packages: all present"
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "==> installing the stable Rust toolchain with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
  done
fi
echo "==> $(cargo --version)"

# kubectl (renders deploy/ with `kubectl kustomize` in the tests; not a Debian 12 package):
# the official static binary, checked against its published SHA-256.
if ! command -v kubectl >/dev/null 2>&1; then
  version=v1.32.4
  echo "==> installing kubectl ${version} from dl.k8s.io"
  tmp=$(mktemp -d)
  curl -fsSL -o "$tmp/kubectl" "https://dl.k8s.io/release/${version}/bin/linux/amd64/kubectl"
  curl -fsSL -o "$tmp/kubectl.sha256" "https://dl.k8s.io/release/${version}/bin/linux/amd64/kubectl.sha256"
  echo "$(cat "$tmp/kubectl.sha256")  $tmp/kubectl" | sha256sum --check --quiet
  as_root install -m 0755 "$tmp/kubectl" /usr/bin/kubectl
  rm -rf "$tmp"
fi

# Kube-OVN's OVN and OVS (the lab's default data plane): built from third_party/ once per machine
# (about 9 minutes on 2 cores), cached by the hash of its sources and patches.
"$(dirname "$0")/build-kube-ovn-ovn.sh"
