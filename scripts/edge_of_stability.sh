#!/usr/bin/env bash
# The edge-of-stability run of docs/tour.md part 6 (Cohen et al., 2021):
# full-batch gradient descent on the first N Fashion-MNIST training images,
# lambda_max of the training loss's Hessian (all parameters, the same N
# images) measured every EVERY steps by `nabla train --sharpness`, against
# 2 / lr. Writes docs/img/edge_of_stability.svg (loss, accuracy and sharpness
# per step: one step per epoch, the batch being the whole set) and
# docs/img/edge_of_stability.txt (every measurement, then a summary).
# Usage: bash scripts/edge_of_stability.sh [path/to/nabla]
#   N=2000 STEPS=400 EVERY=5 LR=0.13 SPEC='flatten; dense 32 tanh; dense 10'
set -euo pipefail
cd "$(dirname "$0")/.."
nabla=${1:-build/nabla}
N=${N:-2000} STEPS=${STEPS:-400} EVERY=${EVERY:-5} LR=${LR:-0.13} SEED=${SEED:-1}
SPEC=${SPEC:-'flatten; dense 32 tanh; dense 10'}
OUT=${OUT:-docs/img}
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
NB_NO_PROGRESS=1 "$nabla" train --data fashion-mnist --model "$SPEC" --limit "$N" --val-split 0 --optimizer sgd \
  --lr "$LR" --batch "$N" --epochs "$STEPS" --seed "$SEED" --sharpness "$EVERY" --sharpness-batch "$N" --no-test \
  --out "$tmp/m.safetensors" --plot "$OUT/edge_of_stability.svg" > "$tmp/log"
{
  echo "# $nabla train --data fashion-mnist --model '$SPEC' --limit $N --val-split 0 --optimizer sgd --lr $LR" \
    "--batch $N --epochs $STEPS --seed $SEED --sharpness $EVERY --sharpness-batch $N"
  grep '^sharpness at step' "$tmp/log"
  grep '^epoch' "$tmp/log" | sed -n '1p;$p' | sed 's/ | .*//' # no timings: the figures are the curvature's
  # The summary: lambda_max at the start, its maximum, and its mean and range
  # over the last half of the run, as multiples of 2 / lr.
  grep '^sharpness at step' "$tmp/log" | awk -v lr="$LR" '
    { s[NR] = $4 + 0; v[NR] = $6 + 0 }
    END {
      edge = 2 / lr;
      low = 2; for (i = 2; i <= NR; i++) if (v[i] < v[low]) low = i; # the lowest after the start
      first = 0; for (i = low; i <= NR; i++) if (first == 0 && v[i] >= 0.9 * edge) first = s[i];
      max = low; for (i = low; i <= NR; i++) if (v[i] > v[max]) max = i;
      n = 0; sum = 0; lo = 1e300; hi = -1e300;
      for (i = 1; i <= NR; i++) if (s[i] >= s[NR] / 2) { n++; sum += v[i]; if (v[i] < lo) lo = v[i]; if (v[i] > hi) hi = v[i] }
      printf "summary: 2/lr = %g; lambda_max %g at step 0 (%.3g x 2/lr);", edge, v[1], v[1] / edge
      printf " lowest %g at step %d (%.3g x 2/lr);", v[low], s[low], v[low] / edge
      if (first) printf " from there back within 10%% of 2/lr at step %d;", first; else printf " never back within 10%% of 2/lr;"
      printf " largest after that %g at step %d (%.3g x 2/lr);", v[max], s[max], v[max] / edge
      printf " over steps %d-%d: mean %g (%.3g x 2/lr), range %g-%g\n", s[NR] / 2, s[NR], sum / n, sum / n / edge, lo, hi
    }'
} > "$OUT/edge_of_stability.txt"
tail -n 3 "$OUT/edge_of_stability.txt"
echo "wrote $OUT/edge_of_stability.svg and $OUT/edge_of_stability.txt"
