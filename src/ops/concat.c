/* concat: two tensors joined on their last axis (the channel axis of NHWC).
 * a (..., Ca), b (..., Cb) with equal leading dims -> y (..., Ca + Cb):
 *   y[r, c] = a[r, c] for c < Ca, b[r, c - Ca] for c >= Ca  (r: a row of the
 *   leading dims). K inputs are a chain of these (the model's `concat`).
 * Jacobian: dy[r, c]/da[r', c'] = [r = r'][c = c'], dy[r, Ca + c]/db[r', c']
 * = [r = r'][c = c'], so
 *   VJP: da = dy[:, :Ca], db = dy[:, Ca:]  (the seed's two column blocks);
 *   JVP: dy = [da, db]                     (the tangents joined, 0 for none).
 * Second order: the Jacobian is constant (y is linear in a and b), so the
 * VJP does not depend on the inputs and its tangent is zero. */
#include "ops_internal.h"

#include <stdio.h>

static nb_status concat_infer(nb_node *n)
{
    const nb_tensor *a = &n->in[0]->value, *b = &n->in[1]->value;
    bool ok = a->rank == b->rank && a->rank >= 1;
    for (int d = 0; ok && d + 1 < a->rank; d++)
        ok = a->shape[d] == b->shape[d];
    if (!ok) {
        char s1[96], s2[96];
        return nb_fail(NB_ERR_SHAPE, "concat: shapes %s and %s differ before the last axis (only the last may differ)",
                       NB_SHAPE_STR(a, s1), NB_SHAPE_STR(b, s2));
    }
    int64_t shape[NB_MAX_RANK];
    memcpy(shape, a->shape, sizeof(int64_t) * (size_t)a->rank);
    shape[a->rank - 1] += b->shape[a->rank - 1];
    nb_tensor_set_shape(&n->value, a->rank, shape);
    return NB_OK;
}

/* Rows, and the widths of a, b and y. */
static void dims(const nb_node *n, int64_t *rows, int64_t *ca, int64_t *cb)
{
    const nb_tensor *a = &n->in[0]->value, *b = &n->in[1]->value;
    *ca = a->shape[a->rank - 1];
    *cb = b->shape[b->rank - 1];
    *rows = *ca ? a->size / *ca : (*cb ? b->size / *cb : 0);
}

/* Copies the K stacked blocks: y rows of ca + cb from a (ca) and b (cb);
 * a NULL source gives zeros. */
static void join(int64_t K, int64_t rows, int64_t ca, int64_t cb, const nb_real *a, const nb_real *b, nb_real *y)
{
    for (int64_t r = 0; r < K * rows; r++) {
        nb_real *o = y + r * (ca + cb);
        if (a)
            memcpy(o, a + r * ca, (size_t)ca * sizeof(nb_real));
        else
            memset(o, 0, (size_t)ca * sizeof(nb_real));
        if (b)
            memcpy(o + ca, b + r * cb, (size_t)cb * sizeof(nb_real));
        else
            memset(o + ca, 0, (size_t)cb * sizeof(nb_real));
    }
}

static nb_status concat_forward(nb_node *n)
{
    int64_t rows, ca, cb;
    dims(n, &rows, &ca, &cb);
    join(1, rows, ca, cb, n->in[0]->value.data, n->in[1]->value.data, n->value.data);
    return NB_OK;
}

static nb_status concat_vjp(nb_node *n, int in, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    int64_t rows, ca, cb;
    dims(n, &rows, &ca, &cb);
    const int64_t w = in ? cb : ca, off = in ? ca : 0;
    for (int64_t r = 0; r < K * rows; r++) {
        const nb_real *g = dy + r * (ca + cb) + off;
        nb_real *d = dx + r * w;
        for (int64_t c = 0; c < w; c++)
            NB_PUT(acc, d[c], g[c]);
    }
    return NB_OK;
}

static nb_status concat_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy)
{
    int64_t rows, ca, cb;
    dims(n, &rows, &ca, &cb);
    join(K, rows, ca, cb, dxs[0], dxs[1], dy);
    return NB_OK;
}

static nb_node *case_channels(nb_graph *g, nb_rng *r)
{
    return nb_concat(NB_CHECK_X("a", -1, 1, 2, 2, 2, 3), NB_CHECK_X("b", -1, 1, 2, 2, 2, 2));
}
/* One input feeding both sides: the two adjoints add up. */
static nb_node *case_same(nb_graph *g, nb_rng *r)
{
    nb_node *x = NB_CHECK_X("x", -1, 1, 3, 2);
    return nb_concat(x, nb_tanh(x));
}
static const nb_op_case concat_cases[] = {{"(2,2,2,3) + (2,2,2,2)", case_channels}, {"x and tanh(x)", case_same}};

const nb_op nb_op_concat = {
    .name = "concat",
    .ninputs = 2,
    .infer = concat_infer,
    .forward = concat_forward,
    .vjp = concat_vjp,
    .jvp = concat_jvp,
    .vjp_tangent = nb_vjp_tangent_zero,
    .cases = concat_cases,
    .ncases = NB_COUNT(concat_cases),
};

nb_node *nb_concat(nb_node *a, nb_node *b)
{
    nb_node *in[2] = {a, b};
    return nb_node_op_new(&nb_op_concat, 2, in, NULL);
}
