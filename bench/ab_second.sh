#!/usr/bin/env bash
# Paired A/B of the second-order figures (issue 12; `nabla_bench T second`:
# one gradient, one HVP w.r.t. all parameters, the Hessian w.r.t. the last
# dense kernel, lecture CNN at batch 128): the working tree's nabla_bench
# against the one built from BASE (a git ref), and with TORCH=1 PyTorch's
# side (bench/torch_bench.py T second) in the same rounds, alternating, so
# that a burst of load from other work hits every side. Prints each round,
# the medians and the medians of the per-round ratios.
# Usage: [TORCH=1] bench/ab_second.sh [BASE (default main)] [ROUNDS (default 5)] [THREADS (default 2)]
# Nothing here is a test: tests never time anything.
set -euo pipefail
source "$(dirname "$0")/ab_build.sh"
keys="grad_b128_s hvp_b128_s hvp_over_grad hessian_dense2_b128_s"
echo "round side              grad_s   hvp_s  hvp/grad  hessian_s"
for r in $(seq "$rounds"); do
  sides="A B"
  [ "${TORCH:-0}" = 1 ] && sides="A B T"
  for side in $sides; do
    case $side in
      A) out=$("$work/build-bench/nabla_bench" "$threads" second); name="A=$base" ;;
      B) out=$(./build-bench/nabla_bench "$threads" second); name="B=working tree" ;;
      T) out=$(/usr/bin/python3 bench/torch_bench.py "$threads" second); name="T=PyTorch" ;;
    esac
    line=""
    for k in $keys; do
      v=$(get "$k" <<<"$out")
      echo "$v" >> "$work/$side.$k"
      line="$line $(printf '%8s' "$v")"
    done
    printf "%5d %-16s%s\n" "$r" "$name" "$line"
  done
  for k in hvp_b128_s hessian_dense2_b128_s; do
    a=$(tail -1 "$work/A.$k"); b=$(tail -1 "$work/B.$k")
    echo "$a / $b" | bc -l >> "$work/AB.$k"
    if [ "${TORCH:-0}" = 1 ]; then t=$(tail -1 "$work/T.$k"); echo "$t / $b" | bc -l >> "$work/TB.$k"; fi
  done
done
med() { sort -g "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for side in A B $([ "${TORCH:-0}" = 1 ] && echo T); do
  printf "medians %s:" "$side"
  for k in $keys; do printf " %s %s" "$k" "$(med "$work/$side.$k")"; done
  echo
done
printf "paired ratios (above 1: the working tree is faster): A/B hvp %.3f, A/B hessian %.3f\n" \
  "$(med "$work/AB.hvp_b128_s")" "$(med "$work/AB.hessian_dense2_b128_s")"
if [ "${TORCH:-0}" = 1 ]; then
  printf "paired ratios PyTorch / working tree: hvp %.3f, hessian %.3f\n" \
    "$(med "$work/TB.hvp_b128_s")" "$(med "$work/TB.hessian_dense2_b128_s")"
fi
