#!/bin/sh
# Builds and runs the libFuzzer targets of the file parsers (fuzz_idx,
# fuzz_npy, fuzz_csv, fuzz_safetensors).
#
#   fuzz/run.sh [seconds-per-target]      (default 60)
#
# Needs Debian's clang 14 with libFuzzer's runtime, which is in the package
# libclang-rt-14-dev (libclang_rt.fuzzer-x86_64.a), and the library's
# dependencies zlib1g-dev, libpng-dev, libcjson-dev:
#   apt-get install clang-14 libclang-rt-14-dev zlib1g-dev libpng-dev libcjson-dev
#
# Each target is built into build-fuzz/ with ASan + UBSan (UBSan made fatal)
# from every library source except src/cli, without OpenMP and without BLAS,
# then run for the given time on a fresh copy of fuzz/corpus/<target>/
# (the committed seeds stay untouched; new inputs land in the copy).
# Crashes, leaks, timeouts and out-of-memory inputs are saved in
# build-fuzz/artifacts-<target>/. Prints executions per target; exits
# non-zero if any target failed.
set -u

secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/build-fuzz"
cc=${CC:-clang}
mkdir -p "$out"

srcs=$(find "$root/src" -name '*.c' ! -path '*/src/cli/*' | sort)
cflags="-g -O1 -std=c11 -D_POSIX_C_SOURCE=200809L -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"

status=0
summary=""
for t in idx npy csv safetensors; do
    echo "== building fuzz_$t"
    # shellcheck disable=SC2086
    if ! $cc $cflags -I"$root/include" $srcs "$root/fuzz/fuzz_$t.c" -lz -lpng -lcjson -lm -o "$out/fuzz_$t"; then
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
    "$out/fuzz_$t" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -max_total_time="$secs" \
        -print_final_stats=1 -artifact_prefix="$out/artifacts-$t/" "$out/corpus-$t" >"$out/fuzz_$t.log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/fuzz_$t.log" | tail -n 1)
    [ -n "$execs" ] || execs="?"
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

echo "== summary$summary"
exit $status
