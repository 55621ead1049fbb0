/* 2-D max and average pooling over NHWC x (N,H,W,C), window f x f, stride s,
 * padding 'valid' or 'same' (TensorFlow's rule, nb_window_dim). The window of
 * output pixel (i, j) is W(i,j) = the real pixels (h, w) with
 * i*s - pt <= h < i*s - pt + f and j*s - pl <= w < j*s - pl + f; padded
 * positions take no part (TensorFlow's behaviour: max ignores them, average
 * divides by the number of real pixels |W(i,j)|). Channels never mix.
 *
 * Max: y[n,i,j,c] = x[n, a(n,i,j,c)] with a the argmax over W(i,j) (the first
 * one on ties; the gradient check uses distinct values so there are none).
 *   dy[n,i,j,c] / dx[n',h,w,c'] = [n == n'] [c == c'] [(h,w) == a(n,i,j,c)]
 *   VJP: dx[a(o)] += dy[o] for every output o (scatter to the argmax);
 *   JVP: dy[o] = dx[a(o)] (gather from the argmax).
 * The forward pass saves a (a flat index into x) in the node workspace.
 *
 * Average: y[n,i,j,c] = (1 / |W(i,j)|) sum_{(h,w) in W(i,j)} x[n,h,w,c].
 *   dy[n,i,j,c] / dx[n',h,w,c'] = [n == n'] [c == c'] [(h,w) in W(i,j)] / |W(i,j)|
 *   VJP: dx[n,h,w,c] += dy[n,i,j,c] / |W(i,j)| for every window holding (h,w);
 *   JVP: y is linear in x, so dy = avgpool(dx).
 * Both VJPs scatter within one image only, so they run in parallel over the
 * K*N stacked seed images without races. */
#include "ops_internal.h"

#include <limits.h>

static void pool_window(const nb_node *n, nb_window *w)
{
    const nb_tensor *x = &n->in[0]->value;
    w->H = x->shape[1], w->W = x->shape[2], w->C = x->shape[3];
    w->OH = n->value.shape[1], w->OW = n->value.shape[2];
    w->fh = w->fw = n->at.size;
    w->stride = n->at.stride, w->dilation = 1;
    w->pad_top = n->at.pad_top, w->pad_left = n->at.pad_left;
}

/* The real rows [*h0, *h1) and columns [*w0, *w1) of output pixel (i, j). */
static void window_range(const nb_window *w, int64_t i, int64_t j, int64_t *h0, int64_t *h1, int64_t *w0,
                         int64_t *w1)
{
    int64_t a = i * w->stride - w->pad_top, b = j * w->stride - w->pad_left;
    *h0 = a < 0 ? 0 : a;
    *h1 = a + w->fh < w->H ? a + w->fh : w->H;
    *w0 = b < 0 ? 0 : b;
    *w1 = b + w->fw < w->W ? b + w->fw : w->W;
}

static nb_status pool_infer(nb_node *n)
{
    const nb_tensor *x = &n->in[0]->value;
    const char *name = n->op->name;
    char s1[96];
    if (x->rank != 4)
        return nb_fail(NB_ERR_SHAPE, "%s: input must have shape (N,H,W,C), got %s", name, NB_SHAPE_STR(x, s1));
    int pt, pl;
    const int f = n->at.size;
    const int64_t OH = nb_window_dim(x->shape[1], f, n->at.stride, 1, n->at.padding, &pt);
    const int64_t OW = nb_window_dim(x->shape[2], f, n->at.stride, 1, n->at.padding, &pl);
    if (OH < 0 || OW < 0)
        return nb_fail(NB_ERR_SHAPE, "%s: window %dx%d larger than input %lldx%lld (padding 'valid')", name, f, f,
                       (long long)x->shape[1], (long long)x->shape[2]);
    n->at.pad_top = pt, n->at.pad_left = pl;
    const int64_t shape[4] = {x->shape[0], OH, OW, x->shape[3]};
    nb_tensor_set_shape(&n->value, 4, shape);
    return NB_OK;
}

/* ------------------------------------------------------------------- max */

/* The argmax of each output is stored as an int32 offset inside its image
 * (or -1), so the selection below is branch-free and vectorises: the window
 * is scanned pixel by pixel, all C channels at once. A NaN wins, so NaNs
 * propagate as in PyTorch. */
static nb_status max_pool_forward(nb_node *n)
{
    nb_window w;
    pool_window(n, &w);
    const int64_t N = n->value.shape[0], C = w.C, OH = w.OH, OW = w.OW, ix = w.H * w.W * C;
    if (ix > INT32_MAX) return nb_fail(NB_ERR_TOO_LARGE, "max_pool2d: images of %lld values are too large", (long long)ix);
    int32_t *arg = nb_node_workspace(n, (size_t)(n->value.size > 0 ? n->value.size : 1) * sizeof(int32_t));
    if (!arg) return nb_fail(NB_ERR_NOMEM, "max_pool2d: no memory for the argmax indices");
    const nb_real *x = n->in[0]->value.data;
    nb_real *y = n->value.data;
#pragma omp parallel for collapse(2) schedule(static) if (n->value.size > 16384)
    for (int64_t b = 0; b < N; b++) {
        for (int64_t i = 0; i < OH; i++) {
            const nb_real *xb = x + b * ix;
            for (int64_t j = 0; j < OW; j++) {
                const int64_t o = ((b * OH + i) * OW + j) * C;
                nb_real *yo = y + o;
                int32_t *ao = arg + o;
                int64_t h0, h1, w0, w1;
                window_range(&w, i, j, &h0, &h1, &w0, &w1);
                if (h0 >= h1 || w0 >= w1) { /* no real pixel (cannot happen with TF's padding) */
                    for (int64_t c = 0; c < C; c++) yo[c] = 0, ao[c] = -1;
                    continue;
                }
                const int32_t first = (int32_t)((h0 * w.W + w0) * C);
                for (int64_t c = 0; c < C; c++) yo[c] = xb[first + c], ao[c] = first + (int32_t)c;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t v = w0; v < w1; v++) {
                        const int32_t off = (int32_t)((h * w.W + v) * C);
                        const nb_real *xs = xb + off;
                        for (int64_t c = 0; c < C; c++) {
                            const nb_real xv = xs[c];
                            const bool take = xv > yo[c] || xv != xv;
                            yo[c] = take ? xv : yo[c];
                            ao[c] = take ? off + (int32_t)c : ao[c];
                        }
                    }
            }
        }
    }
    return NB_OK;
}

static nb_status max_pool_vjp(nb_node *n, int which, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    const int64_t N = n->value.shape[0], mx = n->in[0]->value.size, my = n->value.size;
    const int64_t ix = N ? mx / N : 0, iy = N ? my / N : 0; /* per image */
    const int32_t *arg = n->ws;
    nb_window w;
    pool_window(n, &w);
    /* Windows that tile the image exactly (stride = size, no padding, no
     * leftover rows): every pixel is written once, g at the argmax and 0
     * elsewhere, in one pass and without zeroing dx first. */
    const bool tiles = !acc && w.stride == w.fh && w.pad_top == 0 && w.pad_left == 0 && w.OH * w.fh == w.H &&
                       w.OW * w.fw == w.W;
    if (tiles) {
        const int64_t C = w.C, f = w.fh;
#pragma omp parallel for collapse(2) schedule(static) if (K * mx > 16384)
        for (int64_t k = 0; k < K; k++)
            for (int64_t b = 0; b < N; b++) {
                nb_real *d = dx + k * mx + b * ix;
                const nb_real *g = dy + k * my + b * iy;
                const int32_t *a = arg + b * iy;
                for (int64_t i = 0; i < w.OH; i++)
                    for (int64_t j = 0; j < w.OW; j++) {
                        const int64_t o = (i * w.OW + j) * C;
                        for (int64_t h = i * f; h < (i + 1) * f; h++)
                            for (int64_t v = j * f; v < (j + 1) * f; v++) {
                                const int32_t at = (int32_t)((h * w.W + v) * C);
                                nb_real *dp = d + at;
                                for (int64_t c = 0; c < C; c++) dp[c] = a[o + c] == at + (int32_t)c ? g[o + c] : 0;
                            }
                    }
            }
        return NB_OK;
    }
#pragma omp parallel for collapse(2) schedule(static) if (K * mx > 16384)
    for (int64_t k = 0; k < K; k++) {
        for (int64_t b = 0; b < N; b++) {
            nb_real *d = dx + k * mx + b * ix;
            const nb_real *g = dy + k * my;
            if (!acc) memset(d, 0, (size_t)ix * sizeof(nb_real));
            for (int64_t o = b * iy; o < (b + 1) * iy; o++)
                if (arg[o] >= 0) d[arg[o]] += g[o];
        }
    }
    return NB_OK;
}

/* Deferring the VJP (nb_op.vjp_defer): when the windows do not overlap
 * (stride = window, so every x value is the maximum of at most one window)
 * and x comes from a convolution, its adjoint is left with the pool and the
 * convolution gathers the rows it needs (nb_max_pool_adjoint_rows): a
 * quarter of the memory traffic of a 2x2 pool's dense adjoint, and no pass
 * to write it. */
static bool max_pool_vjp_defer(const nb_node *n, int i)
{
    const nb_node *x = n->in[0];
    return i == 0 && n->at.stride == n->at.size && n->ws && x->kind == NB_KIND_OP && !strcmp(x->op->name, "conv2d");
}

/* Walks the pixels r0, r0 + 1, ... of a pool's input (image-major) with
 * the window holding each (stride = window), without dividing per pixel:
 * the deferred adjoint is read once per pixel of the convolution. */
typedef struct {
    int64_t b, h, x, p; /* image, row, column, pixel inside the image */
    int64_t i, j, jr;   /* window row and column, x + pad_left = j*s + jr */
} pool_walk;

static void walk_at(const nb_window *w, int64_t r, pool_walk *t)
{
    const int64_t HW = w->H * w->W;
    t->b = r / HW, t->p = r % HW, t->h = t->p / w->W, t->x = t->p % w->W;
    t->i = (t->h + w->pad_top) / w->stride;
    t->j = (t->x + w->pad_left) / w->stride, t->jr = (t->x + w->pad_left) % w->stride;
}

static void walk_next(const nb_window *w, pool_walk *t)
{
    t->p++;
    if (++t->x < w->W) {
        if (++t->jr == w->stride) t->jr = 0, t->j++;
        return;
    }
    t->x = 0, t->j = w->pad_left / w->stride, t->jr = w->pad_left % w->stride;
    if (++t->h == w->H) t->h = 0, t->p = 0, t->b++;
    t->i = (t->h + w->pad_top) / w->stride;
}

/* Offset of the pixel's window in the pool's output, or -1 if none reads it. */
static int64_t walk_window(const nb_window *w, const pool_walk *t)
{
    return t->i < w->OH && t->j < w->OW ? ((t->b * w->OH + t->i) * w->OW + t->j) * w->C : -1;
}

void nb_max_pool_adjoint_rows(const nb_node *pool, int64_t k, int64_t r0, int64_t m, bool gate_positive,
                              nb_real *out)
{
    nb_window w;
    pool_window(pool, &w);
    const int64_t C = w.C;
    const int32_t *arg = pool->ws;
    const nb_real *g = nb_adjoint_of(pool)->data + k * pool->value.size, *y = pool->value.data;
    pool_walk t;
    walk_at(&w, r0, &t);
    for (int64_t r = 0; r < m; r++, walk_next(&w, &t)) {
        nb_real *dst = out + r * C;
        const int64_t o = walk_window(&w, &t);
        if (o < 0) {
            for (int64_t c = 0; c < C; c++) dst[c] = 0;
            continue;
        }
        const int32_t at = (int32_t)(t.p * C), *a = arg + o;
        const nb_real *go = g + o, *yo = y + o;
        if (gate_positive)
            for (int64_t c = 0; c < C; c++) dst[c] = a[c] == at + (int32_t)c && yo[c] > 0 ? go[c] : 0;
        else
            for (int64_t c = 0; c < C; c++) dst[c] = a[c] == at + (int32_t)c ? go[c] : 0;
    }
}

bool nb_max_pool_adjoint_sparse(const nb_node *pool, int64_t k, int64_t r0, int64_t m, bool gate_positive,
                                int64_t cap, nb_sparse_rows *s)
{
    nb_window w;
    pool_window(pool, &w);
    const int64_t C = w.C;
    const int32_t *arg = pool->ws;
    const nb_real *g = nb_adjoint_of(pool)->data + k * pool->value.size, *y = pool->value.data;
    if (cap > INT32_MAX - 16) return false; /* offsets in start are int32 */
    int64_t nnz = 0;
    s->rows = m;
    pool_walk t;
    walk_at(&w, r0, &t);
    for (int64_t r = 0; r < m; r++, walk_next(&w, &t)) {
        s->start[r] = (int32_t)nnz;
        const int64_t o = walk_window(&w, &t);
        if (o < 0) continue;
        if (nnz + C > cap) return false;
        nnz += nb_sparse_row_select(C, g + o, arg + o, (int32_t)(t.p * C), gate_positive ? y + o : NULL, s->col + nnz,
                                    s->val + nnz);
    }
    s->start[m] = (int32_t)nnz;
    s->nnz = nnz;
    return true;
}

static nb_status max_pool_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy)
{
    const int64_t N = n->value.shape[0], mx = n->in[0]->value.size, my = n->value.size;
    const int64_t ix = N ? mx / N : 0, iy = N ? my / N : 1;
    const int32_t *arg = n->ws;
    const nb_real *t = dxs[0];
#pragma omp parallel for collapse(2) schedule(static) if (K * my > 16384)
    for (int64_t k = 0; k < K; k++)
        for (int64_t o = 0; o < my; o++)
            dy[k * my + o] = arg[o] >= 0 ? t[k * mx + (o / iy) * ix + arg[o]] : 0;
    return NB_OK;
}

/* --------------------------------------------------------------- average */

/* y = avgpool(x) over nimg stacked images. */
static void avg_pool_apply(const nb_window *w, int64_t nimg, const nb_real *x, nb_real *y)
{
    const int64_t C = w->C, OH = w->OH, OW = w->OW;
#pragma omp parallel for collapse(2) schedule(static) if (nimg * OH * OW * C > 16384)
    for (int64_t b = 0; b < nimg; b++) {
        for (int64_t i = 0; i < OH; i++) {
            for (int64_t j = 0; j < OW; j++) {
                nb_real *yo = y + ((b * OH + i) * OW + j) * C;
                int64_t h0, h1, w0, w1;
                window_range(w, i, j, &h0, &h1, &w0, &w1);
                for (int64_t c = 0; c < C; c++) yo[c] = 0;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t v = w0; v < w1; v++) {
                        const nb_real *xp = x + ((b * w->H + h) * w->W + v) * C;
                        for (int64_t c = 0; c < C; c++) yo[c] += xp[c];
                    }
                const int64_t cnt = (h1 - h0) * (w1 - w0);
                const nb_real inv = cnt > 0 ? (nb_real)1 / (nb_real)cnt : 0;
                for (int64_t c = 0; c < C; c++) yo[c] *= inv;
            }
        }
    }
}

static nb_status avg_pool_forward(nb_node *n)
{
    nb_window w;
    pool_window(n, &w);
    avg_pool_apply(&w, n->value.shape[0], n->in[0]->value.data, n->value.data);
    return NB_OK;
}

static nb_status avg_pool_vjp(nb_node *n, int which, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    nb_window w;
    pool_window(n, &w);
    const int64_t C = w.C, OH = w.OH, OW = w.OW, nimg = K * n->value.shape[0];
    const int64_t ix = w.H * w.W * C, iy = OH * OW * C;
#pragma omp parallel for schedule(static) if (nimg * ix > 16384)
    for (int64_t b = 0; b < nimg; b++) {
        nb_real *d = dx + b * ix;
        if (!acc) memset(d, 0, (size_t)ix * sizeof(nb_real));
        for (int64_t i = 0; i < OH; i++) {
            for (int64_t j = 0; j < OW; j++) {
                const nb_real *g = dy + b * iy + (i * OW + j) * C;
                int64_t h0, h1, w0, w1;
                window_range(&w, i, j, &h0, &h1, &w0, &w1);
                const int64_t cnt = (h1 - h0) * (w1 - w0);
                if (cnt <= 0) continue;
                const nb_real inv = (nb_real)1 / (nb_real)cnt;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t v = w0; v < w1; v++) {
                        nb_real *dp = d + (h * w.W + v) * C;
                        for (int64_t c = 0; c < C; c++) dp[c] += g[c] * inv;
                    }
            }
        }
    }
    return NB_OK;
}

static nb_status avg_pool_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy)
{
    nb_window w;
    pool_window(n, &w);
    avg_pool_apply(&w, K * n->value.shape[0], dxs[0], dy);
    return NB_OK;
}

/* Second order: both VJPs are linear in the seed and do not depend on x
 * (max pool: with the argmax fixed, which it is almost everywhere: away
 * from ties), so the rules are zero (nb_vjp_tangent_zero). */
static const nb_op max_pool_op = {"max_pool2d", 1, pool_infer, max_pool_forward, max_pool_vjp, max_pool_jvp, 0,
                                  max_pool_vjp_defer, nb_vjp_tangent_zero};
static const nb_op avg_pool_op = {"avg_pool2d", 1, pool_infer, avg_pool_forward, avg_pool_vjp, avg_pool_jvp, 0, NULL,
                                  nb_vjp_tangent_zero};

static nb_node *pool_new(const nb_op *op, nb_node *x, int size, int stride, nb_padding padding)
{
    if (size < 1 || size > INT_MAX / 4 || stride < 0) {
        nb_fail(NB_ERR_ARG, "%s: window size %d must be >= 1 and stride %d >= 0 (0 means the window size)",
                op->name, size, stride);
        return NULL;
    }
    if (padding != NB_PAD_VALID && padding != NB_PAD_SAME) {
        nb_fail(NB_ERR_ARG, "%s: unknown padding %d (use NB_PAD_VALID or NB_PAD_SAME)", op->name, (int)padding);
        return NULL;
    }
    nb_attrs at = {0};
    at.size = size;
    at.stride = stride ? stride : size;
    at.padding = padding;
    return nb_node_op_new(op, 1, &x, &at);
}

nb_node *nb_max_pool2d(nb_node *x, int size, int stride, nb_padding padding)
{
    return pool_new(&max_pool_op, x, size, stride, padding);
}

nb_node *nb_avg_pool2d(nb_node *x, int size, int stride, nb_padding padding)
{
    return pool_new(&avg_pool_op, x, size, stride, padding);
}
