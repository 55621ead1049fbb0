#!/usr/bin/env bash
# The main job: train the lecture's CNN (Conv2D -> Conv2D -> Flatten -> Dense
# -> Dense, as the Keras mnist_cnn network) on Fashion-MNIST and print its
# test accuracy. Usage: scripts/main.sh [EPOCHS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target nabla_cli >/dev/null
./build/nabla train --data fashion-mnist \
  --model 'conv2d 32 3 relu; conv2d 64 3 relu; maxpool 2; flatten; dense 128 relu; dense 10' \
  --epochs "${1:-5}" --batch 128 --optimizer adam --lr 1e-3 --seed 1 --out fashion_cnn.safetensors
