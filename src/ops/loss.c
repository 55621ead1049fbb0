/* Losses: each maps its inputs to a scalar L (rank 0), a mean over the batch
 * or over all elements. With one output, the Jacobian of L with respect to
 * an input is a row vector g = dL/dx (the gradient), so for seeds dy (K x 1)
 * and tangents dx (K x |x|):
 *   VJP: dx[k] = dy[k] g;    JVP: dy[k] = <g, dx[k]>.
 * Each op below gives g. */
#include "ops_internal.h"

#include <math.h>

#define PAR_THRESHOLD NB_PAR_MAP

static nb_status scalar_out(nb_node *n)
{
    nb_tensor_set_shape(&n->value, 0, NULL);
    return NB_OK;
}

/* Both inputs the same shape (mse, bce, cce with probabilities). */
static nb_status infer_same_inputs(nb_node *n, const char *what0, const char *what1)
{
    const nb_tensor *a = &n->in[0]->value, *b = &n->in[1]->value;
    bool same = a->rank == b->rank;
    for (int d = 0; same && d < a->rank; d++) same = a->shape[d] == b->shape[d];
    if (!same) {
        char s1[96], s2[96];
        return nb_fail(NB_ERR_SHAPE, "%s: %s '%s' of shape %s and %s '%s' of shape %s must have the same shape",
                       n->op->name, what0, n->in[0]->name, NB_SHAPE_STR(a, s1), what1, n->in[1]->name,
                       NB_SHAPE_STR(b, s2));
    }
    return scalar_out(n);
}

/* Scalar output, so dy holds one number per seed: dx[k] (+)= dy[k] * g. The
 * gradient g is given elementwise by the expression G of index j. */
#define SCALAR_VJP(K, dy, dx, m, acc, G)                                                                          \
    for (int64_t k_ = 0; k_ < (K); k_++) {                                                                        \
        const nb_real s_ = (dy)[k_];                                                                              \
        nb_real *r_ = (dx) + k_ * (m);                                                                            \
        const int64_t m_ = (m);                                                                                   \
        _Pragma("omp parallel for simd schedule(static) if (m_ > PAR_THRESHOLD)")                                 \
        for (int64_t j = 0; j < m_; j++) NB_PUT(acc, r_[j], s_ * (G));                                            \
    }

/* ----------------------------------------------------------------- mse */
/* L = (1/n) sum_j (p_j - t_j)^2, n = |p|.
 * dL/dp_j = 2 (p_j - t_j) / n;  dL/dt_j = -2 (p_j - t_j) / n. */

static nb_status mse_infer(nb_node *n) { return infer_same_inputs(n, "pred", "target"); }

static nb_status mse_forward(nb_node *n)
{
    const nb_real *p = n->in[0]->value.data, *t = n->in[1]->value.data;
    const int64_t m = n->in[0]->value.size;
    double acc = 0;
#pragma omp parallel for simd reduction(+ : acc) schedule(static) if (m > PAR_THRESHOLD)
    for (int64_t j = 0; j < m; j++) {
        const double d = (double)p[j] - (double)t[j];
        acc += d * d;
    }
    n->value.data[0] = (nb_real)(acc / (double)m);
    return NB_OK;
}

static nb_status mse_vjp(nb_node *n, int i, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    const nb_real *p = n->in[0]->value.data, *t = n->in[1]->value.data;
    const int64_t m = n->in[0]->value.size;
    const nb_real c = (nb_real)((i == 0 ? 2.0 : -2.0) / (double)m);
    SCALAR_VJP(K, dy, dx, m, acc, c * (p[j] - t[j]))
    return NB_OK;
}

static nb_status mse_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy)
{
    const nb_real *p = n->in[0]->value.data, *t = n->in[1]->value.data;
    const int64_t m = n->in[0]->value.size;
    for (int64_t k = 0; k < K; k++) {
        const nb_real *dp = dxs[0] ? dxs[0] + k * m : NULL, *dt = dxs[1] ? dxs[1] + k * m : NULL;
        double acc = 0;
        for (int64_t j = 0; j < m; j++)
            acc += ((double)p[j] - (double)t[j]) * ((dp ? dp[j] : 0) - (dt ? dt[j] : 0));
        dy[k] = (nb_real)(2.0 * acc / (double)m);
    }
    return NB_OK;
}

static nb_node *case_mse(nb_graph *g, nb_rng *r)
{
    nb_node *p = NB_CHECK_X("p", -1, 1, 3, 4), *t = NB_CHECK_X("t", -1, 1, 3, 4);
    return nb_mse_loss(p, t);
}
static const nb_op_case mse_loss_cases[] = {{"(3,4)", case_mse}};

/* Second order: d(dp) = ybar (2/n) (pdot - tdot) = -d(dt): the Hessian of
 * L in (p, t) is (2/n) [[I, -I], [-I, I]]. */
static nb_status mse_vjp_tangent(nb_node *n, int i, int64_t K, const nb_real *ybar, nb_real *const *xdots,
                                 nb_real *out, bool acc)
{
    const int64_t m = n->in[0]->value.size;
    const nb_real c = (nb_real)((i == 0 ? 2.0 : -2.0) / (double)m) * ybar[0];
    for (int64_t k = 0; k < K; k++) {
        const nb_real *dp = xdots[0] ? xdots[0] + k * m : NULL, *dt = xdots[1] ? xdots[1] + k * m : NULL;
        nb_real *r = out + k * m;
        for (int64_t j = 0; j < m; j++) NB_PUT(acc, r[j], c * ((dp ? dp[j] : 0) - (dt ? dt[j] : 0)));
    }
    return NB_OK;
}

const nb_op nb_op_mse_loss = {
    .name = "mse_loss",
    .ninputs = 2,
    .infer = mse_infer,
    .forward = mse_forward,
    .vjp = mse_vjp,
    .jvp = mse_jvp,
    .vjp_tangent = mse_vjp_tangent,
    .cases = mse_loss_cases,
    .ncases = NB_COUNT(mse_loss_cases),
};

nb_node *nb_mse_loss(nb_node *pred, nb_node *target)
{
    nb_node *in[2] = {pred, target};
    return nb_node_op_new(&nb_op_mse_loss, 2, in, NULL);
}

/* ----------------------------------------------------------------- bce */
/* Binary cross-entropy on logits z with targets t in [0, 1]:
 *   L = (1/n) sum_j l_j,  l_j = -t log sigma(z) - (1 - t) log(1 - sigma(z))
 *                             = max(z, 0) - z t + log(1 + exp(-|z|))  (stable form),
 * with max(z, 0) - z t formed as z (1 - t) for z > 0 and -z t otherwise: for
 * a large z and t near 1, z - z t would cancel two large rounded terms
 * (z = 1e8, t = 1 - 2^-24 in float: 8 or 0 for 5.96), while 1 - t is exact
 * for t in [1/2, 1] and z (1 - t) is then one rounding.
 * dL/dz_j = (sigma(z_j) - t_j) / n;  dL/dt_j = -z_j / n. */

static nb_status bce_infer(nb_node *n) { return infer_same_inputs(n, "logits", "target"); }

static nb_status bce_forward(nb_node *n)
{
    const nb_real *z = n->in[0]->value.data, *t = n->in[1]->value.data;
    const int64_t m = n->in[0]->value.size;
    double acc = 0;
#pragma omp parallel for reduction(+ : acc) schedule(static) if (m > PAR_THRESHOLD)
    for (int64_t j = 0; j < m; j++) {
        const nb_real x = z[j];
        acc += (double)((x > 0 ? x * (1 - t[j]) : -x * t[j]) + RE(log1p)(RE(exp)(-RE(fabs)(x))));
    }
    n->value.data[0] = (nb_real)(acc / (double)m);
    return NB_OK;
}

static nb_status bce_vjp(nb_node *n, int i, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    const nb_real *z = n->in[0]->value.data, *t = n->in[1]->value.data;
    const int64_t m = n->in[0]->value.size;
    const nb_real inv = (nb_real)(1.0 / (double)m);
    if (i == 0) {
        SCALAR_VJP(K, dy, dx, m, acc, inv * (nb_sigmoid_stable(z[j]) - t[j]))
    } else {
        SCALAR_VJP(K, dy, dx, m, acc, -inv * z[j])
    }
    return NB_OK;
}

static nb_status bce_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy)
{
    const nb_real *z = n->in[0]->value.data, *t = n->in[1]->value.data;
    const int64_t m = n->in[0]->value.size;
    for (int64_t k = 0; k < K; k++) {
        const nb_real *dz = dxs[0] ? dxs[0] + k * m : NULL, *dt = dxs[1] ? dxs[1] + k * m : NULL;
        double acc = 0;
        for (int64_t j = 0; j < m; j++) {
            if (dz) acc += (double)((nb_sigmoid_stable(z[j]) - t[j]) * dz[j]);
            if (dt) acc -= (double)(z[j] * dt[j]);
        }
        dy[k] = (nb_real)(acc / (double)m);
    }
    return NB_OK;
}

static nb_node *case_bce(nb_graph *g, nb_rng *r)
{
    nb_node *z = NB_CHECK_X("z", -3, 3, 3, 4), *t = NB_CHECK_X("t", 0, 1, 3, 4);
    return nb_bce_logits_loss(z, t);
}
static const nb_op_case bce_logits_loss_cases[] = {{"(3,4)", case_bce}};

/* Second order: dz = ybar (sigma(z) - t) / n and dt = -ybar z / n, so
 *   d(dz) = ybar (sigma'(z) zdot - tdot) / n,  sigma' = sigma (1 - sigma);
 *   d(dt) = -ybar zdot / n. */
static nb_status bce_vjp_tangent(nb_node *n, int i, int64_t K, const nb_real *ybar, nb_real *const *xdots,
                                 nb_real *out, bool acc)
{
    const nb_real *z = n->in[0]->value.data;
    const int64_t m = n->in[0]->value.size;
    const nb_real c = ybar[0] * (nb_real)(1.0 / (double)m);
    for (int64_t k = 0; k < K; k++) {
        const nb_real *dz = xdots[0] ? xdots[0] + k * m : NULL, *dt = xdots[1] ? xdots[1] + k * m : NULL;
        nb_real *r = out + k * m;
        for (int64_t j = 0; j < m; j++) {
            const nb_real s = nb_sigmoid_stable(z[j]);
            const nb_real v = i == 0 ? (dz ? s * (1 - s) * dz[j] : 0) - (dt ? dt[j] : 0) : -(dz ? dz[j] : 0);
            NB_PUT(acc, r[j], c * v);
        }
    }
    return NB_OK;
}

const nb_op nb_op_bce_logits_loss = {
    .name = "bce_logits_loss",
    .ninputs = 2,
    .infer = bce_infer,
    .forward = bce_forward,
    .vjp = bce_vjp,
    .jvp = bce_jvp,
    .vjp_tangent = bce_vjp_tangent,
    .cases = bce_logits_loss_cases,
    .ncases = NB_COUNT(bce_logits_loss_cases),
};

nb_node *nb_bce_logits_loss(nb_node *logits, nb_node *target)
{
    nb_node *in[2] = {logits, target};
    return nb_node_op_new(&nb_op_bce_logits_loss, 2, in, NULL);
}

/* --------------------------------------------------- cce (class indices) */
/* Logits z (N, C), labels y (N) with y_i in 0..C-1:
 *   L = (1/N) sum_i (lse(z_i) - z_{i, y_i}),   lse(v) = log sum_c exp(v_c),
 * i.e. the mean of -log softmax(z_i)[y_i], computed per row as
 * (m_i - z_{i, y_i}) + log sum_c exp(z_{i,c} - m_i), m_i = max_c z_{i,c}.
 * dL/dz_{i,c} = (s_{i,c} - [c = y_i]) / N,  s_i = softmax(z_i).
 * The labels are indices, not variables: no derivative (nondiff_mask).
 * Workspace: s (N x C), then the labels as int32 (N). */

static nb_status logits_2d(const nb_node *n)
{
    const nb_tensor *z = &n->in[0]->value;
    if (z->rank != 2) {
        char b[96];
        return nb_fail(NB_ERR_SHAPE, "%s: logits '%s' must have shape (N, C), got %s", n->op->name, n->in[0]->name,
                       NB_SHAPE_STR(z, b));
    }
    return NB_OK;
}

static nb_status cce_infer(nb_node *n)
{
    nb_status s = logits_2d(n);
    if (s) return s;
    const nb_tensor *z = &n->in[0]->value, *y = &n->in[1]->value;
    if (y->rank != 1 || y->shape[0] != z->shape[0]) {
        char b1[96], b2[96];
        return nb_fail(NB_ERR_SHAPE, "cce_logits_loss: labels '%s' of shape %s do not fit logits '%s' of shape %s: "
                       "expected (%lld,), one class index per row",
                       n->in[1]->name, NB_SHAPE_STR(y, b1), n->in[0]->name, NB_SHAPE_STR(z, b2),
                       (long long)z->shape[0]);
    }
    return scalar_out(n);
}

nb_status nb_check_class_labels(const char *what, const nb_real *labels, int64_t n, int64_t classes)
{
    if (!labels && n > 0) return nb_fail(NB_ERR_ARG, "%s: no labels (NULL)", what ? what : "labels");
    for (int64_t i = 0; i < n; i++) {
        const nb_real v = labels[i];
        /* (NaN fails the range test; the floor test catches 2.5) */
        if (!(v >= 0 && v <= (nb_real)(classes - 1)) || v != RE(floor)(v))
            return nb_fail(NB_ERR_ARG, "%s: example %lld has label %g, not a class index 0..%lld (%lld classes)",
                           what ? what : "labels", (long long)i, (double)v, (long long)(classes - 1),
                           (long long)classes);
    }
    return NB_OK;
}

static nb_status cce_forward(nb_node *n)
{
    const nb_real *z = n->in[0]->value.data, *y = n->in[1]->value.data;
    const int64_t N = n->in[0]->value.shape[0], C = n->in[0]->value.shape[1];
    const char *name = n->op->name;
    if (C == 0) return nb_fail(NB_ERR_SHAPE, "%s: logits '%s' have no classes (C = 0)", name, n->in[0]->name);
    if (C > INT32_MAX) return nb_fail(NB_ERR_TOO_LARGE, "%s: %lld classes is too many", name, (long long)C);
    nb_real *s = nb_node_workspace(n, (size_t)(N * C) * sizeof(nb_real) + (size_t)N * sizeof(int32_t) + 1);
    if (!s) return NB_ERR_NOMEM;
    /* cppcheck-suppress invalidPointerCast ; malloc'ed workspace: these bytes are only ever int32 labels */
    int32_t *lab = (int32_t *)(s + N * C);
    nb_status st = nb_check_class_labels(name, y, N, C);
    if (st) return st;
    for (int64_t i = 0; i < N; i++) lab[i] = (int32_t)y[i];
    double acc = 0;
    const int64_t count = N * C;
    (void)count;
#pragma omp parallel for reduction(+ : acc) schedule(static) if (count > PAR_THRESHOLD)
    for (int64_t i = 0; i < N; i++) {
        nb_real m;
        const nb_real lsum = nb_softmax_row(z + i * C, s + i * C, C, &m);
        acc += (double)((m - z[i * C + lab[i]]) + lsum);
    }
    n->value.data[0] = (nb_real)(acc / (double)N);
    return NB_OK;
}

static nb_status cce_vjp(nb_node *n, int i, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    if (i != 0) return nb_fail(NB_ERR_UNSUPPORTED, "%s: labels are class indices and have no gradient", n->op->name);
    const int64_t N = n->in[0]->value.shape[0], C = n->in[0]->value.shape[1];
    const nb_real *s = n->ws;
    /* cppcheck-suppress invalidPointerCast ; malloc'ed workspace: these bytes are only ever int32 labels */
    const int32_t *lab = (const int32_t *)(s + N * C);
    const nb_real inv = (nb_real)(1.0 / (double)N);
    const int64_t count = N * C;
    (void)count;
    /* The K seeds' rows in one loop (1 + K of them in a Hessian pass),
     * threaded by the size of one seed as before: a Hessian pass's
     * elementwise loops are short, and on a loaded machine every parallel
     * region waits for the other thread to be scheduled (milliseconds). */
    const int64_t rows = K * N;
#pragma omp parallel for schedule(static) if (count > PAR_THRESHOLD)
    for (int64_t kr = 0; kr < rows; kr++) {
        const int64_t row = kr % N;
        const nb_real g = dy[kr / N] * inv;
        const nb_real *sr = s + row * C;
        nb_real *rr = dx + kr * C;
        for (int64_t c = 0; c < C; c++) NB_PUT(acc, rr[c], g * sr[c]);
        rr[lab[row]] -= g;
    }
    return NB_OK;
}

static nb_status cce_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy)
{
    const int64_t N = n->in[0]->value.shape[0], C = n->in[0]->value.shape[1];
    const nb_real *s = n->ws;
    /* cppcheck-suppress invalidPointerCast ; malloc'ed workspace: these bytes are only ever int32 labels */
    const int32_t *lab = (const int32_t *)(s + N * C);
    const int64_t count = N * C; /* threaded by one tangent's size, as cce_vjp */
    (void)count;
#pragma omp parallel for schedule(static) if (count > PAR_THRESHOLD) /* each k summed in its own order */
    for (int64_t k = 0; k < K; k++) {
        double acc = 0;
        if (dxs[0]) {
            const nb_real *t = dxs[0] + k * N * C;
            for (int64_t row = 0; row < N; row++) {
                const nb_real *sr = s + row * C, *tr = t + row * C;
                nb_real a = 0;
                for (int64_t c = 0; c < C; c++) a += sr[c] * tr[c];
                acc += (double)(a - tr[lab[row]]);
            }
        }
        dy[k] = (nb_real)(acc / (double)N);
    }
    return NB_OK;
}

static nb_node *case_cce_labels(nb_graph *g, nb_rng *r)
{
    nb_node *z = NB_CHECK_X("z", -2, 2, 4, 5);
    nb_node *y = nb_input(g, "~labels", NB_SHAPE(4)); /* '~': a constant, not checked */
    if (y)
        for (int i = 0; i < 4; i++) nb_value(y)->data[i] = (nb_real)(nb_rng_next(r) % 5);
    return nb_cce_logits_loss(z, y);
}
static const nb_op_case cce_logits_loss_cases[] = {{"labels, (4,5)", case_cce_labels}};

/* Second order: dz_i = ybar (s_i - e_{y_i}) / N, so along zdot
 *   d(dz_i) = ybar sdot_i / N,  sdot_i = s_i * (zdot_i - <s_i, zdot_i>):
 * the Hessian of L in the logits is (diag(s_i) - s_i s_i^T) / N per row. */
static nb_status cce_vjp_tangent(nb_node *n, int i, int64_t K, const nb_real *ybar, nb_real *const *xdots,
                                 nb_real *out, bool acc)
{
    const int64_t N = n->in[0]->value.shape[0], C = n->in[0]->value.shape[1];
    if (!xdots[0]) return nb_vjp_tangent_zero(n, i, K, ybar, xdots, out, acc);
    const nb_real *s = n->ws;
    const nb_real c = ybar[0] * (nb_real)(1.0 / (double)N);
    const int64_t rows = K * N, count = N * C; /* threaded by one tangent's size, as cce_vjp */
    (void)count;
#pragma omp parallel for schedule(static) if (count > PAR_THRESHOLD)
    for (int64_t kr = 0; kr < rows; kr++) {
        const nb_real *sr = s + (kr % N) * C, *t = xdots[0] + kr * C;
        nb_real *r = out + kr * C, st = 0;
        for (int64_t j = 0; j < C; j++) st += sr[j] * t[j];
        for (int64_t j = 0; j < C; j++) NB_PUT(acc, r[j], c * sr[j] * (t[j] - st));
    }
    return NB_OK;
}

const nb_op nb_op_cce_logits_loss = {
    .name = "cce_logits_loss",
    .ninputs = 2,
    .infer = cce_infer,
    .forward = cce_forward,
    .vjp = cce_vjp,
    .jvp = cce_jvp,
    .vjp_tangent = cce_vjp_tangent,
    .nondiff_mask = 1u << 1,
    .cases = cce_logits_loss_cases,
    .ncases = NB_COUNT(cce_logits_loss_cases),
};

nb_node *nb_cce_logits_loss(nb_node *logits, nb_node *labels)
{
    nb_node *in[2] = {logits, labels};
    return nb_node_op_new(&nb_op_cce_logits_loss, 2, in, NULL);
}

/* ----------------------------------------------- cce (probability targets) */
/* Logits z (N, C), targets t (N, C):
 *   L = -(1/N) sum_i sum_c t_{i,c} l_{i,c},   l_i = log_softmax(z_i) = z_i - lse(z_i),
 * computed as l_{i,c} = (z_{i,c} - m_i) - log sum_j exp(z_{i,j} - m_i).
 * With T_i = sum_c t_{i,c} (1 for probability rows):
 *   dL/dz_{i,c} = (T_i s_{i,c} - t_{i,c}) / N,   dL/dt_{i,c} = -l_{i,c} / N.
 * Workspace: s (N x C), then l (N x C). */

static nb_status cce_probs_infer(nb_node *n)
{
    nb_status s = logits_2d(n);
    return s ? s : infer_same_inputs(n, "logits", "target");
}

static nb_status cce_probs_forward(nb_node *n)
{
    const nb_real *z = n->in[0]->value.data, *t = n->in[1]->value.data;
    const int64_t N = n->in[0]->value.shape[0], C = n->in[0]->value.shape[1];
    if (C == 0) return nb_fail(NB_ERR_SHAPE, "%s: logits '%s' have no classes (C = 0)", n->op->name, n->in[0]->name);
    nb_real *s = nb_node_workspace(n, 2 * (size_t)(N * C) * sizeof(nb_real) + 1);
    if (!s) return NB_ERR_NOMEM;
    nb_real *l = s + N * C;
    double acc = 0;
    const int64_t count = N * C;
    (void)count;
#pragma omp parallel for reduction(+ : acc) schedule(static) if (count > PAR_THRESHOLD)
    for (int64_t i = 0; i < N; i++) {
        nb_real m;
        const nb_real lsum = nb_softmax_row(z + i * C, s + i * C, C, &m);
        nb_real a = 0;
        for (int64_t c = 0; c < C; c++) {
            l[i * C + c] = (z[i * C + c] - m) - lsum;
            a += t[i * C + c] * l[i * C + c];
        }
        acc -= (double)a;
    }
    n->value.data[0] = (nb_real)(acc / (double)N);
    return NB_OK;
}

static nb_status cce_probs_vjp(nb_node *n, int i, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    const int64_t N = n->in[0]->value.shape[0], C = n->in[0]->value.shape[1];
    const nb_real *s = n->ws, *l = s + N * C, *t = n->in[1]->value.data;
    const nb_real inv = (nb_real)(1.0 / (double)N);
    const int64_t count = N * C;
    (void)count;
    for (int64_t k = 0; k < K; k++) {
        const nb_real g = dy[k] * inv;
        nb_real *r = dx + k * N * C;
        if (i == 1) {
#pragma omp parallel for simd schedule(static) if (count > PAR_THRESHOLD)
            for (int64_t j = 0; j < count; j++) NB_PUT(acc, r[j], -g * l[j]);
            continue;
        }
#pragma omp parallel for schedule(static) if (count > PAR_THRESHOLD)
        for (int64_t row = 0; row < N; row++) {
            const nb_real *sr = s + row * C, *tr = t + row * C;
            nb_real *rr = r + row * C;
            nb_real T = 0;
            for (int64_t c = 0; c < C; c++) T += tr[c];
            for (int64_t c = 0; c < C; c++) NB_PUT(acc, rr[c], g * (T * sr[c] - tr[c]));
        }
    }
    return NB_OK;
}

static nb_status cce_probs_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy)
{
    const int64_t N = n->in[0]->value.shape[0], C = n->in[0]->value.shape[1];
    const nb_real *s = n->ws, *l = s + N * C, *t = n->in[1]->value.data;
    for (int64_t k = 0; k < K; k++) {
        const nb_real *dz = dxs[0] ? dxs[0] + k * N * C : NULL, *dt = dxs[1] ? dxs[1] + k * N * C : NULL;
        double acc = 0;
        for (int64_t row = 0; row < N; row++) {
            const nb_real *sr = s + row * C, *tr = t + row * C, *lr = l + row * C;
            nb_real T = 0, a = 0;
            if (dz) {
                for (int64_t c = 0; c < C; c++) T += tr[c];
                for (int64_t c = 0; c < C; c++) a += (T * sr[c] - tr[c]) * dz[row * C + c];
            }
            if (dt)
                for (int64_t c = 0; c < C; c++) a -= lr[c] * dt[row * C + c];
            acc += (double)a;
        }
        dy[k] = (nb_real)(acc / (double)N);
    }
    return NB_OK;
}

static nb_node *case_cce_probs(nb_graph *g, nb_rng *r)
{
    nb_node *z = NB_CHECK_X("z", -2, 2, 3, 4), *t = NB_CHECK_X("t", 0.1, 1, 3, 4);
    if (t)
        for (int i = 0; i < 3; i++) { /* rows of probabilities */
            nb_real *row = nb_value(t)->data + 4 * i, sum = 0;
            for (int c = 0; c < 4; c++) sum += row[c];
            for (int c = 0; c < 4; c++) row[c] /= sum;
        }
    return nb_cce_logits_probs_loss(z, t);
}
static const nb_op_case cce_logits_probs_loss_cases[] = {{"(3,4)", case_cce_probs}};

/* Second order, per row i, with T = sum_c t_c, sdot = s * (zdot - <s, zdot>)
 * and ldot = zdot - <s, zdot> (the tangents of softmax and log_softmax):
 *   dz = ybar (T s - t) / N  ->  d(dz) = ybar (Tdot s + T sdot - tdot) / N;
 *   dt = -ybar l / N         ->  d(dt) = -ybar ldot / N. */
static nb_status cce_probs_vjp_tangent(nb_node *n, int i, int64_t K, const nb_real *ybar, nb_real *const *xdots,
                                       nb_real *out, bool acc)
{
    const int64_t N = n->in[0]->value.shape[0], C = n->in[0]->value.shape[1];
    const nb_real *s = n->ws, *t = n->in[1]->value.data;
    const nb_real c = ybar[0] * (nb_real)(1.0 / (double)N);
    for (int64_t k = 0; k < K; k++)
        for (int64_t row = 0; row < N; row++) {
            const int64_t at = (k * N + row) * C;
            const nb_real *sr = s + row * C, *tr = t + row * C;
            const nb_real *dz = xdots[0] ? xdots[0] + at : NULL, *dt = xdots[1] ? xdots[1] + at : NULL;
            nb_real *r = out + at, sz = 0, T = 0, Tdot = 0;
            for (int64_t j = 0; j < C; j++) {
                sz += dz ? sr[j] * dz[j] : 0;
                T += tr[j], Tdot += dt ? dt[j] : 0;
            }
            for (int64_t j = 0; j < C; j++) {
                const nb_real ldot = dz ? dz[j] - sz : 0, sdot = sr[j] * ldot;
                const nb_real v = i == 0 ? Tdot * sr[j] + T * sdot - (dt ? dt[j] : 0) : -ldot;
                NB_PUT(acc, r[j], c * v);
            }
        }
    return NB_OK;
}

const nb_op nb_op_cce_logits_probs_loss = {
    .name = "cce_logits_probs_loss",
    .ninputs = 2,
    .infer = cce_probs_infer,
    .forward = cce_probs_forward,
    .vjp = cce_probs_vjp,
    .jvp = cce_probs_jvp,
    .vjp_tangent = cce_probs_vjp_tangent,
    .cases = cce_logits_probs_loss_cases,
    .ncases = NB_COUNT(cce_logits_probs_loss_cases),
};

nb_node *nb_cce_logits_probs_loss(nb_node *logits, nb_node *target)
{
    nb_node *in[2] = {logits, target};
    return nb_node_op_new(&nb_op_cce_logits_probs_loss, 2, in, NULL);
}
