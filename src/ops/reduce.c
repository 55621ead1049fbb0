/* Reductions over chosen axes: sum and mean.
 *
 * Let R be the set of reduced axes and proj(i) the output position of input
 * position i (i with the axes of R dropped, or set to 0 with keepdims). Then
 *   y[o] = c * sum_{i : proj(i) = o} x[i],   c = 1 (sum) or 1/n (mean),
 * n = prod_{d in R} shape[d]. The Jacobian is
 *   dy[o]/dx[i] = c [proj(i) = o],
 * one c in every column, in the row its position projects to. So
 *   VJP: dx[i] = c dy[proj(i)]       (a broadcast of dy back over R);
 *   JVP: dy[o] = c sum_{proj(i)=o} dx[i]  (the same reduction, on dx). */
#include "ops_internal.h"

/* Input viewed with, for every axis, the stride of the output along it
 * (0 on reduced axes). Rank 0 is viewed as (1,). */
typedef struct {
    int rank;
    int64_t shape[NB_MAX_RANK];
    int64_t ostride[NB_MAX_RANK];
    int64_t size;
    bool all; /* every axis reduced: the output is one number */
} red_plan;

/* Attributes: the reduced axes (normalised, sorted), or all of them. */
typedef struct reduce_attrs {
    int axes[NB_MAX_RANK];
    int naxes;
    bool keepdims;
    bool all_axes; /* every axis, whatever the input's rank at each inference */
} reduce_attrs;
NB_ATTRS_FIT(reduce_attrs);

static reduce_attrs *red_at(const nb_node *n) { return (reduce_attrs *)nb_node_attrs_c(n); }

static bool is_mean(const nb_node *n);

static void plan_make(const nb_node *n, red_plan *p)
{
    const nb_tensor *x = &n->in[0]->value;
    bool reduced[NB_MAX_RANK] = {false};
    for (int a = 0; a < red_at(n)->naxes; a++) reduced[red_at(n)->axes[a]] = true;
    p->rank = x->rank > 0 ? x->rank : 1;
    p->size = x->size;
    p->all = true;
    int64_t s = 1;
    for (int d = p->rank - 1; d >= 0; d--) {
        p->shape[d] = x->rank > 0 ? x->shape[d] : 1;
        if (x->rank > 0 && reduced[d]) {
            p->ostride[d] = 0;
        } else {
            p->ostride[d] = s;
            s *= p->shape[d];
            if (x->rank > 0) p->all = false;
        }
    }
    if (x->rank == 0) p->all = true;
}

/* The scale c: 1 for sum, 1/n for mean. */
static nb_real red_scale(const nb_node *n)
{
    if (!is_mean(n)) return 1;
    const nb_tensor *x = &n->in[0]->value;
    int64_t count = 1;
    for (int a = 0; a < red_at(n)->naxes; a++) count *= x->shape[red_at(n)->axes[a]];
    return (nb_real)1 / (nb_real)count; /* count 0: inf, and the mean of nothing is NaN, as NumPy's */
}

/* Odometer over the input: BODY runs for each contiguous inner row, with
 * i the input offset of the row and o the output offset of its start. */
#define RED_FOR(p, BODY)                                                                                          \
    do {                                                                                                          \
        int64_t idx_[NB_MAX_RANK] = {0};                                                                          \
        const int R_ = (p)->rank;                                                                                 \
        const int64_t inner_ = (p)->shape[R_ - 1];                                                                \
        int64_t o = 0;                                                                                            \
        for (int64_t i = 0; inner_ > 0 && i < (p)->size; i += inner_) {                                           \
            BODY;                                                                                                 \
            for (int d_ = R_ - 2; d_ >= 0; d_--) {                                                                \
                idx_[d_]++;                                                                                       \
                o += (p)->ostride[d_];                                                                            \
                if (idx_[d_] < (p)->shape[d_]) break;                                                             \
                o -= (p)->ostride[d_] * idx_[d_];                                                                 \
                idx_[d_] = 0;                                                                                     \
            }                                                                                                     \
        }                                                                                                         \
    } while (0)

/* y (size |y|) = c * reduce(x). */
static void reduce_into(const red_plan *p, const nb_real *x, nb_real *y, int64_t ysize, nb_real c)
{
    /* Sums along the reduced run accumulate in double: a float sum of a
     * million terms would lose about three digits. */
    if (p->all) {
        double acc = 0;
        for (int64_t i = 0; i < p->size; i++) acc += (double)x[i];
        y[0] = (nb_real)((double)c * acc);
        return;
    }
    memset(y, 0, (size_t)ysize * sizeof(nb_real));
    const int64_t inner = p->shape[p->rank - 1], os = p->ostride[p->rank - 1];
    if (os == 0) {
        RED_FOR(p, {
            double acc = 0;
            for (int64_t t = 0; t < inner; t++) acc += (double)x[i + t];
            y[o] += (nb_real)acc;
        });
    } else {
        RED_FOR(p, {
            for (int64_t t = 0; t < inner; t++) y[o + t] += x[i + t];
        });
    }
    if (c != 1)
        for (int64_t j = 0; j < ysize; j++) y[j] *= c;
}

/* dx (+)= c * broadcast(dy). */
static void broadcast_into(const red_plan *p, const nb_real *dy, nb_real *dx, nb_real c, bool acc)
{
    if (p->all) {
        const nb_real v = c * dy[0];
        for (int64_t i = 0; i < p->size; i++) NB_PUT(acc, dx[i], v);
        return;
    }
    const int64_t inner = p->shape[p->rank - 1], os = p->ostride[p->rank - 1];
    RED_FOR(p, {
        for (int64_t t = 0; t < inner; t++) NB_PUT(acc, dx[i + t], c * dy[o + t * os]);
    });
}

static nb_status red_infer(nb_node *n)
{
    const nb_tensor *x = &n->in[0]->value;
    if (red_at(n)->all_axes) { /* the input may have been reshaped to another rank */
        red_at(n)->naxes = x->rank;
        for (int d = 0; d < x->rank; d++) red_at(n)->axes[d] = d;
    }
    bool reduced[NB_MAX_RANK] = {false};
    for (int a = 0; a < red_at(n)->naxes; a++) {
        if (red_at(n)->axes[a] >= x->rank) {
            char b[96];
            return nb_fail(NB_ERR_SHAPE, "%s: axis %d is out of range for input of shape %s (rank %d)",
                           n->op->name, red_at(n)->axes[a], NB_SHAPE_STR(x, b), x->rank);
        }
        reduced[red_at(n)->axes[a]] = true;
    }
    int64_t shape[NB_MAX_RANK];
    int rank = 0;
    for (int d = 0; d < x->rank; d++) {
        if (!reduced[d]) shape[rank++] = x->shape[d];
        else if (red_at(n)->keepdims) shape[rank++] = 1;
    }
    nb_tensor_set_shape(&n->value, rank, shape);
    return NB_OK;
}

static nb_status red_forward(nb_node *n)
{
    red_plan p;
    plan_make(n, &p);
    reduce_into(&p, n->in[0]->value.data, n->value.data, n->value.size, red_scale(n));
    return NB_OK;
}

static nb_status red_vjp(nb_node *n, int i, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    red_plan p;
    plan_make(n, &p);
    const nb_real c = red_scale(n);
    const int64_t my = n->value.size, mx = n->in[0]->value.size;
    for (int64_t k = 0; k < K; k++) broadcast_into(&p, dy + k * my, dx + k * mx, c, acc);
    return NB_OK;
}

static nb_status red_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy)
{
    const int64_t my = n->value.size, mx = n->in[0]->value.size;
    if (!dxs[0]) {
        memset(dy, 0, (size_t)(K * my) * sizeof(nb_real));
        return NB_OK;
    }
    red_plan p;
    plan_make(n, &p);
    const nb_real c = red_scale(n);
    for (int64_t k = 0; k < K; k++) reduce_into(&p, dxs[0] + k * mx, dy + k * my, my, c);
    return NB_OK;
}

#define AXES(...) (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)), (const int[]){__VA_ARGS__}
static nb_node *case_sum_axis0(nb_graph *g, nb_rng *r) { return nb_sum(NB_CHECK_X("x", -1, 1, 3, 4), AXES(0), 0); }
static nb_node *case_sum_axes02_keep(nb_graph *g, nb_rng *r)
{
    return nb_sum(NB_CHECK_X("x", -1, 1, 2, 3, 4), AXES(0, 2), 1);
}
static nb_node *case_sum_last(nb_graph *g, nb_rng *r) { return nb_sum(NB_CHECK_X("x", -1, 1, 2, 3, 4), AXES(-1), 0); }
static nb_node *case_sum_all(nb_graph *g, nb_rng *r) { return nb_sum(NB_CHECK_X("x", -1, 1, 2, 3), 0, NULL, 0); }
static nb_node *case_mean_axis1(nb_graph *g, nb_rng *r) { return nb_mean(NB_CHECK_X("x", -1, 1, 3, 4), AXES(1), 0); }
static nb_node *case_mean_axes12(nb_graph *g, nb_rng *r)
{
    return nb_mean(NB_CHECK_X("x", -1, 1, 2, 3, 4), AXES(-2, 2), 1);
}
static nb_node *case_mean_all(nb_graph *g, nb_rng *r) { return nb_mean(NB_CHECK_X("x", -1, 1, 2, 3), 0, NULL, 1); }
static const nb_op_case sum_cases[] = {
    {"axis 0 of (3,4)", case_sum_axis0},
    {"axes (0,2) keepdims", case_sum_axes02_keep},
    {"axis -1 of (2,3,4)", case_sum_last},
    {"all axes", case_sum_all},
};
static const nb_op_case mean_cases[] = {
    {"axis 1 of (3,4)", case_mean_axis1},
    {"axes (-2,2) keepdims", case_mean_axes12},
    {"all axes keepdims", case_mean_all},
};

/* Second order: linear in its input (pooling: with the argmax fixed, which it
 * is away from ties; dropout: for the fixed mask), so the VJP does not
 * depend on x and the rule is zero (nb_vjp_tangent_zero). */
const nb_op nb_op_sum = {
    .name = "sum",
    .ninputs = 1,
    .attrs_size = sizeof(reduce_attrs),
    .infer = red_infer,
    .forward = red_forward,
    .vjp = red_vjp,
    .jvp = red_jvp,
    .vjp_tangent = nb_vjp_tangent_zero,
    .cases = sum_cases,
    .ncases = NB_COUNT(sum_cases),
};
const nb_op nb_op_mean = {
    .name = "mean",
    .ninputs = 1,
    .attrs_size = sizeof(reduce_attrs),
    .infer = red_infer,
    .forward = red_forward,
    .vjp = red_vjp,
    .jvp = red_jvp,
    .vjp_tangent = nb_vjp_tangent_zero,
    .cases = mean_cases,
    .ncases = NB_COUNT(mean_cases),
};

static bool is_mean(const nb_node *n) { return n->op == &nb_op_mean; }

static nb_node *red_new(const nb_op *op, nb_node *x, int naxes, const int *axes, int keepdims)
{
    if (!x) return nb_node_op_new(op, 1, &x, NULL); /* reports the NULL input */
    const int rank = x->value.rank;
    reduce_attrs at = {0};
    at.keepdims = keepdims != 0;
    if (naxes < 0 || naxes > NB_MAX_RANK || (naxes > 0 && !axes)) {
        nb_fail(NB_ERR_ARG, "%s: naxes %d is not in 0..%d%s", op->name, naxes, NB_MAX_RANK,
                naxes > 0 && !axes ? " or axes is NULL" : "");
        return NULL;
    }
    if (naxes == 0) { /* all axes, whatever the rank at inference (red_infer) */
        at.all_axes = true;
    } else {
        bool seen[NB_MAX_RANK] = {false};
        for (int a = 0; a < naxes; a++) {
            int ax = axes[a] < 0 ? axes[a] + rank : axes[a];
            if (ax < 0 || ax >= rank) {
                char b[96];
                nb_fail(NB_ERR_ARG, "%s: axis %d is out of range for input '%s' of shape %s (valid: %d..%d)",
                        op->name, axes[a], x->name, NB_SHAPE_STR(&x->value, b), -rank, rank - 1);
                return NULL;
            }
            if (seen[ax]) {
                nb_fail(NB_ERR_ARG, "%s: axis %d (= axis %d) is given more than once", op->name, axes[a], ax);
                return NULL;
            }
            seen[ax] = true;
        }
        for (int d = 0; d < rank; d++)
            if (seen[d]) at.axes[at.naxes++] = d; /* sorted */
    }
    return nb_node_op_new(op, 1, &x, &at);
}

nb_node *nb_sum(nb_node *x, int naxes, const int *axes, int keepdims)
{
    return red_new(&nb_op_sum, x, naxes, axes, keepdims);
}

nb_node *nb_mean(nb_node *x, int naxes, const int *axes, int keepdims)
{
    return red_new(&nb_op_mean, x, naxes, axes, keepdims);
}
