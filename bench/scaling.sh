#!/usr/bin/env bash
# The scaling model of docs/design.md ("Data-parallel training") from
# measured inputs (issue 16): for the lecture CNN and the ResNet-20 of
# bench/resnet20.spec, the compute time of one step of 128 images on one
# process (measured here: one epoch on LIMIT images, T threads, the
# reproducible path that the ranks run), the bytes per step (4 x parameters,
# from `nabla summary`), and the projected efficiency with 128 images per
# rank (weak scaling, no overlap of the exchange with the backward pass):
#   t_a = 2 (P - 1) / P x 4 L / bandwidth + P x alpha
#   efficiency = t_c / (t_c + t_a)
# for P = 8, 64, 512 on 10 and 100 Gb/s links (alpha: ALPHA_US, 10 us).
# Run it on a quiet machine; the figures on a shared one mean little.
# Usage: bash bench/scaling.sh [LIMIT] [T]
#        TC_MS="CNN_MS RESNET_MS" bash bench/scaling.sh   (no measuring: the
#        model from given step times, e.g. the README's throughput)
#        NABLA=build/nabla ...: use that binary instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${1:-3000}
T=${2:-2}
ALPHA_US=${ALPHA_US:-10}
CNN='conv2d 32 3 relu; conv2d 64 3 relu; maxpool 2; flatten; dense 128 relu; dense 10'
RESNET=bench/resnet20.spec
if [ -z "${NABLA:-}" ]; then # NABLA=path: a nabla built already
  cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build-bench -j2 --target nabla_cli >/dev/null
fi
N=${NABLA:-build-bench/nabla}
export NB_GEMM=${NB_GEMM:-fixed}

params() { "$N" summary --model "$1" --input 28,28,1 | sed -n 's/^Total params: \([0-9]*\).*/\1/p'; }

# Milliseconds per step of 128 images: from the img/s of one epoch.
step_ms() {
  local ips
  ips=$("$N" train --data fashion-mnist --model "$1" --epochs 1 --batch 128 --limit "$LIMIT" --val-split 0.01 \
    --no-test --reproducible --threads "$T" --out /tmp/nb_bench_scaling.safetensors | grep -o '[0-9]* img/s' |
    tail -1 | cut -d' ' -f1)
  awk -v ips="$ips" 'BEGIN { printf "%.2f", 128000 / ips }'
}

if [ -n "${TC_MS:-}" ]; then
  read -r TC_CNN TC_RESNET <<<"$TC_MS"
  echo "step times given: lecture CNN $TC_CNN ms, ResNet-20 $TC_RESNET ms (not measured here)"
else
  TC_CNN=$(step_ms "$CNN")
  TC_RESNET=$(step_ms "$RESNET")
  echo "measured: 1 process x $T threads, batch 128, $LIMIT images: lecture CNN $TC_CNN ms/step, ResNet-20 $TC_RESNET ms/step"
fi

table() { # name, parameters, t_c in ms
  awk -v name="$1" -v L="$2" -v tc="$3" -v alpha="$ALPHA_US" 'BEGIN {
    bytes = 4 * L
    printf "\n%s: %d parameters, %.2f MB per step, t_c %.1f ms\n", name, L, bytes / 1e6, tc
    printf "| P | 10 Gb/s: t_a, efficiency | 100 Gb/s: t_a, efficiency |\n|---|---|---|\n"
    split("8 64 512", ps, " ")
    for (i = 1; i <= 3; i++) {
      P = ps[i]; line = sprintf("| %d |", P)
      for (g = 10; g <= 100; g *= 10) {
        ta = 2 * (P - 1) / P * bytes / (g * 1e9 / 8) * 1e3 + P * alpha / 1e3
        line = line sprintf(" %.2f ms, %.3f |", ta, tc / (tc + ta))
      }
      print line
    }
  }'
}
table "lecture CNN" "$(params "$CNN")" "$TC_CNN"
table "ResNet-20 (bench/resnet20.spec)" "$(params "$RESNET")" "$TC_RESNET"
