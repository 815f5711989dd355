#!/usr/bin/env bash
# Installs every Debian package cutover needs to build, test, benchmark and demo.
# Idempotent: does nothing when all packages are present.
set -euo pipefail

packages=(
  build-essential cmake pkg-config ninja-build
  libboost1.81-dev libboost-url1.81-dev libboost-json1.81-dev libboost-system1.81-dev
  libssl-dev openssl ca-certificates
  libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev libsqlite3-dev libsimdjson-dev
  prometheus-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev
  nodejs nginx-light haproxy wrk curl python3 clang libclang-rt-14-dev valgrind linux-perf iproute2
  chromium fonts-liberation
  redis-server libhiredis-dev libmimalloc-dev
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

# Some Node.js builds bundle npm; Debian's own nodejs needs the separate npm package.
if ! command -v npm >/dev/null 2>&1; then
  missing+=(npm)
fi

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages and not root; run as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
