#!/usr/bin/env bash
# The whole test suite: a release build with warnings as errors, then the same
# tests under AddressSanitizer + UndefinedBehaviorSanitizer, then the
# reliability checks: every libFuzzer target for a bounded time, a valgrind
# memcheck of a short training (zero errors, zero leaks), and cppcheck on
# src/ (docs/static-analysis.md). Any failure fails the script.
#   FUZZ_SECONDS=N   seconds per fuzz target (default 45; 9 targets)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
# Tests never time anything: GEMM kernels by the fixed rule, not measured
# (ctest sets this too; here it covers the fuzzers and valgrind).
export NB_GEMM=${NB_GEMM:-fixed}
bash scripts/deps.sh
jobs=$(nproc)
echo "== release build (-Werror), ctest"
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Release -DNB_WERROR=ON >/dev/null
cmake --build build-test -j"$jobs"
(cd build-test && ctest --output-on-failure -j"$jobs")
echo "== ONNX: the onnx checker, ONNX Runtime and PyTorch models (scripts/check_onnx.py; parts skipped without them)"
/usr/bin/python3 scripts/check_onnx.py --nabla build-test/nabla
echo "== ASan + UBSan build, ctest"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DNB_SANITIZE=ON -DNB_WERROR=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j"$jobs")

echo "== the page in Chromium (web/, tests/web/test.mjs)"
# Only where the WebAssembly toolchain, Chromium and playwright-core exist
# (scripts/deps.sh and .ci/run install them); about 30 s.
if dpkg -s wasi-libc libclang-rt-14-dev-wasm32 lld-14 chromium >/dev/null 2>&1 && command -v node >/dev/null &&
  { [ -d tests/web/node_modules/playwright-core ] || (cd tests/web && npm ci --no-audit --no-fund); }; then
  bash scripts/web.sh --build
  NABLA=build-test/nabla SHOTS=build-test/web-shots node tests/web/test.mjs
else
  echo "skipped: needs wasi-libc, libclang-rt-14-dev-wasm32, lld-14, chromium, node and (cd tests/web && npm ci)"
fi

echo "== fuzzing: every target for ${FUZZ_SECONDS:-45} s (libFuzzer + ASan + UBSan)"
FUZZ_JOBS="$jobs" sh fuzz/run.sh "${FUZZ_SECONDS:-45}"

echo "== valgrind memcheck of a short training"
# Without OpenMP and BLAS (their thread pools keep blocks valgrind cannot
# attribute) and without -march=native (valgrind does not know AVX-512).
cmake -S . -B build-valgrind -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNB_USE_OPENMP=OFF -DNB_USE_BLAS=OFF \
  -DNB_NATIVE=OFF -DNB_BUILD_TESTS=OFF -DCMAKE_C_FLAGS=-Wno-unknown-pragmas >/dev/null
cmake --build build-valgrind -j"$jobs" --target nabla_cli
vgout=$(mktemp -d)
valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
  --show-leak-kinds=definite,indirect --log-file="$vgout/valgrind.log" \
  build-valgrind/nabla train --data fashion-mnist --model 'conv2d 4 3 relu; maxpool 2; flatten; dense 10' \
  --limit 256 --epochs 1 --threads 1 --out "$vgout/model.safetensors" --quiet ||
  { cat "$vgout/valgrind.log"; echo "valgrind: errors or leaks (above)" >&2; exit 1; }
grep -E "ERROR SUMMARY|definitely lost|indirectly lost|All heap blocks" "$vgout/valgrind.log" || true
rm -rf "$vgout"

echo "== cppcheck on src/ (docs/static-analysis.md)"
cppcheck --enable=warning,portability,performance --std=c11 --inline-suppr --quiet --error-exitcode=1 \
  -I include -I src -D_POSIX_C_SOURCE=200809L --suppress=missingIncludeSystem src
echo "cppcheck: clean"
echo "== all tests passed in $(($(date +%s) - start)) s"
