#!/usr/bin/env bash
# nabla beside PyTorch on the ResNet training step (scripts/resnet.spec,
# batch 128): the two alternate in each round, so that a burst of load from
# other work hits both sides; prints each round, both medians and the median
# of the per-round ratios (nabla / PyTorch: above 1 means nabla is faster).
# Usage: bench/vs_torch_resnet.sh [ROUNDS (default 5)] [THREADS (default 2)]
# Nothing here is a test: tests never time anything.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
threads=${2:-2}
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DNB_BUILD_TESTS=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" --target nabla_bench >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
get() { awk -v k="$1" '$1 == k {print $2}'; }
echo "round  PyTorch img/s  MiB   nabla img/s  MiB   nabla/PyTorch"
for r in $(seq "$rounds"); do
  t=$(/usr/bin/python3 bench/torch_bench.py "$threads" resnet)
  n=$(./build-bench/nabla_bench "$threads" resnet)
  ti=$(get resnet_train_b128_ips <<<"$t"); tm=$(get resnet_train_b128_peak_mib <<<"$t")
  ni=$(get resnet_train_b128_ips <<<"$n"); nm=$(get resnet_train_b128_peak_mib <<<"$n")
  printf "%5d  %13s  %5s   %11s  %5s   %.3f\n" "$r" "$ti" "$tm" "$ni" "$nm" "$(echo "$ni / $ti" | bc -l)"
  echo "$ti" >> "$work/t"; echo "$ni" >> "$work/n"; echo "$ni / $ti" | bc -l >> "$work/ratio"
  echo "$tm" >> "$work/tm"; echo "$nm" >> "$work/nm"
done
med() { sort -g "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
printf "medians: PyTorch %s img/s %s MiB, nabla %s img/s %s MiB, paired ratio %.3f\n" \
  "$(med "$work/t")" "$(med "$work/tm")" "$(med "$work/n")" "$(med "$work/nm")" "$(med "$work/ratio")"
