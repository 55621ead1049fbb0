#!/usr/bin/env bash
# Paired A/B of the lecture CNN's figures (bench/bench.c's cnn, batch 128):
# the working tree's nabla_bench against the one built from BASE (a git ref)
# and, when Debian's python3-torch is installed, PyTorch's figure in the same
# round, alternating in each round so that a burst of load from other work
# hits all of them. Prints each round, the medians and the medians of the
# per-round ratios (B / A above 1: the working tree is faster; B / torch:
# the ratio issue 11 asks to be >= 2.5 for inference).
# Usage: bench/ab_infer.sh [BASE (default main)] [ROUNDS (default 5)] [THREADS (default 2)] [FIGURE]
#   FIGURE: infer_b128_ips (default: `nabla_bench T infer`, 64 batches a trial,
#   against `torch_bench.py T infer`), or one of train_b128_ips, train_b32_ips,
#   jacobian_one_s, jacobian_per_example64_s (`nabla_bench T`, all figures; no
#   torch column; for the _s figures B / A below 1 means faster).
# Nothing here is a test: tests never time anything.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-main}
rounds=${2:-5}
threads=${3:-2}
figure=${4:-infer_b128_ips}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git archive "$base" | tar -x -C "$work"
cmake -S "$work" -B "$work/build-bench" -DCMAKE_BUILD_TYPE=Release -DNB_BUILD_TESTS=OFF >/dev/null
cmake --build "$work/build-bench" -j"$(nproc)" --target nabla_bench >/dev/null
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DNB_BUILD_TESTS=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" --target nabla_bench >/dev/null
torch=0
if [ "$figure" = infer_b128_ips ] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then torch=1; fi
args=("$threads")
if [ "$figure" = infer_b128_ips ]; then args+=(infer); fi
get() { awk -v k="$1" '$1 == k {print $2}'; }
echo "round  A=$base  B=working tree  torch   B/A    B/torch  A/torch   ($figure)"
for r in $(seq "$rounds"); do
  a=$("$work/build-bench/nabla_bench" "${args[@]}" | get "$figure")
  b=$(./build-bench/nabla_bench "${args[@]}" | get "$figure")
  echo "$a" >> "$work/a"; echo "$b" >> "$work/b"; echo "$b / $a" | bc -l >> "$work/ba"
  t=-
  if [ $torch = 1 ]; then
    t=$(/usr/bin/python3 bench/torch_bench.py "$threads" infer | get "$figure")
    echo "$t" >> "$work/t"; echo "$b / $t" | bc -l >> "$work/bt"; echo "$a / $t" | bc -l >> "$work/at"
  fi
  printf "%5d  %8s  %13s  %6s  %.3f" "$r" "$a" "$b" "$t" "$(echo "$b / $a" | bc -l)"
  if [ $torch = 1 ]; then printf "  %.3f    %.3f" "$(echo "$b / $t" | bc -l)" "$(echo "$a / $t" | bc -l)"; fi
  echo
done
med() { sort -g "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
printf "medians: A %s, B %s, paired B/A %.3f" "$(med "$work/a")" "$(med "$work/b")" "$(med "$work/ba")"
if [ $torch = 1 ]; then
  printf "; torch %s, paired B/torch %.3f, A/torch %.3f" "$(med "$work/t")" "$(med "$work/bt")" "$(med "$work/at")"
fi
echo
