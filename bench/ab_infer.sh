#!/usr/bin/env bash
# Paired A/B of the lecture CNN's figures (bench/bench.c's cnn): the working
# tree's nabla_bench against the one built from BASE (a git ref), and in
# infer mode PyTorch's figure (Debian's python3-torch, when installed) in the
# same round, alternating within each round so that a burst of load from
# other work hits every side. Prints each round's figures and ratios, then
# per figure the medians and the median of the per-round ratios B / A (for
# img/s above 1 means the working tree is faster; for the _s figures below 1)
# and, in infer mode, B / torch (issue 11 asks >= 2.5 at 2 threads).
# Usage: bench/ab_infer.sh [BASE (default main)] [ROUNDS (default 5)] [THREADS (default 2)] [MODE]
#   MODE infer (default): `nabla_bench T infer` (64 batches of 128 a trial)
#        against `torch_bench.py T infer`;
#   MODE all: `nabla_bench T` (train_b128_ips, train_b32_ips, infer_b128_ips,
#        jacobian_one_s, jacobian_per_example64_s; no PyTorch column).
# On a loaded machine one thread gives steadier ratios than two (no thread
# waits at a barrier for a descheduled partner). Nothing here is a test.
set -euo pipefail
source "$(dirname "$0")/ab_build.sh"
mode=${4:-infer}
torch=0
args=("$threads")
figures="train_b128_ips train_b32_ips infer_b128_ips jacobian_one_s jacobian_per_example64_s"
if [ "$mode" = infer ]; then
  args+=(infer)
  figures=infer_b128_ips
  if /usr/bin/python3 -c 'import torch' 2>/dev/null; then torch=1; fi
fi
get() { awk -v k="$1" '$1 == k {print $2}' "$2"; }
ratio() { echo "$1 / $2" | bc -l; }
for r in $(seq "$rounds"); do
  "$work/build-bench/nabla_bench" "${args[@]}" > "$work/a.$r"
  ./build-bench/nabla_bench "${args[@]}" > "$work/b.$r"
  if [ $torch = 1 ]; then /usr/bin/python3 bench/torch_bench.py "$threads" infer > "$work/t.$r"; fi
  for f in $figures; do
    a=$(get "$f" "$work/a.$r"); b=$(get "$f" "$work/b.$r")
    echo "$a" >> "$work/$f.a"; echo "$b" >> "$work/$f.b"; ratio "$b" "$a" >> "$work/$f.ba"
    line=$(printf "round %d  %-26s A=%s  B=%s  B/A %.3f" "$r" "$f" "$a" "$b" "$(ratio "$b" "$a")")
    if [ $torch = 1 ]; then
      t=$(get "$f" "$work/t.$r")
      echo "$t" >> "$work/$f.t"; ratio "$b" "$t" >> "$work/$f.bt"; ratio "$a" "$t" >> "$work/$f.at"
      line+=$(printf "  torch=%s  B/torch %.3f  A/torch %.3f" "$t" "$(ratio "$b" "$t")" "$(ratio "$a" "$t")")
    fi
    echo "$line"
  done
done
med() { sort -g "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "medians over $rounds rounds, $threads threads (A=$base, B=working tree):"
for f in $figures; do
  line=$(printf "  %-26s A %s  B %s  paired B/A %.3f" "$f" "$(med "$work/$f.a")" "$(med "$work/$f.b")" \
    "$(med "$work/$f.ba")")
  if [ $torch = 1 ]; then
    line+=$(printf "  torch %s  paired B/torch %.3f  A/torch %.3f" "$(med "$work/$f.t")" "$(med "$work/$f.bt")" \
      "$(med "$work/$f.at")")
  fi
  echo "$line"
done
