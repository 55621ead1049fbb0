#!/usr/bin/env bash
# Data-parallel figures (issue 16): the lecture CNN, batch 128, one epoch on
# the first LIMIT Fashion-MNIST training images, alternating the runs REPS
# times and printing each run's img/s and gradient exchange line:
#   A  1 process x 2 threads, the default path
#   R  1 process x 2 threads, --reproducible (shards of 16)
#   M  mpirun -np 2, 1 thread each (reproducible, always)
#   M64 mpirun -np 2, 1 thread each, --shard 64 (one shard per rank at batch 128:
#       the same bits for P = 1 and 2 only, as few, larger GEMMs as plain training)
#   A1, R1: A and R on 1 thread
# Usage: bash bench/mpi.sh [REPS] [LIMIT]   (needs a build in build-bench with MPI)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
LIMIT=${2:-12000}
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j2 --target nabla_cli >/dev/null
N=build-bench/nabla
SPEC='conv2d 32 3 relu; conv2d 64 3 relu; maxpool 2; flatten; dense 128 relu; dense 10'
COMMON=(train --data fashion-mnist --model "$SPEC" --epochs 1 --batch 128 --limit "$LIMIT" --val-split 0.01
        --no-test --out /tmp/nb_bench_mpi.safetensors)
for r in $(seq "$REPS"); do
  echo "A $( "$N" "${COMMON[@]}" --threads 2 | grep -o '[0-9]* img/s')"
  echo "R $( "$N" "${COMMON[@]}" --threads 2 --reproducible | grep -o '[0-9]* img/s')"
  echo "A1 $( "$N" "${COMMON[@]}" --threads 1 | grep -o '[0-9]* img/s')"
  echo "R1 $( "$N" "${COMMON[@]}" --threads 1 --reproducible | grep -o '[0-9]* img/s')"
  out=$(mpirun --oversubscribe --allow-run-as-root -np 2 "$N" "${COMMON[@]}" --threads 1)
  echo "M $(grep -o '[0-9]* img/s' <<<"$out") | $(grep 'gradient exchange' <<<"$out")"
  out=$(mpirun --oversubscribe --allow-run-as-root -np 2 "$N" "${COMMON[@]}" --threads 1 --shard 64)
  echo "M64 $(grep -o '[0-9]* img/s' <<<"$out") | $(grep 'gradient exchange' <<<"$out")"
done
