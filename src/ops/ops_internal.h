/* What the ops share among themselves (src/ops): the op registry, the
 * helpers of the gradient-check cases, and a max pool's adjoint read by the
 * convolution before it, routed by the fused conv2d_relu_maxpool. Not
 * installed. */
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
/* A leaf of distinct, well-separated values: start + 0.1 (a shuffle of
 * 0, 1, ...) + a jitter in [0, 0.02), so no step of the gradient check
 * (<= 1e-2) reorders two of them (a max pool's argmax stays where it is). */
nb_node *nb_check_ramp_leaf(nb_graph *g, nb_rng *r, const char *name, int rank, const int64_t *shape, double start);
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

/* The graph pass that fuses a max pool into the convolution before it
 * (conv2d.c): when conv is a conv2d node (with or without its fused ReLU)
 * that is the last node of its graph, and the pool's windows tile without
 * overlap (stride 0 or = size, padding 'valid'), returns a new
 * conv2d_relu_maxpool node on conv's inputs, computing what
 * max_pool2d(conv) would, and marks conv as fused into it (nb_node_fuse_into:
 * conv keeps its shape but is no longer computed). Else NULL, with no error
 * set unless the new node could not be made. */
nb_node *nb_fuse_conv2d_maxpool(nb_node *conv, int size, int stride, nb_padding padding);

/* ------------------------------------------ max pooling's routing (pool.c) */

/* y[c] = max over the window rows [h0, h1) and columns [w0, w1) of one
 * image's x (NHWC, W columns, C channels), the first maximum on ties and a
 * NaN winning; ao[c] = its offset inside the image. xb holds the image's
 * rows from h_first on (a band of it, or all of it with h_first = 0). */
void nb_max_pool_window(const nb_real *restrict xb, int64_t h_first, int64_t W, int64_t C, int64_t h0, int64_t h1,
                        int64_t w0, int64_t w1, nb_real *restrict yo, int32_t *restrict ao);

/* How a max pool with stride = window routes its adjoint to its input z:
 * the window w over z (H, W, C: z's image; OH, OW: the pooled), the argmax
 * of every pooled value (an offset inside its image), the pooled values y
 * and K stacked seeds dy of |y| = ysize values each. What
 * conv2d_relu_maxpool's VJP reads to form the convolution's dZ directly. */
typedef struct nb_pool_route {
    nb_window w;
    const int32_t *arg;
    const nb_real *y, *dy;
    int64_t ysize;
} nb_pool_route;

/* Rows [r0, r0 + m) of seed k's adjoint of z (rows: the pixels of z,
 * image-major, C values each): dz[r, c] = dy[o, c] where window o took its
 * maximum from (r, c), else 0; times [y[o, c] > 0] when gate_positive (a
 * ReLU before the pool, whose value at the argmax is y[o, c]). */
void nb_max_pool_adjoint_rows(const nb_pool_route *p, int64_t k, int64_t r0, int64_t m, bool gate_positive,
                              nb_real *out);
/* The same rows as compressed sparse rows, straight from the route's arrays
 * (no dense rows written); false if more than cap non-zeros (col and val
 * hold cap + 16). */
bool nb_max_pool_adjoint_sparse(const nb_pool_route *p, int64_t k, int64_t r0, int64_t m, bool gate_positive,
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

/* ------------------------------- normalisation over groups (norm_groups.c) */

/* x as `rows` rows of C values; per_channel: a group is a channel (all
 * rows: batchnorm in training mode), else a row (layernorm). The math and
 * the rules are at the top of norm_groups.c. mu, s (= (var + eps)^-1/2) and
 * var (biased) hold one value per group (nb_norm_group_count). */
typedef struct nb_norm_groups {
    int64_t rows, C;
    bool per_channel;
    /* Scratch of nb_norm_scratch_bytes(C) for the per-channel sums (the
     * op's workspace: the steady state allocates nothing). */
    double *scratch;
} nb_norm_groups;
int64_t nb_norm_group_count(const nb_norm_groups *L);
/* Bytes of nb_norm_groups.scratch for C channels. */
size_t nb_norm_scratch_bytes(int64_t C);
void nb_norm_forward(const nb_norm_groups *L, const nb_real *x, const nb_real *gamma, const nb_real *beta, double eps,
                     nb_real *mu, nb_real *s, nb_real *var, nb_real *y);
/* The per-channel sums of K seeds dy (K x 2C doubles): for seed k,
 * sums[2kC + c] = sum dy (dbeta_c) and sums[2kC + C + c] = sum dy xh
 * (dgamma_c) over the elements of channel c. */
void nb_norm_seed_sums(const nb_norm_groups *L, int64_t K, const nb_real *x, const nb_real *mu, const nb_real *s,
                       const nb_real *dy, double *sums);
/* dx for K seeds; per_channel groups read their seeds' sums (seed_sums,
 * nb_norm_seed_sums), row groups form their own (seed_sums unused). */
void nb_norm_vjp_x(const nb_norm_groups *L, int64_t K, const nb_real *x, const nb_real *gamma, const nb_real *mu,
                   const nb_real *s, const nb_real *dy, const double *seed_sums, nb_real *dx, bool acc);
/* dgamma (which 1) or dbeta (which 2) of K seeds from their sums. */
void nb_norm_vjp_affine_of_sums(int which, int64_t K, int64_t C, const double *sums, nb_real *out, bool acc);
/* which: 1 gamma, 2 beta. */
void nb_norm_vjp_affine(const nb_norm_groups *L, int which, int64_t K, const nb_real *x, const nb_real *mu,
                        const nb_real *s, const nb_real *dy, nb_real *out, bool acc);
/* dxs[0..2]: tangents of x, gamma, beta (NULL: zero). */
void nb_norm_jvp(const nb_norm_groups *L, int64_t K, const nb_real *x, const nb_real *gamma, const nb_real *mu,
                 const nb_real *s, nb_real *const *dxs, nb_real *dy);
/* The second-order rule of input i (0 x, 1 gamma, 2 beta). */
nb_status nb_norm_vjp_tangent(const nb_norm_groups *L, int i, int64_t K, const nb_real *x, const nb_real *gamma,
                              const nb_real *mu, const nb_real *s, const nb_real *ybar, nb_real *const *xdots,
                              nb_real *out, bool acc);

#endif
