#!/usr/bin/env bash
# Panel 1's network (web/panels/gd_net.js): writes web/data/border.csv, 200
# points (x1, x2) in [-1, 1]^2 with the target y = sin(2 x1) cos(x2) + 0.5 x1 x2
# (no randomness: quasi-random points from fractional parts), and trains
# web/models/border_mlp.safetensors on it, full batch, with Adam, to near a
# minimum of the mean squared error, where the border alpha = 2 / lambda_max
# of plain gradient descent is the local one. Both files are committed; rerun
# this only to change them (then the browser test's comparison with `nabla
# curvature` still holds: it computes both from the files).
# Usage: bash scripts/web_border_model.sh [path/to/nabla]
set -euo pipefail
cd "$(dirname "$0")/.."
nabla=${1:-build/nabla}
mkdir -p web/data web/models
awk 'BEGIN {
  print "x1,x2,y";
  for (i = 1; i <= 200; i++) {
    a = i * 0.7548776662466927; b = i * 0.5698402909980532; # the plastic number R2 sequence
    x1 = 2 * (a - int(a)) - 1; x2 = 2 * (b - int(b)) - 1;
    printf "%.6f,%.6f,%.6f\n", x1, x2, sin(2 * x1) * cos(x2) + 0.5 * x1 * x2;
  }
}' > web/data/border.csv
NB_NO_PROGRESS=1 "$nabla" train --data web/data/border.csv --model 'dense 8 tanh; dense 1' --loss mse \
  --optimizer adam --lr 0.01 --batch 200 --epochs 3000 --val-split 0 --seed 1 --header --quiet --threads 1 \
  --out web/models/border_mlp.safetensors
"$nabla" curvature --model web/models/border_mlp.safetensors --data web/data/border.csv --loss mse --count 200 \
  --batch 200 --tol 1e-7 --iters 3000
