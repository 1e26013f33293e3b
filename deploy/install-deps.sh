#!/usr/bin/env bash
# Installs casca's dependencies from Debian 12 packages:
#   install-deps.sh build   what compiling casca needs (make build)
#   install-deps.sh         that, and what the tests, the demo and the experiment run (make test,
#                           make demo, make experiment, CI)
# Idempotent: packages already present are skipped, and apt-get (as root) runs only when
# something is missing, so `make build` on a machine that has the build packages needs no root.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libgrpc-dev protobuf-compiler protobuf-c-compiler libprotobuf-c-dev libprotobuf-dev
  libnng-dev liblmdb-dev libcurl4-openssl-dev libcmocka-dev
  libyaml-dev libjansson-dev libsnappy-dev grpc-proto
)

if [ "${1:-all}" != build ]; then
  packages+=(
    lmdb-utils
    python3-grpcio python3-grpc-tools python3-pytest python3-protobuf
    python3-numpy python3-torch
    nghttp2-client valgrind influxdb prometheus prometheus-node-exporter
    chromium python3-websocket
    jq
    clang libclang-rt-dev
    ffmpeg gnuplot-nox python3-yaml
  )
  # Node.js and npm run agents/README.md's Node client test (test/e2e/test_node.py); a machine that
  # has them from elsewhere keeps its own.
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    packages+=(nodejs npm)
  fi
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: need root to install packages (run: sudo $0)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Refresh the index once a day at most: a fresh machine has none.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
  apt-get update -qq
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
