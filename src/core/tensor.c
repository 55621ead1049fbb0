/* Tensors: shape bookkeeping and aligned storage. */
#include "core.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void *nb_alloc(size_t bytes)
{
    if (bytes == 0) bytes = 64;
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded < bytes) {
        nb_fail(NB_ERR_NOMEM, "allocation of %zu bytes overflows", bytes);
        return NULL;
    }
    void *p = aligned_alloc(64, rounded);
    if (!p) nb_fail(NB_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
    return p;
}

void nb_free(void *p) { free(p); }

void *nb_calloc_real(int64_t count)
{
    if (count < 0 || (uint64_t)count > SIZE_MAX / sizeof(nb_real)) {
        nb_fail(NB_ERR_TOO_LARGE, "cannot allocate %" PRId64 " elements", count);
        return NULL;
    }
    size_t bytes = (size_t)count * sizeof(nb_real);
    void *p = nb_alloc(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

nb_status nb_reserve(nb_real **buf, int64_t *cap, int64_t count)
{
    if (count <= *cap && *buf) return NB_OK;
    nb_real *p = nb_calloc_real(count > 0 ? count : 1);
    if (!p) return NB_ERR_NOMEM;
    nb_free(*buf);
    *buf = p;
    *cap = count;
    return NB_OK;
}

nb_status nb_reserve_bytes(void **buf, size_t *cap, size_t bytes)
{
    if (bytes <= *cap && *buf) return NB_OK;
    void *p = nb_alloc(bytes);
    if (!p) return NB_ERR_NOMEM;
    nb_free(*buf);
    *buf = p;
    *cap = bytes;
    return NB_OK;
}

int64_t nb_shape_size(int rank, const int64_t *shape)
{
    if (rank < 0 || rank > NB_MAX_RANK) return -1;
    /* The product of the nonzero dimensions must fit, wherever a zero
     * stands (NumPy's rule): then every partial product a caller forms
     * (strides, flattened rows, reduced counts) fits too, and (2^40, 2^40, 0)
     * and (0, 2^40, 2^40) get the same answer. */
    int64_t n = 1;
    int zero = 0;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] == 0) {
            zero = 1;
            continue;
        }
        if (n > INT64_MAX / shape[i]) return -1;
        n *= shape[i];
    }
    return zero ? 0 : n;
}

char *nb_shape_str(int rank, const int64_t *shape, char *buf, size_t n)
{
    size_t used = 0;
    if (n == 0) return buf;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < rank && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ", %" PRId64 : "%" PRId64, shape[i]);
    if (used < n) snprintf(buf + used, n - used, rank == 1 ? ",)" : ")");
    return buf;
}

/* The fewest significant digits (1..17) whose text reads back as v: as a
 * double, or (as_real) as an nb_real, the float a float build stores, so
 * 0.4f prints "0.4" and not "0.40000000596046448". NaN prints "nan" (never
 * "-nan"), infinities "inf" and "-inf". */
static char *shortest(double v, int as_real, char *buf, size_t n)
{
    if (n == 0) return buf;
    if (isnan(v)) return snprintf(buf, n, "nan"), buf;
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, n, "%.*g", digits, v);
        double back = strtod(buf, NULL);
        if (as_real ? (nb_real)back == (nb_real)v : back == v) break;
    }
    return buf;
}

char *nb_format_double(double v, char *buf, size_t n) { return shortest(v, 0, buf, n); }
char *nb_format_real(nb_real v, char *buf, size_t n) { return shortest((double)v, 1, buf, n); }

void nb_tensor_set_shape(nb_tensor *t, int rank, const int64_t *shape)
{
    t->rank = rank;
    for (int i = 0; i < NB_MAX_RANK; i++) t->shape[i] = i < rank ? shape[i] : 0;
    t->size = nb_shape_size(rank, shape);
}

nb_tensor *nb_tensor_new(int rank, const int64_t *shape)
{
    if (rank < 0 || rank > NB_MAX_RANK || (rank > 0 && !shape)) {
        nb_fail(NB_ERR_ARG, "tensor: rank %d is not in 0..%d", rank, NB_MAX_RANK);
        return NULL;
    }
    int64_t size = nb_shape_size(rank, shape);
    if (size < 0) {
        nb_fail(NB_ERR_SHAPE, "tensor: shape has a negative dimension or overflows");
        return NULL;
    }
    nb_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        nb_fail(NB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    nb_tensor_set_shape(t, rank, shape);
    t->data = nb_calloc_real(size);
    if (!t->data) {
        free(t);
        return NULL;
    }
    t->owns_data = 1;
    return t;
}

nb_tensor *nb_tensor_from(int rank, const int64_t *shape, const nb_real *data)
{
    nb_tensor *t = nb_tensor_new(rank, shape);
    if (t && data) memcpy(t->data, data, (size_t)t->size * sizeof(nb_real));
    return t;
}

nb_tensor *nb_tensor_clone(const nb_tensor *t)
{
    if (!t) {
        nb_fail(NB_ERR_ARG, "tensor_clone: NULL tensor");
        return NULL;
    }
    return nb_tensor_from(t->rank, t->shape, t->data);
}

void nb_tensor_free(nb_tensor *t)
{
    if (!t) return;
    if (t->owns_data) nb_free(t->data);
    free(t);
}
