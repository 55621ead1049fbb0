# -DNB_WASM=ON (with -DCMAKE_TOOLCHAIN_FILE=cmake/wasm32-wasi.cmake): the core
# (core, kernels, graph, ops, autodiff, nn) and the page's API (src/wasm) as
# one WebAssembly module, nabla.wasm, for web/. No io, viz or cli (files,
# PNG, zlib, JSON), no OpenMP, no BLAS: the built-in GEMM, one thread. Model
# files and data sets are read by the page's JavaScript instead.
file(GLOB_RECURSE NB_WASM_SOURCES CONFIGURE_DEPENDS
  src/core/*.c src/kernels/*.c src/graph/*.c src/ops/*.c src/autodiff/*.c src/nn/*.c src/wasm/*.c
  # the Jacobians' communicator helpers (nabla.h alone; no MPI)
  src/dist/comm.c)
# model files and data sets need src/io; the AVX-512 kernels are x86 only.
list(FILTER NB_WASM_SOURCES EXCLUDE REGEX "/(modelio|dataset|sgemm_avx512|sparse_rows_avx512)\\.c$")
set(NB_WASM_WARN -Wall -Wextra -Wshadow -Wno-unused-parameter -Wstrict-prototypes)
if(NB_WERROR)
  list(APPEND NB_WASM_WARN -Werror)
endif()
add_executable(nabla_wasm ${NB_WASM_SOURCES})
set_target_properties(nabla_wasm PROPERTIES OUTPUT_NAME nabla SUFFIX .wasm)
target_include_directories(nabla_wasm PRIVATE include)
target_compile_options(nabla_wasm PRIVATE ${NB_WASM_WARN} -O2 -fno-math-errno)
target_compile_definitions(nabla_wasm PRIVATE _POSIX_C_SOURCE=200809L)
# A reactor: no main, _initialize runs the C runtime's constructors once, then
# the page calls the exported nbw_* functions. --strip-all keeps the exports.
target_link_options(nabla_wasm PRIVATE -mexec-model=reactor -Wl,--strip-all)
