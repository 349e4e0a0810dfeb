#!/usr/bin/env bash
# Every check and test of kaizala-bridge, on a fresh Linux machine.
#
# Installs what is missing (redis-server through apt when run as root; the tests
# start their own private redis-server, they never use a running one), then runs
# rustfmt, clippy with warnings as errors, and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests need: a redis-server (they start private ones), systemd-analyze (the
# unit is verified), promtool from Debian's prometheus package (the alert rules are
# checked; its service is never started here) and kubernetes-validate from PyPI (the
# manifests are checked against the Kubernetes schemas, offline).
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "==> installing ${missing[*]}"
    apt-get update -qq
    # A policy-rc.d keeps the packages' services (prometheus, redis) from starting.
    made_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
      made_policy=yes
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
  else
    echo "missing: ${missing[*]}; install with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

if ! python3 -c "import kubernetes_validate" >/dev/null 2>&1; then
  echo "==> installing kubernetes-validate"
  python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate ||
    { echo "cannot install kubernetes-validate with pip" >&2; exit 1; }
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install the stable Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi
if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" ||
      rustup component add "$component"
  done
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "==> cargo check --no-default-features (the production build without the emulators)"
cargo check --no-default-features --locked --bins --lib
echo "==> cargo test"
cargo test --locked
