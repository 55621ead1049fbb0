/* The bottom layer of the library's internals: error reporting, memory,
 * threads and the element type's math. Every other internal header builds
 * on this one (core <- kernels <- graph <- ops <- autodiff <- nn <- io, viz
 * <- cli). Not installed. */
#ifndef NB_CORE_H
#define NB_CORE_H

#include "nabla.h"

#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

/* ---------------------------------------------------------------- errors */

/* Sets the thread-local message (printf-style) and returns status: the
 * library's name for the public nb_set_error. */
#define nb_fail nb_set_error
void nb_clear_error(void);
/* NB_ERR_ARG "WHO: input I is NULL", naming the last earlier error (the
 * likely cause when calls are chained). */
nb_status nb_fail_null_input(const char *who, int i);
/* A file's text (a tensor or node name) as a message quotes it:
 * nb_escape_text into a buffer that lives to the end of the enclosing
 * block, at most 128 bytes ("..." when cut). */
#define NB_QUOTED(text) nb_escape_text((char[132]){0}, 132, (text), SIZE_MAX)

/* ---------------------------------------------------------------- memory */

void *nb_alloc(size_t bytes);            /* 64-byte aligned, NULL + error on failure */
void *nb_calloc_real(int64_t count);     /* zeroed nb_real array */
void nb_free(void *p);
/* Grows *buf to hold count nb_reals (never shrinks). */
nb_status nb_reserve(nb_real **buf, int64_t *cap, int64_t count);
/* Bytes, same rule. */
nb_status nb_reserve_bytes(void **buf, size_t *cap, size_t bytes);

/* Shape of a tensor from another. */
void nb_tensor_set_shape(nb_tensor *t, int rank, const int64_t *shape);
/* Applies nb_set_num_threads's count to the calling thread's OpenMP
 * thread count (error.c); called at the start of every pass. */
void nb_threads_apply(void);

#define NB_SHAPE_STR(t, buf) nb_shape_str((t)->rank, (t)->shape, buf, sizeof(buf))

/* y = acc ? y + v : v, the write rule of every VJP. */
#define NB_PUT(acc, y, v) ((y) = (acc) ? (y) + (v) : (v))

/* Threads: the one OpenMP team does all parallel work (the BLAS runs on one
 * thread inside it), so no two thread pools fight over the cores.
 * Below these sizes (elements of the loop's output) a loop runs on the
 * calling thread: waking the team costs a few microseconds, more than the
 * work. One set for the whole library, used in the loops' `if` clauses:
 *   NB_PAR_MAP:    arithmetic per element (elementwise ops, softmax rows,
 *                  conv2d's bias and ReLU passes, im2col);
 *   NB_PAR_INDEX:  index arithmetic per element (pooling's gathers and
 *                  scatters), about twice the work of a map;
 *   NB_PAR_COPY:   plain copies (reshape), memory-bound. */
#define NB_PAR_MAP 32768
#define NB_PAR_INDEX 16384
#define NB_PAR_COPY 65536
#ifdef _OPENMP
#include <omp.h>
static inline int nb_thread_id(void) { return omp_get_thread_num(); }
static inline int nb_team_size(void) { return omp_get_num_threads(); }
static inline int nb_max_team(void) { return omp_get_max_threads(); }
#else
static inline int nb_thread_id(void) { return 0; }
static inline int nb_team_size(void) { return 1; }
static inline int nb_max_team(void) { return 1; }
#endif

/* Math functions of the element type: RE(exp)(x) is expf or exp. */
#ifdef NB_DOUBLE
#define RE(fn) fn
#else
#define RE(fn) fn##f
#endif

#endif
