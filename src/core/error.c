/* Thread-local error messages, versions and thread settings. */
#include "core.h"

#include <stdio.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static _Thread_local char nb_error_message[512];
/* The most recent message that was not about a NULL input: the likely
 * cause of a NULL handed on through a chain of calls. */
static _Thread_local char nb_error_cause[512];

nb_status nb_set_error(nb_status status, const char *fmt, ...)
{
    /* Formatted apart first: callers wrap the last message in a new one
     * (nb_fail(s, "%s: %s", name, nb_last_error())), and vsnprintf into the
     * buffer an argument points to overwrites what it is still reading. */
    char msg[sizeof nb_error_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(nb_error_message, msg, sizeof msg);
    memcpy(nb_error_cause, msg, sizeof msg);
    return status;
}

/* nb_tanh(nb_add(nb_matmul(x, w), b)) with a bad matmul hands NULL to add
 * and then to tanh: each says its own input was NULL and names the earlier
 * error, which is then most likely why. */
nb_status nb_fail_null_input(const char *who, int i)
{
    if (nb_error_cause[0])
        snprintf(nb_error_message, sizeof nb_error_message, "%s: input %d is NULL (the last error before it: %.400s)",
                 who, i, nb_error_cause);
    else
        snprintf(nb_error_message, sizeof nb_error_message, "%s: input %d is NULL", who, i);
    return NB_ERR_ARG;
}

void nb_clear_error(void) { nb_error_message[0] = nb_error_cause[0] = '\0'; }

const char *nb_last_error(void) { return nb_error_message; }

const char *nb_status_name(nb_status s)
{
    switch (s) {
    case NB_OK: return "ok";
    case NB_ERR_ARG: return "bad argument";
    case NB_ERR_SHAPE: return "shape error";
    case NB_ERR_NOMEM: return "out of memory";
    case NB_ERR_TOO_LARGE: return "too large";
    case NB_ERR_IO: return "i/o error";
    case NB_ERR_FORMAT: return "format error";
    case NB_ERR_NUMERIC: return "numerical error";
    case NB_ERR_UNSUPPORTED: return "unsupported";
    }
    return "unknown status";
}

const char *nb_version(void) { return NB_VERSION; }

const char *nb_precision(void) { return sizeof(nb_real) == 8 ? "float64" : "float32"; }

/* Process-wide, as the BLAS's own thread count is. OpenMP keeps its thread
 * count per thread (omp_set_num_threads sets the caller's only), so the
 * passes call nb_threads_apply() to carry it into threads the caller
 * started: a model trained in a new pthread then uses the same count (and
 * gets the same bits) as one trained in the thread that set it. */
static _Atomic int nb_threads_requested = 0;

void nb_threads_apply(void)
{
#ifdef _OPENMP
    int n = nb_threads_requested;
    if (n > 0 && omp_get_max_threads() != n) omp_set_num_threads(n);
#endif
}

void nb_set_num_threads(int n)
{
    nb_threads_requested = n > 0 ? n : 0;
#ifdef _OPENMP
    omp_set_num_threads(n > 0 ? n : omp_get_num_procs());
#endif
}

int nb_get_num_threads(void)
{
#ifdef _OPENMP
    return nb_threads_requested > 0 ? nb_threads_requested : omp_get_max_threads();
#else
    return 1;
#endif
}
