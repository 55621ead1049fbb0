/* 2-D convolution (cross-correlation, as in every deep-learning library),
 * NHWC input x (N,H,W,C), kernel k (fh,fw,C,O) in Keras's layout, optional
 * bias b (O); stride s, dilation d, padding pt (top) and pl (left) resolved
 * from 'valid' (none), 'same' (TensorFlow's rule, nb_window_dim) or explicit
 * (pt = pl = P zeros on every side, PyTorch's padding=P):
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
 * K stacked seeds share Kmat, so for x the K*N seed images form one batch;
 * for k each group of images is lowered once and serves every seed.
 *
 * Fused ReLU (opts.relu): y = relu(z) with z the convolution above, z <= 0 ?
 * 0 : z, so a NaN in z (from a NaN in x or k) stays NaN in y, as in nb_relu.
 * Then dy/dz = diag([y > 0]) (0 at NaN, as nb_relu's [z > 0]), so every VJP
 * first masks the seed, dZ = y > 0 ? dY : 0 (a gate, not a product: a NaN
 * seed where y <= 0 gives 0), and the JVP masks its result the same way; the
 * mask is applied to one image group at a time, in cache, and no separate z
 * is stored.
 *
 * Fused max pool (conv2d_relu_maxpool, built by nb_fuse_conv2d_maxpool):
 * v = maxpool_f(y) with non-overlapping f x f windows (stride f, 'valid':
 * rows and columns left over are dropped), v[n,i,j,o] = y[n, a(n,i,j,o)]
 * with a the argmax of the window (the first on ties, a NaN winning, as
 * max_pool2d). Then dv/dy routes: dv[n,i,j,o] / dy[n,h,w,o] = [(h,w) = a],
 * so for seeds dV the convolution's seed is the sparse
 *   dZ[n,h,w,o] = dV[n,i,j,o] [(h,w) = a(n,i,j,o)] [v[n,i,j,o] > 0 if ReLU]
 * (the ReLU's value at the argmax is v itself), at most 1/f^2 of it
 * non-zero; the VJPs above read it row by row from dV, the argmax and v
 * (nb_max_pool_adjoint_rows, or compressed: nb_max_pool_adjoint_sparse) and
 * no dense dZ or y is ever stored. JVP: dV = [v > 0] dZ[a] with dZ the
 * convolution's tangent, formed per image group in cache. The forward pass
 * pools each group's y while it is in cache, so only v and a are kept. */
#include "ops_internal.h"

#include <limits.h>

/* Attributes: stride, dilation and padding as asked, the padding resolved
 * at each shape inference, and whether a ReLU is fused. */
typedef struct conv2d_attrs {
    int stride, dilation;
    nb_padding padding;
    int pad;               /* NB_PAD_EXPLICIT: zeros on every side */
    int pad_top, pad_left; /* resolved by conv2d_infer */
    bool fused_relu;       /* y = relu(z), the ReLU applied in the same pass */
    int pool;              /* conv2d_relu_maxpool: the max pool's window f (= its stride); 0 for conv2d */
    int64_t conv_oh, conv_ow; /* the convolution's output size, resolved by conv2d_infer */
} conv2d_attrs;
NB_ATTRS_FIT(conv2d_attrs);

static conv2d_attrs *conv_at(const nb_node *n) { return (conv2d_attrs *)nb_node_attrs_c(n); }

typedef struct {
    nb_window w;
    int64_t N, O, P, M; /* batch, output channels, window length, output pixels (before a pool) */
    bool pooled;        /* conv2d_relu_maxpool: the value is the max pool of the convolution */
    nb_pool_route route;/* ... and how the pool routes its seeds (route.dy set by the VJP) */
} conv_plan;

static void conv_plan_get(const nb_node *n, conv_plan *c)
{
    const nb_tensor *x = &n->in[0]->value, *k = &n->in[1]->value;
    c->N = x->shape[0];
    c->w.H = x->shape[1], c->w.W = x->shape[2], c->w.C = x->shape[3];
    c->w.fh = (int)k->shape[0], c->w.fw = (int)k->shape[1];
    c->w.stride = conv_at(n)->stride, c->w.dilation = conv_at(n)->dilation;
    c->w.pad_top = conv_at(n)->pad_top, c->w.pad_left = conv_at(n)->pad_left;
    c->w.OH = conv_at(n)->conv_oh, c->w.OW = conv_at(n)->conv_ow;
    c->O = k->shape[3];
    c->P = (int64_t)c->w.fh * c->w.fw * c->w.C;
    c->M = c->N * c->w.OH * c->w.OW;
    c->pooled = conv_at(n)->pool > 0;
    if (!c->pooled) return;
    const int f = conv_at(n)->pool;
    const nb_window pw = {c->w.OH, c->w.OW, c->O, n->value.shape[1], n->value.shape[2], f, f, f, 1, 0, 0};
    c->route = (nb_pool_route){pw, n->saved, n->value.data, NULL, n->value.size};
}

/* The output size along one axis and the padding before it: explicit
 * padding P gives out = (in + 2P - eff) / s + 1 (eff = (f - 1) d + 1), -1
 * when the window does not fit; the other paddings are nb_window_dim's. */
static int64_t conv_window_dim(const conv2d_attrs *at, int64_t in, int f, int *before)
{
    if (at->padding != NB_PAD_EXPLICIT) return nb_window_dim(in, f, at->stride, at->dilation, at->padding, before);
    const int64_t eff = (int64_t)(f - 1) * at->dilation + 1, padded = in + 2 * (int64_t)at->pad;
    *before = at->pad;
    return eff > padded ? -1 : (padded - eff) / at->stride + 1;
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
    const int fh = (int)k->shape[0], fw = (int)k->shape[1], d = conv_at(n)->dilation;
    if ((int64_t)(fh - 1) * d + 1 > INT_MAX / 2 || (int64_t)(fw - 1) * d + 1 > INT_MAX / 2)
        return nb_fail(NB_ERR_SHAPE, "conv2d: kernel %dx%d with dilation %d spans too many pixels", fh, fw, d);
    int pt, pl;
    const int64_t OH = conv_window_dim(conv_at(n), x->shape[1], fh, &pt);
    const int64_t OW = conv_window_dim(conv_at(n), x->shape[2], fw, &pl);
    if (OH < 0 || OW < 0) {
        if (conv_at(n)->padding == NB_PAD_EXPLICIT)
            return nb_fail(NB_ERR_SHAPE, "conv2d: kernel %dx%d (dilation %d) larger than input %lldx%lld padded by %d",
                           fh, fw, d, (long long)x->shape[1], (long long)x->shape[2], conv_at(n)->pad);
        if (d == 1)
            return nb_fail(NB_ERR_SHAPE, "conv2d: kernel %dx%d larger than input %lldx%lld (padding 'valid')", fh,
                           fw, (long long)x->shape[1], (long long)x->shape[2]);
        return nb_fail(NB_ERR_SHAPE,
                       "conv2d: kernel %dx%d with dilation %d spans %lldx%lld, larger than input %lldx%lld "
                       "(padding 'valid')",
                       fh, fw, d, (long long)(fh - 1) * d + 1, (long long)(fw - 1) * d + 1,
                       (long long)x->shape[1], (long long)x->shape[2]);
    }
    conv2d_attrs *at = conv_at(n);
    at->pad_top = pt, at->pad_left = pl;
    at->conv_oh = OH, at->conv_ow = OW;
    int64_t shape[4] = {x->shape[0], OH, OW, k->shape[3]};
    if (nb_shape_size(4, shape) < 0 || nb_shape_size(3, shape) < 0)
        return nb_fail(NB_ERR_TOO_LARGE, "conv2d: output shape overflows");
    if (at->pool) { /* non-overlapping windows; rows and columns left over are dropped ('valid') */
        if (OH < at->pool || OW < at->pool)
            return nb_fail(NB_ERR_SHAPE, "%s: pool window %dx%d larger than the convolution's output %lldx%lld",
                           n->op->name, at->pool, at->pool, (long long)OH, (long long)OW);
        if (OH * OW * k->shape[3] > INT32_MAX)
            return nb_fail(NB_ERR_TOO_LARGE, "%s: images of %lld values are too large", n->op->name,
                           (long long)(OH * OW * k->shape[3]));
        shape[1] = OH / at->pool, shape[2] = OW / at->pool;
    }
    nb_tensor_set_shape(&n->value, 4, shape);
    return NB_OK;
}

/* Work is split by images: each thread of the one OpenMP team takes a
 * contiguous range of images and walks it in groups of G, lowering a group
 * with im2col into its own small cols buffer (about 1 MiB, so it is still in
 * cache when the GEMM reads it) and running a single-threaded GEMM on it.
 * Nothing is kept between forward and backward: the kernel VJP lowers x
 * again, which costs a few percent of its GEMM and saves the whole-batch
 * cols buffer (85 MB for the second layer of mnist_cnn at batch 128). */
typedef struct {
    int64_t G;        /* images per group */
    int64_t rows;     /* output pixels per image */
    int64_t img;      /* input values per image */
    int64_t mask;     /* reals of one group's ReLU-masked seeds (0 if unused) */
    int64_t extra;    /* reals of the caller's at the start of each thread's scratch */
    size_t per_thread;/* reals of scratch per thread */
    int T;            /* threads */
} conv_split;

/* Per thread: extra_reals of the caller's, then (mask) one group's masked
 * seeds, then one group's cols. */
static nb_status conv_split_make(const conv_plan *c, int64_t extra_reals, bool mask, conv_split *sp)
{
    sp->rows = c->w.OH * c->w.OW;
    sp->img = c->w.H * c->w.W * c->w.C;
    const int64_t per_img = sp->rows * c->P;
    sp->G = per_img > 0 ? ((int64_t)1 << 18) / per_img : 1; /* ~1 MiB of float */
    if (sp->G < 1) sp->G = 1;
    sp->T = nb_max_team();
    sp->mask = mask ? sp->G * sp->rows * c->O : 0;
    sp->extra = extra_reals;
    if (per_img > 0 && sp->G > (INT64_MAX / 4 - extra_reals - sp->mask) / per_img)
        return nb_fail(NB_ERR_TOO_LARGE, "conv2d: im2col buffer too large");
    sp->per_thread = (size_t)(sp->G * per_img + extra_reals + sp->mask + 16) / 16 * 16;
    if (sp->per_thread > SIZE_MAX / sizeof(nb_real) / (size_t)sp->T)
        return nb_fail(NB_ERR_TOO_LARGE, "conv2d: im2col buffer too large");
    return NB_OK;
}

/* Plans the split and returns the node's scratch for it (NULL with *s set). */
static nb_real *conv_scratch(nb_node *n, const conv_plan *c, int64_t extra_reals, bool mask, conv_split *sp,
                             nb_status *s)
{
    *s = conv_split_make(c, extra_reals, mask, sp);
    if (*s) return NULL;
    nb_real *ws = nb_node_workspace(n, sp->per_thread * (size_t)sp->T * sizeof(nb_real));
    if (!ws) *s = nb_fail(NB_ERR_NOMEM, "conv2d: no memory for the per-thread im2col buffers");
    return ws;
}

/* This thread's share [*i0, *i1) of `total` images. */
static void thread_range(int64_t total, int64_t *i0, int64_t *i1)
{
    const int T = nb_team_size(), t = nb_thread_id();
    *i0 = total * t / T;
    *i1 = total * (t + 1) / T;
}

/* The K*N seed images of a VJP as units of (a group of up to G images, a
 * seed k), the seed varying fastest: consecutive units of a thread read the
 * same images' values and masks (y, a max pool's argmax), which stay in
 * cache across the K seeds instead of being read K times from memory. */
typedef struct {
    int64_t k, img, g; /* seed, first image, images */
} seed_group;

static int64_t seed_groups(int64_t K, int64_t N, int64_t G) { return K * ((N + G - 1) / G); }

static seed_group seed_group_at(int64_t u, int64_t K, int64_t N, int64_t G)
{
    seed_group sg = {u % K, u / K * G, 0};
    sg.g = N - sg.img < G ? N - sg.img : G;
    return sg;
}

/* Y rows of one block (m output pixels, already lowered into cols):
 * bias, GEMM, fused ReLU. */
static void forward_block(const nb_node *n, const conv_plan *c, const nb_real *cols, int64_t m, nb_real *yb)
{
    const nb_real *k = n->in[1]->value.data, *b = n->ninputs == 3 ? n->in[2]->value.data : NULL;
    const int64_t O = c->O;
    if (b) /* Y = 1 b^T, then the GEMM adds cols Kmat */
        for (int64_t r = 0; r < m; r++) memcpy(yb + r * O, b, (size_t)O * sizeof(nb_real));
    nb_gemm_serial(false, false, m, O, c->P, 1, cols, c->P, k, O, b ? 1 : 0, yb, O);
    if (conv_at(n)->fused_relu) /* NaN <= 0 is false: NaN stays NaN, as in nb_relu */
        for (int64_t r = 0; r < m * O; r++) yb[r] = yb[r] <= 0 ? 0 : yb[r];
}

/* conv2d_relu_maxpool: pooled rows [i0, i1) of image img from z, the
 * convolution's (ReLU'd) rows from h_first on of that image; the argmax is
 * an offset inside the convolution's image, as a max pool's. */
static void pool_rows(const conv_plan *c, const nb_real *z, int64_t img, int64_t h_first, int64_t i0, int64_t i1,
                      nb_real *y, int32_t *arg)
{
    const nb_window *pw = &c->route.w;
    const int64_t f = pw->fh, O = c->O;
    for (int64_t i = i0; i < i1; i++)
        for (int64_t j = 0; j < pw->OW; j++) {
            const int64_t o = ((img * pw->OH + i) * pw->OW + j) * O;
            nb_max_pool_window(z, h_first, pw->W, O, i * f, i * f + f, j * f, j * f + f, y + o, arg + o);
        }
}

/* The window the in-place rows read: the image's own where no window
 * reads padding, else that of a zero-bordered copy of the image (all its
 * output rows: the largest band, which sizes the copy's buffer). */
static nb_window inplace_window(const nb_window *w)
{
    return nb_window_reads_padding(w) ? nb_window_padded_band(w, 0, w->OH) : *w;
}

/* Output rows [r0, r1) of g images from img on (g = 1 for a band) into z:
 * read in place where the kernels layer can (packed: the kernel matrix
 * packed for it), from the images or, where the windows read padding, from
 * a zero-bordered copy of each image's band in padbuf (about 1/fh*fw of
 * what im2col copies); else lowered into cols and forward_block. */
static void conv_rows(const nb_node *n, const conv_plan *c, const conv_split *sp, const nb_real *x, int64_t img,
                      int64_t g, int64_t r0, int64_t r1, const nb_real *packed, nb_real *padbuf, nb_real *cols,
                      nb_real *z)
{
    const int64_t m = g * (r1 - r0) * c->w.OW;
    const nb_real *b = n->ninputs == 3 ? n->in[2]->value.data : NULL;
    const bool copy = nb_window_reads_padding(&c->w);
    const nb_window wb = copy ? nb_window_padded_band(&c->w, r0, r1) : c->w;
    if (packed && nb_conv_inplace_usable(&wb, c->O, m, b != NULL)) {
        const bool relu = conv_at(n)->fused_relu;
        for (int64_t i = 0; i < g; i++) {
            const nb_real *xi = x + (img + i) * sp->img;
            nb_real *zi = z + i * (r1 - r0) * c->w.OW * c->O;
            if (!copy) {
                nb_conv_inplace_rows(&c->w, c->O, xi, packed, b, relu, r0, r1, zi);
                continue;
            }
            nb_pad_band(&c->w, xi, r0, r1, padbuf);
            nb_conv_inplace_rows(&wb, c->O, padbuf, packed, b, relu, 0, r1 - r0, zi);
        }
        return;
    }
    nb_window band = c->w;
    band.OH = r1 - r0;
    band.pad_top = c->w.pad_top - (int)(r0 * c->w.stride);
    nb_im2col(&band, g, x + img * sp->img, cols);
    forward_block(n, c, cols, m, z);
}

/* Output rows [r0, r1) of image img (after the group's tile in scratch
 * when pooled): conv_rows, then for conv2d_relu_maxpool the pool of those
 * rows (r0, r1 multiples of the window) from the tile in cache, so the
 * convolution's whole output is never stored. */
static void forward_rows(const nb_node *n, const conv_plan *c, const conv_split *sp, const nb_real *x, int64_t img,
                         int64_t g, int64_t r0, int64_t r1, const nb_real *packed, nb_real *scratch, int32_t *arg)
{
    nb_real *padbuf = scratch, *tile = scratch + sp->extra, *cols = c->pooled ? tile + sp->mask : tile;
    nb_real *z = c->pooled ? tile : n->value.data + (img * sp->rows + r0 * c->w.OW) * c->O;
    conv_rows(n, c, sp, x, img, g, r0, r1, packed, padbuf, cols, z);
    if (!c->pooled) return;
    const int64_t f = c->route.w.fh, per_img = (r1 - r0) * c->w.OW * c->O;
    for (int64_t b = 0; b < g; b++)
        pool_rows(c, z + b * per_img, img + b, r0, r0 / f, r1 / f, n->value.data, arg);
}

/* Whether the forward pass reads this convolution's rows in place (from
 * the images or their zero-bordered copies); sp from conv_split_make. */
static bool forward_inplace(const nb_node *n, const conv_plan *c, const conv_split *sp)
{
    const int64_t m = (c->N < sp->G ? c->N : sp->G) * sp->rows;
    const nb_window w = inplace_window(&c->w);
    return c->N > 0 && nb_conv_inplace_usable(&w, c->O, m, n->ninputs == 3);
}

/* The kernel matrix packed for nb_conv_inplace_rows in the node's
 * workspace after the per-thread scratch (64-byte aligned), or NULL (the
 * im2col path then runs: it needs no more than it had). */
static const nb_real *pack_for_inplace(nb_node *n, const conv_plan *c, const conv_split *sp, nb_real **ws)
{
    const size_t before = sp->per_thread * (size_t)sp->T, reals = (size_t)nb_conv_inplace_packed_reals(&c->w, c->O);
    nb_real *grown = nb_node_workspace(n, (before + reals + 64) * sizeof(nb_real));
    if (!grown) return NULL; /* the im2col path needs no more than it had */
    *ws = grown;
    nb_real *packed = (nb_real *)(((uintptr_t)(grown + before) + 63) & ~(uintptr_t)63);
    nb_conv_inplace_pack(&c->w, c->O, n->in[1]->value.data, packed);
    return packed;
}

static nb_status conv2d_forward(nb_node *n)
{
    conv_plan c;
    conv_plan_get(n, &c);
    conv_split sp;
    nb_status s;
    if ((s = conv_split_make(&c, 0, c.pooled, &sp))) return s; /* for G and rows */
    const bool inplace = forward_inplace(n, &c, &sp);
    const nb_window wi = inplace_window(&c.w);
    /* one zero-bordered image per thread where the windows read padding */
    const int64_t pad_reals = inplace && nb_window_reads_padding(&c.w) ? (wi.H * wi.W * wi.C + 15) / 16 * 16 : 0;
    nb_real *ws = conv_scratch(n, &c, pad_reals, c.pooled, &sp, &s);
    if (!ws) return s;
    const nb_real *packed = inplace ? pack_for_inplace(n, &c, &sp, &ws) : NULL;
    int32_t *arg = NULL;
    if (c.pooled && !(arg = nb_node_saved(n, (size_t)(n->value.size > 0 ? n->value.size : 1) * sizeof(int32_t))))
        return nb_fail(NB_ERR_NOMEM, "%s: no memory for the argmax indices", n->op->name);
    c.route.arg = arg;
    const nb_real *x = n->in[0]->value.data;
    /* Fewer images than twice the threads (a Jacobian of one image, say):
     * split every image into S bands of output rows (of pooled rows when
     * pooled: a band holds whole windows), so no thread idles. */
    const int64_t T = sp.T, f = c.pooled ? c.route.w.fh : 1, rows_out = c.pooled ? c.route.w.OH : c.w.OH;
    int64_t S = c.N > 0 && c.N < 2 * T ? (2 * T + c.N - 1) / c.N : 1;
    if (S > rows_out) S = rows_out > 0 ? rows_out : 1;
#pragma omp parallel
    {
        int64_t i0, i1;
        nb_real *scratch = ws + (size_t)nb_thread_id() * sp.per_thread;
        if (S == 1) {
            thread_range(c.N, &i0, &i1);
            for (int64_t i = i0; i < i1; i += sp.G) {
                const int64_t g = i1 - i < sp.G ? i1 - i : sp.G;
                forward_rows(n, &c, &sp, x, i, g, 0, c.pooled ? rows_out * f : c.w.OH, packed, scratch, arg);
            }
        } else {
            thread_range(c.N * S, &i0, &i1);
            for (int64_t u = i0; u < i1; u++) {
                const int64_t img = u / S, part = u % S;
                const int64_t r0 = rows_out * part / S * f, r1 = rows_out * (part + 1) / S * f;
                forward_rows(n, &c, &sp, x, img, 1, r0, r1, packed, scratch, arg);
            }
        }
    }
    return NB_OK;
}

/* dZ = dY * [y > 0] for one group of `count` values (fused ReLU), or dY. */
static const nb_real *relu_masked(const nb_node *n, const nb_real *dy, const nb_real *y, int64_t count,
                                  nb_real *scratch)
{
    if (!conv_at(n)->fused_relu) return dy;
    for (int64_t r = 0; r < count; r++) scratch[r] = y[r] > 0 ? dy[r] : 0;
    return scratch;
}

/* Rows [r0, r0 + m) (output pixels of the convolution, image-major) of
 * seed k's dZ: dY masked as above, where dY is the node's seeds dy
 * (K x M x O) or, for conv2d_relu_maxpool, gathered from its pooled seeds
 * (K x |y|) through the pool's argmax with the same mask (the sparse dZ
 * built directly: no dense adjoint of the convolution's output exists).
 * Either dy's own rows or scratch. */
static const nb_real *dz_rows(const nb_node *n, const conv_plan *c, const nb_real *dy, int64_t k, int64_t r0,
                              int64_t m, nb_real *scratch)
{
    if (c->pooled) {
        nb_max_pool_adjoint_rows(&c->route, k, r0, m, conv_at(n)->fused_relu, scratch);
        return scratch;
    }
    return relu_masked(n, dy + (k * c->M + r0) * c->O, n->value.data + r0 * c->O, m * c->O, scratch);
}

/* db[k, o] (+)= sum_m dZ[k, m, o]. Rows are summed in 64 fixed blocks (in
 * parallel) and the blocks then in order, so the result does not depend on
 * the number of threads. Inside a block, runs of 256 rows are summed in the
 * element type (a vectorised loop over the channels) and added to a double. */
static nb_status bias_vjp(nb_node *n, const conv_plan *c, int64_t K, const nb_real *dy, nb_real *db, bool acc)
{
    enum { NBLK = 64, RUN = 256 };
    const int64_t M = c->M, O = c->O > 0 ? c->O : 1, nblk = M < NBLK ? M : NBLK, T = nb_max_team();
    double *part = nb_node_workspace(n, (size_t)(NBLK * O) * (sizeof(double) + sizeof(nb_real)) +
                                            (size_t)(T * RUN * O) * sizeof(nb_real));
    if (!part) return nb_fail(NB_ERR_NOMEM, "conv2d: no memory for the bias gradient");
    /* cppcheck-suppress invalidPointerCast ; one malloc'ed workspace: NBLK*O doubles, then nb_reals (8-byte aligned), each part only ever accessed as its own type */
    nb_real *runs = (nb_real *)(part + NBLK * O), *rows = runs + NBLK * O; /* rows: RUN x O per thread */
    for (int64_t k = 0; k < K; k++) {
#pragma omp parallel for schedule(static) if (M * O > NB_PAR_MAP)
        for (int64_t b = 0; b < nblk; b++) {
            double *a = part + b * O;
            nb_real *f = runs + b * O;
            for (int64_t o = 0; o < O; o++) a[o] = 0;
            const int64_t m1 = M * (b + 1) / nblk;
            for (int64_t m0 = M * b / nblk; m0 < m1; m0 += RUN) {
                const int64_t end = m0 + RUN < m1 ? m0 + RUN : m1;
                const nb_real *dz = dz_rows(n, c, dy, k, m0, end - m0, rows + nb_thread_id() * RUN * O);
                for (int64_t o = 0; o < O; o++) f[o] = 0;
                for (int64_t m = 0; m < end - m0; m++)
                    for (int64_t o = 0; o < O; o++) f[o] += dz[m * O + o];
                for (int64_t o = 0; o < O; o++) a[o] += f[o];
            }
        }
        for (int64_t o = 0; o < c->O; o++) {
            double sum = 0;
            for (int64_t b = 0; b < nblk; b++) sum += part[b * O + o];
            NB_PUT(acc, db[k * c->O + o], (nb_real)sum);
        }
    }
    return NB_OK;
}

/* dK[k] = cols^T dY[k]. Where O is under one 32-column panel of the GEMM
 * and the window long (O < 32, P >= 128: a 3x3x24 window and 24 channels)
 * it is formed transposed, dK[k]^T (O x P) = dY[k]^T cols, with N = P in
 * whole vectors instead of N = O (a quarter of each tile idle at O = 24):
 * the same sums, 1.1-1.2x faster there (one thread, 28x28x24 -> 24 and
 * 28x28x48 -> 24), 0.85-0.95x at O = 32, 48, 96 and for P = 9, which keep
 * cols^T dY. A choice by shape alone. Every thread sums its images into
 * its own partial (K x P x O, or K x O x P transposed), then the partials
 * are added in thread order (and transposed) into dK. */
static bool kernel_vjp_transposed(const conv_plan *c) { return c->O < 32 && c->P >= 128; }

/* The partials of the threads (K x P x O each, or K x O x P transposed)
 * added in thread order into dK[k] (P x O, transposed back). */
static void kernel_vjp_reduce(const nb_real *ws, size_t per_thread, int used, int64_t K, int64_t P, int64_t O,
                              bool transposed, nb_real *dk, bool acc)
{
    const int64_t PO = P * O, total = K * PO;
#pragma omp parallel for schedule(static) if (total > NB_PAR_MAP)
    for (int64_t e = 0; e < total; e++) { /* e = (k, p, o) of dK, from (k, o, p) of the partials if transposed */
        const int64_t from = transposed ? e / PO * PO + e % O * P + e % PO / O : e;
        nb_real v = 0;
        for (int t = 0; t < used; t++) v += ws[(size_t)t * per_thread + (size_t)from];
        NB_PUT(acc, dk[e], v);
    }
}

/* The kernel VJP with the windows read in place (nb_conv_kernel_grad_rows:
 * no im2col, no packing), from the images or, where the windows read
 * padding, from a zero-bordered copy of each: a choice by shape (the
 * window's class for one image, H*W pixels), as the forward's. Per thread:
 * its partial dK^T (K x O x P), the copy, the masked dZ of one image. */
static bool kernel_vjp_inplace(const conv_plan *c, nb_window *wi)
{
    *wi = inplace_window(&c->w);
    return nb_conv_kernel_grad_usable(wi, c->O, c->w.OH * c->w.OW);
}

static nb_status kernel_vjp_inplace_run(nb_node *n, const conv_plan *c, const nb_window *wi, int64_t K,
                                        const nb_real *dy, nb_real *dk, bool acc)
{
    const int64_t O = c->O, P = c->P, PO = P * O, rows = c->w.OH * c->w.OW;
    const int64_t img = c->w.H * c->w.W * c->w.C, T = nb_max_team();
    const bool copy = nb_window_reads_padding(&c->w), masked = conv_at(n)->fused_relu || c->pooled;
    const int64_t pad = copy ? (wi->H * wi->W * wi->C + 15) / 16 * 16 : 0;
    const int64_t mask = masked ? (rows * O + 15) / 16 * 16 : 0;
    if (K > (INT64_MAX / 8 / T - pad - mask - 16) / (PO ? PO : 1))
        return nb_fail(NB_ERR_TOO_LARGE, "conv2d: kernel gradient buffers too large");
    const int64_t part = (K * PO + 15) / 16 * 16;
    const size_t per_thread = (size_t)(part + pad + mask);
    nb_real *ws = nb_node_workspace(n, per_thread * (size_t)T * sizeof(nb_real));
    if (!ws) return nb_fail(NB_ERR_NOMEM, "conv2d: no memory for the kernel gradient");
    const nb_real *x = n->in[0]->value.data;
    int used = 1;
#pragma omp parallel
    {
        const int t = nb_thread_id();
        if (t == 0) used = nb_team_size();
        int64_t i0, i1;
        thread_range(c->N, &i0, &i1);
        nb_real *dkt = ws + (size_t)t * per_thread, *padbuf = dkt + part, *scratch = padbuf + pad;
        memset(dkt, 0, (size_t)(K * PO) * sizeof(nb_real));
        for (int64_t i = i0; i < i1; i++) {
            const nb_real *xi = x + i * img;
            if (copy) nb_pad_band(&c->w, xi, 0, c->w.OH, padbuf), xi = padbuf;
            for (int64_t k = 0; k < K; k++)
                nb_conv_kernel_grad_rows(wi, O, xi, dz_rows(n, c, dy, k, i * rows, rows, scratch), c->w.OH,
                                         dkt + k * PO);
        }
    }
    kernel_vjp_reduce(ws, per_thread, used, K, P, O, true, dk, acc);
    return NB_OK;
}

static nb_status kernel_vjp(nb_node *n, const conv_plan *c, int64_t K, const nb_real *dy, nb_real *dk, bool acc)
{
    nb_window wi;
    if (kernel_vjp_inplace(c, &wi)) return kernel_vjp_inplace_run(n, c, &wi, K, dy, dk, acc);
    conv_split sp;
    const int64_t PO = c->P * c->O;
    if (K > (INT64_MAX / 4) / (PO ? PO : 1)) return nb_fail(NB_ERR_TOO_LARGE, "conv2d: too many seeds");
    nb_status s;
    nb_real *ws = conv_scratch(n, c, K * PO, conv_at(n)->fused_relu || c->pooled, &sp, &s);
    if (!ws) return s;
    const nb_real *x = n->in[0]->value.data;
    const int64_t O = c->O, P = c->P;
    const bool transposed = kernel_vjp_transposed(c);
    int used = 1;
#pragma omp parallel
    {
        const int t = nb_thread_id();
        if (t == 0) used = nb_team_size();
        int64_t i0, i1;
        thread_range(c->N, &i0, &i1);
        nb_real *part = ws + (size_t)t * sp.per_thread, *masked = part + K * PO, *cols = masked + sp.mask;
        memset(part, 0, (size_t)(K * PO) * sizeof(nb_real));
        for (int64_t i = i0; i < i1; i += sp.G) {
            const int64_t g = i1 - i < sp.G ? i1 - i : sp.G, m = g * sp.rows;
            nb_im2col(&c->w, g, x + i * sp.img, cols);
            for (int64_t k = 0; k < K; k++) {
                const nb_real *dz = dz_rows(n, c, dy, k, i * sp.rows, m, masked);
                if (transposed)
                    nb_gemm_serial(true, false, O, P, m, 1, dz, O, cols, P, 1, part + k * PO, P);
                else
                    nb_gemm_serial(true, false, P, O, m, 1, cols, P, dz, O, 1, part + k * PO, O);
            }
        }
    }
    kernel_vjp_reduce(ws, sp.per_thread, used, K, P, O, transposed, dk, acc);
    return NB_OK;
}

/* The sparse path of the input VJP: a block's dZ is compressed (with the
 * ReLU's mask) when at most SPARSE_DENSITY of it is non-zero, and dcols =
 * dZ Kmat^T is then formed from the non-zeros alone (kernels/sparse_rows.c).
 * Behind a 2x2 max pool at most a quarter of dZ can be non-zero. */
#define SPARSE_DENSITY 0.5

typedef struct {
    int64_t cap;   /* most non-zeros of one group's dZ taken sparse */
    int64_t reals; /* scratch per thread: Kmat^T, val, then col and start */
} sparse_plan;

static void sparse_plan_make(const conv_plan *c, int64_t m, sparse_plan *p)
{
    p->cap = (int64_t)((double)(m * c->O) * SPARSE_DENSITY);
    const int64_t ints = (p->cap + 16) + (m + 1), isz = (int64_t)sizeof(int32_t), rsz = (int64_t)sizeof(nb_real);
    p->reals = (c->O * c->P + 15) / 16 * 16 + (p->cap + 16 + 15) / 16 * 16 + (ints * isz + rsz - 1) / rsz;
    p->reals = (p->reals + 15) / 16 * 16;
}

/* This thread's Kmat^T (O x P: the row a non-zero of dZ picks) and sparse
 * rows, laid out in its scratch as sparse_plan says. */
static nb_real *sparse_layout(const conv_plan *c, const sparse_plan *p, nb_real *scratch, nb_sparse_rows *s)
{
    s->val = scratch + (c->O * c->P + 15) / 16 * 16;
    s->col = (int32_t *)(void *)(s->val + (p->cap + 16 + 15) / 16 * 16);
    s->start = s->col + p->cap + 16;
    return scratch;
}

/* dcols (m x P) = dZ Kmat^T for one group, dZ = dY * [y > 0] with a fused
 * ReLU: from the non-zeros when dZ is sparse enough, else a masked copy and
 * a GEMM. */
static void input_vjp_block(const nb_node *n, const conv_plan *c, const sparse_plan *sparse, const nb_real *dy,
                            int64_t k, int64_t r0, int64_t m, nb_real *scratch, nb_real *masked, nb_real *dcols)
{
    const int64_t O = c->O, P = c->P;
    nb_sparse_rows s;
    const nb_real *kmat_t = sparse_layout(c, sparse, scratch, &s);
    const int64_t cap = (int64_t)((double)(m * O) * SPARSE_DENSITY); /* <= sparse->cap: m <= G rows */
    /* Compressed from the pool's arrays when pooled, else from dY with the
     * ReLU's mask as the gate. */
    const bool compressed = c->pooled ? nb_max_pool_adjoint_sparse(&c->route, k, r0, m, conv_at(n)->fused_relu, cap, &s)
                                 : nb_sparse_rows_compress(m, O, dy + (k * c->M + r0) * O,
                                                           conv_at(n)->fused_relu ? n->value.data + r0 * O : NULL, cap, &s);
    if (compressed) {
        nb_sparse_rows_matmul(&s, P, kmat_t, P, dcols, P);
        return;
    }
    const nb_real *dz = dz_rows(n, c, dy, k, r0, m, masked);
    nb_gemm_serial(false, true, m, P, O, 1, dz, O, n->in[1]->value.data, O, 0, dcols, P);
}

/* dX = col2im(dY Kmat^T): the K*N seed images split among the threads. */
static nb_status input_vjp(nb_node *n, const conv_plan *c, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    conv_split sp;
    nb_status s;
    sparse_plan sparse;
    if ((s = conv_split_make(c, 0, false, &sp))) return s; /* for G and rows */
    sparse_plan_make(c, sp.G * sp.rows, &sparse);
    nb_real *ws = conv_scratch(n, c, sparse.reals, conv_at(n)->fused_relu || c->pooled, &sp, &s);
    if (!ws) return s;
    const nb_real *kmat = n->in[1]->value.data;
    const int64_t O = c->O, P = c->P, N = c->N;
#pragma omp parallel
    {
        int64_t u0, u1;
        thread_range(seed_groups(K, N, sp.G), &u0, &u1);
        nb_real *scratch = ws + (size_t)nb_thread_id() * sp.per_thread, *masked = scratch + sparse.reals,
                *dcols = masked + sp.mask, *kmat_t = scratch;
        for (int64_t p = 0; p < P; p++) /* Kmat^T (O x P): the rows a non-zero of dZ picks */
            for (int64_t o = 0; o < O; o++) kmat_t[o * P + p] = kmat[p * O + o];
        for (int64_t u = u0; u < u1; u++) {
            const seed_group sg = seed_group_at(u, K, N, sp.G);
            input_vjp_block(n, c, &sparse, dy, sg.k, sg.img * sp.rows, sg.g * sp.rows, scratch, masked, dcols);
            nb_col2im(&c->w, sg.g, dcols, dx + (sg.k * N + sg.img) * sp.img, acc);
        }
    }
    return NB_OK;
}

/* dZ of seed image i (seed i / N, image i % N: OH x OW x O): dY's own rows,
 * or for conv2d_relu_maxpool its pooled seeds scattered through the argmax
 * into buf (dense, as max_pool2d's VJP gives an unfused convolution), so the
 * fused op takes the in-place paths below exactly where conv2d + pool would
 * and gives its bits. (A fused ReLU keeps the lowering on both sides.) */
static const nb_real *image_dz(const nb_node *n, const conv_plan *c, const nb_real *dy, int64_t i, nb_real *buf)
{
    const int64_t rows = c->w.OH * c->w.OW;
    return dz_rows(n, c, dy, i / c->N, i % c->N * rows, rows, buf);
}

/* The input VJP of a stride-1 convolution as a convolution, read in place
 * (no dcols GEMM, no col2im). With stride 1,
 *   dX[h,w,c] = sum_{p,q,o} dZ[h + pt - p*d, w + pl - q*d, o] k[p,q,c,o]
 * (dZ = 0 outside its OH x OW), and with p' = fh-1-p, q' = fw-1-q,
 *   dX[h,w,c] = sum_{p',q',o} dZ[h - pt' + p'*d, w - pl' + q'*d, o] kr[p',q',o,c],
 *   pt' = (fh-1)d - pt, pl' = (fw-1)d - pl, kr[p',q',o,c] = k[fh-1-p', fw-1-q', c, o]:
 * the convolution of dZ (an OH x OW image of O channels) by the kernel
 * rotated 180 degrees with its C and O axes swapped, stride 1, dilation d,
 * padding pt', pl', giving H x W x C. nb_conv_inplace_rows runs it over
 * zero-bordered copies of dZ's rows (nb_pad_band). Its sums differ from the
 * lowering's in the last bits (each dX value summed in another order), so
 * the choice depends on the shape alone: the window's class for a whole
 * image (H*W x C x fh*fw*O), never the thread count or the bands.
 * Where the padding is wider than the window reaches (pt' < 0: explicit
 * padding), at stride > 1, for C = 1 (the transposed GEMM below is better)
 * and where dZ goes through a fused ReLU (mostly zero: the sparse product
 * wins; conv2d_relu unfused lowers too) the lowering stays. A fused max pool
 * without a ReLU reads its dense dZ (image_dz), as conv2d + max_pool2d. */
static bool transposed_window(const nb_node *n, const conv_plan *c, nb_window *t)
{
    const nb_window *w = &c->w;
    *t = (nb_window){w->OH, w->OW, c->O, w->H, w->W, w->fh, w->fw, 1, w->dilation,
                     (w->fh - 1) * w->dilation - w->pad_top, (w->fw - 1) * w->dilation - w->pad_left};
    if (w->stride != 1 || w->C < 2 || conv_at(n)->fused_relu || t->pad_top < 0 || t->pad_left < 0)
        return false;
    const nb_window whole = nb_window_padded_band(t, 0, t->OH);
    return nb_conv_inplace_usable(&whole, w->C, w->H * w->W, false);
}

/* dX[k*N + i] (+)= conv(dZ[k, i], kr) as above: the K*N seed images split
 * among the threads, each in S bands of rows when there are fewer than
 * twice the threads (a Jacobian of one image). */
static nb_status input_vjp_inplace(nb_node *n, const conv_plan *c, const nb_window *t, int64_t K,
                                   const nb_real *dy, nb_real *dx, bool acc)
{
    const nb_window whole = nb_window_padded_band(t, 0, t->OH);
    /* kr is fh*fw*O x C: as many values as the kernel, P x O */
    const int64_t C = c->w.C, O = c->O, P = c->P, img = c->w.H * c->w.W * C, zimg = c->w.OH * c->w.OW * O;
    const int64_t pad = (whole.H * whole.W * whole.C + 15) / 16 * 16, dense = c->pooled ? (zimg + 15) / 16 * 16 : 0;
    const int64_t per_thread = pad + dense + (acc ? (img + 15) / 16 * 16 : 0);
    const int64_t T = nb_max_team(), packed_reals = nb_conv_inplace_packed_reals(t, C);
    if (per_thread > (INT64_MAX / 8 - P * O - packed_reals) / T)
        return nb_fail(NB_ERR_TOO_LARGE, "conv2d: input gradient buffers too large");
    nb_real *ws = nb_node_workspace(n, (size_t)(T * per_thread + P * O + packed_reals + 16) * sizeof(nb_real));
    if (!ws) return nb_fail(NB_ERR_NOMEM, "conv2d: no memory for the input gradient");
    nb_real *kr = ws + T * per_thread, *packed = (nb_real *)(((uintptr_t)(kr + P * O) + 63) & ~(uintptr_t)63);
    const nb_real *k = n->in[1]->value.data;
    const int fh = c->w.fh, fw = c->w.fw;
    for (int p = 0; p < fh; p++)
        for (int q = 0; q < fw; q++)
            for (int64_t ch = 0; ch < C; ch++)
                for (int64_t o = 0; o < O; o++)
                    kr[(((int64_t)(fh - 1 - p) * fw + (fw - 1 - q)) * O + o) * C + ch] = k[(((int64_t)p * fw + q) * C + ch) * O + o];
    nb_conv_inplace_pack(t, C, kr, packed);
    const int64_t total = K * c->N, H = c->w.H, rowlen = c->w.W * C;
    int64_t S = total < 2 * T ? (2 * T + total - 1) / total : 1;
    if (S > H) S = H;
#pragma omp parallel
    {
        int64_t u0, u1;
        thread_range(total * S, &u0, &u1);
        nb_real *padbuf = ws + nb_thread_id() * per_thread, *zbuf = padbuf + pad, *out = zbuf + dense;
        for (int64_t u = u0; u < u1; u++) {
            const int64_t i = u / S, r0 = H * (u % S) / S, r1 = H * (u % S + 1) / S;
            const nb_window band = nb_window_padded_band(t, r0, r1);
            nb_real *dst = dx + i * img + r0 * rowlen;
            nb_pad_band(t, image_dz(n, c, dy, i, zbuf), r0, r1, padbuf);
            nb_conv_inplace_rows(&band, C, padbuf, packed, NULL, false, 0, r1 - r0, acc ? out : dst);
            for (int64_t e = 0; acc && e < (r1 - r0) * rowlen; e++) dst[e] += out[e];
        }
    }
    return NB_OK;
}

/* The input VJP of a strided convolution as s*s stride-1 convolutions,
 * read in place (no dcols GEMM, no col2im). With stride s (dilation 1),
 * the input pixels h with (h + pt) mod s = a receive only the taps
 * p = a + s t (t < Ta = ceil((fh - a)/s)): writing h = h0 + s v (h0 the
 * first such h >= 0) and u0 = (h0 + pt - a)/s,
 *   dX[h0 + s v] = sum_t dZ[u0 + v - t] k[a + s t],
 * a stride-1 convolution of dZ with the sub-kernel flipped (tap t' =
 * Ta-1-t), padding Ta-1-u0 (negative: the windows start inside dZ), C and O
 * swapped; in two dimensions one such convolution per parity class (a, b),
 * each giving a sub-grid of dX (every s-th row and column) that no other
 * class touches. A class without taps (a 1x1 kernel at stride 2: three of
 * its four classes) gets no gradient. Each class runs nb_conv_inplace_rows
 * over a zero-bordered copy of dZ into a buffer, scattered into its
 * sub-grid. Its sums differ from the lowering's in the last bits, so, as
 * for stride 1, the choice is by shape alone. */
enum { MAX_STRIDE_CLASSES = 16 }; /* strides up to 4 */

typedef struct {
    nb_window w;    /* the class's stride-1 convolution over dZ (C = O in, the input's C out) */
    int64_t h0, w0; /* its first input pixel */
    int a, b;       /* its parities: taps p = a + s t, q = b + s t' */
    bool empty;     /* no taps or no pixels: no gradient */
} stride_class;

static stride_class stride_class_make(const nb_window *w, int64_t O, int a, int b)
{
    const int s = w->stride;
    const int Ta = a < w->fh ? (w->fh - a + s - 1) / s : 0, Tb = b < w->fw ? (w->fw - b + s - 1) / s : 0;
    stride_class sc = {.a = a, .b = b};
    sc.h0 = ((a - w->pad_top) % s + s) % s, sc.w0 = ((b - w->pad_left) % s + s) % s;
    const int64_t nu = sc.h0 < w->H ? (w->H - sc.h0 + s - 1) / s : 0, nv = sc.w0 < w->W ? (w->W - sc.w0 + s - 1) / s : 0;
    const int64_t u0 = (sc.h0 + w->pad_top - a) / s, v0 = (sc.w0 + w->pad_left - b) / s;
    sc.empty = Ta == 0 || Tb == 0 || nu == 0 || nv == 0;
    sc.w = (nb_window){w->OH, w->OW, O, nu, nv, Ta > 0 ? Ta : 1, Tb > 0 ? Tb : 1, 1, 1,
                       (int)(Ta - 1 - u0), (int)(Tb - 1 - v0)};
    return sc;
}

/* The classes of a convolution whose input VJP runs strided (into cls,
 * their count), or 0: stride 2..4, dilation 1, C >= 2, no fused ReLU (its
 * dZ is mostly zero: the sparse product wins; a fused pool alone reads its
 * dense dZ, image_dz), every class's window usable in place. */
static int stride_classes(const nb_node *n, const conv_plan *c, stride_class cls[MAX_STRIDE_CLASSES])
{
    const nb_window *w = &c->w;
    const int s = w->stride;
    if (s < 2 || s > 4 || w->dilation != 1 || w->C < 2 || conv_at(n)->fused_relu) return 0;
    for (int a = 0; a < s; a++)
        for (int b = 0; b < s; b++) {
            stride_class *sc = &cls[a * s + b];
            *sc = stride_class_make(w, c->O, a, b);
            if (sc->empty) continue;
            const nb_window whole = nb_window_padded_band(&sc->w, 0, sc->w.OH);
            if (!nb_conv_inplace_usable(&whole, w->C, sc->w.OH * sc->w.OW, false)) return 0;
        }
    return s * s;
}

/* dX[k*N + i] (+)= the classes' convolutions of dZ[k, i], scattered. */
static nb_status input_vjp_strided(nb_node *n, const conv_plan *c, const stride_class *cls, int ncls, int64_t K,
                                   const nb_real *dy, nb_real *dx, bool acc)
{
    const nb_window *w = &c->w;
    const int64_t C = w->C, O = c->O, s = w->stride, img = w->H * w->W * C, zimg = w->OH * w->OW * O;
    int64_t pad = 0, out = 0, packed_at[MAX_STRIDE_CLASSES], packed_total = 0, kr_reals = 0;
    for (int k = 0; k < ncls; k++) {
        packed_at[k] = packed_total;
        if (cls[k].empty) continue;
        const nb_window whole = nb_window_padded_band(&cls[k].w, 0, cls[k].w.OH);
        const int64_t pr = (whole.H * whole.W * O + 15) / 16 * 16, orr = (cls[k].w.OH * cls[k].w.OW * C + 15) / 16 * 16;
        pad = pr > pad ? pr : pad, out = orr > out ? orr : out;
        packed_total += (nb_conv_inplace_packed_reals(&cls[k].w, C) + 15) / 16 * 16;
        const int64_t kr = (int64_t)cls[k].w.fh * cls[k].w.fw * O * C;
        kr_reals = kr > kr_reals ? kr : kr_reals;
    }
    const int64_t dense = c->pooled ? (zimg + 15) / 16 * 16 : 0, T = nb_max_team(), per_thread = pad + out + dense;
    if (per_thread > (INT64_MAX / 8 - packed_total - kr_reals) / T)
        return nb_fail(NB_ERR_TOO_LARGE, "conv2d: input gradient buffers too large");
    nb_real *ws = nb_node_workspace(n, (size_t)(T * per_thread + kr_reals + packed_total + 16) * sizeof(nb_real));
    if (!ws) return nb_fail(NB_ERR_NOMEM, "conv2d: no memory for the input gradient");
    nb_real *kr = ws + T * per_thread, *packed = (nb_real *)(((uintptr_t)(kr + kr_reals) + 63) & ~(uintptr_t)63);
    const nb_real *k = n->in[1]->value.data;
    for (int q = 0; q < ncls; q++) { /* kr[(t', u', o), c] = k[a + s (Ta-1-t'), b + s (Tb-1-u'), c, o] */
        const stride_class *sc = &cls[q];
        if (sc->empty) continue;
        const int Ta = sc->w.fh, Tb = sc->w.fw;
        for (int tp = 0; tp < Ta; tp++)
            for (int tq = 0; tq < Tb; tq++) {
                const int64_t p = sc->a + s * (Ta - 1 - tp), qq = sc->b + s * (Tb - 1 - tq);
                for (int64_t o = 0; o < O; o++)
                    for (int64_t ch = 0; ch < C; ch++)
                        kr[(((int64_t)tp * Tb + tq) * O + o) * C + ch] = k[((p * w->fw + qq) * C + ch) * O + o];
            }
        nb_conv_inplace_pack(&sc->w, C, kr, packed + packed_at[q]);
    }
    const int64_t total = K * c->N;
#pragma omp parallel
    {
        int64_t u0, u1;
        thread_range(total * ncls, &u0, &u1);
        nb_real *padbuf = ws + nb_thread_id() * per_thread, *res = padbuf + pad, *zbuf = res + out;
        for (int64_t u = u0; u < u1; u++) {
            const int64_t i = u / ncls;
            const stride_class *sc = &cls[u % ncls];
            nb_real *dxi = dx + i * img;
            const int64_t nu = sc->empty ? 0 : sc->w.OH, nv = sc->empty ? 0 : sc->w.OW;
            if (sc->empty) { /* no taps reach these pixels */
                for (int64_t h = sc->h0; !acc && h < w->H; h += s)
                    for (int64_t v = sc->w0; v < w->W; v += s) memset(dxi + (h * w->W + v) * C, 0, (size_t)C * sizeof(nb_real));
                continue;
            }
            const nb_window band = nb_window_padded_band(&sc->w, 0, nu);
            nb_pad_band(&sc->w, image_dz(n, c, dy, i, zbuf), 0, nu, padbuf);
            nb_conv_inplace_rows(&band, C, padbuf, packed + packed_at[u % ncls], NULL, false, 0, nu, res);
            for (int64_t a = 0; a < nu; a++)
                for (int64_t b = 0; b < nv; b++) {
                    nb_real *d = dxi + ((sc->h0 + s * a) * w->W + sc->w0 + s * b) * C;
                    const nb_real *r = res + (a * nv + b) * C;
                    for (int64_t ch = 0; ch < C; ch++) NB_PUT(acc, d[ch], r[ch]);
                }
        }
    }
    return NB_OK;
}

/* The input VJP for single-channel images (C = 1, the first layer of a
 * grayscale network). Here P = fh*fw is tiny (9) and dcols = dZ Kmat^T
 * would be a GEMM with N = 9 columns, most of every register tile wasted.
 * Its transpose is a good GEMM shape instead: dcols^T (P x m) = Kmat (P x O)
 * dZ^T, with the m pixels of a group along N. Then, since with one channel
 * column t = (p,q) of dcols is the plane of tap t,
 *   dX[n, i*s + p*d - pt, j*s + q*d - pl] += dcols^T[t, (n,i,j)]
 * adds fh*fw shifted planes into the image (contiguous rows when s = 1).
 * Groups of about 64 Ki values of dZ keep the masked copy and dcols^T in L2. */
static void add_tap_planes(const nb_window *w, const nb_real *dcols_t, int64_t m, int64_t img, nb_real *dxi)
{
    const int64_t s = w->stride, d = w->dilation;
    for (int p = 0; p < w->fh; p++)
        for (int q = 0; q < w->fw; q++) {
            const nb_real *plane = dcols_t + (p * w->fw + q) * m + img * w->OH * w->OW;
            /* output columns j with 0 <= j*s + q*d - pl < W */
            const int64_t off = (int64_t)q * d - w->pad_left;
            int64_t j0 = off < 0 ? (-off + s - 1) / s : 0, j1 = (w->W - 1 - off) / s + 1;
            if (w->W - 1 - off < 0) j1 = 0;
            if (j1 > w->OW) j1 = w->OW;
            for (int64_t i = 0; i < w->OH; i++) {
                const int64_t h = i * s + (int64_t)p * d - w->pad_top;
                if (h < 0 || h >= w->H) continue;
                nb_real *row = dxi + h * w->W;
                const nb_real *src = plane + i * w->OW;
                if (s == 1)
                    for (int64_t j = j0; j < j1; j++) row[j + off] += src[j];
                else
                    for (int64_t j = j0; j < j1; j++) row[j * s + off] += src[j];
            }
        }
}

static nb_status input_vjp_single_channel(nb_node *n, const conv_plan *c, int64_t K, const nb_real *dy, nb_real *dx,
                                          bool accumulate)
{
    const int64_t O = c->O, P = c->P, N = c->N, rows = c->w.OH * c->w.OW, img = c->w.H * c->w.W;
    int64_t G = rows * O > 0 ? 65536 / (rows * O) : 1;
    if (G < 1) G = 1;
    if (rows > 0 && O + P > (INT64_MAX / 4 / nb_max_team()) / rows / G)
        return nb_fail(NB_ERR_TOO_LARGE, "conv2d: input gradient buffers too large");
    const int64_t per_thread = (G * rows * (O + P) + 15) / 16 * 16;
    nb_real *ws = nb_node_workspace(n, (size_t)(nb_max_team() * per_thread) * sizeof(nb_real));
    if (!ws) return nb_fail(NB_ERR_NOMEM, "conv2d: no memory for the input gradient");
    const nb_real *kmat = n->in[1]->value.data;
#pragma omp parallel
    {
        int64_t u0, u1;
        thread_range(seed_groups(K, N, G), &u0, &u1);
        nb_real *masked = ws + nb_thread_id() * per_thread, *dcols_t = masked + G * rows * O;
        for (int64_t u = u0; u < u1; u++) {
            const seed_group sg = seed_group_at(u, K, N, G);
            const int64_t m = sg.g * rows;
            const nb_real *dz = dz_rows(n, c, dy, sg.k, sg.img * rows, m, masked);
            nb_gemm_serial(false, true, P, m, O, 1, kmat, O, dz, O, 0, dcols_t, m);
            for (int64_t b = 0; b < sg.g; b++) {
                nb_real *dxi = dx + (sg.k * N + sg.img + b) * img;
                if (!accumulate) memset(dxi, 0, (size_t)img * sizeof(nb_real));
                add_tap_planes(&c->w, dcols_t, m, b, dxi);
            }
        }
    }
    return NB_OK;
}

static nb_status conv2d_vjp(nb_node *n, int which, int64_t K, const nb_real *dy, nb_real *dx, bool acc)
{
    conv_plan c;
    conv_plan_get(n, &c);
    c.route.dy = dy;
    if (c.N == 0 || K == 0) {
        /* No images: the kernel's and bias's adjoints are zero (their
         * buffers hold the last pass's otherwise); the input's is empty. */
        const int64_t size = n->in[which]->value.size;
        if (!acc && which > 0) memset(dx, 0, (size_t)(K * size) * sizeof(nb_real));
        return NB_OK;
    }
    nb_window t;
    if (which == 0 && c.w.C == 1) return input_vjp_single_channel(n, &c, K, dy, dx, acc);
    if (which == 0 && transposed_window(n, &c, &t)) return input_vjp_inplace(n, &c, &t, K, dy, dx, acc);
    stride_class cls[MAX_STRIDE_CLASSES];
    const int ncls = which == 0 ? stride_classes(n, &c, cls) : 0;
    if (ncls) return input_vjp_strided(n, &c, cls, ncls, K, dy, dx, acc);
    if (which == 0) return input_vjp(n, &c, K, dy, dx, acc);
    if (which == 1) return kernel_vjp(n, &c, K, dy, dx, acc);
    return bias_vjp(n, &c, K, dy, dx, acc);
}

/* conv2d_relu_maxpool's tangent of g images from their convolution's
 * tangent dz (in the tile): dy[o] = [y[o] > 0] dz[a(o)] with a the argmax
 * (the pool's JVP after the ReLU's: the ReLU's value at a(o) is y[o]). */
static void pool_tangent(const nb_node *n, const conv_plan *c, int64_t img, int64_t g, const nb_real *dz, nb_real *dy)
{
    const int64_t iy = c->route.w.OH * c->route.w.OW * c->O, iz = c->w.OH * c->w.OW * c->O;
    const bool relu = conv_at(n)->fused_relu;
    for (int64_t b = 0; b < g; b++) {
        const int32_t *a = c->route.arg + (img + b) * iy;
        const nb_real *y = c->route.y + (img + b) * iy, *z = dz + b * iz;
        nb_real *t = dy + b * iy;
        for (int64_t o = 0; o < iy; o++) t[o] = !relu || y[o] > 0 ? z[a[o]] : 0;
    }
}

/* dY[k] = 1 db[k]^T + im2col(x) dK[k] + im2col(dX[k]) Kmat. The K*N tangent
 * images are split among the threads like one batch; a group never crosses
 * from one tangent k to the next, so it has one dK[k] and one db[k]. Pooled,
 * a group's tangent is formed in the tile and pooled from there. */
static nb_status conv2d_jvp(nb_node *n, int64_t K, nb_real *const *dxs, nb_real *dy)
{
    conv_plan c;
    conv_plan_get(n, &c);
    conv_split sp;
    nb_status s;
    nb_real *ws = conv_scratch(n, &c, 0, c.pooled, &sp, &s);
    if (!ws) return s;
    const nb_real *x = n->in[0]->value.data, *kmat = n->in[1]->value.data;
    const nb_real *db = n->ninputs == 3 ? dxs[2] : NULL, *dK = dxs[1], *dX = dxs[0];
    const int64_t O = c.O, P = c.P, N = c.N, total = K * N, iy = n->value.size / (N > 0 ? N : 1);
#pragma omp parallel
    {
        int64_t i0, i1;
        thread_range(total, &i0, &i1);
        nb_real *tile = ws + (size_t)nb_thread_id() * sp.per_thread, *cols = c.pooled ? tile + sp.mask : tile;
        for (int64_t i = i0; i < i1;) {
            const int64_t k = i / N, img = i % N;
            int64_t g = i1 - i < sp.G ? i1 - i : sp.G;
            if (g > N - img) g = N - img;
            const int64_t m = g * sp.rows;
            nb_real *yg = c.pooled ? tile : dy + i * sp.rows * O;
            for (int64_t r = 0; r < m; r++)
                for (int64_t o = 0; o < O; o++) yg[r * O + o] = db ? db[k * O + o] : 0;
            if (dK) {
                nb_im2col(&c.w, g, x + img * sp.img, cols);
                nb_gemm_serial(false, false, m, O, P, 1, cols, P, dK + k * P * O, O, 1, yg, O);
            }
            if (dX) {
                nb_im2col(&c.w, g, dX + i * sp.img, cols);
                nb_gemm_serial(false, false, m, O, P, 1, cols, P, kmat, O, 1, yg, O);
            }
            if (c.pooled) {
                pool_tangent(n, &c, img, g, yg, dy + i * iy);
            } else if (conv_at(n)->fused_relu) {
                const nb_real *yv = n->value.data + img * sp.rows * O;
                for (int64_t r = 0; r < m * O; r++) yg[r] = yv[r] > 0 ? yg[r] : 0;
            }
            i += g;
        }
    }
    return NB_OK;
}

/* Gradient-check cases. Odd sizes with 'same' and stride 2 make TensorFlow's
 * asymmetric padding (the odd pixel at the bottom/right) show. */
static nb_node *conv_case(nb_graph *g, nb_rng *r, nb_node *x, int fh, int fw, int64_t cout, int bias,
                          nb_conv2d_opts o)
{
    if (!x) return NULL;
    nb_node *k = NB_CHECK_X("k", -1, 1, fh, fw, nb_value(x)->shape[3], cout);
    nb_node *b = bias ? NB_CHECK_X("b", -1, 1, cout) : NULL;
    return nb_conv2d(x, k, b, &o);
}
static nb_node *case_conv_relu(nb_graph *g, nb_rng *r)
{
    /* Fused conv2d + ReLU, kept away from the kink even for float's large
     * step: output channel 0 is always > 0.1 (positive kernel and bias on a
     * positive input), channel 1 always < -0.1, so both sides of the mask
     * are checked. */
    nb_node *x = NB_CHECK_X("x", 0.5, 1, 2, 5, 5, 2), *k = NB_CHECK_X("k", 0.1, 1, 3, 3, 2, 2);
    nb_node *b = NB_CHECK_X("b", 0.1, 0.5, 2);
    if (!k || !b) return NULL;
    nb_tensor *kv = nb_value(k), *bv = nb_value(b);
    for (int64_t i = 1; i < kv->size; i += 2) kv->data[i] = -kv->data[i];
    bv->data[1] = -bv->data[1];
    nb_conv2d_opts o = {1, 1, NB_PAD_SAME, 0};
    return nb_conv2d_relu(x, k, b, &o);
}
#define CONV_CASE(fn, x, fh, fw, cout, bias, s, d, pad)                                                                \
    static nb_node *case_##fn(nb_graph *g, nb_rng *r)                                                                  \
    {                                                                                                                  \
        return conv_case(g, r, x, fh, fw, cout, bias, (nb_conv2d_opts){s, d, pad, 0});                                 \
    }
CONV_CASE(conv_valid, NB_CHECK_X("x", -1, 1, 2, 5, 5, 3), 3, 3, 2, 1, 1, 1, NB_PAD_VALID)
CONV_CASE(conv_valid_c1, NB_CHECK_X("x", -1, 1, 2, 5, 4, 1), 3, 2, 3, 0, 1, 1, NB_PAD_VALID)
CONV_CASE(conv_same, NB_CHECK_X("x", -1, 1, 1, 5, 6, 1), 3, 3, 2, 1, 1, 1, NB_PAD_SAME)
CONV_CASE(conv_same_even, NB_CHECK_X("x", -1, 1, 1, 4, 5, 3), 2, 2, 2, 0, 1, 1, NB_PAD_SAME)
CONV_CASE(conv_stride2_same, NB_CHECK_X("x", -1, 1, 1, 7, 6, 2), 4, 3, 2, 1, 2, 1, NB_PAD_SAME)
CONV_CASE(conv_stride2_valid, NB_CHECK_X("x", -1, 1, 2, 7, 6, 1), 3, 3, 2, 0, 2, 1, NB_PAD_VALID)
CONV_CASE(conv_dilation2, NB_CHECK_X("x", -1, 1, 1, 7, 6, 2), 3, 2, 2, 1, 1, 2, NB_PAD_VALID)
CONV_CASE(conv_dilation2_same, NB_CHECK_X("x", -1, 1, 1, 5, 5, 3), 3, 3, 1, 0, 2, 2, NB_PAD_SAME)
/* P = 144 >= 128 and O = 3 < 32: the kernel VJP formed transposed */
CONV_CASE(conv_long_window, NB_CHECK_X("x", -1, 1, 2, 4, 5, 16), 3, 3, 3, 1, 1, 1, NB_PAD_SAME)
/* PyTorch's padding=1 at stride 2 on an even size: one zero row above and
 * one below, of which only the top one is read (TensorFlow's same would pad
 * below only), and padding 2 on a 3x3 kernel, whose corner outputs see one
 * real pixel. */
static nb_node *case_conv_pad1_stride2(nb_graph *g, nb_rng *r)
{
    return conv_case(g, r, NB_CHECK_X("x", -1, 1, 2, 6, 6, 2), 3, 3, 2, 1, (nb_conv2d_opts){2, 1, NB_PAD_EXPLICIT, 1});
}
static nb_node *case_conv_pad2(nb_graph *g, nb_rng *r)
{
    return conv_case(g, r, NB_CHECK_X("x", -1, 1, 1, 4, 5, 1), 3, 3, 2, 0, (nb_conv2d_opts){1, 1, NB_PAD_EXPLICIT, 2});
}
static nb_node *case_conv_tanh_conv(nb_graph *g, nb_rng *r)
{
    /* Two layers: the second conv's x-VJP feeds the first's; tanh is smooth. */
    nb_node *h = nb_tanh(conv_case(g, r, NB_CHECK_X("x", -1, 1, 2, 6, 6, 1), 3, 3, 2, 1, (nb_conv2d_opts){1, 1, 0, 0}));
    nb_node *k2 = NB_CHECK_X("k2", -1, 1, 2, 2, 2, 2);
    return nb_conv2d(h, k2, NULL, &(nb_conv2d_opts){1, 1, NB_PAD_SAME, 0});
}
static const nb_op_case conv2d_cases[] = {
    {"same 3x3 + fused relu", case_conv_relu},
    {"valid 3x3 +bias C_in 3", case_conv_valid},
    {"valid 3x2 C_in 1", case_conv_valid_c1},
    {"same 3x3 +bias C_in 1", case_conv_same},
    {"same 2x2 C_in 3", case_conv_same_even},
    {"same 4x3 s2 7x6 +bias", case_conv_stride2_same},
    {"valid 3x3 s2 7x6", case_conv_stride2_valid},
    {"valid 3x2 d2 +bias", case_conv_dilation2},
    {"same 3x3 s2 d2", case_conv_dilation2_same},
    {"same 3x3 C_in 16 +bias", case_conv_long_window},
    {"pad 1 3x3 s2 6x6 +bias", case_conv_pad1_stride2},
    {"pad 2 3x3 4x5 C_in 1", case_conv_pad2},
    {"conv-tanh-conv", case_conv_tanh_conv},
};

/* Second order. y = mask * (conv(x, k) + 1 b^T), the ReLU's mask [y > 0]
 * fixed almost everywhere (off the kink), is bilinear in (x, k) and linear
 * in b:
 *   d(dX) = col2im(dZ Kdot^T)       (the input VJP with Kdot for Kmat),
 *   d(dK) = im2col(Xdot)^T dZ       (the kernel VJP with Xdot for x),
 *   d(db) = 0,
 * dZ = mask * ybar: the VJP with the other input's tangent in its place.
 * The fused max pool (conv2d_relu_maxpool) only adds its fixed argmax to the
 * mask: the same rule. */
static nb_status conv2d_vjp_tangent(nb_node *n, int which, int64_t K, const nb_real *ybar, nb_real *const *xdots,
                                    nb_real *out, bool acc)
{
    if (which == 2) return nb_vjp_tangent_zero(n, which, K, ybar, xdots, out, acc);
    return nb_vjp_tangent_bilinear(n, which, 1 - which, K, ybar, xdots, out, acc);
}

const nb_op nb_op_conv2d = {
    .name = "conv2d",
    .ninputs = 3, /* the bias is optional: 2 without it */
    .attrs_size = sizeof(conv2d_attrs),
    .infer = conv2d_infer,
    .forward = conv2d_forward,
    .vjp = conv2d_vjp,
    .jvp = conv2d_jvp,
    .vjp_tangent = conv2d_vjp_tangent,
    .cases = conv2d_cases,
    .ncases = NB_COUNT(conv2d_cases),
};

/* conv2d_relu_maxpool's cases keep the convolution's outputs apart (no
 * argmax moves under a step) and away from the ReLU's kink: every kernel
 * is its centre tap (+-1 or 0.8) plus taps below 1e-4, on a ramp of
 * distinct inputs 0.1 apart, so z is the centre pixel times the centre tap
 * to within 0.01. Leftover rows and columns (5x5 pooled by 2) and a window
 * of 3 are covered. */
static nb_node *conv_pool_case(nb_graph *g, nb_rng *r, nb_node *x, int64_t cout, const double *centre,
                               const double *bias, nb_conv2d_opts o, bool relu, int pool)
{
    if (!x) return NULL;
    const int64_t C = nb_value(x)->shape[3];
    nb_node *k = NB_CHECK_X("k", -1e-4 / (double)C, 1e-4 / (double)C, 3, 3, C, cout);
    nb_node *b = NB_CHECK_X("b", 0, 1e-3, cout);
    if (!k || !b) return NULL;
    for (int64_t j = 0; j < cout; j++) {
        nb_value(k)->data[(4 * C + 0) * cout + j] = (nb_real)centre[j]; /* tap (1, 1), channel 0 */
        nb_value(b)->data[j] += (nb_real)bias[j];
    }
    nb_node *conv = relu ? nb_conv2d_relu(x, k, b, &o) : nb_conv2d(x, k, b, &o);
    return nb_fuse_conv2d_maxpool(conv, pool, pool, NB_PAD_VALID);
}
static nb_node *case_conv_relu_pool2(nb_graph *g, nb_rng *r)
{
    /* channel 0 all > 0.4, channel 1 all < -0.4: both sides of the ReLU */
    const double centre[2] = {1, -1}, bias[2] = {0, 0};
    return conv_pool_case(g, r, nb_check_ramp_leaf(g, r, "x", NB_SHAPE(2, 7, 7, 1), 0.5), 2, centre, bias,
                          (nb_conv2d_opts){1, 1, NB_PAD_VALID, 0}, true, 2);
}
static nb_node *case_conv_pool3_same(nb_graph *g, nb_rng *r)
{
    const double centre[2] = {0.8, -1}, bias[2] = {0.1, -0.2};
    return conv_pool_case(g, r, nb_check_ramp_leaf(g, r, "x", NB_SHAPE(1, 6, 6, 2), -2), 2, centre, bias,
                          (nb_conv2d_opts){1, 1, NB_PAD_SAME, 0}, false, 3);
}
static const nb_op_case conv2d_relu_maxpool_cases[] = {
    {"relu, 2 imgs 7x7, pool 2", case_conv_relu_pool2},
    {"no relu, same 6x6x2, pool 3", case_conv_pool3_same},
};

/* The fused convolution (+ ReLU) + max pool: the same functions, with
 * conv2d_attrs.pool set (see "Fused max pool" at the top). */
const nb_op nb_op_conv2d_relu_maxpool = {
    .name = "conv2d_relu_maxpool",
    .ninputs = 3, /* the bias is optional: 2 without it */
    .attrs_size = sizeof(conv2d_attrs),
    .infer = conv2d_infer,
    .forward = conv2d_forward,
    .vjp = conv2d_vjp,
    .jvp = conv2d_jvp,
    .vjp_tangent = conv2d_vjp_tangent,
    .cases = conv2d_relu_maxpool_cases,
    .ncases = NB_COUNT(conv2d_relu_maxpool_cases),
};

nb_node *nb_fuse_conv2d_maxpool(nb_node *conv, int size, int stride, nb_padding padding)
{
    if (!conv || conv->op != &nb_op_conv2d || conv->fused_into || conv->id != conv->graph->n - 1) return NULL;
    const conv2d_attrs *c = conv_at(conv);
    if (size < 1 || (stride != 0 && stride != size) || padding != NB_PAD_VALID || c->conv_oh < size ||
        c->conv_ow < size)
        return NULL;
    conv2d_attrs at = *c;
    at.pool = size;
    nb_node *fused = nb_node_op_new(&nb_op_conv2d_relu_maxpool, conv->ninputs, conv->in, &at);
    if (fused) nb_node_fuse_into(conv, fused);
    return fused;
}

static nb_node *conv2d_new(nb_node *x, nb_node *kernel, nb_node *bias, const nb_conv2d_opts *opts, int relu)
{
    conv2d_attrs at = {0};
    at.stride = opts && opts->stride ? opts->stride : 1;
    at.dilation = opts && opts->dilation ? opts->dilation : 1;
    at.padding = opts ? opts->padding : NB_PAD_VALID;
    at.pad = opts && opts->padding == NB_PAD_EXPLICIT ? opts->pad : 0;
    at.fused_relu = relu != 0;
    if (at.stride < 1 || at.dilation < 1) {
        nb_fail(NB_ERR_ARG, "conv2d: stride (%d) and dilation (%d) must be >= 1 (0 means 1)", at.stride,
                at.dilation);
        return NULL;
    }
    if (at.padding != NB_PAD_VALID && at.padding != NB_PAD_SAME && at.padding != NB_PAD_EXPLICIT) {
        nb_fail(NB_ERR_ARG, "conv2d: unknown padding %d (use NB_PAD_VALID, NB_PAD_SAME or NB_PAD_EXPLICIT)",
                (int)at.padding);
        return NULL;
    }
    if (at.pad < 0 || at.pad > (1 << 20)) {
        nb_fail(NB_ERR_ARG, "conv2d: explicit padding %d must be 0..%d pixels", at.pad, 1 << 20);
        return NULL;
    }
    nb_node *in[3] = {x, kernel, bias};
    return nb_node_op_new(&nb_op_conv2d, bias ? 3 : 2, in, &at);
}

nb_node *nb_conv2d(nb_node *x, nb_node *kernel, nb_node *bias, const nb_conv2d_opts *opts)
{
    return conv2d_new(x, kernel, bias, opts, 0);
}

nb_node *nb_conv2d_relu(nb_node *x, nb_node *kernel, nb_node *bias, const nb_conv2d_opts *opts)
{
    return conv2d_new(x, kernel, bias, opts, 1);
}
