#!/usr/bin/env bash
# The benchmark: nabla beside PyTorch (Debian's python3-torch) on the same
# machine, model (the Keras mnist_cnn network), batches and threads.
# Usage: bench/run.sh [THREADS] [EPOCH_RUNS]    (defaults 2 and 3)
#   EIGS_IMAGES=N: the top-eigenvalue rows on N training images (default 10000)
#   TORCH_EIGS=1: PyTorch's side of those rows too (functional.hvp: hours on 10000 images)
#   RESNET_ROUNDS=N: alternating rounds of the paired ResNet comparison at the end (default 5)
# Prints a table of figures and ratios (higher is better for nabla unless the
# column says otherwise). Nothing here is a test: tests never time anything.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
runs=${2:-3}
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DNB_BUILD_TESTS=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" --target nabla_cli nabla_bench >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
have_torch=0
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then have_torch=1; fi

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
fam=$(awk -F': ' '/^cpu family/ {f=$2} /^model\t/ {m=$2} END {print "family " f ", model " m}' /proc/cpuinfo)
simd=$(grep -m1 -o -w 'avx512f\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')
echo "machine: $(nproc) cores, $cpu ($fam; ${simd:-no AVX2}), threads $threads, NB_GEMM=${NB_GEMM:-auto}"
./build-bench/nabla_bench "$threads" > "$out/nabla.txt"
./build-bench/nabla_bench 1 gemm > "$out/gemm.txt"
./build-bench/nabla_bench "$threads" peak >> "$out/nabla.txt"
./build-bench/nabla_bench 1 onethread >> "$out/nabla.txt"
./build-bench/nabla_bench "$threads" second >> "$out/nabla.txt"
./build-bench/nabla_bench "$threads" hessian_peak >> "$out/nabla.txt"
# the ResNet of scripts/resnet.spec (issue 13): training steps at batch 128, its own process
./build-bench/nabla_bench "$threads" resnet | grep "^resnet_" >> "$out/nabla.txt"  # (its GEMM choices: not the table's)
# the top eigenvalue over EIGS_IMAGES training images (default 10000: minutes each side)
./build-bench/nabla_bench "$threads" eigs "${EIGS_IMAGES:-10000}" "$out/eigs_cnn.safetensors" >> "$out/nabla.txt"
if [ $have_torch = 1 ]; then
  /usr/bin/python3 bench/torch_bench.py "$threads" > "$out/torch.txt"
  /usr/bin/python3 bench/torch_bench.py "$threads" peak >> "$out/torch.txt"
  /usr/bin/python3 bench/torch_bench.py 1 onethread >> "$out/torch.txt"
  /usr/bin/python3 bench/torch_bench.py "$threads" second >> "$out/torch.txt"
  /usr/bin/python3 bench/torch_bench.py "$threads" hessian_peak >> "$out/torch.txt"
  /usr/bin/python3 bench/torch_bench.py "$threads" resnet >> "$out/torch.txt"
  # PyTorch's power iteration on torch.autograd.functional.hvp over the same images and weights:
  # 358 s for 62 HVPs on 250 images here (loaded machine), so hours on 10000; only with TORCH_EIGS=1
  if [ "${TORCH_EIGS:-0}" = 1 ]; then
    /usr/bin/python3 bench/torch_bench.py "$threads" eigs "${EIGS_IMAGES:-10000}" "$out/eigs_cnn.safetensors" >> "$out/torch.txt"
  fi
fi

# One epoch of Fashion-MNIST (60000 images, batch 128, SGD momentum 0.9):
# nabla's whole command (loading, training, test evaluation) against
# PyTorch's training loop alone; medians of $runs alternating runs.
cmd=(./build-bench/nabla train --data fashion-mnist
     --model 'conv2d 32 3 relu; conv2d 64 3 relu; maxpool 2; flatten; dense 128 relu; dense 10'
     --epochs 1 --batch 128 --optimizer sgd --lr 0.01 --momentum 0.9 --val-split 0 --threads "$threads"
     --quiet --out "$out/m.safetensors")
for i in $(seq "$runs"); do
  t0=$(date +%s.%N); NB_NO_PROGRESS=1 "${cmd[@]}" > "$out/train.log"; t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l >> "$out/nabla_epoch"
  if [ $have_torch = 1 ]; then
    /usr/bin/python3 bench/torch_bench.py "$threads" epoch | awk '/^epoch_s/ {print $2}' >> "$out/torch_epoch"
  fi
done
med() { sort -g "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "nabla_epoch_command_s $(med "$out/nabla_epoch")" >> "$out/nabla.txt"
[ $have_torch = 1 ] && echo "torch_epoch_loop_s $(med "$out/torch_epoch")" >> "$out/torch.txt"
echo "nabla's test accuracy after that epoch: $(grep -o 'accuracy [0-9.]*' "$out/train.log" || true)"

get() { awk -v k="$2" '$1 == k {print $2}' "$1"; }
row() { # label key unit better(higher|lower) [torch key]
  local n t r
  n=$(get "$out/nabla.txt" "$2"); t=""
  [ $have_torch = 1 ] && t=$(get "$out/torch.txt" "${5:-$2}")
  if [ -n "$t" ] && [ -n "$n" ]; then
    if [ "$4" = higher ]; then r=$(echo "$n / $t" | bc -l); else r=$(echo "$t / $n" | bc -l); fi
    printf "| %-44s | %12s | %12s | %6.2fx |\n" "$1 ($3)" "$n" "$t" "$r"
  else
    printf "| %-44s | %12s | %12s | %7s |\n" "$1 ($3)" "$n" "${t:--}" "-"
  fi
}
echo
printf "| %-44s | %12s | %12s | %7s |\n" "figure" "nabla" "PyTorch" "ratio"
printf "|%s|%s|%s|%s|\n" "----------------------------------------------" "--------------" "--------------" "---------"
row "epoch: nabla whole command vs torch loop" nabla_epoch_command_s s lower torch_epoch_loop_s
row "training, batch 128" train_b128_ips img/s higher
row "training, batch 32" train_b32_ips img/s higher
row "inference, batch 128" infer_b128_ips img/s higher
row "training, batch 128, 1 thread" train_b128_1thread_ips img/s higher
row "Jacobian 10x784 of one image" jacobian_one_s s lower
row "per-example Jacobians, batch 64" jacobian_per_example64_s s lower
row "peak memory of training steps, batch 128" train_b128_peak_mib MiB lower
row "ResNet training, batch 128" resnet_train_b128_ips img/s higher
row "ResNet training peak memory, batch 128" resnet_train_b128_peak_mib MiB lower
row "gradient of the mean CCE, batch 128" grad_b128_s s lower
row "HVP w.r.t. all parameters, batch 128" hvp_b128_s s lower
row "HVP / gradient (each its own)" hvp_over_grad x lower
row "Hessian w.r.t. dense 10 kernel (1280^2)" hessian_dense2_b128_s s lower
row "peak memory of that Hessian, batch 128" hessian_dense2_b128_peak_mib MiB lower
row "top eigenvalue, $(get "$out/nabla.txt" eigs_top_images) images (change <= 1e-3)" eigs_top_s s lower
row "top eigenvalue: Hessian-vector products used" eigs_top_hvps HVPs lower
row "top eigenvalue: the value (same weights)" eigs_top_value value higher
echo
sq=$(get "$out/nabla.txt" sgemm_square_gflops)
for k in gemm_conv2_gflops gemm_dense1_gflops; do
  g=$(get "$out/nabla.txt" $k)
  if [ -n "$sq" ]; then
    printf "%-22s %8s GFLOP/s = %5.1f%% of OpenBLAS sgemm 2048^3 (%s GFLOP/s)\n" "$k" "$g" "$(echo "100 * $g / $sq" | bc -l)" "$sq"
  else
    printf "%-22s %8s GFLOP/s\n" "$k" "$g"
  fi
done
echo
echo "GEMM GFLOP/s at the network's per-thread products, one thread, paired rounds, medians:"
grep '^gemm_gflops' "$out/gemm.txt" | cut -d' ' -f2-
echo
echo "GEMM kernel chosen per shape class (class, kernel, how, shape measured, median per trial):"
grep '^gemm_\(choice\|spec_problem\)' "$out/nabla.txt" | cut -d' ' -f2-
echo "NB_GEMM that makes another process choose the same: $(get "$out/nabla.txt" gemm_spec)"
if [ $have_torch = 0 ]; then
  echo
  echo "PyTorch is not installed: apt-get install python3-torch for the comparison columns."
else
  # The ResNet rows above are one run each; the ratio to quote is the paired one.
  echo
  echo "ResNet training, batch 128, paired (bench/vs_torch_resnet.sh ${RESNET_ROUNDS:-5} $threads):"
  bash bench/vs_torch_resnet.sh "${RESNET_ROUNDS:-5}" "$threads"
fi
