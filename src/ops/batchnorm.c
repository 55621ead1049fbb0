/* Batch normalisation over every axis but the last (the channel axis of
 * NHWC; (N, C) for a dense layer's output): inputs x (..., C), gamma, beta,
 * moving_mean, moving_variance (each (C)). The graph's mode chooses
 * (nb_graph_set_training: NB_TRAINING and NB_TRAINING_NO_DROPOUT use the
 * batch's statistics, NB_INFERENCE the moving ones), as PyTorch's
 * BatchNorm2d does.
 *
 * Training mode: per channel c over its n = N H W values, mu_c = mean(x),
 * var_c = mean((x - mu_c)^2) (biased), y = gamma (x - mu) / sqrt(var + eps)
 * + beta; the batch's values are coupled through mu and var, so the
 * Jacobian is not block-diagonal in the examples. Its VJP, JVP and
 * second-order rule are those of norm_groups.c with a group per channel.
 * The forward keeps mu and the biased var: nb_batchnorm_update_moving
 * then applies PyTorch's rule with the unbiased variance,
 *   moving_mean = (1 - momentum) moving_mean + momentum mu,
 *   moving_variance = (1 - momentum) moving_variance + momentum var n/(n-1).
 * A channel of one value (N = 1 for (N, C)) is refused in training mode,
 * as PyTorch refuses it ("Expected more than 1 value per channel").
 *
 * Inference mode: s_c = (moving_variance_c + eps)^(-1/2),
 * xh = (x - moving_mean) s, y = gamma xh + beta: linear in x, per element.
 *   VJP: dx = gamma s dy; dgamma_c = sum_c dy xh; dbeta_c = sum_c dy.
 *   JVP: ydot = gamma s xdot + gammadot xh + betadot.
 *   Second order: d(dx) = gammadot s dy; d(dgamma) = sum_c dy s xdot;
 *   d(dbeta) = 0.
 * The moving statistics carry no derivative (nondiff_mask): they are
 * state, not trained. */
#include "ops_internal.h"

#include <stdio.h>

typedef struct batchnorm_attrs {
    double eps, momentum;
} batchnorm_attrs;
NB_ATTRS_FIT(batchnorm_attrs);

/* Workspace: what the last forward used, then mu, s and var (C each), then
 * the scratch of the per-channel sums (nb_norm_scratch_bytes). */
#define STATS_OFFSET 64
typedef struct {
    int batch_stats; /* 1: the batch's statistics (training mode) */
    int fresh;       /* a training-mode forward since the last moving update */
    int64_t n;       /* values per channel of that forward */
    /* The seeds' per-channel sums in n->saved (K x 2C doubles), shared by
     * the VJPs of x, gamma and beta of one seed (each needs them: dbeta is
     * the sum of dy, dgamma of dy xh, dx both), valid while sums_ok and the
     * seed is the same: node serial, pointer and count. */
    int sums_ok;
    uint32_t sums_serial;
    const nb_real *sums_dy;
    int64_t sums_k;
} bn_header;
_Static_assert(sizeof(bn_header) <= STATS_OFFSET, "batchnorm: the header must fit before the statistics");

static const batchnorm_attrs *attrs_of(const nb_node *n)
{
    return (const batchnorm_attrs *)nb_node_attrs_c(n);
}
static nb_real *stats_of(const nb_node *n)
{
    /* cppcheck-suppress invalidPointerCast ; ws is 64-byte aligned and holds only nb_reals after the header */
    return (nb_real *)((char *)n->ws + STATS_OFFSET);
}
static int64_t channels(const nb_node *n)
{
    return n->value.shape[n->value.rank - 1];
}
/* The scratch of the per-channel sums follows the statistics (8-aligned). */
static size_t stats_bytes(int64_t C)
{
    return ((size_t)(3 * C) * sizeof(nb_real) + 7) / 8 * 8;
}
static nb_norm_groups groups_of(const nb_node *n)
{
    const int64_t C = channels(n);
    double *scratch = n->ws ? (double *)(void *)((char *)n->ws + STATS_OFFSET + stats_bytes(C)) : NULL;
    return (nb_norm_groups){C ? n->value.size / C : 0, C, true, scratch};
}
static bool batch_mode(const nb_node *n)
{
    return n->ws && ((const bn_header *)n->ws)->batch_stats;
}

static nb_status batchnorm_infer(nb_node *n)
{
    const nb_tensor *x = &n->in[0]->value;
    char s1[96], s2[96];
    if (x->rank < 2)
        return nb_fail(NB_ERR_SHAPE, "batchnorm: input %s needs a batch axis and a channel axis (N, ..., C)",
                       NB_SHAPE_STR(x, s1));
    static const char *const what[] = {"", "gamma", "beta", "moving_mean", "moving_variance"};
    for (int i = 1; i < 5; i++) {
        const nb_tensor *p = &n->in[i]->value;
        if (p->rank != 1 || p->shape[0] != x->shape[x->rank - 1])
            return nb_fail(NB_ERR_SHAPE, "batchnorm: %s has shape %s, the input %s: it needs one value per channel",
                           what[i], NB_SHAPE_STR(p, s1), NB_SHAPE_STR(x, s2));
    }
    nb_tensor_set_shape(&n->value, x->rank, x->shape);
    return NB_OK;
}

static nb_status forward_inference(nb_node *n, nb_real *s)
{
    const int64_t C = channels(n), m = n->value.size;
    const nb_real *x = n->in[0]->value.data, *ga = n->in[1]->value.data, *be = n->in[2]->value.data;
    const nb_real *mm = n->in[3]->value.data, *mv = n->in[4]->value.data;
    nb_real *y = n->value.data;
    for (int64_t c = 0; c < C; c++)
        s[c] = (nb_real)(1 / sqrt((double)mv[c] + attrs_of(n)->eps));
#pragma omp parallel for simd schedule(static) if (m > NB_PAR_MAP)
    for (int64_t e = 0; e < m; e++)
        y[e] = ga[e % C] * ((x[e] - mm[e % C]) * s[e % C]) + be[e % C];
    return NB_OK;
}

static nb_status batchnorm_forward(nb_node *n)
{
    const int64_t C = channels(n);
    if (!nb_node_workspace(n, STATS_OFFSET + stats_bytes(C) + nb_norm_scratch_bytes(C))) return NB_ERR_NOMEM;
    const nb_norm_groups L = groups_of(n);
    bn_header *h = n->ws;
    h->batch_stats = n->graph->batch_stats, h->fresh = 0, h->n = L.rows, h->sums_ok = 0;
    nb_real *mu = stats_of(n), *s = mu + C, *var = s + C;
    if (!h->batch_stats) return forward_inference(n, s);
    if (L.rows == 1) {
        char sh[96];
        return nb_fail(NB_ERR_SHAPE,
                       "batchnorm: training mode needs more than one value per channel, got input %s (as PyTorch, "
                       "which refuses it); use a batch of 2 or more, or inference mode (--eval)",
                       NB_SHAPE_STR(&n->in[0]->value, sh));
    }
    nb_norm_forward(&L, n->in[0]->value.data, n->in[1]->value.data, n->in[2]->value.data, attrs_of(n)->eps, mu, s, var,
                    n->value.data);
    h->fresh = L.rows > 1;
    return NB_OK;
}

static void zero_or_keep(nb_real *dx, int64_t count, bool acc)
{
    if (!acc && count > 0) memset(dx, 0, (size_t)count * sizeof(nb_real));
}

/* Inference-mode VJP of input i (0 x, 1 gamma, 2 beta). */
static void vjp_inference(const nb_node *n, int i, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    const int64_t C = channels(n), m = n->value.size;
    const nb_real *x = n->in[0]->value.data, *ga = n->in[1]->value.data, *mm = n->in[3]->value.data;
    const nb_real *s = stats_of(n) + C;
    if (i == 0) {
        for (int64_t k = 0; k < K; k++)
            for (int64_t e = 0; e < m; e++)
                NB_PUT(acc, dx[k * m + e], ga[e % C] * s[e % C] * dy[k * m + e]);
        return;
    }
    for (int64_t k = 0; k < K; k++)
        for (int64_t c = 0; c < C; c++) {
            double sum = 0;
            for (int64_t e = c; e < m; e += C)
                sum += dy[k * m + e] * (i == 1 ? (x[e] - mm[c]) * (double)s[c] : 1.0);
            NB_PUT(acc, dx[k * C + c], (nb_real)sum);
        }
}

/* The per-channel sums of K seeds dy (training mode): kept from the VJP
 * of another input of the same seed, else formed (one pass over x and dy)
 * and kept. NULL when out of memory. */
static const double *seed_sums(nb_node *n, int64_t K, const nb_real *dy)
{
    bn_header *h = n->ws;
    const int64_t C = channels(n);
    if (h->sums_ok && h->sums_serial == n->seed_serial && h->sums_dy == dy && h->sums_k == K) return n->saved;
    h->sums_ok = 0;
    if (K > INT64_MAX / 16 / (C > 0 ? C : 1)) return NULL;
    double *sums = nb_node_saved(n, (size_t)(2 * (K > 0 ? K : 1) * (C > 0 ? C : 1)) * sizeof(double));
    if (!sums) return NULL;
    const nb_norm_groups L = groups_of(n);
    const nb_real *mu = stats_of(n);
    nb_norm_seed_sums(&L, K, n->in[0]->value.data, mu, mu + C, dy, sums);
    h->sums_ok = 1, h->sums_serial = n->seed_serial, h->sums_dy = dy, h->sums_k = K;
    return sums;
}

static nb_status batchnorm_vjp(nb_node *n, int i, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    const int64_t C = channels(n);
    if (i > 2) {
        zero_or_keep(dx, K * C, acc);
        return NB_OK;
    }
    if (!batch_mode(n)) {
        vjp_inference(n, i, K, dy, dx, acc);
        return NB_OK;
    }
    const double *sums = seed_sums(n, K, dy);
    if (!sums) return nb_fail(NB_ERR_NOMEM, "batchnorm: no memory for the sums of %lld seeds", (long long)K);
    if (i == 0) {
        const nb_norm_groups L = groups_of(n);
        const nb_real *mu = stats_of(n);
        nb_norm_vjp_x(&L, K, n->in[0]->value.data, n->in[1]->value.data, mu, mu + C, dy, sums, dx, acc);
    } else {
        nb_norm_vjp_affine_of_sums(i, K, C, sums, dx, acc);
    }
    return NB_OK;
}

static nb_status batchnorm_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy)
{
    const int64_t C = channels(n), m = n->value.size;
    const nb_real *x = n->in[0]->value.data, *ga = n->in[1]->value.data, *mu = stats_of(n), *s = mu + C;
    if (batch_mode(n)) {
        const nb_norm_groups L = groups_of(n);
        nb_norm_jvp(&L, K, x, ga, mu, s, dxs, dy);
        return NB_OK;
    }
    const nb_real *mm = n->in[3]->value.data;
    for (int64_t k = 0; k < K; k++)
        for (int64_t e = 0; e < m; e++) {
            const int64_t c = e % C;
            double v = dxs[0] ? (double)ga[c] * s[c] * dxs[0][k * m + e] : 0;
            if (dxs[1]) v += dxs[1][k * C + c] * ((x[e] - mm[c]) * (double)s[c]);
            if (dxs[2]) v += dxs[2][k * C + c];
            dy[k * m + e] = (nb_real)v;
        }
    return NB_OK;
}

/* Inference mode's second-order rule (the top of the file). */
static void tangent_inference(const nb_node *n, int i, int64_t K, const nb_real *ybar, nb_real *const *xd, nb_real *out,
                              bool acc)
{
    const int64_t C = channels(n), m = n->value.size;
    const nb_real *s = stats_of(n) + C;
    const int src = i == 0 ? 1 : 0; /* d(dx) reads gammadot, d(dgamma) reads xdot */
    if (i == 2 || !xd[src]) {
        zero_or_keep(out, K * (i == 0 ? m : C), acc);
        return;
    }
    for (int64_t k = 0; k < K; k++) {
        if (i == 0) {
            for (int64_t e = 0; e < m; e++)
                NB_PUT(acc, out[k * m + e], xd[1][k * C + e % C] * s[e % C] * ybar[e]);
            continue;
        }
        for (int64_t c = 0; c < C; c++) {
            double sum = 0;
            for (int64_t e = c; e < m; e += C)
                sum += (double)ybar[e] * s[c] * xd[0][k * m + e];
            NB_PUT(acc, out[k * C + c], (nb_real)sum);
        }
    }
}

static nb_status batchnorm_vjp_tangent(nb_node *n, int i, int64_t K, const nb_real *ybar, nb_real *const *xdots,
                                       nb_real *out, bool acc)
{
    const int64_t C = channels(n);
    if (i > 2) {
        zero_or_keep(out, K * C, acc);
        return NB_OK;
    }
    if (!batch_mode(n)) {
        tangent_inference(n, i, K, ybar, xdots, out, acc);
        return NB_OK;
    }
    const nb_norm_groups L = groups_of(n);
    const nb_real *mu = stats_of(n), *s = mu + C;
    return nb_norm_vjp_tangent(&L, i, K, n->in[0]->value.data, n->in[1]->value.data, mu, s, ybar, xdots, out, acc);
}

/* x, gamma and beta are checked; the moving statistics are constants. */
static nb_node *case_bn(nb_graph *g, nb_rng *r, int mode, int rank, const int64_t *shape)
{
    const int64_t C = shape[rank - 1];
    nb_graph_set_training(g, mode, 7);
    nb_node *x = nb_check_leaf(g, r, "x", rank, shape, -1, 1);
    nb_node *ga = nb_check_leaf(g, r, "gamma", 1, &C, 0.5, 1.5), *be = nb_check_leaf(g, r, "beta", 1, &C, -1, 1);
    nb_node *mm = nb_check_leaf(g, r, "~mean", 1, &C, -0.5, 0.5), *mv = nb_check_leaf(g, r, "~var", 1, &C, 0.5, 2);
    /* tanh after it: a non-linear consumer, so the second-order rule is
     * exercised with a seed that depends on y */
    return nb_tanh(nb_batchnorm(x, ga, be, mm, mv, 1e-3, 0.1));
}
static nb_node *case_train_nc(nb_graph *g, nb_rng *r)
{
    return case_bn(g, r, NB_TRAINING, NB_SHAPE(5, 3));
}
static nb_node *case_train_nhwc(nb_graph *g, nb_rng *r)
{
    return case_bn(g, r, NB_TRAINING, NB_SHAPE(2, 3, 2, 2));
}
/* more rows than the sums' chunks, the last one short */
static nb_node *case_train_chunks(nb_graph *g, nb_rng *r)
{
    return case_bn(g, r, NB_TRAINING, NB_SHAPE(3, 5, 7, 2));
}
static nb_node *case_infer_nc(nb_graph *g, nb_rng *r)
{
    return case_bn(g, r, NB_INFERENCE, NB_SHAPE(4, 3));
}
static nb_node *case_infer_nhwc(nb_graph *g, nb_rng *r)
{
    return case_bn(g, r, NB_INFERENCE, NB_SHAPE(2, 2, 3, 2));
}
static const nb_op_case batchnorm_cases[] = {
    {"training (5,3)", case_train_nc},         {"training (2,3,2,2)", case_train_nhwc},
    {"training (3,5,7,2)", case_train_chunks}, {"inference (4,3)", case_infer_nc},
    {"inference (2,2,3,2)", case_infer_nhwc},
};

const nb_op nb_op_batchnorm = {
    .name = "batchnorm",
    .ninputs = 5,
    .attrs_size = sizeof(batchnorm_attrs),
    .infer = batchnorm_infer,
    .forward = batchnorm_forward,
    .vjp = batchnorm_vjp,
    .jvp = batchnorm_jvp,
    .nondiff_mask = (1u << 3) | (1u << 4),
    .vjp_tangent = batchnorm_vjp_tangent,
    .cases = batchnorm_cases,
    .ncases = NB_COUNT(batchnorm_cases),
};

nb_node *nb_batchnorm(nb_node *x, nb_node *gamma, nb_node *beta, nb_node *moving_mean, nb_node *moving_variance,
                      double eps, double momentum)
{
    if (!(eps > 0 && eps < 1) || !(momentum >= 0 && momentum <= 1)) {
        nb_fail(NB_ERR_ARG, "batchnorm: eps %g must be in (0, 1) and momentum %g in [0, 1]", eps, momentum);
        return NULL;
    }
    const batchnorm_attrs at = {eps, momentum};
    nb_node *const in[5] = {x, gamma, beta, moving_mean, moving_variance};
    return nb_node_op_new(&nb_op_batchnorm, 5, in, &at);
}

/* One node's moving update from its last training-mode forward. */
static void update_node(nb_node *n)
{
    bn_header *h = n->ws;
    const int64_t C = channels(n);
    const double mom = attrs_of(n)->momentum, unbias = (double)h->n / (double)(h->n - 1);
    const nb_real *mu = stats_of(n), *var = mu + 2 * C;
    nb_real *mm = n->in[3]->value.data, *mv = n->in[4]->value.data;
    for (int64_t c = 0; c < C; c++) {
        mm[c] = (nb_real)((1 - mom) * mm[c] + mom * mu[c]);
        mv[c] = (nb_real)((1 - mom) * mv[c] + mom * var[c] * unbias);
    }
    h->fresh = 0;
}

int nb_batchnorm_update_moving(nb_graph *g)
{
    int updated = 0;
    for (int i = 0; g && i < g->n; i++) {
        nb_node *n = g->nodes[i];
        if (n->op != &nb_op_batchnorm || !n->ws || !((const bn_header *)n->ws)->fresh) continue;
        update_node(n);
        updated++;
    }
    return updated;
}

int nb_graph_couples_batch(const nb_graph *g)
{
    for (int i = 0; g && g->batch_stats && i < g->n; i++)
        if (g->nodes[i]->op == &nb_op_batchnorm) return 1;
    return 0;
}
