#!/bin/sh
# The installed library, as a C programmer outside this tree uses it:
# `cmake --install` into a fresh prefix (not a system one), then the README's
# example compiled with pkg-config twice: against nabla-static (libnabla.a:
# the program needs no libnabla.so to run) and against nabla (the shared
# library, found through an rpath). Both must run and print a Jacobian equal
# to its closed form. Usage: pkgconfig.sh BUILD_DIR SOURCE_DIR
set -eu
build=$1 src=$2
dir=$(mktemp -d "$build/tmp-pkgconfig-XXXXXX")
trap 'rm -rf "$dir"' EXIT
cmake --install "$build" --prefix "$dir/prefix" >/dev/null
PKG_CONFIG_PATH=$(dirname "$(find "$dir/prefix" -name nabla-static.pc)")
export PKG_CONFIG_PATH
cc "$src/examples/readme_jacobian.c" $(pkg-config --cflags nabla-static) $(pkg-config --libs --static nabla-static) \
  -o "$dir/static"
if readelf -d "$dir/static" | grep -q 'NEEDED.*libnabla'; then
  echo "pkgconfig: the program linked with nabla-static needs libnabla.so" >&2
  exit 1
fi
"$dir/static" >"$dir/out-static"
grep -q '^J shape: (4, 2, 3, 2)$' "$dir/out-static"
libdir=$(pkg-config --variable=libdir nabla)
cc "$src/examples/readme_jacobian.c" $(pkg-config --cflags --libs nabla) -lm -Wl,-rpath,"$libdir" -o "$dir/shared"
readelf -d "$dir/shared" | grep -q 'NEEDED.*libnabla.so'
"$dir/shared" >"$dir/out-shared"
cmp "$dir/out-static" "$dir/out-shared"
echo "pkgconfig: static and shared links run; $(grep 'max |J' "$dir/out-static")"
