/* What the core asks of C11 threads that wasi-libc's single-threaded build
 * declares but does not define: call_once (src/kernels/gemm.c picks its
 * kernel once) and plain mutexes (a kernel choice guarded by a lock). A
 * WebAssembly instance without the threads proposal runs one thread, so
 * "once" is a flag and a mutex has nothing to wait for. Compiled into the
 * WebAssembly module only (cmake/wasm.cmake), never into the native
 * library. */
#include <threads.h>

void call_once(once_flag *flag, void (*func)(void))
{
    if (*flag) return;
    *flag = 1;
    func();
}

int mtx_init(mtx_t *m, int type)
{
    (void)m;
    return type == mtx_plain || type == (mtx_plain | mtx_recursive) ? thrd_success : thrd_error;
}

int mtx_lock(mtx_t *m)
{
    (void)m;
    return thrd_success;
}

int mtx_trylock(mtx_t *m)
{
    (void)m;
    return thrd_success;
}

int mtx_unlock(mtx_t *m)
{
    (void)m;
    return thrd_success;
}

void mtx_destroy(mtx_t *m) { (void)m; }
