/* Ops that move elements without changing them: transpose, reshape, flatten.
 *
 * Each is y = P x for a permutation matrix P (reshape and flatten: the
 * identity, since row-major order is kept). The Jacobian dy[o]/dx[i] is 1
 * where i is the element o was taken from and 0 elsewhere, so
 *   VJP: dx = P^T dy (the inverse permutation; for reshape a plain copy);
 *   JVP: dy = P dx (the same move as the forward pass). */
#include "ops_internal.h"

#include <stdio.h>

/* transpose: the permutation, axes[d] = the input axis of output axis d. */
typedef struct transpose_attrs {
    int perm[NB_MAX_RANK];
    int rank;
} transpose_attrs;
NB_ATTRS_FIT(transpose_attrs);
/* reshape: the target shape as given (one -1 at most, resolved at inference). */
typedef struct reshape_attrs {
    int64_t shape[NB_MAX_RANK];
    int rank;
} reshape_attrs;
NB_ATTRS_FIT(reshape_attrs);

static const transpose_attrs *tr_at(const nb_node *n) { return nb_node_attrs_c(n); }
static const reshape_attrs *rs_at(const nb_node *n) { return nb_node_attrs_c(n); }

/* --------------------------------------------------------------- transpose */
/* y[j_0, ..., j_{r-1}] = x[i] with i_{perm[d]} = j_d, so y.shape[d] =
 * x.shape[perm[d]]. Jacobian: dy[j]/dx[i] = prod_d [i_{perm[d]} = j_d]. */

/* Walks y in order; BODY sees o (offset in y) and i (offset in x). */
#define PERM_FOR(n, BODY)                                                                                         \
    do {                                                                                                          \
        const nb_tensor *X_ = &(n)->in[0]->value, *Y_ = &(n)->value;                                              \
        const int R_ = Y_->rank;                                                                                  \
        int64_t xs_[NB_MAX_RANK] = {0}, st_[NB_MAX_RANK], idx_[NB_MAX_RANK] = {0};                                    \
        int64_t s_ = 1;                                                                                           \
        for (int d_ = X_->rank - 1; d_ >= 0; d_--) xs_[d_] = s_, s_ *= X_->shape[d_];                             \
        for (int d_ = 0; d_ < R_; d_++) st_[d_] = xs_[tr_at(n)->perm[d_]];                                          \
        if (R_ == 0) {                                                                                            \
            const int64_t o = 0, i = 0;                                                                           \
            BODY;                                                                                                 \
            break;                                                                                                \
        }                                                                                                         \
        const int64_t inner_ = Y_->shape[R_ - 1], sin_ = st_[R_ - 1];                                             \
        int64_t i0_ = 0;                                                                                          \
        for (int64_t o0_ = 0; inner_ > 0 && o0_ < Y_->size; o0_ += inner_) {                                      \
            for (int64_t t_ = 0; t_ < inner_; t_++) {                                                             \
                const int64_t o = o0_ + t_, i = i0_ + t_ * sin_;                                                  \
                BODY;                                                                                             \
            }                                                                                                     \
            for (int d_ = R_ - 2; d_ >= 0; d_--) {                                                                \
                idx_[d_]++;                                                                                       \
                i0_ += st_[d_];                                                                                   \
                if (idx_[d_] < Y_->shape[d_]) break;                                                              \
                i0_ -= st_[d_] * idx_[d_];                                                                        \
                idx_[d_] = 0;                                                                                     \
            }                                                                                                     \
        }                                                                                                         \
    } while (0)

static nb_status transpose_infer(nb_node *n)
{
    const nb_tensor *x = &n->in[0]->value;
    if (x->rank != tr_at(n)->rank) {
        char b[96];
        return nb_fail(NB_ERR_SHAPE, "transpose: permutation of %d axes does not fit input of shape %s (rank %d)",
                       tr_at(n)->rank, NB_SHAPE_STR(x, b), x->rank);
    }
    int64_t shape[NB_MAX_RANK];
    for (int d = 0; d < x->rank; d++) shape[d] = x->shape[tr_at(n)->perm[d]];
    nb_tensor_set_shape(&n->value, x->rank, shape);
    return NB_OK;
}

static nb_status transpose_forward(nb_node *n)
{
    const nb_real *x = n->in[0]->value.data;
    nb_real *y = n->value.data;
    PERM_FOR(n, y[o] = x[i]);
    return NB_OK;
}

static nb_status transpose_vjp(nb_node *n, int in, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    const int64_t m = n->value.size;
    for (int64_t k = 0; k < K; k++) {
        const nb_real *g = dy + k * m;
        nb_real *r = dx + k * m;
        PERM_FOR(n, NB_PUT(acc, r[i], g[o]));
    }
    return NB_OK;
}

static nb_status transpose_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy)
{
    const int64_t m = n->value.size;
    if (!dxs[0]) {
        memset(dy, 0, (size_t)(K * m) * sizeof(nb_real));
        return NB_OK;
    }
    for (int64_t k = 0; k < K; k++) {
        const nb_real *t = dxs[0] + k * m;
        nb_real *r = dy + k * m;
        PERM_FOR(n, r[o] = t[i]);
    }
    return NB_OK;
}

static nb_node *case_transpose3(nb_graph *g, nb_rng *r)
{
    return nb_transpose(NB_CHECK_X("x", -1, 1, 2, 3, 4), (const int[]){2, 0, 1});
}
static nb_node *case_transpose2(nb_graph *g, nb_rng *r) { return nb_transpose(NB_CHECK_X("x", -1, 1, 3, 4), NULL); }
static const nb_op_case transpose_cases[] = {{"perm (2,0,1)", case_transpose3}, {"2-D, perm NULL", case_transpose2}};

/* Second order: linear in its input (pooling: with the argmax fixed, which it
 * is away from ties; dropout: for the fixed mask), so the VJP does not
 * depend on x and the rule is zero (nb_vjp_tangent_zero). */
const nb_op nb_op_transpose = {
    .name = "transpose",
    .ninputs = 1,
    .attrs_size = sizeof(transpose_attrs),
    .infer = transpose_infer,
    .forward = transpose_forward,
    .vjp = transpose_vjp,
    .jvp = transpose_jvp,
    .vjp_tangent = nb_vjp_tangent_zero,
    .cases = transpose_cases,
    .ncases = NB_COUNT(transpose_cases),
};

nb_node *nb_transpose(nb_node *x, const int *perm)
{
    if (!x) return nb_node_op_new(&nb_op_transpose, 1, &x, NULL);
    const int rank = x->value.rank;
    transpose_attrs at = {0};
    at.rank = rank;
    bool seen[NB_MAX_RANK] = {false};
    for (int d = 0; d < rank; d++) {
        int p = perm ? perm[d] : rank - 1 - d;
        int a = p < 0 ? p + rank : p;
        if (a < 0 || a >= rank || seen[a]) {
            char b[96];
            nb_fail(NB_ERR_ARG, "transpose: perm[%d] = %d %s for input '%s' of shape %s (perm must list each axis "
                    "0..%d once)",
                    d, p, a < 0 || a >= rank ? "is out of range" : "repeats an axis", x->name,
                    NB_SHAPE_STR(&x->value, b), rank - 1);
            return NULL;
        }
        seen[a] = true;
        at.perm[d] = a;
    }
    return nb_node_op_new(&nb_op_transpose, 1, &x, &at);
}

/* ------------------------------------------------------- reshape, flatten */
/* y = x with another shape, same row-major order: dy[o]/dx[i] = [o = i]. */

static nb_status reshape_infer(nb_node *n)
{
    const nb_tensor *x = &n->in[0]->value;
    const int rank = rs_at(n)->rank;
    int64_t shape[NB_MAX_RANK];
    int64_t known = 1;
    int infer_at = -1;
    for (int d = 0; d < rank; d++) {
        shape[d] = rs_at(n)->shape[d];
        if (shape[d] == -1) infer_at = d;
        else if (shape[d] != 0 && known > INT64_MAX / shape[d]) known = -1; /* overflows: never fits */
        else if (known >= 0) known *= shape[d];
    }
    bool ok;
    if (known < 0) {
        ok = false;
    } else if (infer_at >= 0) {
        ok = known > 0 ? x->size % known == 0 : x->size == 0;
        if (ok) shape[infer_at] = known > 0 ? x->size / known : 0;
        /* (0-sized with another 0 dim: the -1 is ambiguous; take 0) */
    } else {
        ok = known == x->size;
    }
    if (!ok) {
        char b1[96], b2[96];
        return nb_fail(NB_ERR_SHAPE, "reshape: cannot reshape '%s' of shape %s (%lld elements) into %s%s",
                       n->in[0]->name, NB_SHAPE_STR(x, b1), (long long)x->size,
                       nb_shape_str(rank, rs_at(n)->shape, b2, sizeof b2),
                       infer_at >= 0 ? ": the size is not a multiple of the known dims" : "");
    }
    nb_tensor_set_shape(&n->value, rank, shape);
    return NB_OK;
}

/* flatten: (N, d1, ..., dk) -> (N, d1 * ... * dk); (N,) -> (N, 1). */
static nb_status flatten_infer(nb_node *n)
{
    const nb_tensor *x = &n->in[0]->value;
    if (x->rank < 1)
        return nb_fail(NB_ERR_SHAPE, "flatten: input '%s' is a scalar; it needs a batch axis (N, ...)",
                       n->in[0]->name);
    int64_t shape[2] = {x->shape[0], 1};
    for (int d = 1; d < x->rank; d++) shape[1] *= x->shape[d];
    nb_tensor_set_shape(&n->value, 2, shape);
    return NB_OK;
}

/* In blocks over the threads: a flatten before a dense layer copies the
 * whole batch (4.7 MB for mnist_cnn at batch 128), and one thread's memcpy
 * left the other waiting (2-3% of an inference pass in perf). */
static nb_status copy_forward(nb_node *n)
{
    enum { BLOCK = 16384 };
    const int64_t size = n->value.size, blocks = (size + BLOCK - 1) / BLOCK;
    nb_real *y = n->value.data;
    const nb_real *x = n->in[0]->value.data;
#pragma omp parallel for schedule(static) if (size > NB_PAR_COPY)
    for (int64_t b = 0; b < blocks; b++) {
        const int64_t i0 = b * BLOCK, len = size - i0 < BLOCK ? size - i0 : BLOCK;
        memcpy(y + i0, x + i0, (size_t)len * sizeof(nb_real));
    }
    return NB_OK;
}

static nb_status copy_vjp(nb_node *n, int in, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    const int64_t count = K * n->value.size;
    if (!acc) {
        if (count) memcpy(dx, dy, (size_t)count * sizeof(nb_real));
        return NB_OK;
    }
#pragma omp parallel for simd schedule(static) if (count > NB_PAR_COPY)
    for (int64_t i = 0; i < count; i++) dx[i] += dy[i];
    return NB_OK;
}

static nb_status copy_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy)
{
    const size_t bytes = (size_t)(K * n->value.size) * sizeof(nb_real);
    if (!bytes) return NB_OK;
    if (dxs[0]) memcpy(dy, dxs[0], bytes);
    else memset(dy, 0, bytes);
    return NB_OK;
}

static nb_node *case_reshape(nb_graph *g, nb_rng *r)
{
    /* followed by a product so that the Jacobian is not a plain permutation */
    nb_node *x = NB_CHECK_X("x", -1, 1, 2, 3, 4);
    return nb_mul(nb_reshape(x, NB_SHAPE(4, -1)), NB_CHECK_X("w", -1, 1, 4, 6));
}
static nb_node *case_flatten(nb_graph *g, nb_rng *r) { return nb_flatten(NB_CHECK_X("x", -1, 1, 2, 3, 2, 2)); }
static const nb_op_case reshape_cases[] = {{"(2,3,4)->(4,-1), *w", case_reshape}};
static const nb_op_case flatten_cases[] = {{"(2,3,2,2)->(2,12)", case_flatten}};

const nb_op nb_op_reshape = {
    .name = "reshape",
    .ninputs = 1,
    .attrs_size = sizeof(reshape_attrs),
    .infer = reshape_infer,
    .forward = copy_forward,
    .vjp = copy_vjp,
    .jvp = copy_jvp,
    .vjp_tangent = nb_vjp_tangent_zero,
    .cases = reshape_cases,
    .ncases = NB_COUNT(reshape_cases),
};
const nb_op nb_op_flatten = {
    .name = "flatten",
    .ninputs = 1,
    .infer = flatten_infer,
    .forward = copy_forward,
    .vjp = copy_vjp,
    .jvp = copy_jvp,
    .vjp_tangent = nb_vjp_tangent_zero,
    .cases = flatten_cases,
    .ncases = NB_COUNT(flatten_cases),
};

nb_node *nb_reshape(nb_node *x, int rank, const int64_t *shape)
{
    if (!x) return nb_node_op_new(&nb_op_reshape, 1, &x, NULL);
    if (rank < 0 || rank > NB_MAX_RANK || (rank > 0 && !shape)) {
        nb_fail(NB_ERR_ARG, "reshape: rank %d is not in 0..%d%s", rank, NB_MAX_RANK,
                rank > 0 && !shape ? " or shape is NULL" : "");
        return NULL;
    }
    reshape_attrs at = {0};
    at.rank = rank;
    int minus = 0;
    for (int d = 0; d < rank; d++) {
        if (shape[d] < -1 || (shape[d] == -1 && ++minus > 1)) {
            char b[96];
            nb_fail(NB_ERR_ARG, "reshape: target shape %s has %s (only one -1, the inferred dim, is allowed)",
                    nb_shape_str(rank, shape, b, sizeof b), shape[d] < -1 ? "a negative dim" : "more than one -1");
            return NULL;
        }
        at.shape[d] = shape[d];
    }
    return nb_node_op_new(&nb_op_reshape, 1, &x, &at);
}

nb_node *nb_flatten(nb_node *x) { return nb_node_op_new(&nb_op_flatten, 1, &x, NULL); }
