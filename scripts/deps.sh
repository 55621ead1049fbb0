#!/usr/bin/env bash
# Installs the Debian packages nabla needs to build, test and run the main job.
# Idempotent; needs root (or sudo) the first time.
set -euo pipefail
PKGS=(build-essential cmake pkg-config zlib1g-dev libpng-dev libjpeg62-turbo-dev libcjson-dev libopenblas-dev libcmocka-dev
      dataset-fashion-mnist clang libclang-rt-14-dev valgrind cppcheck python3-numpy
      python3-onnx python3-torch lld-14 wasi-libc libclang-rt-14-dev-wasm32 chromium nodejs
      libopenmpi-dev openmpi-bin)
# python3-onnx and python3-torch: the ONNX checks (scripts/check_onnx.py). The page
# (scripts/web.sh) and its browser test (tests/web): clang's wasm32-wasi target, lld,
# wasi-libc, compiler-rt for wasm32, Chromium and Node.js (npm ci in tests/web fetches
# playwright-core, locked). OpenMPI: nabla under mpirun and its tests (tests/mpi).
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
# Debian's nodejs comes without npm (a nodejs from elsewhere may bundle it).
if ! command -v npm >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends npm
fi
