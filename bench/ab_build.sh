# Sourced by bench/ab_*.sh: the arguments BASE (default main), ROUNDS (default
# 5) and THREADS (default 2) into $base, $rounds and $threads; $work, a
# temporary directory removed on exit, holding BASE's tree and its
# nabla_bench ($work/build-bench/nabla_bench); the working tree's nabla_bench
# in ./build-bench; and get KEY, which reads a figure from nabla_bench's output
# on stdin. Nothing here is a test: tests never time anything.
cd "$(dirname "$0")/.."
base=${1:-main}
rounds=${2:-5}
threads=${3:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git archive "$base" | tar -x -C "$work"
cmake -S "$work" -B "$work/build-bench" -DCMAKE_BUILD_TYPE=Release -DNB_BUILD_TESTS=OFF >/dev/null
cmake --build "$work/build-bench" -j"$(nproc)" --target nabla_bench >/dev/null
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DNB_BUILD_TESTS=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" --target nabla_bench >/dev/null
get() { awk -v k="$1" '$1 == k {print $2}'; }
