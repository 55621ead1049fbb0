/* What the ops share among themselves (src/ops): the op registry, the
 * helpers of the gradient-check cases, and a max pool's adjoint read by the
 * convolution before it, which the pool leaves deferred. Not installed. */
#ifndef NB_OPS_INTERNAL_H
#define NB_OPS_INTERNAL_H

#include "../graph/graph.h"
#include "../kernels/kernels.h"

#include <math.h>

/* ------------------------------------------------------------ registry */

/* Every op's descriptor, declared from the one list (op_list.h). */
#define NB_OP(id) extern const nb_op nb_op_##id;
#include "op_list.h"
#undef NB_OP

/* The registry (registry.c): the ops of op_list.h in its order. */
int nb_op_count(void);
const nb_op *nb_op_at(int i);             /* NULL outside 0 .. nb_op_count() - 1 */
const nb_op *nb_op_find(const char *name); /* by nb_op.name; NULL if none */

/* Number of elements of a static array (a case table). */
#define NB_COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* One row's softmax (softmax.c), written to s (C >= 1 values), with
 * lse(v) = m + lsum split into the max m = max_c v_c (*max) and
 * lsum = log sum_c exp(v_c - m) in [0, log C] (the return value). The two
 * are never added: callers form (v_c - m) - lsum, or (m - v_c) + lsum, so
 * logits of any size keep full precision (m + lsum rounds to m's precision:
 * for [1e7, 1e7] in float, to 1e7, losing log 2). Used by softmax,
 * log_softmax and the CCE losses. */
nb_real nb_softmax_row(const nb_real *v, nb_real *s, int64_t C, nb_real *max);

/* ----------------------------------------------- gradient-check helpers */

/* A leaf input `name` of the given shape, uniform in [lo, hi) from r. */
nb_node *nb_check_leaf(nb_graph *g, nb_rng *r, const char *name, int rank, const int64_t *shape, double lo,
                       double hi);
/* Shapes written inline: NB_CHECK_X("x", -1, 1, 2, 3) is a (2, 3) leaf in
 * [-1, 1); the case builder's arguments must be named g and r. */
#define NB_SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}
#define NB_CHECK_X(name, lo, hi, ...) nb_check_leaf(g, r, name, NB_SHAPE(__VA_ARGS__), lo, hi)

/* ------------------------------------------------ shared by several ops */

/* The logistic function without overflow for large |x|: 1 / (1 + e^-x)
 * for x >= 0, e^x / (1 + e^x) below (e^-x would overflow there). */
static inline nb_real nb_sigmoid_stable(nb_real x)
{
    return x >= 0 ? (nb_real)1 / ((nb_real)1 + RE(exp)(-x)) : RE(exp)(x) / ((nb_real)1 + RE(exp)(x));
}

/* Rows [r0, r0 + m) of seed k's adjoint of a max pool's input x (rows: the
 * pixels of x, image-major, C values each) computed from the pool's own
 * adjoint: dx[r, c] = dy[o, c] where the pool's window o took its maximum
 * from (r, c), else 0; times [y[o, c] > 0] when gate_positive (the mask of
 * a ReLU fused into x, whose value at the argmax is y[o, c]). For a pool
 * with stride = window (the only case it defers, pool.c). */
void nb_max_pool_adjoint_rows(const nb_node *pool, int64_t k, int64_t r0, int64_t m, bool gate_positive,
                              nb_real *out);
/* The same rows as compressed sparse rows, straight from the pool's arrays
 * (no dense rows written); false if more than cap non-zeros (col and val
 * hold cap + 16). */
bool nb_max_pool_adjoint_sparse(const nb_node *pool, int64_t k, int64_t r0, int64_t m, bool gate_positive,
                                int64_t cap, struct nb_sparse_rows *s);

#endif
