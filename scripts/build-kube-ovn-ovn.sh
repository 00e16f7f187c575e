#!/usr/bin/env bash
# Builds and installs the OVN that Kube-OVN clusters run: OVS branch-3.5 + OVN branch-25.03 with
# Kube-OVN's patches, from third_party/kube-ovn-ovn/ (sources, patches and their order; see its
# README for provenance). Installs into a prefix keyed by the hash of those inputs, so a machine
# builds once (about 9 minutes on 2 cores) and again only when they change:
#     /opt/veg/ovn-kube-ovn-<hash>   and the link   /opt/veg/ovn-kube-ovn  ->  it
# The lab (`veg lab … --ovn kube-ovn`) takes its binaries and schemas from the link.
# Needs root (or sudo) to write /opt/veg; VEG_OVN_ROOT moves it. Prints the prefix last.
set -euo pipefail
cd "$(dirname "$0")/.."
sources=${VEG_OVN_SOURCES:-third_party/kube-ovn-ovn}
root=${VEG_OVN_ROOT:-/opt/veg}

as_root() {
  if [ "$(id -u)" -eq 0 ] || [ -w "$root" ] 2>/dev/null; then "$@"; else sudo "$@"; fi
}

ovs_tarball=$(ls "$sources"/ovs-branch-3.5-*.tar.xz)
ovn_tarball=$(ls "$sources"/ovn-branch-25.03-*.tar.xz)
# The key: every input of the build, and this script itself.
key=$( (sha256sum "$ovs_tarball" "$ovn_tarball" "$0" | cut -d' ' -f1
        for series in ovs ovn; do
          while read -r patch; do sha256sum "$sources/patches/$patch" | cut -d' ' -f1; done \
            < "$sources/patches/series.$series"
        done) | sha256sum | cut -c1-16)
prefix="$root/ovn-kube-ovn-$key"
link="$root/ovn-kube-ovn"

if [ -x "$prefix/bin/ovn-nbctl" ] && [ -e "$prefix/.complete" ]; then
  echo "==> Kube-OVN's OVN: already built in $prefix"
else
  echo "==> building Kube-OVN's OVN into $prefix (about 9 minutes on 2 cores, once per machine)"
  build=$(mktemp -d -t veg-ovn-build.XXXXXX)
  trap 'rm -rf "$build"' EXIT
  started=$(date +%s)
  mkdir -p "$build/ovs" "$build/ovn"
  tar -xJf "$ovs_tarball" -C "$build/ovs" --strip-components=1
  tar -xJf "$ovn_tarball" -C "$build/ovn" --strip-components=1
  for series in ovs ovn; do
    count=0
    while read -r patch; do
      patch -d "$build/$series" -p1 --quiet --forward < "$sources/patches/$patch"
      count=$((count + 1))
    done < "$sources/patches/series.$series"
    echo "    $series: $count patches applied"
  done
  jobs=$(nproc)
  as_root mkdir -p "$prefix"
  step() { # step NAME DIR COMMAND...: runs quietly, shows the log's tail when it fails
    local name=$1 dir=$2; shift 2
    echo "    [$(( $(date +%s) - started ))s] $name"
    if ! (cd "$dir" && "$@") > "$build/$name.log" 2>&1; then
      tail -40 "$build/$name.log" >&2
      echo "building Kube-OVN's OVN failed at: $name" >&2
      exit 1
    fi
  }
  step ovs-boot "$build/ovs" ./boot.sh
  step ovs-configure "$build/ovs" ./configure --prefix="$prefix" --localstatedir=/var \
    --sysconfdir=/etc --enable-ssl
  step ovs-make "$build/ovs" make -j"$jobs"
  step ovs-install "$build/ovs" as_root make install
  step ovn-boot "$build/ovn" ./boot.sh
  step ovn-configure "$build/ovn" ./configure --prefix="$prefix" --localstatedir=/var \
    --sysconfdir=/etc --enable-ssl --with-ovs-source="$build/ovs" --with-ovs-build="$build/ovs"
  step ovn-make "$build/ovn" make -j"$jobs"
  step ovn-install "$build/ovn" as_root make install
  as_root touch "$prefix/.complete"
  echo "    built in $(( $(date +%s) - started ))s"
fi
as_root ln -sfn "$prefix" "$link"
echo "==> $("$link/bin/ovn-nbctl" --version | head -2 | tr '\n' ' ')"
echo "$link"
