/* Inverted dropout: y = m * x elementwise, with a mask m drawn in each
 * training-mode forward pass, m_j = 0 with probability p (the rate) and
 * 1/(1-p) otherwise, so that E[y] = x; at inference m = 1 (identity).
 *
 * For a fixed mask the op is linear: dy_j/dx_i = m_j [i = j], a diagonal
 * Jacobian. So VJP: dx = m * dy; JVP: dy = m * dx. The mask of the last
 * forward pass is kept in the node workspace, so that the backward and
 * forward-mode passes differentiate the very function that was evaluated.
 *
 * The mask comes from nb_rngs seeded from (graph seed, the forward pass's
 * random key, node id, chunk of the tensor): reproducible for a given seed
 * whatever the thread count, different at every key (each nb_forward takes
 * the next; nb_forward_key names one) and for every dropout node. */
#include "ops_internal.h"

/* Workspace: a header saying whether the last forward applied a mask, then
 * the mask (|x| values), 64 bytes in so it stays aligned. */
#define MASK_OFFSET 64
/* Mask elements per generator (even, so each draw serves two elements). */
#define DROP_CHUNK 8192
#define PAR_THRESHOLD NB_PAR_MAP

typedef struct {
    int active;
} drop_header;

/* Attributes: the probability of dropping an element, in [0, 1). */
typedef struct dropout_attrs {
    double rate;
} dropout_attrs;
NB_ATTRS_FIT(dropout_attrs);

/* cppcheck-suppress invalidPointerCast ; ws is malloc'ed (aligned) and MASK_OFFSET a multiple of sizeof(nb_real): these bytes are only ever nb_real */
static nb_real *mask_of(nb_node *n) { return (nb_real *)((char *)n->ws + MASK_OFFSET); }

static bool mask_active(const nb_node *n) { return n->ws && ((const drop_header *)n->ws)->active; }

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 31);
}

static nb_status dropout_forward(nb_node *n)
{
    const nb_graph *g = n->graph;
    const int64_t m = n->value.size;
    const nb_real *x = n->in[0]->value.data;
    nb_real *y = n->value.data;
    const double rate = ((const dropout_attrs *)nb_node_attrs_c(n))->rate;
    if (!g->training || rate == 0) {
        if (n->ws) ((drop_header *)n->ws)->active = 0;
        if (m) memcpy(y, x, (size_t)m * sizeof(nb_real));
        return NB_OK;
    }
    if (!nb_node_workspace(n, MASK_OFFSET + (size_t)m * sizeof(nb_real))) return NB_ERR_NOMEM;
    ((drop_header *)n->ws)->active = 1;
    nb_real *mask = mask_of(n);
    const uint64_t base = mix(mix(g->seed, g->key), (uint64_t)n->id);
    /* keep when a uniform 32-bit integer is >= rate * 2^32 (two per draw) */
    const uint64_t threshold = (uint64_t)(rate * 4294967296.0);
    const nb_real keep = (nb_real)(1.0 / (1.0 - rate));
    const int64_t nchunks = (m + DROP_CHUNK - 1) / DROP_CHUNK;
    /* Chunks of the mask have generators of their own, seeded from (base,
     * chunk): the mask does not depend on the number of threads. */
#pragma omp parallel for schedule(static) if (m > 4 * DROP_CHUNK)
    for (int64_t c = 0; c < nchunks; c++) {
        nb_rng r;
        nb_rng_seed(&r, mix(base, (uint64_t)c));
        const int64_t lo = c * DROP_CHUNK, hi = lo + DROP_CHUNK < m ? lo + DROP_CHUNK : m;
        uint32_t bits[DROP_CHUNK];
        for (int64_t j = 0; j < hi - lo; j += 2) {
            const uint64_t u = nb_rng_next(&r);
            bits[j] = (uint32_t)u;
            bits[j + 1] = (uint32_t)(u >> 32);
        }
        /* branch-free: the keep/drop pattern is random, a branch would miss */
        for (int64_t j = lo; j < hi; j++) {
            /* cppcheck-suppress uninitvar ; bits[0, hi - lo) were all written by the loop above */
            mask[j] = keep * (nb_real)(bits[j - lo] >= threshold);
            y[j] = mask[j] * x[j];
        }
    }
    return NB_OK;
}

static nb_status dropout_vjp(nb_node *n, int in, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    const int64_t m = n->value.size, count = K * m;
    if (!mask_active(n)) {
#pragma omp parallel for simd schedule(static) if (count > PAR_THRESHOLD)
        for (int64_t j = 0; j < count; j++) NB_PUT(acc, dx[j], dy[j]);
        return NB_OK;
    }
    const nb_real *mask = mask_of(n);
    for (int64_t k = 0; k < K; k++) {
        const nb_real *g = dy + k * m;
        nb_real *r = dx + k * m;
#pragma omp parallel for simd schedule(static) if (m > PAR_THRESHOLD)
        for (int64_t j = 0; j < m; j++) NB_PUT(acc, r[j], mask[j] * g[j]);
    }
    return NB_OK;
}

static nb_status dropout_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy)
{
    const int64_t m = n->value.size, count = K * m;
    if (!dxs[0]) {
        memset(dy, 0, (size_t)count * sizeof(nb_real));
        return NB_OK;
    }
    if (!mask_active(n)) {
        memcpy(dy, dxs[0], (size_t)count * sizeof(nb_real));
        return NB_OK;
    }
    const nb_real *mask = mask_of(n);
    for (int64_t k = 0; k < K; k++) {
        const nb_real *t = dxs[0] + k * m;
        nb_real *r = dy + k * m;
#pragma omp parallel for simd schedule(static) if (m > PAR_THRESHOLD)
        for (int64_t j = 0; j < m; j++) r[j] = mask[j] * t[j];
    }
    return NB_OK;
}

static nb_node *case_dropout_infer(nb_graph *g, nb_rng *r) { return nb_dropout(NB_CHECK_X("x", -1, 1, 3, 4), 0.5); }
static nb_node *case_dropout_train(nb_graph *g, nb_rng *r)
{
    nb_graph_set_training(g, 1, 1234);
    return nb_tanh(nb_dropout(NB_CHECK_X("x", -1, 1, 4, 5), 0.3));
}
static const nb_op_case dropout_cases[] = {
    {"inference: identity", case_dropout_infer},
    {"training, seed 1234", case_dropout_train},
};

/* Second order: linear in its input (pooling: with the argmax fixed, which it
 * is away from ties; dropout: for the fixed mask), so the VJP does not
 * depend on x and the rule is zero (nb_vjp_tangent_zero). */
const nb_op nb_op_dropout = {
    .name = "dropout",
    .ninputs = 1,
    .attrs_size = sizeof(dropout_attrs),
    .infer = nb_infer_same_shape,
    .forward = dropout_forward,
    .vjp = dropout_vjp,
    .jvp = dropout_jvp,
    .vjp_tangent = nb_vjp_tangent_zero,
    .cases = dropout_cases,
    .ncases = NB_COUNT(dropout_cases),
};

nb_node *nb_dropout(nb_node *x, double rate)
{
    if (!(rate >= 0 && rate < 1)) {
        nb_fail(NB_ERR_ARG, "dropout: rate %g is not in [0, 1)", rate);
        return NULL;
    }
    const dropout_attrs at = {rate};
    return nb_node_op_new(&nb_op_dropout, 1, &x, &at);
}
