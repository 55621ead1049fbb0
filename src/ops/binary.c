/* Elementwise ops of two inputs with NumPy broadcasting: y = a (op) b.
 *
 * Shapes align from the right; a dimension of 1 (or a missing one) is
 * stretched. Jacobian: dy[o]/da[j] = da(o) if a's broadcast index of o is j,
 * else 0, where da = dy/da pointwise (add 1, sub 1, mul b, div 1/b) and
 * db likewise (add 1, sub -1, mul a, div -a/b^2). Hence
 *   VJP: dA[j] = sum over o mapping to j of dY[o] da(o)  (a sum over the
 *        broadcast axes), and the same for b;
 *   JVP: dY[o] = da(o) dA[ia(o)] + db(o) dB[ib(o)]. */
#include "ops_internal.h"

enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV };

/* Strides of y, a and b in y's index space (0 on broadcast axes). */
typedef struct {
    int rank;
    int64_t shape[NB_MAX_RANK];
    int64_t sy[NB_MAX_RANK], sa[NB_MAX_RANK], sb[NB_MAX_RANK];
} bcast_plan;

static void strides_in(const nb_tensor *t, int rank, const int64_t *shape, int64_t *st)
{
    int64_t s = 1;
    for (int d = rank - 1; d >= 0; d--) {
        int td = d - (rank - t->rank);
        int64_t dim = td >= 0 ? t->shape[td] : 1;
        st[d] = dim == 1 ? 0 : s; /* a stretched axis does not move */
        s *= dim;
    }
}

static void plan_make(const nb_tensor *y, const nb_tensor *a, const nb_tensor *b, bcast_plan *p)
{
    p->rank = y->rank > 0 ? y->rank : 1;
    for (int d = 0; d < p->rank; d++) p->shape[d] = y->rank > 0 ? y->shape[d] : 1;
    nb_tensor y1 = *y;
    if (y->rank == 0) y1.rank = 1, y1.shape[0] = 1;
    strides_in(&y1, p->rank, p->shape, p->sy);
    strides_in(a, p->rank, p->shape, p->sa);
    strides_in(b, p->rank, p->shape, p->sb);
}

/* Runs BODY for every output position, with iy, ia, ib the flat offsets. */
#define BCAST_FOR(p, BODY)                                                                        \
    do {                                                                                          \
        const int R_ = (p)->rank;                                                                 \
        int64_t idx_[NB_MAX_RANK] = {0};                                                          \
        int64_t oy_ = 0, oa_ = 0, ob_ = 0;                                                        \
        const int64_t inner_ = (p)->shape[R_ - 1];                                                \
        const int64_t say_ = (p)->sa[R_ - 1], sby_ = (p)->sb[R_ - 1], syy_ = (p)->sy[R_ - 1];      \
        bool empty_ = false;                                                                      \
        for (int d_ = 0; d_ < R_; d_++) empty_ |= (p)->shape[d_] == 0;                            \
        while (!empty_) {                                                                         \
            for (int64_t t_ = 0; t_ < inner_; t_++) {                                             \
                const int64_t iy = oy_ + t_ * syy_, ia = oa_ + t_ * say_, ib = ob_ + t_ * sby_;   \
                BODY;                                                                             \
            }                                                                                     \
            int d_ = R_ - 2;                                                                      \
            for (; d_ >= 0; d_--) {                                                               \
                idx_[d_]++;                                                                       \
                oy_ += (p)->sy[d_], oa_ += (p)->sa[d_], ob_ += (p)->sb[d_];                       \
                if (idx_[d_] < (p)->shape[d_]) break;                                             \
                oy_ -= (p)->sy[d_] * idx_[d_], oa_ -= (p)->sa[d_] * idx_[d_];                     \
                ob_ -= (p)->sb[d_] * idx_[d_];                                                    \
                idx_[d_] = 0;                                                                     \
            }                                                                                     \
            if (d_ < 0) break;                                                                    \
        }                                                                                         \
    } while (0)

static nb_status binary_infer(nb_node *n)
{
    const nb_tensor *a = &n->in[0]->value, *b = &n->in[1]->value;
    int rank = a->rank > b->rank ? a->rank : b->rank;
    int64_t shape[NB_MAX_RANK];
    for (int d = 0; d < rank; d++) {
        int da = d - (rank - a->rank), db = d - (rank - b->rank);
        int64_t x = da >= 0 ? a->shape[da] : 1, y = db >= 0 ? b->shape[db] : 1;
        if (x != y && x != 1 && y != 1) {
            char s1[96], s2[96];
            return nb_fail(NB_ERR_SHAPE, "%s: shapes %s and %s do not broadcast (axis %d: %lld vs %lld)",
                           n->op->name, NB_SHAPE_STR(a, s1), NB_SHAPE_STR(b, s2), d, (long long)x,
                           (long long)y);
        }
        shape[d] = x == 1 ? y : x;
    }
    nb_tensor_set_shape(&n->value, rank, shape);
    return NB_OK;
}

/* Both inputs as large as y: nothing is broadcast (an input of y's size has
 * all of y's axes, up to leading 1s), so ia = ib = iy and the loops below
 * run flat over i, split over threads, with the same arithmetic per
 * element as BCAST_FOR (the results are the same bits). */
static inline bool binary_flat(const nb_node *n)
{
    return n->in[0]->value.size == n->value.size && n->in[1]->value.size == n->value.size;
}

#define FLAT_FOR(count, BODY)                                                                                      \
    do {                                                                                                           \
        const int64_t flat_count_ = (count);                                                                       \
        _Pragma("omp parallel for simd schedule(static) if (flat_count_ > NB_PAR_MAP)")                             \
        for (int64_t i = 0; i < flat_count_; i++) {                                                                \
            BODY;                                                                                                  \
        }                                                                                                          \
    } while (0)

static inline void flat_forward(int code, int64_t m, const nb_real *a, const nb_real *b, nb_real *y)
{
    switch (code) {
    case OP_ADD: FLAT_FOR(m, y[i] = a[i] + b[i]); break;
    case OP_SUB: FLAT_FOR(m, y[i] = a[i] - b[i]); break;
    case OP_MUL: FLAT_FOR(m, y[i] = a[i] * b[i]); break;
    case OP_DIV: FLAT_FOR(m, y[i] = a[i] / b[i]); break;
    }
}

/* r (+)= EXPR over i: the accumulation decided once, outside the loop, so
 * that both loops vectorise (a per-element choice kept GCC's scalar). */
#define FLAT_PUT(acc, count, r, EXPR)                                                                              \
    do {                                                                                                           \
        if (acc)                                                                                                   \
            FLAT_FOR(count, (r)[i] += (EXPR));                                                                     \
        else                                                                                                       \
            FLAT_FOR(count, (r)[i] = (EXPR));                                                                      \
    } while (0)

/* The flat VJP of input `which`: r (+)= g * partial(code, which, a, b), each
 * op's partial spelled out (the same expressions: g * 1 and g * -1 are
 * exact) so that every loop is straight-line and vectorises. */
static void flat_vjp(int code, int which, int64_t m, const nb_real *a, const nb_real *b, const nb_real *g,
                     nb_real *r, bool acc)
{
    switch (code * 2 + which) {
    case OP_ADD * 2:
    case OP_ADD * 2 + 1:
    case OP_SUB * 2: FLAT_PUT(acc, m, r, g[i]); break;
    case OP_SUB * 2 + 1: FLAT_PUT(acc, m, r, -g[i]); break;
    case OP_MUL * 2: FLAT_PUT(acc, m, r, g[i] * b[i]); break;
    case OP_MUL * 2 + 1: FLAT_PUT(acc, m, r, g[i] * a[i]); break;
    case OP_DIV * 2: FLAT_PUT(acc, m, r, g[i] * (1 / b[i])); break;
    default: FLAT_PUT(acc, m, r, g[i] * (-a[i] / (b[i] * b[i]))); break;
    }
}

/* The four ops share these bodies with the operation as a compile-time
 * constant (BINARY_FUNCS below gives each op its own three functions). */
static inline nb_status binary_forward(nb_node *n, int code)
{
    bcast_plan p;
    const nb_real *a = n->in[0]->value.data, *b = n->in[1]->value.data;
    nb_real *y = n->value.data;
    if (binary_flat(n)) {
        flat_forward(code, n->value.size, a, b, y);
        return NB_OK;
    }
    plan_make(&n->value, &n->in[0]->value, &n->in[1]->value, &p);
    switch (code) {
    case OP_ADD: BCAST_FOR(&p, y[iy] = a[ia] + b[ib]); break;
    case OP_SUB: BCAST_FOR(&p, y[iy] = a[ia] - b[ib]); break;
    case OP_MUL: BCAST_FOR(&p, y[iy] = a[ia] * b[ib]); break;
    case OP_DIV: BCAST_FOR(&p, y[iy] = a[ia] / b[ib]); break;
    }
    return NB_OK;
}

/* dy/da (which = 0) or dy/db (which = 1) at one position. */
static inline nb_real partial(int code, int which, nb_real a, nb_real b)
{
    switch (code) {
    case OP_ADD: return 1;
    case OP_SUB: return which ? -1 : 1;
    case OP_MUL: return which ? a : b;
    default: return which ? -a / (b * b) : 1 / b;
    }
}

static inline nb_status binary_vjp(nb_node *n, int code, int which, int64_t K, const nb_real *dy, nb_real *dx,
                                   bool acc)
{
    bcast_plan p;
    const nb_tensor *A = &n->in[0]->value, *B = &n->in[1]->value;
    const nb_real *a = A->data, *b = B->data;
    int64_t my = n->value.size, mx = n->in[which]->value.size;
    const bool flat = binary_flat(n);
    if ((code == OP_ADD || code == OP_SUB) && mx == my) {
        /* A partial of +-1 and an input of y's size (nothing of it broadcast,
         * so ia = iy): the flat loop per seed, not the broadcast walk, e.g.
         * a dense layer's bias add seeded with the 1 + K rows of a Hessian
         * pass (threaded by one seed's size: a region per pass's loop costs
         * a wake-up of the other thread, milliseconds on a loaded machine). */
        for (int64_t k = 0; k < K; k++) flat_vjp(code, which, my, a, b, dy + k * my, dx + k * my, acc);
        return NB_OK;
    }
    plan_make(&n->value, A, B, &p);
    for (int64_t k = 0; k < K; k++) {
        const nb_real *g = dy + k * my;
        nb_real *r = dx + k * mx;
        if (flat) {
            flat_vjp(code, which, my, a, b, g, r, acc);
            continue;
        }
        if (!acc) memset(r, 0, (size_t)mx * sizeof(nb_real));
        if (which == 0)
            BCAST_FOR(&p, r[ia] += g[iy] * partial(code, 0, a[ia], b[ib]));
        else
            BCAST_FOR(&p, r[ib] += g[iy] * partial(code, 1, a[ia], b[ib]));
    }
    return NB_OK;
}

static inline nb_status binary_jvp(nb_node *n, int code, int64_t K, nb_real *const *dxs, nb_real *dy)
{
    bcast_plan p;
    const nb_tensor *A = &n->in[0]->value, *B = &n->in[1]->value;
    const nb_real *a = A->data, *b = B->data;
    int64_t my = n->value.size, ma = A->size, mb = B->size;
    const bool flat = binary_flat(n);
    if ((code == OP_ADD || code == OP_SUB) && (!dxs[0] || ma == my) && (!dxs[1] || mb == my)) {
        /* Partials of +-1 and every moving input of y's size: the flat loop
         * per tangent, as the VJP above (the same expressions as below:
         * 1 * t and -1 * t are exact). */
        const nb_real sb = code == OP_SUB ? -1 : 1;
        for (int64_t k = 0; k < K; k++) {
            const nb_real *ta = dxs[0] ? dxs[0] + k * my : NULL, *tb = dxs[1] ? dxs[1] + k * my : NULL;
            nb_real *r = dy + k * my;
            if (ta && tb) FLAT_FOR(my, r[i] = ta[i] + sb * tb[i]);
            else if (ta) FLAT_FOR(my, r[i] = ta[i] + 0);
            else if (tb) FLAT_FOR(my, r[i] = 0 + sb * tb[i]);
            else if (my > 0) memset(r, 0, (size_t)my * sizeof(nb_real));
        }
        return NB_OK;
    }
    plan_make(&n->value, A, B, &p);
    for (int64_t k = 0; k < K; k++) {
        nb_real *r = dy + k * my;
        const nb_real *ta = dxs[0] ? dxs[0] + k * ma : NULL, *tb = dxs[1] ? dxs[1] + k * mb : NULL;
        if (flat) {
            FLAT_FOR(my, r[i] = (ta ? partial(code, 0, a[i], b[i]) * ta[i] : 0) +
                                (tb ? partial(code, 1, a[i], b[i]) * tb[i] : 0));
            continue;
        }
        BCAST_FOR(&p, r[iy] = (ta ? partial(code, 0, a[ia], b[ib]) * ta[ia] : 0) +
                              (tb ? partial(code, 1, a[ia], b[ib]) * tb[ib] : 0));
    }
    return NB_OK;
}

#define BINARY_FUNCS(NAME, CODE)                                                                               \
    static nb_status NAME##_forward(nb_node *n) { return binary_forward(n, CODE); }                            \
    static nb_status NAME##_vjp(nb_node *n, int i, int64_t K, const nb_real *dy, nb_real *dx, bool acc)        \
    {                                                                                                          \
        return binary_vjp(n, CODE, i, K, dy, dx, acc);                                                         \
    }                                                                                                          \
    static nb_status NAME##_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy)                       \
    {                                                                                                          \
        return binary_jvp(n, CODE, K, dxs, dy);                                                                \
    }
BINARY_FUNCS(add, OP_ADD)
BINARY_FUNCS(sub, OP_SUB)
BINARY_FUNCS(mul, OP_MUL)
BINARY_FUNCS(div, OP_DIV)

/* ------------------------------------------------------------ second order
 * The VJP for a is dA[ia] += ybar[o] da(o), for b likewise, so along the
 * tangents (adot, bdot):
 *   d(dA)[ia] += ybar[o] (h_aa(o) adot[ia] + h_ab(o) bdot[ib])
 *   d(dB)[ib] += ybar[o] (h_ab(o) adot[ia] + h_bb(o) bdot[ib])
 * with the second partials of y = a (op) b: add, sub all 0 (nb_vjp_tangent_zero);
 * mul h_ab = 1, h_aa = h_bb = 0 (bilinear); div h_aa = 0, h_ab = -1/b^2,
 * h_bb = 2a/b^3. */

/* d2y / dx_which dx_other at one position. */
static inline nb_real second_partial(int code, int which, int other, nb_real a, nb_real b)
{
    if (code == OP_MUL) return which != other ? 1 : 0;
    if (which != other) return -1 / (b * b);
    return which ? 2 * a / (b * b * b) : 0;
}

static nb_status binary_vjp_tangent(nb_node *n, int code, int which, int64_t K, const nb_real *ybar,
                                    nb_real *const *xdots, nb_real *out, bool acc)
{
    bcast_plan p;
    const nb_tensor *A = &n->in[0]->value, *B = &n->in[1]->value;
    const nb_real *a = A->data, *b = B->data;
    const int64_t ma = A->size, mb = B->size, mx = n->in[which]->value.size;
    plan_make(&n->value, A, B, &p);
    for (int64_t k = 0; k < K; k++) {
        nb_real *r = out + k * mx;
        const nb_real *ta = xdots[0] ? xdots[0] + k * ma : NULL, *tb = xdots[1] ? xdots[1] + k * mb : NULL;
        if (!acc) memset(r, 0, (size_t)mx * sizeof(nb_real));
        if (which == 0)
            BCAST_FOR(&p, r[ia] += ybar[iy] * ((ta ? second_partial(code, 0, 0, a[ia], b[ib]) * ta[ia] : 0) +
                                               (tb ? second_partial(code, 0, 1, a[ia], b[ib]) * tb[ib] : 0)));
        else
            BCAST_FOR(&p, r[ib] += ybar[iy] * ((ta ? second_partial(code, 1, 0, a[ia], b[ib]) * ta[ia] : 0) +
                                               (tb ? second_partial(code, 1, 1, a[ia], b[ib]) * tb[ib] : 0)));
    }
    return NB_OK;
}
static nb_status add_vjp_tangent(nb_node *n, int i, int64_t K, const nb_real *ybar, nb_real *const *xdots,
                                 nb_real *out, bool acc)
{
    return nb_vjp_tangent_zero(n, i, K, ybar, xdots, out, acc);
}
#define sub_vjp_tangent add_vjp_tangent
static nb_status mul_vjp_tangent(nb_node *n, int i, int64_t K, const nb_real *ybar, nb_real *const *xdots,
                                 nb_real *out, bool acc)
{
    return binary_vjp_tangent(n, OP_MUL, i, K, ybar, xdots, out, acc);
}
static nb_status div_vjp_tangent(nb_node *n, int i, int64_t K, const nb_real *ybar, nb_real *const *xdots,
                                 nb_real *out, bool acc)
{
    return binary_vjp_tangent(n, OP_DIV, i, K, ybar, xdots, out, acc);
}

/* Gradient-check cases: equal shapes and broadcasting both ways, inputs in
 * [0.5, 2) (away from div's pole). */
#define BINARY_CASE(fn, call, sa, sb)                                                                           \
    static nb_node *case_##fn(nb_graph *g, nb_rng *r)                                                          \
    {                                                                                                          \
        nb_node *a = NB_CHECK_X("a", 0.5, 2, sa), *b = NB_CHECK_X("b", 0.5, 2, sb);                            \
        return call(a, b);                                                                                     \
    }
#define P(...) __VA_ARGS__
BINARY_CASE(add, nb_add, P(2, 3), P(2, 3))
BINARY_CASE(add_bias, nb_add, P(4, 3), P(3))
BINARY_CASE(sub_bcast, nb_sub, P(2, 1, 3), P(4, 1))
BINARY_CASE(mul, nb_mul, P(2, 3), P(2, 3))
BINARY_CASE(mul_bcast, nb_mul, P(3, 1), P(1, 4))
BINARY_CASE(div, nb_div, P(2, 3), P(2, 3))
BINARY_CASE(div_scalar, nb_div, P(2, 3), P(1))
static nb_node *case_reuse(nb_graph *g, nb_rng *r)
{
    /* x used three times: its gradients must accumulate. */
    nb_node *x = NB_CHECK_X("x", 0.5, 2, 2, 3);
    return nb_add(nb_mul(x, x), nb_exp(x));
}
static const nb_op_case add_cases[] = {{"same shape", case_add}, {"bias (4,3)+(3)", case_add_bias}};
static const nb_op_case sub_cases[] = {{"(2,1,3)-(4,1)", case_sub_bcast}};
static const nb_op_case mul_cases[] = {
    {"same shape", case_mul}, {"(3,1)*(1,4)", case_mul_bcast}, {"x reused: x*x+exp(x)", case_reuse}};
static const nb_op_case div_cases[] = {{"same shape", case_div}, {"by (1,)", case_div_scalar}};

#define BINARY_DESC(NAME)                                                                                        \
    const nb_op nb_op_##NAME = {                                                                                \
        .name = #NAME,                                                                                          \
        .ninputs = 2,                                                                                           \
        .infer = binary_infer,                                                                                  \
        .forward = NAME##_forward,                                                                              \
        .vjp = NAME##_vjp,                                                                                      \
        .jvp = NAME##_jvp,                                                                                      \
        .vjp_tangent = NAME##_vjp_tangent,                                                                      \
        .cases = NAME##_cases,                                                                                  \
        .ncases = NB_COUNT(NAME##_cases),                                                                       \
    };
BINARY_DESC(add)
BINARY_DESC(sub)
BINARY_DESC(mul)
BINARY_DESC(div)

static nb_node *binary_new(const nb_op *op, nb_node *a, nb_node *b)
{
    nb_node *in[2] = {a, b};
    return nb_node_op_new(op, 2, in, NULL);
}

nb_node *nb_add(nb_node *a, nb_node *b) { return binary_new(&nb_op_add, a, b); }
nb_node *nb_sub(nb_node *a, nb_node *b) { return binary_new(&nb_op_sub, a, b); }
nb_node *nb_mul(nb_node *a, nb_node *b) { return binary_new(&nb_op_mul, a, b); }
nb_node *nb_div(nb_node *a, nb_node *b) { return binary_new(&nb_op_div, a, b); }
