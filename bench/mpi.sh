#!/usr/bin/env bash
# Data-parallel figures (issue 16): the lecture CNN, batch 128, one epoch on
# the first LIMIT Fashion-MNIST training images, alternating the runs REPS
# times and printing each run's img/s and gradient exchange line:
#   A  1 process x 2 threads, the default path
#   R  1 process x 2 threads, --reproducible (shards of 16)
#   MP mpirun -np 2, 1 thread each, the plain path (each rank's 64 images in one
#      pass, MPI_Allreduce of the gradients; PyTorch DDP's step)
#   M  mpirun -np 2, 1 thread each, --reproducible (shards of 16, fixed-order sum)
#   M64 mpirun -np 2, 1 thread each, --reproducible --shard 64 (one shard per rank
#       at batch 128: the same bits for P = 1 and 2 only)
#   A1, R1: A and R on 1 thread
# then the ratios of each repetition (the issue's figure is MP / A >= 0.9; the
# runs alternate, so a pair shares the machine's load of the moment).
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
ips() { grep -o '[0-9]* img/s' <<<"$1" | tail -1 | grep -o '[0-9]*'; }
MPI=(mpirun --oversubscribe --allow-run-as-root -np 2 "$N" "${COMMON[@]}" --threads 1)
RATIOS=()
for r in $(seq "$REPS"); do
  a=$(ips "$("$N" "${COMMON[@]}" --threads 2)"); echo "A $a img/s"
  out=$("${MPI[@]}"); mp=$(ips "$out")
  echo "MP $mp img/s | $(grep 'gradient exchange' <<<"$out")"
  rr=$(ips "$("$N" "${COMMON[@]}" --threads 2 --reproducible)"); echo "R $rr img/s"
  out=$("${MPI[@]}" --reproducible); m=$(ips "$out")
  echo "M $m img/s | $(grep 'gradient exchange' <<<"$out")"
  echo "A1 $( "$N" "${COMMON[@]}" --threads 1 | grep -o '[0-9]* img/s' | tail -1)"
  echo "R1 $( "$N" "${COMMON[@]}" --threads 1 --reproducible | grep -o '[0-9]* img/s' | tail -1)"
  out=$("${MPI[@]}" --reproducible --shard 64)
  echo "M64 $(ips "$out") img/s | $(grep 'gradient exchange' <<<"$out")"
  RATIOS+=("$(awk -v a="$a" -v mp="$mp" -v r="$rr" -v m="$m" \
    'BEGIN { printf "MP/A %.3f  M/A %.3f  M/R %.3f  MP/M %.3f", mp / a, m / a, m / r, mp / m }')")
done
for r in $(seq "$REPS"); do echo "ratios $r: ${RATIOS[$((r - 1))]}"; done
