#!/usr/bin/env bash
# Installs the Debian packages nabla needs to build, test and run the main job.
# Idempotent; needs root (or sudo) the first time.
set -euo pipefail
PKGS=(build-essential cmake pkg-config zlib1g-dev libpng-dev libcjson-dev libopenblas-dev libcmocka-dev
      dataset-fashion-mnist clang libclang-rt-14-dev valgrind cppcheck python3-numpy
      libopenmpi-dev openmpi-bin)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
