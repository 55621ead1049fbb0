/* 2-D convolution (cross-correlation, as in every deep-learning library),
 * NHWC input x (N,H,W,C), kernel k (fh,fw,C,O) in Keras's layout, optional
 * bias b (O); stride s, dilation d, padding pt (top) and pl (left) resolved
 * from 'valid' (none) or 'same' (TensorFlow's rule, nb_window_dim):
 *
 *   y[n,i,j,o] = b[o] + sum_{p,q,c} x[n, i*s + p*d - pt, j*s + q*d - pl, c] k[p,q,c,o]
 *
 * with x = 0 outside the image. Lowered to a GEMM: im2col gathers the window
 * of every output pixel into a row of cols (M = N*OH*OW rows, P = fh*fw*C
 * columns ordered (p,q,c)), the kernel is already a row-major P x O matrix
 * Kmat, and Y (M x O) = cols Kmat + 1 b^T is the NHWC output as it lies.
 *
 * Jacobian. y is linear in each of x, k and b separately:
 *   dy[n,i,j,o] / dk[p,q,c,o'] = [o == o'] x[n, i*s + p*d - pt, j*s + q*d - pl, c]
 *                              = [o == o'] cols[(n,i,j), (p,q,c)]
 *   dy[n,i,j,o] / dx[n',h,w,c] = [n == n'] sum over (p,q) with i*s + p*d - pt == h
 *                                and j*s + q*d - pl == w of k[p,q,c,o]
 *   dy[n,i,j,o] / db[o']       = [o == o']
 * so, for each seed dY (M x O):
 *   VJP k: dK = cols^T dY                      (P x M . M x O)
 *   VJP x: dcols = dY Kmat^T (M x O . O x P), then dX = col2im(dcols): each
 *          window entry goes back to the pixel it was read from (scatter-add)
 *   VJP b: db[o] = sum_{n,i,j} dY[n,i,j,o]
 * and for tangents (dX, dK, db), by linearity:
 *   JVP:   dY = conv(dX, k) + conv(x, dK) + db = im2col(dX) Kmat + cols dK + 1 db^T.
 * K stacked seeds share Kmat, so for x the K*N seed images form one batch
 * (one GEMM); for k each seed is one GEMM against the saved cols. */
#include "../core/internal.h"

#include <limits.h>

typedef struct {
    nb_window w;
    int64_t N, O, P, M; /* batch, output channels, window length, output pixels */
} conv_plan;

static void conv_plan_get(const nb_node *n, conv_plan *c)
{
    const nb_tensor *x = &n->in[0]->value, *k = &n->in[1]->value;
    c->N = x->shape[0];
    c->w.H = x->shape[1], c->w.W = x->shape[2], c->w.C = x->shape[3];
    c->w.fh = (int)k->shape[0], c->w.fw = (int)k->shape[1];
    c->w.stride = n->at.stride, c->w.dilation = n->at.dilation;
    c->w.pad_top = n->at.pad_top, c->w.pad_left = n->at.pad_left;
    c->w.OH = n->value.shape[1], c->w.OW = n->value.shape[2];
    c->O = k->shape[3];
    c->P = (int64_t)c->w.fh * c->w.fw * c->w.C;
    c->M = c->N * c->w.OH * c->w.OW;
}

static nb_status conv2d_infer(nb_node *n)
{
    const nb_tensor *x = &n->in[0]->value, *k = &n->in[1]->value;
    char s1[96], s2[96];
    if (x->rank != 4)
        return nb_fail(NB_ERR_SHAPE, "conv2d: input must have shape (N,H,W,C_in), got %s", NB_SHAPE_STR(x, s1));
    if (k->rank != 4)
        return nb_fail(NB_ERR_SHAPE, "conv2d: kernel must have shape (f_h,f_w,C_in,C_out), got %s",
                       NB_SHAPE_STR(k, s1));
    if (k->shape[0] < 1 || k->shape[1] < 1 || k->shape[0] > INT_MAX / 4 || k->shape[1] > INT_MAX / 4)
        return nb_fail(NB_ERR_SHAPE, "conv2d: kernel %s has an invalid window %lldx%lld", NB_SHAPE_STR(k, s1),
                       (long long)k->shape[0], (long long)k->shape[1]);
    if (k->shape[2] != x->shape[3])
        return nb_fail(NB_ERR_SHAPE, "conv2d: input %s has %lld channels but kernel %s expects C_in = %lld",
                       NB_SHAPE_STR(x, s1), (long long)x->shape[3], NB_SHAPE_STR(k, s2), (long long)k->shape[2]);
    if (n->ninputs == 3) {
        const nb_tensor *b = &n->in[2]->value;
        if (b->rank != 1 || b->shape[0] != k->shape[3])
            return nb_fail(NB_ERR_SHAPE, "conv2d: bias has shape %s, expected (%lld,) to match C_out of kernel %s",
                           NB_SHAPE_STR(b, s1), (long long)k->shape[3], NB_SHAPE_STR(k, s2));
    }
    const int fh = (int)k->shape[0], fw = (int)k->shape[1], s = n->at.stride, d = n->at.dilation;
    if ((int64_t)(fh - 1) * d + 1 > INT_MAX / 2 || (int64_t)(fw - 1) * d + 1 > INT_MAX / 2)
        return nb_fail(NB_ERR_SHAPE, "conv2d: kernel %dx%d with dilation %d spans too many pixels", fh, fw, d);
    int pt, pl;
    const int64_t OH = nb_window_dim(x->shape[1], fh, s, d, n->at.padding, &pt);
    const int64_t OW = nb_window_dim(x->shape[2], fw, s, d, n->at.padding, &pl);
    if (OH < 0 || OW < 0) {
        if (d == 1)
            return nb_fail(NB_ERR_SHAPE, "conv2d: kernel %dx%d larger than input %lldx%lld (padding 'valid')", fh,
                           fw, (long long)x->shape[1], (long long)x->shape[2]);
        return nb_fail(NB_ERR_SHAPE,
                       "conv2d: kernel %dx%d with dilation %d spans %lldx%lld, larger than input %lldx%lld "
                       "(padding 'valid')",
                       fh, fw, d, (long long)(fh - 1) * d + 1, (long long)(fw - 1) * d + 1,
                       (long long)x->shape[1], (long long)x->shape[2]);
    }
    n->at.pad_top = pt, n->at.pad_left = pl;
    const int64_t shape[4] = {x->shape[0], OH, OW, k->shape[3]};
    if (nb_shape_size(4, shape) < 0 || nb_shape_size(3, shape) < 0)
        return nb_fail(NB_ERR_TOO_LARGE, "conv2d: output shape overflows");
    nb_tensor_set_shape(&n->value, 4, shape);
    return NB_OK;
}

/* Bytes of cols (rounded up to 64 so the scratch after it stays aligned). */
static nb_status cols_bytes(const conv_plan *c, size_t *bytes)
{
    if (c->M > 0 && c->P > (int64_t)(SIZE_MAX / 2 / sizeof(nb_real)) / c->M)
        return nb_fail(NB_ERR_TOO_LARGE, "conv2d: the im2col buffer (%lld x %lld) is too large", (long long)c->M,
                       (long long)c->P);
    *bytes = ((size_t)(c->M * c->P) * sizeof(nb_real) + 63) / 64 * 64;
    return NB_OK;
}

/* Scratch of `bytes` after the cols that the forward pass left at the start
 * of the workspace; growing it keeps cols. */
static void *conv_scratch(nb_node *n, const conv_plan *c, size_t bytes)
{
    size_t keep = 0;
    if (cols_bytes(c, &keep) || bytes > SIZE_MAX / 2 - keep) return NULL;
    const size_t need = keep + (bytes ? bytes : 64);
    if (!n->ws || need > n->ws_cap) {
        void *p = nb_alloc(need);
        if (!p) return NULL;
        if (n->ws) memcpy(p, n->ws, keep < n->ws_cap ? keep : n->ws_cap);
        nb_free(n->ws);
        n->ws = p;
        n->ws_cap = need;
    }
    return (char *)n->ws + keep;
}

/* How many of `total` images one im2col buffer holds: all of them when they
 * fit in the larger of the forward's cols and 64 MiB, else fewer. */
static int64_t image_chunk(const conv_plan *c, int64_t total)
{
    size_t keep = 0;
    cols_bytes(c, &keep);
    const size_t budget = keep > ((size_t)64 << 20) ? keep : ((size_t)64 << 20);
    const size_t per = (size_t)(c->w.OH * c->w.OW * c->P) * sizeof(nb_real);
    if (per == 0) return total > 0 ? total : 1;
    int64_t k = (int64_t)(budget / per);
    if (k < 1) k = 1;
    return k < total ? k : total;
}

static nb_status conv2d_forward(nb_node *n)
{
    conv_plan c;
    conv_plan_get(n, &c);
    size_t bytes = 0;
    nb_status s = cols_bytes(&c, &bytes);
    if (s) return s;
    nb_real *cols = nb_node_workspace(n, bytes ? bytes : 64);
    if (!cols)
        return nb_fail(NB_ERR_NOMEM, "conv2d: no memory for the im2col buffer (%lld x %lld)", (long long)c.M,
                       (long long)c.P);
    nb_im2col(&c.w, c.N, n->in[0]->value.data, cols);
    nb_real *y = n->value.data;
    const int64_t M = c.M, O = c.O;
    nb_real beta = 0;
    if (n->ninputs == 3) { /* Y = 1 b^T first; the GEMM then adds cols Kmat */
        const nb_real *b = n->in[2]->value.data;
#pragma omp parallel for schedule(static) if (M * O > 32768)
        for (int64_t m = 0; m < M; m++)
            for (int64_t o = 0; o < O; o++) y[m * O + o] = b[o];
        beta = 1;
    }
    nb_gemm(false, false, M, O, c.P, 1, cols, c.P, n->in[1]->value.data, O, beta, y, O);
    return NB_OK;
}

/* db[k, o] (+)= sum_m dY[k, m, o]. Rows are summed in 64 fixed blocks (in
 * double, in parallel) and the blocks then in order, so the result does not
 * depend on the number of threads. */
static nb_status bias_vjp(nb_node *n, const conv_plan *c, int64_t K, const nb_real *dy, nb_real *db, bool acc)
{
    enum { NBLK = 64 };
    const int64_t M = c->M, O = c->O, nblk = M < NBLK ? M : NBLK;
    double *part = conv_scratch(n, c, (size_t)(NBLK * (O > 0 ? O : 1)) * sizeof(double));
    if (!part) return nb_fail(NB_ERR_NOMEM, "conv2d: no memory for the bias gradient");
    for (int64_t k = 0; k < K; k++) {
        const nb_real *g = dy + k * M * O;
#pragma omp parallel for schedule(static) if (M * O > 32768)
        for (int64_t b = 0; b < nblk; b++) {
            double *a = part + b * O;
            for (int64_t o = 0; o < O; o++) a[o] = 0;
            for (int64_t m = M * b / nblk; m < M * (b + 1) / nblk; m++) {
                const nb_real *row = g + m * O;
                for (int64_t o = 0; o < O; o++) a[o] += row[o];
            }
        }
        for (int64_t o = 0; o < O; o++) {
            double sum = 0;
            for (int64_t b = 0; b < nblk; b++) sum += part[b * O + o];
            NB_PUT(acc, db[k * O + o], (nb_real)sum);
        }
    }
    return NB_OK;
}

static nb_status conv2d_vjp(nb_node *n, int which, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    conv_plan c;
    conv_plan_get(n, &c);
    const nb_real *kmat = n->in[1]->value.data;
    if (which == 1) { /* dK = cols^T dY, one GEMM per seed */
        const nb_real *cols = n->ws;
        for (int64_t k = 0; k < K; k++)
            nb_gemm(true, false, c.P, c.O, c.M, 1, cols, c.P, dy + k * c.M * c.O, c.O, acc ? 1 : 0,
                    dx + k * c.P * c.O, c.O);
        return NB_OK;
    }
    if (which == 2) return bias_vjp(n, &c, K, dy, dx, acc);
    /* dX = col2im(dY Kmat^T), the K*N seed images as one batch. */
    const int64_t total = K * c.N, rows = c.w.OH * c.w.OW, img = c.w.H * c.w.W * c.w.C;
    if (total == 0) return NB_OK;
    const int64_t chunk = image_chunk(&c, total);
    nb_real *dcols = conv_scratch(n, &c, (size_t)(chunk * rows * c.P) * sizeof(nb_real));
    if (!dcols) return nb_fail(NB_ERR_NOMEM, "conv2d: no memory for the input gradient's im2col buffer");
    for (int64_t s0 = 0; s0 < total; s0 += chunk) {
        const int64_t cnt = total - s0 < chunk ? total - s0 : chunk;
        nb_gemm(false, true, cnt * rows, c.P, c.O, 1, dy + s0 * rows * c.O, c.O, kmat, c.O, 0, dcols, c.P);
        nb_col2im(&c.w, cnt, dcols, dx + s0 * img, acc);
    }
    return NB_OK;
}

static nb_status conv2d_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy)
{
    conv_plan c;
    conv_plan_get(n, &c);
    const int64_t M = c.M, O = c.O;
    bool init = false;
    if (n->ninputs == 3 && dxs[2]) { /* dY = 1 db^T */
        const nb_real *db = dxs[2];
#pragma omp parallel for collapse(2) schedule(static) if (K * M * O > 32768)
        for (int64_t k = 0; k < K; k++)
            for (int64_t m = 0; m < M; m++)
                for (int64_t o = 0; o < O; o++) dy[(k * M + m) * O + o] = db[k * O + o];
        init = true;
    }
    if (dxs[1]) { /* += cols dK */
        for (int64_t k = 0; k < K; k++)
            nb_gemm(false, false, M, O, c.P, 1, n->ws, c.P, dxs[1] + k * c.P * O, O, init ? 1 : 0, dy + k * M * O,
                    O);
        init = true;
    }
    if (dxs[0]) { /* += im2col(dX) Kmat */
        const int64_t total = K * c.N, rows = c.w.OH * c.w.OW, img = c.w.H * c.w.W * c.w.C;
        const int64_t chunk = image_chunk(&c, total);
        nb_real *cols = total ? conv_scratch(n, &c, (size_t)(chunk * rows * c.P) * sizeof(nb_real)) : NULL;
        if (total && !cols) return nb_fail(NB_ERR_NOMEM, "conv2d: no memory for the tangent's im2col buffer");
        for (int64_t s0 = 0; s0 < total; s0 += chunk) {
            const int64_t cnt = total - s0 < chunk ? total - s0 : chunk;
            nb_im2col(&c.w, cnt, dxs[0] + s0 * img, cols);
            nb_gemm(false, false, cnt * rows, O, c.P, 1, cols, c.P, n->in[1]->value.data, O, init ? 1 : 0,
                    dy + s0 * rows * O, O);
        }
        init = true;
    }
    if (!init) memset(dy, 0, (size_t)(K * M * O) * sizeof(nb_real));
    return NB_OK;
}

static const nb_op conv2d_op = {"conv2d", 3, conv2d_infer, conv2d_forward, conv2d_vjp, conv2d_jvp, 0};

nb_node *nb_conv2d(nb_node *x, nb_node *kernel, nb_node *bias, const nb_conv2d_opts *opts)
{
    nb_attrs at = {0};
    at.stride = opts && opts->stride ? opts->stride : 1;
    at.dilation = opts && opts->dilation ? opts->dilation : 1;
    at.padding = opts ? opts->padding : NB_PAD_VALID;
    if (at.stride < 1 || at.dilation < 1) {
        nb_fail(NB_ERR_ARG, "conv2d: stride (%d) and dilation (%d) must be >= 1 (0 means 1)", at.stride,
                at.dilation);
        return NULL;
    }
    if (at.padding != NB_PAD_VALID && at.padding != NB_PAD_SAME) {
        nb_fail(NB_ERR_ARG, "conv2d: unknown padding %d (use NB_PAD_VALID or NB_PAD_SAME)", (int)at.padding);
        return NULL;
    }
    nb_node *in[3] = {x, kernel, bias};
    return nb_node_op_new(&conv2d_op, bias ? 3 : 2, in, &at);
}
