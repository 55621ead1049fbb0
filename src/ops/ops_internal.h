/* What the ops share among themselves (src/ops): a max pool's adjoint read
 * by the convolution before it, which the pool leaves deferred. Not
 * installed. */
#ifndef NB_OPS_INTERNAL_H
#define NB_OPS_INTERNAL_H

#include "../graph/graph.h"
#include "../kernels/kernels.h"

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

/* Second-order rules shared by ops (ops/second_order.c). The zero rule of
 * an op whose VJP does not depend on its inputs (linear ops: add, sum,
 * reshape, pooling, ...): out = 0, or unchanged when accumulating. */
nb_status nb_vjp_tangent_zero(nb_node *n, int i, int64_t K, const nb_real *ybar, nb_real *const *xdots,
                              nb_real *out, bool accumulate);
/* The rule of input i of an op that is bilinear in inputs i and j (matmul,
 * mul, conv2d's input and kernel): VJP_i does not depend on x_i and is
 * linear in x_j, so its derivative along xdot_j is VJP_i itself with xdot_j
 * in place of x_j. Runs the op's VJP once per tangent with x_j's value
 * pointing at xdots[j] + k |x_j| (restored after). Zero (or unchanged) when
 * xdots[j] is NULL. */
nb_status nb_vjp_tangent_bilinear(nb_node *n, int i, int j, int64_t K, const nb_real *ybar, nb_real *const *xdots,
                                  nb_real *out, bool accumulate);

#endif
