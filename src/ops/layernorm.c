/* Layer normalisation over the last axis: inputs x (..., C), gamma and
 * beta (C). Per row r (one position of the leading axes) over its C values,
 * mu_r = mean(x), var_r = mean((x - mu_r)^2) (biased), and
 *   y = gamma (x - mu_r) / sqrt(var_r + eps) + beta,
 * the same in training and inference (PyTorch's nn.LayerNorm(C)). Rows do
 * not mix, so the Jacobian is block-diagonal in the rows (and examples).
 * VJP, JVP and the second-order rule: norm_groups.c with a group per row
 * (n = C): dx = s (g - mean(g) - xh mean(g xh)) with g = gamma dy, and so
 * on. A row of one value (C = 1) has var 0 and y = beta (eps keeps s
 * finite). */
#include "ops_internal.h"

#include <stdio.h>

typedef struct layernorm_attrs {
    double eps;
} layernorm_attrs;
NB_ATTRS_FIT(layernorm_attrs);

/* Workspace: mu, s and var, one per row, then the scratch of the
 * per-channel sums of dgamma and dbeta (nb_norm_scratch_bytes, 8-aligned). */
static size_t stats_bytes(int64_t rows)
{
    return ((size_t)(3 * (rows ? rows : 1)) * sizeof(nb_real) + 7) / 8 * 8;
}
static nb_norm_groups groups_of(const nb_node *n)
{
    const int64_t C = n->value.shape[n->value.rank - 1], rows = C ? n->value.size / C : 0;
    double *scratch = n->ws ? (double *)(void *)((char *)n->ws + stats_bytes(rows)) : NULL;
    return (nb_norm_groups){rows, C, false, scratch};
}

static nb_status layernorm_infer(nb_node *n)
{
    const nb_tensor *x = &n->in[0]->value;
    char s1[96], s2[96];
    if (x->rank < 1)
        return nb_fail(NB_ERR_SHAPE, "layernorm: the input is a scalar; it needs a last axis to normalise");
    for (int i = 1; i < 3; i++) {
        const nb_tensor *p = &n->in[i]->value;
        if (p->rank != 1 || p->shape[0] != x->shape[x->rank - 1])
            return nb_fail(NB_ERR_SHAPE, "layernorm: %s has shape %s, the input %s: it needs one value per feature",
                           i == 1 ? "gamma" : "beta", NB_SHAPE_STR(p, s1), NB_SHAPE_STR(x, s2));
    }
    nb_tensor_set_shape(&n->value, x->rank, x->shape);
    return NB_OK;
}

static nb_real *stats_of(const nb_node *n)
{
    return (nb_real *)n->ws;
}

static nb_status layernorm_forward(nb_node *n)
{
    const int64_t C = n->value.shape[n->value.rank - 1], rows = C ? n->value.size / C : 0;
    if (!nb_node_workspace(n, stats_bytes(rows) + nb_norm_scratch_bytes(C))) return NB_ERR_NOMEM;
    const nb_norm_groups L = groups_of(n);
    nb_real *mu = stats_of(n), *s = mu + L.rows, *var = s + L.rows;
    const double eps = ((const layernorm_attrs *)nb_node_attrs_c(n))->eps;
    nb_norm_forward(&L, n->in[0]->value.data, n->in[1]->value.data, n->in[2]->value.data, eps, mu, s, var,
                    n->value.data);
    return NB_OK;
}

static nb_status layernorm_vjp(nb_node *n, int i, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    const nb_norm_groups L = groups_of(n);
    const nb_real *mu = stats_of(n), *s = mu + L.rows, *x = n->in[0]->value.data;
    if (i == 0)
        nb_norm_vjp_x(&L, K, x, n->in[1]->value.data, mu, s, dy, NULL, dx, acc);
    else
        nb_norm_vjp_affine(&L, i, K, x, mu, s, dy, dx, acc);
    return NB_OK;
}

static nb_status layernorm_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy)
{
    const nb_norm_groups L = groups_of(n);
    const nb_real *mu = stats_of(n), *s = mu + L.rows;
    nb_norm_jvp(&L, K, n->in[0]->value.data, n->in[1]->value.data, mu, s, dxs, dy);
    return NB_OK;
}

static nb_status layernorm_vjp_tangent(nb_node *n, int i, int64_t K, const nb_real *ybar, nb_real *const *xdots,
                                       nb_real *out, bool acc)
{
    const nb_norm_groups L = groups_of(n);
    const nb_real *mu = stats_of(n), *s = mu + L.rows;
    return nb_norm_vjp_tangent(&L, i, K, n->in[0]->value.data, n->in[1]->value.data, mu, s, ybar, xdots, out, acc);
}

static nb_node *case_ln(nb_graph *g, nb_rng *r, int rank, const int64_t *shape)
{
    const int64_t C = shape[rank - 1];
    nb_node *x = nb_check_leaf(g, r, "x", rank, shape, -1, 1);
    nb_node *ga = nb_check_leaf(g, r, "gamma", 1, &C, 0.5, 1.5), *be = nb_check_leaf(g, r, "beta", 1, &C, -1, 1);
    return nb_tanh(nb_layernorm(x, ga, be, 1e-3));
}
static nb_node *case_ln_nc(nb_graph *g, nb_rng *r)
{
    return case_ln(g, r, NB_SHAPE(3, 5));
}
static nb_node *case_ln_nhwc(nb_graph *g, nb_rng *r)
{
    return case_ln(g, r, NB_SHAPE(2, 2, 2, 3));
}
/* more rows than the dgamma sums' chunks */
static nb_node *case_ln_rows(nb_graph *g, nb_rng *r)
{
    return case_ln(g, r, NB_SHAPE(5, 7, 2));
}
static const nb_op_case layernorm_cases[] = {
    {"(3,5)", case_ln_nc}, {"(2,2,2,3)", case_ln_nhwc}, {"(5,7,2)", case_ln_rows}};

const nb_op nb_op_layernorm = {
    .name = "layernorm",
    .ninputs = 3,
    .attrs_size = sizeof(layernorm_attrs),
    .infer = layernorm_infer,
    .forward = layernorm_forward,
    .vjp = layernorm_vjp,
    .jvp = layernorm_jvp,
    .vjp_tangent = layernorm_vjp_tangent,
    .cases = layernorm_cases,
    .ncases = NB_COUNT(layernorm_cases),
};

nb_node *nb_layernorm(nb_node *x, nb_node *gamma, nb_node *beta, double eps)
{
    if (!(eps > 0 && eps < 1)) {
        nb_fail(NB_ERR_ARG, "layernorm: eps %g must be in (0, 1)", eps);
        return NULL;
    }
    const layernorm_attrs at = {eps};
    nb_node *const in[3] = {x, gamma, beta};
    return nb_node_op_new(&nb_op_layernorm, 3, in, &at);
}
