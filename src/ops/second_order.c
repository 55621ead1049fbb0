/* Second-order rules that several ops share (the vjp_tangent field of
 * nb_op, graph.h). Each op's own rule, with its math, sits in its file
 * beside its VJP and JVP. */
#include "ops_internal.h"

nb_status nb_vjp_tangent_zero(nb_node *n, int i, int64_t K, const nb_real *ybar, nb_real *const *xdots,
                              nb_real *out, bool accumulate)
{
    (void)ybar, (void)xdots;
    const int64_t count = K * n->in[i]->value.size;
    if (!accumulate && count > 0) memset(out, 0, (size_t)count * sizeof(nb_real));
    return NB_OK;
}

/* For y bilinear in (x_i, x_j): VJP_i(ybar; x) = B(ybar, x_j) with B linear
 * in x_j, so d/dx_j [VJP_i] . xdot_j = B(ybar, xdot_j), the op's own VJP
 * read with xdot_j where x_j's value was. When x_i and x_j are one node
 * (mul(x, x)) the substitution is still exact: VJP_i reads only x_j. */
nb_status nb_vjp_tangent_bilinear(nb_node *n, int i, int j, int64_t K, const nb_real *ybar, nb_real *const *xdots,
                                  nb_real *out, bool accumulate)
{
    if (!xdots[j]) return nb_vjp_tangent_zero(n, i, K, ybar, xdots, out, accumulate);
    nb_tensor *xj = &n->in[j]->value;
    nb_real *const saved = xj->data;
    const int64_t mi = n->in[i]->value.size, mj = xj->size;
    nb_status s = NB_OK;
    for (int64_t k = 0; k < K && !s; k++) {
        xj->data = xdots[j] + k * mj;
        s = n->op->vjp(n, i, 1, ybar, out + k * mi, accumulate);
    }
    xj->data = saved;
    return s;
}
