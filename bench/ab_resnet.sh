#!/usr/bin/env bash
# Paired A/B of the ResNet training step (scripts/resnet.spec, batch 128):
# the working tree's nabla_bench against the one built from BASE (a git ref),
# alternating in each round, so that a burst of load from other work hits
# both sides; prints each round, both medians and the median of the
# per-round ratios (B / A: above 1 means the working tree is faster).
# Usage: bench/ab_resnet.sh [BASE (default main)] [ROUNDS (default 5)] [THREADS (default 2)]
# Nothing here is a test: tests never time anything.
set -euo pipefail
source "$(dirname "$0")/ab_build.sh"
echo "round  A=$base img/s  MiB   B=working tree img/s  MiB   B/A"
for r in $(seq "$rounds"); do
  a=$("$work/build-bench/nabla_bench" "$threads" resnet)
  b=$(./build-bench/nabla_bench "$threads" resnet)
  ai=$(get resnet_train_b128_ips <<<"$a"); am=$(get resnet_train_b128_peak_mib <<<"$a")
  bi=$(get resnet_train_b128_ips <<<"$b"); bm=$(get resnet_train_b128_peak_mib <<<"$b")
  printf "%5d  %12s  %6s   %18s  %6s   %.3f\n" "$r" "$ai" "$am" "$bi" "$bm" "$(echo "$bi / $ai" | bc -l)"
  echo "$ai" >> "$work/a"; echo "$bi" >> "$work/b"; echo "$bi / $ai" | bc -l >> "$work/ratio"
done
med() { sort -g "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
printf "medians: A %s img/s, B %s img/s, paired ratio B/A %.3f\n" "$(med "$work/a")" "$(med "$work/b")" "$(med "$work/ratio")"
