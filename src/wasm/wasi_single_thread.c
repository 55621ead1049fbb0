/* What the core asks of C11 threads that wasi-libc's single-threaded build
 * declares but does not define: call_once (src/kernels/gemm.c picks its
 * kernel once). A WebAssembly instance without the threads proposal runs one
 * thread, so "once" is a flag. Compiled into the WebAssembly module only
 * (scripts/web.sh), never into the native library. */
#include <threads.h>

void call_once(once_flag *flag, void (*func)(void))
{
    if (*flag) return;
    *flag = 1;
    func();
}
