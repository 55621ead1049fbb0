#!/usr/bin/env bash
# The lecture in the browser: builds web/nabla.wasm (the core compiled to
# wasm32-wasi by Debian's clang, cmake -DNB_WASM=ON) and serves web/ on
# http://127.0.0.1:8000 (any static host can serve it).
#   bash scripts/web.sh            build, then serve (Ctrl-C stops)
#   bash scripts/web.sh --build    build only (the browser test does this)
#   PORT=8080 bash scripts/web.sh  another port
# Needs clang, lld, wasi-libc and libclang-rt-14-dev-wasm32 (scripts/deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
for pkg in wasi-libc libclang-rt-14-dev-wasm32 lld-14; do
  dpkg -s "$pkg" >/dev/null 2>&1 || { echo "web.sh: $pkg missing: run bash scripts/deps.sh (or apt-get install -y $pkg)" >&2; exit 1; }
done
cmake --no-warn-unused-cli -S . -B build-wasm -DNB_WASM=ON -DNB_WERROR=ON -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE=cmake/wasm32-wasi.cmake >/dev/null
cmake --build build-wasm -j"$(nproc)" >/dev/null
cp build-wasm/nabla.wasm web/nabla.wasm
size=$(stat -c %s web/nabla.wasm)
echo "web.sh: web/nabla.wasm, $size bytes"

# The first 24 Fashion-MNIST test images and labels, uncompressed IDX, for
# panel 4 (committed; rewritten from Debian's dataset-fashion-mnist if absent).
data=/usr/share/datasets/fashion-mnist
if [ ! -f web/data/fashion-test-images.idx ] && [ -d "$data" ]; then
  mkdir -p web/data
  python3 - "$data" web/data 24 <<'PY'
import gzip, struct, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with gzip.open(f"{src}/t10k-images-idx3-ubyte.gz") as f:
    magic, count, rows, cols = struct.unpack(">IIII", f.read(16))
    pixels = f.read(n * rows * cols)
with open(f"{dst}/fashion-test-images.idx", "wb") as f:
    f.write(struct.pack(">IIII", 0x803, n, rows, cols) + pixels)
with gzip.open(f"{src}/t10k-labels-idx1-ubyte.gz") as f:
    f.read(8)
    labels = f.read(n)
with open(f"{dst}/fashion-test-labels.idx", "wb") as f:
    f.write(struct.pack(">II", 0x801, n) + labels)
PY
fi

[ "${1:-}" = "--build" ] && exit 0
port=${PORT:-8000}
echo "web.sh: serving web/ on http://127.0.0.1:$port (Ctrl-C stops)"
exec python3 -m http.server "$port" --bind 127.0.0.1 --directory web
