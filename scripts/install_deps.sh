#!/usr/bin/env bash
# Installs the Debian bookworm packages lorafast builds, tests and benchmarks with.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
  cmake ninja-build g++ pkg-config \
  libopenblas-dev libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev \
  python3 python3-numpy python3-torch python3-matplotlib
