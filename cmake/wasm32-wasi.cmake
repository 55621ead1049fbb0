# Toolchain for the WebAssembly build (-DNB_WASM=ON, scripts/web.sh): Debian's
# clang with the wasm32-wasi target, wasi-libc as the sysroot (headers in
# /usr/include/wasm32-wasi, libc in /usr/lib/wasm32-wasi), lld and
# libclang-rt-14-dev-wasm32 (compiler-rt builtins).
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR wasm32)
set(CMAKE_C_COMPILER clang)
set(CMAKE_C_COMPILER_TARGET wasm32-wasi)
set(CMAKE_SYSROOT /usr)
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
