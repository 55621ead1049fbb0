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

/* Attributes: window size f, stride and padding as asked, the padding
 * resolved at each shape inference. */
typedef struct pool_attrs {
    int size, stride;
    nb_padding padding;
    int pad_top, pad_left; /* resolved by pool_infer */
} pool_attrs;
NB_ATTRS_FIT(pool_attrs);

static pool_attrs *pool_at(const nb_node *n) { return (pool_attrs *)nb_node_attrs_c(n); }

static void pool_window(const nb_node *n, nb_window *w)
{
    const nb_tensor *x = &n->in[0]->value;
    w->H = x->shape[1], w->W = x->shape[2], w->C = x->shape[3];
    w->OH = n->value.shape[1], w->OW = n->value.shape[2];
    w->fh = w->fw = pool_at(n)->size;
    w->stride = pool_at(n)->stride, w->dilation = 1;
    w->pad_top = pool_at(n)->pad_top, w->pad_left = pool_at(n)->pad_left;
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
    const int f = pool_at(n)->size;
    const int64_t OH = nb_window_dim(x->shape[1], f, pool_at(n)->stride, 1, pool_at(n)->padding, &pt);
    const int64_t OW = nb_window_dim(x->shape[2], f, pool_at(n)->stride, 1, pool_at(n)->padding, &pl);
    if (OH < 0 || OW < 0)
        return nb_fail(NB_ERR_SHAPE, "%s: window %dx%d larger than input %lldx%lld (padding 'valid')", name, f, f,
                       (long long)x->shape[1], (long long)x->shape[2]);
    pool_at(n)->pad_top = pt, pool_at(n)->pad_left = pl;
    const int64_t shape[4] = {x->shape[0], OH, OW, x->shape[3]};
    nb_tensor_set_shape(&n->value, 4, shape);
    return NB_OK;
}

/* ------------------------------------------------------------------- max */

/* restrict: without it GCC 12 kept the channel loop scalar (a compare and a
 * branch per value; 7% of an inference pass of mnist_cnn in perf), since yo
 * and ao might overlap the image. (Channels in blocks of 16 with the running
 * max and argmax in local arrays was worse: GCC unrolled the block into
 * scalar compares and branches, 24% of a 2-thread pass.) */
void nb_max_pool_window(const nb_real *restrict xb, int64_t h_first, int64_t W, int64_t C, int64_t h0, int64_t h1,
                        int64_t w0, int64_t w1, nb_real *restrict yo, int32_t *restrict ao)
{
    const nb_real *xr = xb - h_first * W * C; /* xr + offset in the image = the value */
    const int32_t first = (int32_t)((h0 * W + w0) * C);
    for (int64_t c = 0; c < C; c++) yo[c] = xr[first + c], ao[c] = first + (int32_t)c;
    for (int64_t h = h0; h < h1; h++)
        for (int64_t v = w0; v < w1; v++) {
            const int32_t off = (int32_t)((h * W + v) * C);
            const nb_real *xs = xr + off;
            for (int64_t c = 0; c < C; c++) {
                const nb_real xv = xs[c];
                const bool take = xv > yo[c] || xv != xv;
                yo[c] = take ? xv : yo[c];
                ao[c] = take ? off + (int32_t)c : ao[c];
            }
        }
}

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
#pragma omp parallel for collapse(2) schedule(static) if (n->value.size > NB_PAR_INDEX)
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
                nb_max_pool_window(xb, 0, w.W, C, h0, h1, w0, w1, yo, ao);
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
#pragma omp parallel for collapse(2) schedule(static) if (K * mx > NB_PAR_INDEX)
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
#pragma omp parallel for collapse(2) schedule(static) if (K * mx > NB_PAR_INDEX)
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

/* Walks the pixels r0, r0 + 1, ... of a pool's input (image-major) with
 * the window holding each (stride = window), without dividing per pixel:
 * the pooled adjoint is read once per pixel of the convolution. */
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

void nb_max_pool_adjoint_rows(const nb_pool_route *p, int64_t k, int64_t r0, int64_t m, bool gate_positive,
                              nb_real *out)
{
    const nb_window w = p->w;
    const int64_t C = w.C;
    const int32_t *arg = p->arg;
    const nb_real *g = p->dy + k * p->ysize, *y = p->y;
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

bool nb_max_pool_adjoint_sparse(const nb_pool_route *p, int64_t k, int64_t r0, int64_t m, bool gate_positive,
                                int64_t cap, nb_sparse_rows *s)
{
    const nb_window w = p->w;
    const int64_t C = w.C;
    const int32_t *arg = p->arg;
    const nb_real *g = p->dy + k * p->ysize, *y = p->y;
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
#pragma omp parallel for collapse(2) schedule(static) if (K * my > NB_PAR_INDEX)
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
#pragma omp parallel for collapse(2) schedule(static) if (nimg * OH * OW * C > NB_PAR_INDEX)
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
#pragma omp parallel for schedule(static) if (nimg * ix > NB_PAR_INDEX)
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

/* Gradient-check cases. A max pool's input has well-separated distinct
 * values (nb_check_ramp_leaf), so no perturbation of the gradient check can
 * change an argmax. */
static nb_node *pool_input(nb_graph *g, nb_rng *r, int64_t n, int64_t h, int64_t w, int64_t c)
{
    return nb_check_ramp_leaf(g, r, "x", NB_SHAPE(n, h, w, c), -2);
}
static nb_node *case_maxpool(nb_graph *g, nb_rng *r) { return nb_max_pool2d(pool_input(g, r, 2, 4, 4, 3), 2, 0, NB_PAD_VALID); }
static nb_node *case_maxpool_overlap(nb_graph *g, nb_rng *r)
{
    return nb_max_pool2d(pool_input(g, r, 1, 5, 5, 2), 3, 1, NB_PAD_VALID);
}
static nb_node *case_maxpool_same(nb_graph *g, nb_rng *r)
{
    return nb_max_pool2d(pool_input(g, r, 1, 5, 6, 2), 3, 2, NB_PAD_SAME);
}
static nb_node *case_avgpool(nb_graph *g, nb_rng *r)
{
    return nb_avg_pool2d(NB_CHECK_X("x", -1, 1, 2, 4, 4, 3), 2, 0, NB_PAD_VALID);
}
static nb_node *case_avgpool_overlap(nb_graph *g, nb_rng *r)
{
    return nb_avg_pool2d(NB_CHECK_X("x", -1, 1, 1, 5, 5, 2), 3, 1, NB_PAD_VALID);
}
static nb_node *case_avgpool_same(nb_graph *g, nb_rng *r)
{
    return nb_avg_pool2d(NB_CHECK_X("x", -1, 1, 1, 5, 6, 2), 3, 2, NB_PAD_SAME);
}
static nb_node *case_avgpool_same_even(nb_graph *g, nb_rng *r)
{
    return nb_avg_pool2d(NB_CHECK_X("x", -1, 1, 2, 3, 3, 1), 2, 1, NB_PAD_SAME);
}
static const nb_op_case max_pool2d_cases[] = {
    {"2 stride 2", case_maxpool},
    {"3 stride 1", case_maxpool_overlap},
    {"3 stride 2 same 5x6", case_maxpool_same},
};
static const nb_op_case avg_pool2d_cases[] = {
    {"2 stride 2", case_avgpool},
    {"3 stride 1", case_avgpool_overlap},
    {"3 stride 2 same 5x6", case_avgpool_same},
    {"2 stride 1 same 3x3", case_avgpool_same_even},
};

/* Second order: linear in its input (pooling: with the argmax fixed, which it
 * is away from ties; dropout: for the fixed mask), so the VJP does not
 * depend on x and the rule is zero (nb_vjp_tangent_zero). */
const nb_op nb_op_max_pool2d = {
    .name = "max_pool2d",
    .ninputs = 1,
    .attrs_size = sizeof(pool_attrs),
    .infer = pool_infer,
    .forward = max_pool_forward,
    .vjp = max_pool_vjp,
    .jvp = max_pool_jvp,
    .vjp_tangent = nb_vjp_tangent_zero,
    .cases = max_pool2d_cases,
    .ncases = NB_COUNT(max_pool2d_cases),
};
const nb_op nb_op_avg_pool2d = {
    .name = "avg_pool2d",
    .ninputs = 1,
    .attrs_size = sizeof(pool_attrs),
    .infer = pool_infer,
    .forward = avg_pool_forward,
    .vjp = avg_pool_vjp,
    .jvp = avg_pool_jvp,
    .vjp_tangent = nb_vjp_tangent_zero,
    .cases = avg_pool2d_cases,
    .ncases = NB_COUNT(avg_pool2d_cases),
};

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
    pool_attrs at = {0};
    at.size = size;
    at.stride = stride ? stride : size;
    at.padding = padding;
    return nb_node_op_new(op, 1, &x, &at);
}

nb_node *nb_max_pool2d(nb_node *x, int size, int stride, nb_padding padding)
{
    return pool_new(&nb_op_max_pool2d, x, size, stride, padding);
}

nb_node *nb_avg_pool2d(nb_node *x, int size, int stride, nb_padding padding)
{
    return pool_new(&nb_op_avg_pool2d, x, size, stride, padding);
}
