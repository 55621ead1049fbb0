#!/bin/sh
# Builds and runs the libFuzzer targets: the file parsers (fuzz_idx,
# fuzz_npy, fuzz_csv, fuzz_safetensors), the model spec grammar (fuzz_spec),
# model files against their spec (fuzz_model_import), the CLI's argument
# parsing (fuzz_cli_args), ONNX models (fuzz_onnx: the protobuf reader,
# the ONNX messages and their import) and PNG/JPEG images (fuzz_image).
#
#   fuzz/run.sh [seconds-per-target] [target...]    (default 60, all nine)
#
# Needs Debian's clang 14 with libFuzzer's runtime, which is in the package
# libclang-rt-14-dev (libclang_rt.fuzzer-x86_64.a), and the library's
# dependencies zlib1g-dev, libpng-dev, libjpeg62-turbo-dev, libcjson-dev:
#   apt-get install clang-14 libclang-rt-14-dev zlib1g-dev libpng-dev libjpeg62-turbo-dev libcjson-dev
#
# The library sources are compiled once into build-fuzz/obj/ with ASan +
# UBSan (UBSan made fatal) and libFuzzer's coverage, without OpenMP and
# without BLAS; each target links them (fuzz_cli_args also the CLI's
# sources but main.c). Each target then runs for the given time on a fresh
# copy of fuzz/corpus/<target>/ (the committed seeds stay untouched; new
# inputs land in the copy). libFuzzer first runs every committed input, so
# inputs that once crashed (kept in the corpus) are regression tests.
# Crashes, leaks, timeouts and out-of-memory inputs are saved in
# build-fuzz/artifacts-<target>/. Prints executions per target and in
# total; exits non-zero if any target failed.
set -u
# The GEMM kernel fixed by shape, not measured (src/kernels/gemm_select.c):
# an input then runs the same code on every run, so a crash reproduces.
export NB_GEMM="${NB_GEMM:-fixed}"

secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-"idx npy csv safetensors spec model_import cli_args onnx image"}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/build-fuzz"
cc=${CC:-clang}
jobs=${FUZZ_JOBS:-2}
mkdir -p "$out/obj"

cflags="-g -O1 -std=c11 -D_POSIX_C_SOURCE=200809L -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all"
lflags="-fsanitize=fuzzer,address,undefined -lz -lpng -ljpeg -lcjson -lm"

# Compile every library and CLI source once (in parallel); an object per
# source, named after its path (not src/wasm: the page's API, for wasm32-wasi only).
echo "== compiling the library for the fuzzers"
rm -f "$out"/obj/*.o
if ! find "$root/src" -name '*.c' ! -name main.c ! -path '*/src/wasm/*' | sort | \
    CC="$cc" CFLAGS="$cflags" ROOT="$root" OBJ="$out/obj" xargs -P "$jobs" -I{} sh -c \
    'o="$OBJ/$(echo "{}" | sed "s|^$ROOT/src/||; s|/|_|g; s|\.c$|.o|")"; $CC $CFLAGS -I"$ROOT/include" -c "{}" -o "$o"'; then
    echo "fuzz: compiling the library failed" >&2
    exit 1
fi
libobjs=$(ls "$out"/obj/*.o | grep -v '/obj/cli_')
cliobjs=$(ls "$out"/obj/cli_*.o)

status=0
summary=""
total=0
for t in $targets; do
    echo "== building fuzz_$t"
    objs=$libobjs
    [ "$t" = cli_args ] && objs="$libobjs $cliobjs"
    # shellcheck disable=SC2086
    if ! $cc $cflags -I"$root/include" "$root/fuzz/fuzz_$t.c" $objs $lflags -o "$out/fuzz_$t"; then
        echo "fuzz_$t: build failed" >&2
        status=1
        summary="$summary
fuzz_$t: BUILD FAILED"
        continue
    fi
    rm -rf "$out/corpus-$t" "$out/artifacts-$t"
    mkdir -p "$out/corpus-$t" "$out/artifacts-$t"
    cp "$root/fuzz/corpus/$t/"* "$out/corpus-$t/"
    echo "== running fuzz_$t for ${secs}s"
    # -close_fd_mask=3: the CLI target prints usage errors; libFuzzer keeps
    # its own output and the sanitizers' reports on a duplicate of stderr.
    "$out/fuzz_$t" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -max_total_time="$secs" -close_fd_mask=3 \
        -print_final_stats=1 -artifact_prefix="$out/artifacts-$t/" "$out/corpus-$t" >"$out/fuzz_$t.log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/fuzz_$t.log" | tail -n 1)
    case "$execs" in
    '' | *[!0-9]*) execs="?" ;;
    *) total=$((total + execs)) ;;
    esac
    if [ $rc -ne 0 ]; then
        status=1
        verdict="FAILED (exit $rc; see $out/fuzz_$t.log and $out/artifacts-$t/)"
        tail -n 40 "$out/fuzz_$t.log" >&2
    else
        verdict="ok"
    fi
    summary="$summary
fuzz_$t: $execs executions in ${secs}s, $verdict"
done

echo "== summary$summary
total: $total executions"
exit $status
