/* Softmax and log-softmax over the last axis, row by row (a row = the C
 * entries of one position of the leading axes).
 *
 * softmax: s_c = exp(x_c - m) / sum_j exp(x_j - m), m = max_j x_j (the shift
 * leaves s unchanged and keeps exp from overflowing). Per row the Jacobian is
 *   ds_c/dx_j = s_c ([c = j] - s_j),   i.e. J = diag(s) - s s^T
 * (symmetric), and rows do not mix. So
 *   VJP: dx = J^T dy = s * (dy - <dy, s>);
 *   JVP: dy = J dx   = s * (dx - <dx, s>).
 * log_softmax: l_c = (x_c - m) - log sum_j exp(x_j - m), in that order: x_c - m
 * is one rounding of the exact difference (exactly 0 at the max) and the log
 * of the sum lies in [0, log C], so l_c keeps full precision for logits of any
 * size. x_c - (m + log sum) would first round m + log sum to m's precision:
 * for [1e7, 1e7] in float that gives -1 instead of -log 2. Per row
 *   dl_c/dx_j = [c = j] - s_j,   i.e. J = I - 1 s^T, so
 *   VJP: dx = J^T dy = dy - s * sum(dy);
 *   JVP: dy = J dx   = dx - <s, dx> (the same for every c). */
#include "ops_internal.h"

#include <math.h>

static nb_status softmax_infer(nb_node *n)
{
    const nb_tensor *x = &n->in[0]->value;
    if (x->rank < 1)
        return nb_fail(NB_ERR_SHAPE, "%s: input '%s' is a scalar; it needs at least one axis", n->op->name,
                       n->in[0]->name);
    nb_tensor_set_shape(&n->value, x->rank, x->shape);
    return NB_OK;
}

/* Rows and row length C of the node's value. */
static void rows_of(const nb_node *n, int64_t *rows, int64_t *C)
{
    *C = n->value.shape[n->value.rank - 1];
    *rows = *C ? n->value.size / *C : 0;
}

/* One row: y = softmax(x) (logp false) or log_softmax(x) (logp true),
 * l_c = (x_c - m) - lsum from the row's max and log-sum (nb_softmax_row). */
static void row_forward(const nb_real *x, nb_real *y, int64_t C, bool logp)
{
    nb_real m;
    const nb_real lsum = nb_softmax_row(x, y, C, &m);
    if (logp)
        for (int64_t c = 0; c < C; c++) y[c] = (x[c] - m) - lsum;
}

/* rows_of gives no rows when C = 0: every row has C >= 1. */
nb_real nb_softmax_row(const nb_real *v, nb_real *s, int64_t C, nb_real *max)
{
    nb_real m = v[0];
    for (int64_t c = 1; c < C; c++) m = v[c] > m ? v[c] : m;
    nb_real sum = 0;
    for (int64_t c = 0; c < C; c++) sum += (s[c] = RE(exp)(v[c] - m));
    const nb_real inv = 1 / sum;
    for (int64_t c = 0; c < C; c++) s[c] *= inv;
    *max = m;
    /* cppcheck-suppress invalidFunctionArg ; C >= 1 (callers check), so sum >= exp(0) = 1 */
    return RE(log)(sum);
}

static bool is_log(const nb_node *n);

static nb_status softmax_forward(nb_node *n)
{
    int64_t rows, C;
    rows_of(n, &rows, &C);
    const nb_real *x = n->in[0]->value.data;
    nb_real *y = n->value.data;
    const bool logp = is_log(n);
    const int64_t count = rows * C;
    (void)count;
#pragma omp parallel for schedule(static) if (count > NB_PAR_MAP)
    for (int64_t r = 0; r < rows; r++) row_forward(x + r * C, y + r * C, C, logp);
    return NB_OK;
}

/* s of row r, from the saved output: y itself, or exp(y) for log_softmax. */
static inline nb_real s_at(const nb_real *y, int64_t j, bool logp) { return logp ? RE(exp)(y[j]) : y[j]; }

static nb_status softmax_vjp(nb_node *n, int in, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    int64_t rows, C;
    rows_of(n, &rows, &C);
    const nb_real *y = n->value.data;
    const bool logp = is_log(n);
    const int64_t total = K * rows, count = total * C;
    (void)count;
#pragma omp parallel for schedule(static) if (count > NB_PAR_MAP)
    for (int64_t kr = 0; kr < total; kr++) {
        const int64_t r = kr % rows;
        const nb_real *g = dy + kr * C, *yr = y + r * C;
        nb_real *out = dx + kr * C;
        nb_real dot = 0;
        if (logp) {
            for (int64_t c = 0; c < C; c++) dot += g[c];
            for (int64_t c = 0; c < C; c++) NB_PUT(acc, out[c], g[c] - RE(exp)(yr[c]) * dot);
        } else {
            for (int64_t c = 0; c < C; c++) dot += g[c] * yr[c];
            for (int64_t c = 0; c < C; c++) NB_PUT(acc, out[c], yr[c] * (g[c] - dot));
        }
    }
    return NB_OK;
}

static nb_status softmax_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy)
{
    int64_t rows, C;
    rows_of(n, &rows, &C);
    const nb_real *y = n->value.data;
    const bool logp = is_log(n);
    const int64_t total = K * rows, count = total * C;
    if (!dxs[0]) {
        memset(dy, 0, (size_t)count * sizeof(nb_real));
        return NB_OK;
    }
#pragma omp parallel for schedule(static) if (count > NB_PAR_MAP)
    for (int64_t kr = 0; kr < total; kr++) {
        const int64_t r = kr % rows;
        const nb_real *t = dxs[0] + kr * C, *yr = y + r * C;
        nb_real *out = dy + kr * C;
        nb_real dot = 0;
        for (int64_t c = 0; c < C; c++) dot += s_at(yr, c, logp) * t[c];
        if (logp)
            for (int64_t c = 0; c < C; c++) out[c] = t[c] - dot;
        else
            for (int64_t c = 0; c < C; c++) out[c] = yr[c] * (t[c] - dot);
    }
    return NB_OK;
}

static nb_node *case_softmax(nb_graph *g, nb_rng *r) { return nb_softmax(NB_CHECK_X("x", -2, 2, 3, 5)); }
static nb_node *case_softmax3d(nb_graph *g, nb_rng *r) { return nb_softmax(NB_CHECK_X("x", -2, 2, 2, 2, 4)); }
static nb_node *case_log_softmax(nb_graph *g, nb_rng *r) { return nb_log_softmax(NB_CHECK_X("x", -2, 2, 3, 5)); }
static const nb_op_case softmax_cases[] = {{"(3,5)", case_softmax}, {"(2,2,4)", case_softmax3d}};
static const nb_op_case log_softmax_cases[] = {{"(3,5)", case_log_softmax}};

/* Second order, per row, with sdot = s * (xdot - <s, xdot>) the tangent of
 * s (softmax's JVP) and ybar the seed of the row:
 *   softmax:     xbar = s * (ybar - <ybar, s>), so
 *                d(xbar) = sdot * (ybar - <ybar, s>) - s * <ybar, sdot>;
 *   log_softmax: xbar = ybar - s * sum(ybar), so d(xbar) = -sdot * sum(ybar). */
static nb_status softmax_vjp_tangent(nb_node *n, int in, int64_t K, const nb_real *ybar, nb_real *const *xdots,
                                     nb_real *out, bool acc)
{
    if (!xdots[0]) return nb_vjp_tangent_zero(n, in, K, ybar, xdots, out, acc);
    int64_t rows, C;
    rows_of(n, &rows, &C);
    const nb_real *y = n->value.data;
    const bool logp = is_log(n);
    const int64_t total = K * rows, count = total * C;
    (void)count;
#pragma omp parallel for schedule(static) if (count > NB_PAR_MAP)
    for (int64_t kr = 0; kr < total; kr++) {
        const int64_t r = kr % rows;
        const nb_real *t = xdots[0] + kr * C, *yr = y + r * C, *g = ybar + r * C;
        nb_real *o = out + kr * C;
        nb_real st = 0, gs = 0, gsum = 0, gsdot = 0;
        for (int64_t c = 0; c < C; c++) st += s_at(yr, c, logp) * t[c];
        for (int64_t c = 0; c < C; c++) {
            const nb_real sc = s_at(yr, c, logp), sdot = sc * (t[c] - st);
            gs += g[c] * sc, gsum += g[c], gsdot += g[c] * sdot;
        }
        for (int64_t c = 0; c < C; c++) {
            const nb_real sc = s_at(yr, c, logp), sdot = sc * (t[c] - st);
            NB_PUT(acc, o[c], logp ? -sdot * gsum : sdot * (g[c] - gs) - sc * gsdot);
        }
    }
    return NB_OK;
}

const nb_op nb_op_softmax = {
    .name = "softmax",
    .ninputs = 1,
    .infer = softmax_infer,
    .forward = softmax_forward,
    .vjp = softmax_vjp,
    .jvp = softmax_jvp,
    .vjp_tangent = softmax_vjp_tangent,
    .cases = softmax_cases,
    .ncases = NB_COUNT(softmax_cases),
};
const nb_op nb_op_log_softmax = {
    .name = "log_softmax",
    .ninputs = 1,
    .infer = softmax_infer,
    .forward = softmax_forward,
    .vjp = softmax_vjp,
    .jvp = softmax_jvp,
    .vjp_tangent = softmax_vjp_tangent,
    .cases = log_softmax_cases,
    .ncases = NB_COUNT(log_softmax_cases),
};

static bool is_log(const nb_node *n) { return n->op == &nb_op_log_softmax; }

nb_node *nb_softmax(nb_node *x) { return nb_node_op_new(&nb_op_softmax, 1, &x, NULL); }
nb_node *nb_log_softmax(nb_node *x) { return nb_node_op_new(&nb_op_log_softmax, 1, &x, NULL); }
