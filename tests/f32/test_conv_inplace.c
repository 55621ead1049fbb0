/* Convolution rows read in place (kernels/conv_avx512.c) against im2col and
 * the AVX-512 GEMM they replace, bit for bit (memcmp): C = 1 (K = 9, the
 * first layer), 3, 32 and 48; O from 1 to 70 (one or two panels, the
 * half-width tail, masked columns); windows 1x1, 3x3, 2x3, 5x5; stride 2,
 * dilation 2; K over one slice of the GEMM (3x3x48 = 432: two slices,
 * 5x5x32 = 800: three), with and without bias and ReLU; row bands; NaN, Inf,
 * 1e30 and -0 in the image (NaN survives the ReLU); images ending on a
 * guard page (the last tile reads no further than its window) and outputs
 * too; and values known by hand. Then the cases it must refuse: padding
 * read, a window past the image, and a class whose kernel is not AVX-512
 * (NB_GEMM names another). Last, the op: conv2d's forward pass (image
 * groups, bands of one image, one and two threads, and the im2col path it
 * keeps for padding) gives the bits of the lowering it had before; and
 * the max pool's window (which the fused op runs on each tile) against its
 * definition: first maximum on ties (+0 before -0 and back), a NaN winning,
 * the last NaN of the window when there are several. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "nabla.h"
#include "ops/ops_internal.h"

static uint64_t rng = 0x9E3779B97F4A7C15u;
static float uniform(void) /* in [-1, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2 - 1);
}

/* n floats ending on the last byte before an inaccessible page. */
static float *guarded(int64_t n, void **base, size_t *span)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), bytes = (size_t)n * sizeof(float);
    *span = (bytes + page - 1) / page * page + page;
    char *b = mmap(NULL, *span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(b != MAP_FAILED);
    assert_int_equal(mprotect(b + *span - page, page, PROT_NONE), 0);
    *base = b;
    return (float *)(b + *span - page - bytes);
}

static bool have_avx512(void) { return nb_gemm_kernel_usable(NB_GEMM_AVX512, false, 64); }

typedef struct {
    int64_t H, W, C, O;
    int fh, fw, stride, dilation;
} conv_case;

static nb_window window_of(const conv_case *t)
{
    nb_window w = {t->H, t->W, t->C, 0, 0, t->fh, t->fw, t->stride, t->dilation, 0, 0};
    w.OH = nb_window_dim(t->H, t->fh, t->stride, t->dilation, NB_PAD_VALID, &w.pad_top);
    w.OW = nb_window_dim(t->W, t->fw, t->stride, t->dilation, NB_PAD_VALID, &w.pad_left);
    return w;
}

/* What the convolution computed before: bias rows, im2col, the AVX-512
 * GEMM with beta 1 (0 without a bias), then the ReLU pass. */
static void reference_rows(const nb_window *w, int64_t O, const float *x, const float *k, const float *b, bool relu,
                           int64_t r0, int64_t r1, float *y)
{
    nb_window band = *w;
    band.OH = r1 - r0;
    band.pad_top = -(int)(r0 * w->stride);
    const int64_t m = band.OH * w->OW, P = (int64_t)w->fh * w->fw * w->C;
    float *cols = malloc((size_t)(m * P) * sizeof(float));
    assert_non_null(cols);
    nb_im2col(&band, 1, x, cols);
    for (int64_t r = 0; b && r < m; r++) memcpy(y + r * O, b, (size_t)O * sizeof(float));
    nb_gemm_with(NB_GEMM_AVX512, false, false, m, O, P, 1, cols, P, k, O, b ? 1 : 0, y, O);
    for (int64_t i = 0; relu && i < m * O; i++) y[i] = y[i] <= 0 ? 0 : y[i];
    free(cols);
}

/* One case: every combination of bias and ReLU, the whole image and a band
 * of rows, image and outputs against guard pages; specials planted in x. */
static void check_case(const conv_case *t)
{
    const nb_window w = window_of(t);
    assert_true(w.OH > 0 && w.OW > 0);
    const int64_t O = t->O, P = (int64_t)t->fh * t->fw * t->C, img = t->H * t->W * t->C, out = w.OH * w.OW * O;
    assert_true(nb_conv_inplace_usable(&w, O, w.OH * w.OW, true));
    void *xb, *yb;
    size_t xs, ys;
    float *x = guarded(img, &xb, &xs), *y = guarded(out, &yb, &ys);
    float *k = malloc((size_t)(P * O) * sizeof(float)), *b = malloc((size_t)O * sizeof(float));
    float *want = malloc((size_t)out * sizeof(float));
    const int64_t preals = nb_conv_inplace_packed_reals(&w, O);
    float *packed = aligned_alloc(64, (size_t)(preals + 16) / 16 * 16 * sizeof(float));
    assert_true(k && b && want && packed && preals >= P * O);
    for (int64_t i = 0; i < img; i++) x[i] = uniform();
    for (int64_t i = 0; i < P * O; i++) k[i] = uniform();
    for (int64_t o = 0; o < O; o++) b[o] = uniform() / 4;
    if (img > 40) x[3] = NAN, x[img / 2] = INFINITY, x[img - 1] = 1e30f, x[img / 3] = -0.0f;
    nb_conv_inplace_pack(&w, O, k, packed);
    const int64_t bands[3][2] = {{0, w.OH}, {w.OH / 3, w.OH}, {w.OH / 2, w.OH / 2 + 1}};
    for (int v = 0; v < 4; v++)
        for (int r = 0; r < 3; r++) {
            const bool bias = v & 1, relu = v & 2;
            const int64_t r0 = bands[r][0], r1 = bands[r][1], n = (r1 - r0) * w.OW * O;
            memset(want, 0x7f, (size_t)out * sizeof(float));
            reference_rows(&w, O, x, k, bias ? b : NULL, relu, r0, r1, want);
            memset(y, 0x7f, (size_t)out * sizeof(float)); /* rows past the band stay as they were */
            float *yband = y + out - n;                     /* against the guard page */
            nb_conv_inplace_rows(&w, O, x, packed, bias ? b : NULL, relu, r0, r1, yband);
            assert_memory_equal(yband, want, (size_t)n * sizeof(float));
            for (int64_t i = 0; i < out - n; i++) assert_true(y[i] > 1e38f); /* 0x7f7f7f7f untouched */
            int64_t nonzero = 0;
            for (int64_t i = 0; i < n; i++) nonzero += want[i] != 0;
            assert_true(nonzero > 0);
        }
    munmap(xb, xs), munmap(yb, ys);
    free(k), free(b), free(want), free(packed);
}

static void test_against_im2col_gemm(void **state)
{
    (void)state;
    if (!have_avx512()) skip();
    static const conv_case cases[] = {
        {28, 28, 1, 32, 3, 3, 1, 1},  /* mnist_cnn conv1: K = 9, OW 26 -> tiles of 9, 9, 8 */
        {26, 26, 32, 64, 3, 3, 1, 1}, /* conv2: K = 288, OW 24 -> 12 + 12, two panels */
        {9, 11, 3, 10, 3, 3, 1, 1},   /* half-width panel, masked columns */
        {7, 30, 3, 17, 2, 3, 1, 1},   /* one column past 16; OW 28 -> 3 tiles */
        {8, 8, 48, 33, 3, 3, 1, 1},   /* K = 432: two slices; a 1-column second panel */
        {9, 9, 32, 70, 5, 5, 1, 1},   /* K = 800: three slices; 3 panels */
        {13, 14, 3, 16, 3, 3, 2, 1},  /* stride 2 */
        {12, 13, 3, 20, 3, 3, 1, 2},  /* dilation 2: one segment per tap */
        {11, 12, 5, 24, 3, 2, 2, 2},  /* both */
        {5, 40, 32, 1, 1, 1, 1, 1},   /* 1x1, one output channel, OW 40 -> 4 tiles of 10 */
        {3, 3, 4, 8, 3, 3, 1, 1},     /* a single output pixel */
        {10, 10, 8, 56, 3, 3, 1, 1},  /* a full panel and a 24-column one (256-bit right half) */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
}

/* Values known by hand, independent of the GEMM: an image of x[h, w] =
 * w + 1 (one channel), kernel channel 0 all ones, channel 1 all -1, bias
 * (0.5, 2): y0 = 9 (j + 2) + 0.5 over the 3x3 window, y1 = 2 - 9 (j + 2),
 * which the ReLU zeroes; a NaN pixel makes its windows NaN, ReLU or not. */
static void test_known_values(void **state)
{
    (void)state;
    if (!have_avx512()) skip();
    const conv_case t = {3, 14, 1, 2, 3, 3, 1, 1};
    const nb_window w = window_of(&t);
    float x[3 * 14], k[9 * 2], b[2] = {0.5f, 2}, y[12 * 2], packed[9 * 32];
    for (int i = 0; i < 3 * 14; i++) x[i] = (float)(i % 14 + 1);
    for (int i = 0; i < 9; i++) k[2 * i] = 1, k[2 * i + 1] = -1;
    nb_conv_inplace_pack(&w, 2, k, packed);
    for (int relu = 0; relu < 2; relu++) {
        nb_conv_inplace_rows(&w, 2, x, packed, b, relu, 0, 1, y);
        for (int j = 0; j < 12; j++) {
            assert_true(y[2 * j] == 9.0f * (float)(j + 2) + 0.5f);
            assert_true(y[2 * j + 1] == (relu ? 0.0f : 2 - 9.0f * (float)(j + 2)));
        }
    }
    x[14 + 5] = NAN; /* row 1, column 5: in the windows of j = 3, 4, 5 */
    nb_conv_inplace_rows(&w, 2, x, packed, NULL, true, 0, 1, y);
    for (int j = 0; j < 12; j++) {
        const bool hit = j >= 3 && j <= 5;
        assert_int_equal(isnan(y[2 * j]) != 0, hit);
        assert_int_equal(isnan(y[2 * j + 1]) != 0, hit);
        if (!hit) assert_true(y[2 * j] == 9.0f * (float)(j + 2) && y[2 * j + 1] == 0);
    }
}

static void test_refusals(void **state)
{
    (void)state;
    const conv_case t = {10, 10, 3, 8, 3, 3, 1, 1};
    nb_window w = window_of(&t);
    assert_int_equal(nb_conv_inplace_usable(&w, 8, 64, true), have_avx512());
    nb_window pad = w;
    pad.pad_top = 1, pad.OH = 10; /* 'same': the first and last rows read padding */
    assert_false(nb_conv_inplace_usable(&pad, 8, 64, true));
    pad = w, pad.pad_left = 1, pad.OW = 10;
    assert_false(nb_conv_inplace_usable(&pad, 8, 64, true));
    nb_window past = w;
    past.OW = w.OW + 1; /* one window past the right edge */
    assert_false(nb_conv_inplace_usable(&past, 8, 64, true));
    past = w, past.OH = w.OH + 1;
    assert_false(nb_conv_inplace_usable(&past, 8, 64, true));
    nb_window empty = w;
    empty.C = 0; /* no window values */
    assert_false(nb_conv_inplace_usable(&empty, 8, 64, true));
    assert_false(nb_conv_inplace_usable(&w, 0, 64, true));
    /* The class's kernel decides: with NB_GEMM naming the portable kernel,
     * the product would not run the AVX-512 GEMM, so neither does this. */
    nb_gemm_select_reset("builtin", NULL, NULL);
    assert_false(nb_conv_inplace_usable(&w, 8, 64, true));
    nb_gemm_select_reset("fixed", NULL, NULL);
    assert_int_equal(nb_conv_inplace_usable(&w, 8, 64, true), have_avx512());
}

/* The forward pass the op had before: the whole batch lowered, one
 * AVX-512 GEMM per image onto bias rows, the ReLU after. */
static void lowered_forward(const nb_tensor *x, const nb_tensor *k, const nb_tensor *b, const nb_conv2d_opts *o,
                            bool relu, const nb_tensor *y, float *want)
{
    nb_window w = {x->shape[1], x->shape[2], x->shape[3], y->shape[1], y->shape[2], (int)k->shape[0],
                   (int)k->shape[1], o->stride ? o->stride : 1, o->dilation ? o->dilation : 1, 0, 0};
    int ph, pw;
    nb_window_dim(w.H, w.fh, w.stride, w.dilation, o->padding, &ph);
    nb_window_dim(w.W, w.fw, w.stride, w.dilation, o->padding, &pw);
    if (o->padding == NB_PAD_EXPLICIT) ph = pw = o->pad;
    w.pad_top = ph, w.pad_left = pw;
    const int64_t N = x->shape[0], O = k->shape[3], P = (int64_t)w.fh * w.fw * w.C, m = w.OH * w.OW;
    float *cols = malloc((size_t)(m * P) * sizeof(float));
    assert_non_null(cols);
    for (int64_t n = 0; n < N; n++) {
        float *yn = want + n * m * O;
        nb_im2col(&w, 1, x->data + n * w.H * w.W * w.C, cols);
        for (int64_t r = 0; r < m; r++) memcpy(yn + r * O, b->data, (size_t)O * sizeof(float));
        nb_gemm_with(NB_GEMM_AVX512, false, false, m, O, P, 1, cols, P, k->data, O, 1, yn, O);
        for (int64_t i = 0; relu && i < m * O; i++) yn[i] = yn[i] <= 0 ? 0 : yn[i];
    }
    free(cols);
}

static void op_case(int64_t N, int64_t H, int64_t C, int64_t O, nb_conv2d_opts o, bool relu, int threads)
{
    nb_set_num_threads(threads);
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", 4, (int64_t[]){N, H, H + 1, C});
    nb_node *k = nb_param(g, "k", 4, (int64_t[]){3, 3, C, O}), *b = nb_param(g, "b", 1, (int64_t[]){O});
    nb_rng r;
    nb_rng_seed(&r, (uint64_t)(N * 131 + C));
    nb_tensor_fill_uniform(nb_value(x), &r, -1, 1);
    nb_tensor_fill_uniform(nb_value(k), &r, -0.5, 0.5);
    nb_tensor_fill_uniform(nb_value(b), &r, -0.2, 0.2);
    nb_value(x)->data[5] = NAN;
    nb_node *y = relu ? nb_conv2d_relu(x, k, b, &o) : nb_conv2d(x, k, b, &o);
    assert_non_null(y);
    assert_int_equal(nb_forward(g), NB_OK);
    const nb_tensor *v = nb_value(y);
    float *want = malloc((size_t)v->size * sizeof(float));
    assert_non_null(want);
    lowered_forward(nb_value(x), nb_value(k), nb_value(b), &o, relu, v, want);
    assert_memory_equal(v->data, want, (size_t)v->size * sizeof(float));
    int64_t positive = 0, nans = 0;
    for (int64_t i = 0; i < v->size; i++) positive += v->data[i] > 0, nans += isnan(v->data[i]) != 0;
    assert_true(positive > v->size / 4);
    assert_true(nans > 0 && nans <= 9 * O); /* the NaN pixel reached its windows, and only them */
    /* a second pass after a reshape to another batch, on the same buffers */
    if (N > 1) {
        assert_int_equal(nb_input_reshape(x, 4, (int64_t[]){N - 1, H, H + 1, C}), NB_OK);
        assert_int_equal(nb_forward(g), NB_OK);
        lowered_forward(nb_value(x), nb_value(k), nb_value(b), &o, relu, nb_value(y), want);
        assert_memory_equal(nb_value(y)->data, want, (size_t)nb_value(y)->size * sizeof(float));
    }
    /* batch 0: nothing to compute, nothing packed, an empty output */
    assert_int_equal(nb_input_reshape(x, 4, (int64_t[]){0, H, H + 1, C}), NB_OK);
    assert_int_equal(nb_forward(g), NB_OK);
    assert_int_equal(nb_value(y)->size, 0);
    assert_int_equal(nb_value(y)->shape[0], 0);
    free(want);
    nb_graph_free(g);
    nb_set_num_threads(0);
}

static void test_op_forward_as_before(void **state)
{
    (void)state;
    if (!have_avx512()) skip();
    const nb_conv2d_opts valid = {1, 1, NB_PAD_VALID, 0}, strided = {2, 1, NB_PAD_VALID, 0};
    const nb_conv2d_opts same = {1, 1, NB_PAD_SAME, 0}, dilated = {1, 2, NB_PAD_VALID, 0};
    const nb_conv2d_opts same_s2 = {2, 1, NB_PAD_SAME, 0}, pad1 = {1, 1, NB_PAD_EXPLICIT, 1};
    for (int threads = 1; threads <= 2; threads++) {
        op_case(50, 28, 1, 32, valid, true, threads); /* conv1 of mnist_cnn: groups of 43 images */
        op_case(3, 26, 32, 64, valid, true, threads); /* conv2: one image a group */
        op_case(1, 26, 32, 64, valid, false, threads); /* one image: bands of output rows */
        op_case(2, 15, 3, 20, strided, true, threads);
        op_case(2, 15, 3, 20, dilated, false, threads);
        op_case(2, 12, 5, 8, same, true, threads); /* padding: a zero-bordered copy per image */
        op_case(1, 12, 24, 24, same, false, threads); /* ... per band of one image */
        op_case(3, 14, 24, 40, same_s2, true, threads);
        op_case(2, 9, 3, 17, pad1, false, threads);
    }
}

/* Padding made explicit (nb_pad_band): a window that reads padding, as
 * conv2d resolves it, with its output size. */
typedef struct {
    int64_t H, W, C, O;
    int fh, fw, stride, dilation;
    nb_padding padding;
    int pad; /* NB_PAD_EXPLICIT: on every side */
} padded_case;

static nb_window padded_window(const padded_case *t)
{
    nb_window w = {t->H, t->W, t->C, 0, 0, t->fh, t->fw, t->stride, t->dilation, 0, 0};
    if (t->padding == NB_PAD_EXPLICIT) {
        w.pad_top = w.pad_left = t->pad;
        w.OH = (t->H + 2 * t->pad - (t->fh - 1) * t->dilation - 1) / t->stride + 1;
        w.OW = (t->W + 2 * t->pad - (t->fw - 1) * t->dilation - 1) / t->stride + 1;
        return w;
    }
    w.OH = nb_window_dim(t->H, t->fh, t->stride, t->dilation, t->padding, &w.pad_top);
    w.OW = nb_window_dim(t->W, t->fw, t->stride, t->dilation, t->padding, &w.pad_left);
    return w;
}

/* The copy by its definition: buffer (t, u) is x[r0*s - pt + t, u - pl]
 * inside the image, 0 outside (both signs of zero kept: a -0 pixel is
 * copied as -0). */
static void check_pad_copy(const nb_window *w, const float *x, int64_t r0, int64_t r1, const float *buf)
{
    const nb_window b = nb_window_padded_band(w, r0, r1);
    assert_int_equal(b.OH, r1 - r0);
    assert_int_equal(b.OW, w->OW);
    assert_int_equal(b.pad_top, 0);
    assert_int_equal(b.pad_left, 0);
    assert_false(nb_window_reads_padding(&b));
    for (int64_t t = 0; t < b.H; t++)
        for (int64_t u = 0; u < b.W; u++)
            for (int64_t c = 0; c < w->C; c++) {
                const int64_t ih = r0 * w->stride - w->pad_top + t, iw = u - w->pad_left;
                const bool in = ih >= 0 && ih < w->H && iw >= 0 && iw < w->W;
                const float want = in ? x[(ih * w->W + iw) * w->C + c] : 0.0f;
                const float got = buf[(t * b.W + u) * w->C + c];
                assert_memory_equal(&got, &want, sizeof(float));
            }
}

/* Rows [r0, r1) the im2col way (padding as zeros in cols) with the AVX-512
 * GEMM, against the in-place rows over the band's zero-bordered copy: the
 * same bits, every band, bias and ReLU, NaN/Inf/1e30/-0 in x. */
static void check_padded_case(const padded_case *t)
{
    const nb_window w = padded_window(t);
    assert_true(w.OH > 0 && w.OW > 0);
    assert_true(nb_window_reads_padding(&w));
    assert_false(nb_conv_inplace_usable(&w, t->O, w.OH * w.OW, true)); /* only through the copy */
    const int64_t O = t->O, P = (int64_t)t->fh * t->fw * t->C, img = t->H * t->W * t->C, out = w.OH * w.OW * O;
    const nb_window whole = nb_window_padded_band(&w, 0, w.OH);
    float *x = malloc((size_t)img * sizeof(float)), *k = malloc((size_t)(P * O) * sizeof(float));
    float *b = malloc((size_t)O * sizeof(float)), *want = malloc((size_t)out * sizeof(float));
    float *y = malloc((size_t)out * sizeof(float)), *cols = malloc((size_t)(out / O * P) * sizeof(float));
    void *bb;
    size_t bs;
    float *buf = guarded(whole.H * whole.W * whole.C, &bb, &bs); /* the copy never writes past its size */
    float *packed = aligned_alloc(64, (size_t)(nb_conv_inplace_packed_reals(&w, O) + 16) / 16 * 16 * sizeof(float));
    assert_true(x && k && b && want && y && cols && packed);
    for (int64_t i = 0; i < img; i++) x[i] = uniform();
    for (int64_t i = 0; i < P * O; i++) k[i] = uniform();
    for (int64_t o = 0; o < O; o++) b[o] = uniform() / 4;
    x[0] = -0.0f; /* a corner: its windows also read padding */
    if (img > 40) x[3] = NAN, x[img / 2] = INFINITY, x[img - 1] = 1e30f;
    nb_conv_inplace_pack(&w, O, k, packed);
    const int64_t bands[3][2] = {{0, w.OH}, {w.OH / 3, w.OH}, {w.OH / 2, w.OH / 2 + 1}};
    for (int v = 0; v < 4; v++)
        for (int r = 0; r < 3; r++) {
            const bool bias = v & 1, relu = v & 2;
            const int64_t r0 = bands[r][0], r1 = bands[r][1], m = (r1 - r0) * w.OW;
            nb_window band = w;
            band.OH = r1 - r0, band.pad_top = w.pad_top - (int)(r0 * w.stride);
            nb_im2col(&band, 1, x, cols);
            for (int64_t i = 0; bias && i < m; i++) memcpy(want + i * O, b, (size_t)O * sizeof(float));
            nb_gemm_with(NB_GEMM_AVX512, false, false, m, O, P, 1, cols, P, k, O, bias ? 1 : 0, want, O);
            for (int64_t i = 0; relu && i < m * O; i++) want[i] = want[i] <= 0 ? 0 : want[i];
            memset(buf, 0x7f, (size_t)(whole.H * whole.W * whole.C) * sizeof(float)); /* stale values */
            nb_pad_band(&w, x, r0, r1, buf);
            check_pad_copy(&w, x, r0, r1, buf);
            const nb_window wb = nb_window_padded_band(&w, r0, r1);
            assert_true(nb_conv_inplace_usable(&wb, O, m, bias));
            nb_conv_inplace_rows(&wb, O, buf, packed, bias ? b : NULL, relu, 0, r1 - r0, y);
            assert_memory_equal(y, want, (size_t)(m * O) * sizeof(float));
        }
    munmap(bb, bs);
    free(x), free(k), free(b), free(want), free(y), free(cols), free(packed);
}

static void test_padded_copy(void **state)
{
    (void)state;
    if (!have_avx512()) skip();
    static const padded_case cases[] = {
        {28, 28, 24, 24, 3, 3, 1, 1, NB_PAD_SAME, 0}, /* the ResNet's stage 1 */
        {28, 28, 24, 48, 3, 3, 2, 1, NB_PAD_SAME, 0}, /* stride 2 'same': padding below and right only */
        {7, 7, 96, 96, 3, 3, 1, 1, NB_PAD_SAME, 0},   /* stage 3: K = 864, three slices */
        {9, 11, 1, 5, 3, 3, 1, 1, NB_PAD_SAME, 0},    /* C = 1, O not a multiple of 16 */
        {6, 5, 3, 17, 2, 2, 1, 1, NB_PAD_SAME, 0},    /* even window: padding below and right only */
        {7, 6, 2, 33, 4, 3, 2, 1, NB_PAD_SAME, 0},    /* odd sizes, stride 2 */
        {5, 5, 3, 20, 3, 3, 2, 2, NB_PAD_SAME, 0},    /* stride and dilation 2 */
        {8, 9, 4, 9, 3, 3, 1, 2, NB_PAD_SAME, 0},     /* dilation 2: one segment per tap */
        {6, 6, 2, 24, 3, 3, 2, 1, NB_PAD_EXPLICIT, 1}, /* PyTorch's padding=1 at stride 2 */
        {4, 5, 1, 2, 3, 3, 1, 1, NB_PAD_EXPLICIT, 2},  /* corner outputs see one real pixel */
        {3, 3, 5, 7, 3, 3, 1, 1, NB_PAD_EXPLICIT, 3},  /* whole rows and columns of padding only */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_padded_case(&cases[i]);
}

/* The input VJP: dX = sum over the taps of dZ's pixels times the kernel,
 * by its definition in double: the gradient of sum(dZ * conv(x, k)). */
static void input_vjp_by_definition(const nb_window *w, int64_t O, const float *k, const float *dz, double *dx,
                                    double *mag)
{
    const int64_t C = w->C;
    for (int64_t e = 0; e < w->H * w->W * C; e++) dx[e] = 0, mag[e] = 0;
    for (int64_t i = 0; i < w->OH; i++)
        for (int64_t j = 0; j < w->OW; j++)
            for (int p = 0; p < w->fh; p++)
                for (int q = 0; q < w->fw; q++) {
                    const int64_t h = i * w->stride + (int64_t)p * w->dilation - w->pad_top;
                    const int64_t v = j * w->stride + (int64_t)q * w->dilation - w->pad_left;
                    if (h < 0 || h >= w->H || v < 0 || v >= w->W) continue;
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t o = 0; o < O; o++) {
                            const double t = (double)dz[(i * w->OW + j) * O + o] * k[((p * w->fw + q) * C + c) * O + o];
                            dx[(h * w->W + v) * C + c] += t, mag[(h * w->W + v) * C + c] += fabs(t);
                        }
                }
}

/* The kernel VJP by its definition in double: dK[p,q,c,o] = sum over the
 * images and pixels of x at the tap times dZ (x: N images). */
static void kernel_vjp_by_definition(const nb_window *w, int64_t N, int64_t O, const float *x, const float *dz,
                                     double *dk, double *mag)
{
    const int64_t C = w->C, P = (int64_t)w->fh * w->fw * C;
    for (int64_t e = 0; e < P * O; e++) dk[e] = 0, mag[e] = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < w->OH; i++)
            for (int64_t j = 0; j < w->OW; j++)
                for (int p = 0; p < w->fh; p++)
                    for (int q = 0; q < w->fw; q++) {
                        const int64_t h = i * w->stride + (int64_t)p * w->dilation - w->pad_top;
                        const int64_t v = j * w->stride + (int64_t)q * w->dilation - w->pad_left;
                        if (h < 0 || h >= w->H || v < 0 || v >= w->W) continue;
                        for (int64_t c = 0; c < C; c++)
                            for (int64_t o = 0; o < O; o++) {
                                const double t = (double)x[((n * w->H + h) * w->W + v) * C + c] *
                                                 dz[((n * w->OH + i) * w->OW + j) * O + o];
                                dk[((p * w->fw + q) * C + c) * O + o] += t;
                                mag[((p * w->fw + q) * C + c) * O + o] += fabs(t);
                            }
                    }
}

/* conv2d's kernel VJP (the op's function, K = 2 seeds, accumulating)
 * against the definition, at 1 and 2 threads (its per-thread partials make
 * the bits a function of the thread count: twice at 2 threads, the same
 * bits). With AVX-512 it reads the windows in place where a window segment
 * holds 16 values or more (nb_conv_kernel_grad_rows: fw*C, or C with
 * dilation); else it is a GEMM, formed transposed where O < 32 and P >= 128,
 * else as cols^T dZ. */
static void kernel_vjp_case(int64_t N, int64_t H, int64_t C, int64_t O, nb_conv2d_opts o)
{
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", 4, (int64_t[]){N, H, H + 1, C});
    nb_node *kn = nb_param(g, "k", 4, (int64_t[]){3, 3, C, O});
    nb_rng r;
    nb_rng_seed(&r, (uint64_t)(H * 5 + C + O));
    nb_tensor_fill_uniform(nb_value(x), &r, -1, 1);
    nb_tensor_fill_uniform(nb_value(kn), &r, -1, 1);
    nb_node *y = nb_conv2d(x, kn, NULL, &o);
    assert_non_null(y);
    assert_int_equal(nb_forward(g), NB_OK);
    const nb_tensor *yv = nb_value(y);
    nb_window w = {H, H + 1, C, yv->shape[1], yv->shape[2], 3, 3, o.stride, o.dilation, 0, 0};
    nb_window_dim(w.H, 3, o.stride, o.dilation, o.padding, &w.pad_top);
    nb_window_dim(w.W, 3, o.stride, o.dilation, o.padding, &w.pad_left);
    const int64_t K = 2, PO = 9 * C * O;
    float *dz = malloc((size_t)(K * yv->size) * sizeof(float)), *dk[3];
    double *want = malloc((size_t)PO * sizeof(double)), *mag = malloc((size_t)PO * sizeof(double));
    for (int v = 0; v < 3; v++) dk[v] = malloc((size_t)(K * PO) * sizeof(float));
    assert_true(dz && want && mag && dk[0] && dk[1] && dk[2]);
    for (int64_t e = 0; e < K * yv->size; e++) dz[e] = uniform();
    for (int v = 0; v < 3; v++) {
        nb_set_num_threads(v ? 2 : 1);
        for (int64_t e = 0; e < K * PO; e++) dk[v][e] = -0.5f;
        assert_int_equal(y->op->vjp(y, 1, K, dz, dk[v], true), NB_OK);
    }
    nb_set_num_threads(0);
    assert_memory_equal(dk[1], dk[2], (size_t)(K * PO) * sizeof(float));
    for (int64_t s = 0; s < K; s++) {
        kernel_vjp_by_definition(&w, N, O, nb_value(x)->data, dz + s * yv->size, want, mag);
        int64_t nonzero = 0;
        for (int64_t e = 0; e < PO; e++)
            for (int v = 0; v < 2; v++) {
                const float got = dk[v][s * PO + e] + 0.5f;
                nonzero += v == 0 && got != 0;
                assert_true(fabs(got - want[e]) <= 2e-6 * mag[e] + 1e-5);
            }
        assert_true(nonzero > PO / 2);
    }
    for (int v = 0; v < 3; v++) free(dk[v]);
    free(dz), free(want), free(mag);
    nb_graph_free(g);
}

static void test_kernel_vjp(void **state)
{
    (void)state;
    const nb_conv2d_opts same = {1, 1, NB_PAD_SAME, 0};
    kernel_vjp_case(3, 12, 24, 24, same);                               /* transposed: P = 216, O = 24 */
    kernel_vjp_case(2, 9, 16, 5, (nb_conv2d_opts){2, 1, NB_PAD_SAME, 0}); /* transposed, O = 5, stride 2 */
    kernel_vjp_case(2, 8, 15, 17, (nb_conv2d_opts){1, 1, NB_PAD_VALID, 0}); /* P = 135, O = 17 */
    kernel_vjp_case(2, 7, 14, 24, same);                                /* P = 126: cols^T dZ */
    kernel_vjp_case(2, 7, 8, 48, same);                                 /* O = 48: cols^T dZ */
    kernel_vjp_case(1, 5, 1, 24, same);                                 /* C = 1, P = 9 */
    kernel_vjp_case(2, 9, 16, 20, (nb_conv2d_opts){1, 2, NB_PAD_SAME, 0}); /* dilation 2: segments of C */
    kernel_vjp_case(2, 6, 32, 100, same);  /* segments of 96 (3 x 32), 9 blocks of 11-12 channels */
    kernel_vjp_case(1, 6, 6, 10, (nb_conv2d_opts){1, 1, NB_PAD_VALID, 0}); /* 18-value segments, one block of 10 */
}

/* conv2d's input VJP (the op's own function, K = 2 seeds) against the
 * definition, as the kernels choose it (NB_GEMM=fixed: read in place, as
 * one convolution at stride 1 and as one per parity class at strides 2-4)
 * and with the lowering (NB_GEMM=builtin: no in-place rows): within float
 * rounding of the terms' magnitudes, the same bits at 1 and 2 threads,
 * accumulating onto what dx holds and (once more in place) overwriting what
 * it holds, NaN in dZ reaching only the pixels whose windows hold it.
 * Dilation with a stride, explicit padding wider than the window and C = 1
 * keep the lowering (same checks). */
static void input_vjp_case(int64_t N, int64_t H, int64_t W, int64_t C, int64_t O, int fh, int fw,
                           nb_conv2d_opts o)
{
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", 4, (int64_t[]){N, H, W, C});
    nb_node *kn = nb_param(g, "k", 4, (int64_t[]){fh, fw, C, O});
    nb_rng r;
    nb_rng_seed(&r, (uint64_t)(H * 7 + C * 3 + O));
    nb_tensor_fill_uniform(nb_value(x), &r, -1, 1);
    nb_tensor_fill_uniform(nb_value(kn), &r, -1, 1);
    nb_node *y = nb_conv2d(x, kn, NULL, &o);
    assert_non_null(y);
    assert_int_equal(nb_forward(g), NB_OK);
    const nb_tensor *yv = nb_value(y);
    const int64_t K = 2, zsize = yv->size, img = H * W * C, zimg = zsize / (N > 0 ? N : 1);
    nb_window w = {H, W, C, yv->shape[1], yv->shape[2], fh, fw, o.stride, o.dilation, 0, 0};
    if (o.padding == NB_PAD_EXPLICIT) {
        w.pad_top = w.pad_left = o.pad;
    } else {
        nb_window_dim(H, fh, o.stride, o.dilation, o.padding, &w.pad_top);
        nb_window_dim(W, fw, o.stride, o.dilation, o.padding, &w.pad_left);
    }
    float *dz = malloc((size_t)(K * zsize + 1) * sizeof(float)), *dx[4];
    double *want = malloc((size_t)(img + 1) * sizeof(double)), *mag = malloc((size_t)(img + 1) * sizeof(double));
    for (int v = 0; v < 4; v++) dx[v] = malloc((size_t)(K * N * img + 1) * sizeof(float));
    assert_true(dz && want && mag && dx[0] && dx[1] && dx[2] && dx[3]);
    for (int64_t e = 0; e < K * zsize; e++) dz[e] = uniform();
    if (N > 0) /* seed 1, the last image, its centre pixel (whose windows hold image pixels) */
        dz[K * zsize - zimg + (w.OH / 2 * w.OW + w.OW / 2) * O] = NAN;
    const char *spec[4] = {"fixed", "fixed", "builtin", "fixed"};
    const float before[4] = {0.25f, 0.25f, 0.25f, 0}; /* what each check subtracts */
    for (int v = 0; v < 4; v++) { /* in place at 1 and 2 threads, the lowering, in place overwriting */
        nb_set_num_threads(v == 1 ? 2 : 1);
        nb_gemm_select_reset(spec[v], NULL, NULL);
        for (int64_t e = 0; e < K * N * img; e++) dx[v][e] = v < 3 ? 0.25f : 7.0f; /* accumulated onto, or not */
        assert_int_equal(y->op->vjp(y, 0, K, dz, dx[v], v < 3), NB_OK);
    }
    nb_gemm_select_reset("fixed", NULL, NULL);
    nb_set_num_threads(0);
    assert_memory_equal(dx[0], dx[1], (size_t)(K * N * img) * sizeof(float));
    int64_t nans = 0, nonzero = 0, reached = 0;
    for (int64_t s = 0; s < K * N; s++) {
        input_vjp_by_definition(&w, O, nb_value(kn)->data, dz + s * zimg, want, mag);
        for (int64_t e = 0; e < img; e++)
            for (int v = 0; v < 4; v += v == 0 ? 2 : 1) {
                const float got = dx[v][s * img + e] - before[v];
                if (isnan(want[e])) {
                    assert_true(isnan(got));
                    nans += v == 0;
                    continue;
                }
                assert_false(isnan(got));
                nonzero += v == 0 && got != 0;
                reached += v == 0 && mag[e] != 0;
                assert_true(fabs(got - want[e]) <= 2e-6 * mag[e] + 1e-6);
            }
    }
    if (N > 0) assert_true(nans > 0 && nans <= (int64_t)fh * fw * C); /* its windows' pixels only */
    /* not all zero: at a stride past the window, pixels no window reads have none */
    if (N > 0) assert_true(5 * reached >= K * N * img && nonzero > reached / 2);
    for (int v = 0; v < 4; v++) free(dx[v]);
    free(dz), free(want), free(mag);
    nb_graph_free(g);
}

static void test_input_vjp_inplace(void **state)
{
    (void)state;
    const nb_conv2d_opts same = {1, 1, NB_PAD_SAME, 0}, valid = {1, 1, NB_PAD_VALID, 0};
    input_vjp_case(1, 3, 3, 2, 17, 1, 1, valid);                    /* 1x1, O > C: kr's size is the kernel's */
    input_vjp_case(1, 3, 4, 17, 5, 1, 2, valid);                    /* O < C */
    input_vjp_case(3, 28, 28, 24, 24, 3, 3, same);                    /* the ResNet's stage 1 */
    input_vjp_case(2, 7, 7, 96, 96, 3, 3, same);                      /* stage 3: K = 864 */
    input_vjp_case(1, 9, 11, 5, 17, 3, 3, same);                      /* one image: bands of rows */
    input_vjp_case(2, 9, 8, 3, 20, 3, 2, valid);                      /* valid, O past 16 */
    input_vjp_case(2, 6, 7, 4, 33, 2, 2, same);                       /* even window: padding below */
    input_vjp_case(2, 9, 10, 3, 9, 3, 3, (nb_conv2d_opts){1, 2, NB_PAD_SAME, 0});     /* dilation 2 */
    input_vjp_case(2, 8, 9, 2, 7, 3, 3, (nb_conv2d_opts){1, 1, NB_PAD_EXPLICIT, 1}); /* padding 1 */
    input_vjp_case(1, 4, 5, 2, 3, 3, 3, (nb_conv2d_opts){1, 1, NB_PAD_EXPLICIT, 3}); /* wider: lowering */
    input_vjp_case(2, 9, 9, 3, 24, 3, 3, (nb_conv2d_opts){2, 1, NB_PAD_SAME, 0});    /* stride 2, odd: pt = 1 */
    input_vjp_case(2, 28, 28, 24, 48, 3, 3, (nb_conv2d_opts){2, 1, NB_PAD_SAME, 0});  /* the ResNet's: pt = 0 */
    input_vjp_case(2, 8, 10, 24, 48, 1, 1, (nb_conv2d_opts){2, 1, NB_PAD_VALID, 0});  /* 1x1: 3 classes empty */
    input_vjp_case(1, 10, 11, 5, 7, 2, 2, (nb_conv2d_opts){3, 1, NB_PAD_VALID, 0});   /* stride 3 > window */
    input_vjp_case(2, 9, 8, 4, 10, 3, 3, (nb_conv2d_opts){2, 1, NB_PAD_EXPLICIT, 1}); /* PyTorch's padding 1 */
    input_vjp_case(1, 13, 13, 3, 5, 5, 5, (nb_conv2d_opts){4, 1, NB_PAD_SAME, 0});    /* stride 4, 16 classes */
    input_vjp_case(1, 9, 9, 3, 5, 3, 3, (nb_conv2d_opts){2, 2, NB_PAD_SAME, 0});      /* with dilation: lowering */
    input_vjp_case(2, 8, 8, 1, 24, 3, 3, same);                       /* C = 1: its own path */
    input_vjp_case(0, 8, 8, 3, 24, 3, 3, same);                       /* batch 0 */
}

/* One window by the definition, channel by channel. */
static void pool_by_definition(const float *x, int64_t W, int64_t C, int64_t h0, int64_t h1, int64_t w0, int64_t w1,
                               float *y, int32_t *a)
{
    for (int64_t c = 0; c < C; c++) {
        float best = x[(h0 * W + w0) * C + c];
        int32_t arg = (int32_t)((h0 * W + w0) * C + c);
        for (int64_t h = h0; h < h1; h++)
            for (int64_t v = w0; v < w1; v++) {
                const int32_t off = (int32_t)((h * W + v) * C + c);
                if (x[off] > best || isnan(x[off])) best = x[off], arg = off;
            }
        y[c] = best, a[c] = arg;
    }
}

static void test_max_pool_window(void **state)
{
    (void)state;
    static const int64_t channels[] = {1, 15, 16, 17, 40, 64};
    enum { H = 7, W = 6 };
    float x[H * W * 64], y[64], want[64];
    int32_t a[64], want_a[64];
    for (size_t t = 0; t < sizeof channels / sizeof channels[0]; t++) {
        const int64_t C = channels[t];
        for (int64_t i = 0; i < H * W * C; i++) x[i] = (float)(int)(uniform() * 3); /* many ties */
        x[C + 2 % C] = -0.0f, x[2 * C] = NAN, x[(W + 1) * C + C - 1] = NAN, x[(2 * W + 2) * C] = NAN;
        x[(W + 1) * C] = INFINITY, x[(3 * W + 3) * C + C / 2] = -INFINITY;
        for (int f = 1; f <= 3; f++)
            for (int64_t h0 = 0; h0 + f <= H; h0 += f)
                for (int64_t w0 = 0; w0 + f <= W; w0 += f) {
                    pool_by_definition(x, W, C, h0, h0 + f, w0, w0 + f, want, want_a);
                    /* from a band starting at row h0 (h_first) and from the whole image */
                    for (int band = 0; band < 2; band++) {
                        const int64_t h_first = band ? h0 : 0;
                        nb_max_pool_window(x + h_first * W * C, h_first, W, C, h0, h0 + f, w0, w0 + f, y, a);
                        assert_memory_equal(y, want, (size_t)C * sizeof(float));
                        assert_memory_equal(a, want_a, (size_t)C * sizeof(int32_t));
                    }
                }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_im2col_gemm),
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_padded_copy),
        cmocka_unit_test(test_input_vjp_inplace),
        cmocka_unit_test(test_kernel_vjp),
        cmocka_unit_test(test_op_forward_as_before),
        cmocka_unit_test(test_max_pool_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
