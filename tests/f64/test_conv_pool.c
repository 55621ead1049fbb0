/* conv2d, max_pool2d and avg_pool2d in double: forward against a direct
 * seven-loop convolution, output shapes against TensorFlow's formulas,
 * small cases checked by hand, error messages, gradient checks of both
 * modes, and batched seeds against one seed at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nabla.h"

/* |a - b| <= tol, saying which values differed. */
#define assert_close(a, b, tol) check_close((a), (b), (tol), __FILE__, __LINE__)
static void check_close(double a, double b, double tol, const char *file, int line)
{
    if (!(fabs(a - b) <= tol)) fail_msg("%s:%d: %.17g != %.17g (tolerance %g)", file, line, a, b, tol);
}

static void fill(nb_tensor *t, nb_rng *r) { nb_tensor_fill_uniform(t, r, -1, 1); }

/* TensorFlow's output size and leading pad of one axis, written out here
 * independently of the library: valid out = ceil((in - eff + 1) / s);
 * same out = ceil(in / s), total pad max((out-1)s + eff - in, 0). */
static int64_t tf_out(int64_t in, int f, int s, int d, nb_padding pad, int *before)
{
    int64_t eff = (int64_t)(f - 1) * d + 1;
    *before = 0;
    if (pad == NB_PAD_VALID) return (in - eff + 1 + s - 1) / s;
    int64_t out = (in + s - 1) / s, total = (out - 1) * s + eff - in;
    if (total < 0) total = 0;
    *before = (int)(total / 2);
    return out;
}

/* The direct definition: seven loops, zero outside the image. */
static void conv_ref(const nb_tensor *x, const nb_tensor *k, const nb_tensor *b, int s, int d, int pt, int pl,
                     int64_t OH, int64_t OW, double *y)
{
    int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    int64_t fh = k->shape[0], fw = k->shape[1], O = k->shape[3];
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < OH; i++)
            for (int64_t j = 0; j < OW; j++)
                for (int64_t o = 0; o < O; o++) {
                    double acc = b ? b->data[o] : 0;
                    for (int64_t p = 0; p < fh; p++)
                        for (int64_t q = 0; q < fw; q++)
                            for (int64_t c = 0; c < C; c++) {
                                int64_t h = i * s + p * d - pt, w = j * s + q * d - pl;
                                if (h < 0 || h >= H || w < 0 || w >= W) continue;
                                acc += x->data[((n * H + h) * W + w) * C + c] * k->data[((p * fw + q) * C + c) * O + o];
                            }
                    y[((n * OH + i) * OW + j) * O + o] = acc;
                }
}

static void test_conv_forward_matches_direct(void **state)
{
    (void)state;
    nb_rng r;
    nb_rng_seed(&r, 7);
    static const int sizes[][2] = {{7, 5}, {6, 6}, {5, 8}, {4, 3}};
    static const int kernels[][2] = {{3, 3}, {2, 3}, {1, 1}, {4, 2}};
    double *ref = malloc(sizeof(double) * 4096);
    assert_non_null(ref);
    int checked = 0;
    for (int si = 0; si < 4; si++)
        for (int ki = 0; ki < 4; ki++)
            for (int s = 1; s <= 3; s++)
                for (int d = 1; d <= 2; d++)
                    for (int pad = 0; pad <= 1; pad++)
                        for (int cin = 1; cin <= 3; cin += 2)
                            for (int cout = 1; cout <= 4; cout += 3) {
                                int H = sizes[si][0], W = sizes[si][1], fh = kernels[ki][0], fw = kernels[ki][1];
                                int pt, pl;
                                int64_t OH = tf_out(H, fh, s, d, pad, &pt), OW = tf_out(W, fw, s, d, pad, &pl);
                                int bias = (si + ki + s + d) % 2;
                                nb_graph *g = nb_graph_new();
                                nb_node *x = nb_input(g, "x", 4, (int64_t[]){2, H, W, cin});
                                nb_node *k = nb_param(g, "k", 4, (int64_t[]){fh, fw, cin, cout});
                                nb_node *b = bias ? nb_param(g, "b", 1, (int64_t[]){cout}) : NULL;
                                fill(nb_value(x), &r), fill(nb_value(k), &r);
                                if (b) fill(nb_value(b), &r);
                                nb_conv2d_opts o = {s, d, (nb_padding)pad, 0};
                                nb_node *y = nb_conv2d(x, k, b, &o);
                                if (OH <= 0 || OW <= 0) { /* 'valid' with a window larger than the input */
                                    assert_int_equal(pad, NB_PAD_VALID);
                                    assert_null(y);
                                    assert_non_null(strstr(nb_last_error(), "larger than input"));
                                    nb_graph_free(g);
                                    continue;
                                }
                                assert_non_null(y);
                                assert_int_equal(nb_forward(g), NB_OK);
                                const nb_tensor *Y = nb_value(y);
                                assert_int_equal(Y->rank, 4);
                                assert_int_equal(Y->shape[0], 2);
                                assert_int_equal(Y->shape[1], OH);
                                assert_int_equal(Y->shape[2], OW);
                                assert_int_equal(Y->shape[3], cout);
                                assert_true(Y->size <= 4096);
                                conv_ref(nb_value(x), nb_value(k), b ? nb_value(b) : NULL, s, d, pt, pl, OH, OW, ref);
                                for (int64_t i = 0; i < Y->size; i++) assert_close(Y->data[i], ref[i], 1e-12);
                                checked++;
                                nb_graph_free(g);
                            }
    assert_true(checked > 300);
    free(ref);
}

/* Buffers follow the batch size: run at batch 1, then 3, then 2. */
static void test_conv_batch_resize(void **state)
{
    (void)state;
    nb_rng r;
    nb_rng_seed(&r, 3);
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", 4, (int64_t[]){1, 6, 5, 2});
    nb_node *k = nb_param(g, "k", 4, (int64_t[]){3, 3, 2, 3});
    nb_node *b = nb_param(g, "b", 1, (int64_t[]){3});
    fill(nb_value(k), &r), fill(nb_value(b), &r);
    nb_node *y = nb_conv2d(x, k, b, &(nb_conv2d_opts){2, 1, NB_PAD_SAME, 0});
    assert_non_null(y);
    double ref[3 * 3 * 3 * 3];
    const int64_t batches[] = {1, 3, 2};
    for (int t = 0; t < 3; t++) {
        assert_int_equal(nb_input_reshape(x, 4, (int64_t[]){batches[t], 6, 5, 2}), NB_OK);
        fill(nb_value(x), &r);
        assert_int_equal(nb_forward(g), NB_OK);
        int pt, pl;
        int64_t OH = tf_out(6, 3, 2, 1, NB_PAD_SAME, &pt), OW = tf_out(5, 3, 2, 1, NB_PAD_SAME, &pl);
        assert_int_equal(nb_value(y)->shape[0], batches[t]);
        conv_ref(nb_value(x), nb_value(k), nb_value(b), 2, 1, pt, pl, OH, OW, ref);
        for (int64_t i = 0; i < nb_value(y)->size; i++) assert_close(nb_value(y)->data[i], ref[i], 1e-12);
    }
    nb_graph_free(g);
}

static void test_conv_by_hand(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", 4, (int64_t[]){1, 3, 3, 1});
    nb_node *k = nb_param(g, "k", 4, (int64_t[]){2, 2, 1, 1});
    for (int i = 0; i < 9; i++) nb_value(x)->data[i] = i + 1;
    for (int i = 0; i < 4; i++) nb_value(k)->data[i] = 1;
    nb_node *v = nb_conv2d(x, k, NULL, NULL); /* NULL opts: stride 1, valid */
    nb_node *s = nb_conv2d(x, k, NULL, &(nb_conv2d_opts){0, 0, NB_PAD_SAME, 0});
    assert_non_null(v);
    assert_non_null(s);
    assert_int_equal(nb_forward(g), NB_OK);
    /* 1 2 3 / 4 5 6 / 7 8 9: each output sums a 2x2 block. */
    const double want_v[] = {12, 16, 24, 28};
    assert_int_equal(nb_value(v)->size, 4);
    for (int i = 0; i < 4; i++) assert_close(nb_value(v)->data[i], want_v[i], 0);
    /* 'same': one pad pixel in total per axis, all of it at the bottom/right. */
    const double want_s[] = {12, 16, 9, 24, 28, 15, 15, 17, 9};
    assert_int_equal(nb_value(s)->shape[1], 3);
    assert_int_equal(nb_value(s)->shape[2], 3);
    for (int i = 0; i < 9; i++) assert_close(nb_value(s)->data[i], want_s[i], 0);
    nb_graph_free(g);
}

/* Two channels in, two out: y[...,0] sums channel 0 minus channel 1, y[...,1]
 * doubles channel 1, plus bias (10, 20). */
static void test_conv_channels_by_hand(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", 4, (int64_t[]){1, 2, 2, 2});
    nb_node *k = nb_param(g, "k", 4, (int64_t[]){1, 1, 2, 2});
    nb_node *b = nb_param(g, "b", 1, (int64_t[]){2});
    const double xv[] = {1, 2, 3, 4, 5, 6, 7, 8}, kv[] = {1, 0, -1, 2}, bv[] = {10, 20};
    memcpy(nb_value(x)->data, xv, sizeof xv);
    memcpy(nb_value(k)->data, kv, sizeof kv);
    memcpy(nb_value(b)->data, bv, sizeof bv);
    nb_node *y = nb_conv2d(x, k, b, NULL);
    assert_int_equal(nb_forward(g), NB_OK);
    const double want[] = {9, 24, 9, 28, 9, 32, 9, 36};
    for (int i = 0; i < 8; i++) assert_close(nb_value(y)->data[i], want[i], 0);
    nb_graph_free(g);
}

static void test_max_pool_known(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", 4, (int64_t[]){1, 4, 4, 1});
    const double xv[] = {1, 5, 2, 0, 3, 4, 8, 7, 6, 0, 1, 2, 9, 3, 4, 5};
    memcpy(nb_value(x)->data, xv, sizeof xv);
    nb_node *p = nb_max_pool2d(x, 2, 0, NB_PAD_VALID);
    nb_node *q = nb_max_pool2d(x, 3, 1, NB_PAD_SAME);
    nb_node *e = nb_max_pool2d(x, 3, 2, NB_PAD_VALID); /* rows 0-2 only */
    assert_non_null(p);
    assert_non_null(q);
    assert_non_null(e);
    assert_int_equal(nb_forward(g), NB_OK);
    const double want_p[] = {5, 8, 9, 5};
    for (int i = 0; i < 4; i++) assert_close(nb_value(p)->data[i], want_p[i], 0);
    const double want_q[] = {5, 8, 8, 8, 6, 8, 8, 8, 9, 9, 8, 8, 9, 9, 5, 5};
    for (int i = 0; i < 16; i++) assert_close(nb_value(q)->data[i], want_q[i], 0);
    assert_int_equal(nb_value(e)->size, 1);
    assert_close(nb_value(e)->data[0], 8, 0);
    nb_graph_free(g);
}

static void test_max_pool_vjp_scatter(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", 4, (int64_t[]){1, 4, 4, 1});
    const double xv[] = {1, 5, 2, 0, 3, 4, 8, 7, 6, 0, 1, 2, 9, 3, 4, 5};
    memcpy(nb_value(x)->data, xv, sizeof xv);
    nb_node *p = nb_max_pool2d(x, 2, 2, NB_PAD_VALID);
    nb_tensor *seed = nb_tensor_new(5, (int64_t[]){1, 1, 2, 2, 1});
    for (int i = 0; i < 4; i++) seed->data[i] = i + 1;
    nb_tensor *res = NULL;
    assert_int_equal(nb_vjp(p, seed, 1, &x, &res), NB_OK);
    const double want[] = {0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 3, 0, 0, 4};
    for (int i = 0; i < 16; i++) assert_close(res->data[i], want[i], 0);
    nb_tensor_free(res);
    nb_tensor_free(seed);
    nb_graph_free(g);
}

static void test_avg_pool_same_counts_real_pixels(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", 4, (int64_t[]){1, 3, 3, 1});
    for (int i = 0; i < 9; i++) nb_value(x)->data[i] = i + 1;
    nb_node *a = nb_avg_pool2d(x, 2, 1, NB_PAD_SAME); /* pad 1 at the bottom/right */
    nb_node *b = nb_avg_pool2d(x, 3, 1, NB_PAD_SAME); /* pad 1 on every side */
    nb_node *c = nb_avg_pool2d(x, 2, 0, NB_PAD_SAME); /* stride 2: out 2x2 */
    assert_int_equal(nb_forward(g), NB_OK);
    const double want_a[] = {3, 4, 4.5, 6, 7, 7.5, 7.5, 8.5, 9};
    for (int i = 0; i < 9; i++) assert_close(nb_value(a)->data[i], want_a[i], 1e-15);
    const double want_b[] = {3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7};
    for (int i = 0; i < 9; i++) assert_close(nb_value(b)->data[i], want_b[i], 1e-15);
    const double want_c[] = {3, 4.5, 7.5, 9};
    assert_int_equal(nb_value(c)->shape[1], 2);
    for (int i = 0; i < 4; i++) assert_close(nb_value(c)->data[i], want_c[i], 1e-15);
    nb_graph_free(g);
}

static void test_pool_shapes(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", 4, (int64_t[]){2, 7, 6, 3});
    for (int size = 1; size <= 4; size++)
        for (int s = 0; s <= 3; s++)
            for (int pad = 0; pad <= 1; pad++) {
                int st = s ? s : size, pt, pl;
                int64_t OH = tf_out(7, size, st, 1, pad, &pt), OW = tf_out(6, size, st, 1, pad, &pl);
                nb_node *m = nb_max_pool2d(x, size, s, (nb_padding)pad);
                nb_node *a = nb_avg_pool2d(x, size, s, (nb_padding)pad);
                assert_non_null(m);
                assert_non_null(a);
                assert_int_equal(nb_value(m)->shape[1], OH);
                assert_int_equal(nb_value(m)->shape[2], OW);
                assert_int_equal(nb_value(a)->shape[1], OH);
                assert_int_equal(nb_value(a)->shape[2], OW);
                assert_int_equal(nb_value(a)->shape[3], 3);
            }
    nb_graph_free(g);
}

static void test_errors(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", 4, (int64_t[]){1, 4, 4, 3});
    nb_node *k5 = nb_param(g, "k5", 4, (int64_t[]){5, 5, 3, 2});
    nb_node *k2 = nb_param(g, "k2", 4, (int64_t[]){3, 3, 2, 4});
    nb_node *k3 = nb_param(g, "k3", 4, (int64_t[]){3, 3, 3, 4});
    nb_node *b3 = nb_param(g, "b3", 1, (int64_t[]){3});
    nb_node *x3 = nb_input(g, "x3", 3, (int64_t[]){4, 4, 3});

    assert_null(nb_conv2d(x, k5, NULL, NULL));
    assert_non_null(strstr(nb_last_error(), "conv2d: kernel 5x5 larger than input 4x4 (padding 'valid')"));
    /* With 'same' the same kernel is fine. */
    assert_non_null(nb_conv2d(x, k5, NULL, &(nb_conv2d_opts){1, 1, NB_PAD_SAME, 0}));
    assert_null(nb_conv2d(x, k3, NULL, &(nb_conv2d_opts){1, 2, NB_PAD_VALID, 0}));
    assert_non_null(strstr(nb_last_error(), "dilation 2 spans 5x5, larger than input 4x4"));

    assert_null(nb_conv2d(x, k2, NULL, NULL));
    assert_non_null(strstr(nb_last_error(), "input (1, 4, 4, 3) has 3 channels but kernel (3, 3, 2, 4) expects C_in = 2"));
    assert_null(nb_conv2d(x, k3, b3, NULL));
    assert_non_null(strstr(nb_last_error(), "bias has shape (3,)"));
    assert_non_null(strstr(nb_last_error(), "C_out"));
    assert_null(nb_conv2d(x3, k3, NULL, NULL));
    assert_non_null(strstr(nb_last_error(), "(N,H,W,C_in)"));
    assert_null(nb_conv2d(x, x, NULL, NULL));
    assert_null(nb_conv2d(x, k3, NULL, &(nb_conv2d_opts){-1, 1, NB_PAD_VALID, 0}));
    assert_non_null(strstr(nb_last_error(), "stride"));
    assert_null(nb_conv2d(NULL, k3, NULL, NULL));

    assert_null(nb_max_pool2d(x, 5, 0, NB_PAD_VALID));
    assert_non_null(strstr(nb_last_error(), "max_pool2d: window 5x5 larger than input 4x4 (padding 'valid')"));
    assert_null(nb_avg_pool2d(x, 0, 0, NB_PAD_VALID));
    assert_non_null(strstr(nb_last_error(), "avg_pool2d"));
    assert_null(nb_avg_pool2d(x3, 2, 0, NB_PAD_VALID));
    assert_non_null(strstr(nb_last_error(), "(N,H,W,C)"));
    nb_graph_free(g);
}

/* ---------------------------------------------------------- gradients */

typedef struct {
    const char *name;
    int n, h, w, cin, fh, fw, cout, stride, dilation, pad, bias;
} conv_cfg;

static const conv_cfg conv_cfgs[] = {
    {"valid s1 +b C_in 3", 2, 5, 5, 3, 3, 3, 2, 1, 1, NB_PAD_VALID, 1},
    {"valid s1 C_in 1", 1, 5, 4, 1, 3, 2, 3, 1, 1, NB_PAD_VALID, 0},
    {"same s1 +b", 1, 5, 6, 1, 3, 3, 2, 1, 1, NB_PAD_SAME, 1},
    {"same even kernel", 1, 4, 5, 3, 2, 2, 2, 1, 1, NB_PAD_SAME, 0},
    {"same s2 odd", 1, 7, 5, 2, 4, 3, 2, 2, 1, NB_PAD_SAME, 1},
    {"valid s2 odd", 2, 7, 6, 1, 3, 3, 2, 2, 1, NB_PAD_VALID, 0},
    {"valid s3", 1, 8, 7, 2, 2, 3, 1, 3, 1, NB_PAD_VALID, 1},
    {"valid d2", 1, 7, 6, 2, 3, 2, 2, 1, 2, NB_PAD_VALID, 1},
    {"same d2 s2", 1, 5, 5, 3, 3, 3, 1, 2, 2, NB_PAD_SAME, 0},
    /* one input channel: the input VJP's transposed GEMM and tap planes */
    {"same d2 C_in 1", 2, 6, 7, 1, 3, 2, 3, 1, 2, NB_PAD_SAME, 1},
    {"same s2 d2 even C_in 1", 1, 7, 6, 1, 2, 4, 2, 2, 2, NB_PAD_SAME, 0},
    {"valid s3 C_in 1", 1, 8, 9, 1, 2, 2, 4, 3, 1, NB_PAD_VALID, 1},
};

static void check_all_leaves(nb_graph *g, nb_node *out, const char *what)
{
    nb_gradcheck_opts o = {1e-6, 1e-5, 1e-3};
    int leaves = 0;
    for (int i = 0; i < nb_graph_size(g); i++) {
        nb_node *l = nb_graph_node(g, i);
        const char *op = nb_node_op(l);
        if (strcmp(op, "input") && strcmp(op, "param")) continue;
        nb_gradcheck_result res;
        assert_int_equal(nb_gradcheck(out, l, &o, &res), NB_OK);
        if (!res.ok || !(res.max_abs_jacobian > 0))
            fprintf(stderr, "%s wrt %s: err rev %g fwd %g ratio %g max|J| %g\n", what, nb_node_name(l),
                    res.max_err_rev, res.max_err_fwd, res.worst_ratio, res.max_abs_jacobian);
        assert_true(res.ok);
        assert_true(res.max_abs_jacobian > 0);
        leaves++;
    }
    assert_true(leaves >= 1);
}

static void test_conv_gradcheck(void **state)
{
    (void)state;
    nb_rng r;
    nb_rng_seed(&r, 11);
    for (size_t c = 0; c < sizeof conv_cfgs / sizeof conv_cfgs[0]; c++) {
        const conv_cfg *f = &conv_cfgs[c];
        nb_graph *g = nb_graph_new();
        nb_node *x = nb_input(g, "x", 4, (int64_t[]){f->n, f->h, f->w, f->cin});
        nb_node *k = nb_param(g, "k", 4, (int64_t[]){f->fh, f->fw, f->cin, f->cout});
        nb_node *b = f->bias ? nb_param(g, "b", 1, (int64_t[]){f->cout}) : NULL;
        fill(nb_value(x), &r), fill(nb_value(k), &r);
        if (b) fill(nb_value(b), &r);
        nb_node *y = nb_conv2d(x, k, b, &(nb_conv2d_opts){f->stride, f->dilation, (nb_padding)f->pad, 0});
        assert_non_null(y);
        check_all_leaves(g, y, f->name);
        nb_graph_free(g);
    }
}

/* Distinct values at least 0.1 apart: no ties, no argmax flips under eps. */
static void fill_distinct(nb_tensor *t, nb_rng *r)
{
    for (int64_t i = 0; i < t->size; i++) t->data[i] = (double)i;
    for (int64_t i = t->size - 1; i > 0; i--) {
        int64_t j = (int64_t)(nb_rng_next(r) % (uint64_t)(i + 1));
        double v = t->data[i];
        t->data[i] = t->data[j], t->data[j] = v;
    }
    for (int64_t i = 0; i < t->size; i++) t->data[i] = 0.1 * t->data[i] + 0.02 * nb_rng_uniform(r);
}

static void test_pool_gradcheck(void **state)
{
    (void)state;
    static const struct {
        int n, h, w, c, size, stride, pad;
    } cfgs[] = {
        {2, 4, 4, 3, 2, 0, NB_PAD_VALID}, {1, 5, 5, 2, 3, 1, NB_PAD_VALID}, {1, 5, 6, 2, 3, 2, NB_PAD_SAME},
        {2, 3, 3, 1, 2, 1, NB_PAD_SAME},  {1, 7, 5, 2, 2, 3, NB_PAD_VALID}, {1, 5, 5, 1, 4, 2, NB_PAD_SAME},
    };
    nb_rng r;
    nb_rng_seed(&r, 5);
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++)
        for (int kind = 0; kind < 2; kind++) {
            nb_graph *g = nb_graph_new();
            nb_node *x = nb_input(g, "x", 4, (int64_t[]){cfgs[c].n, cfgs[c].h, cfgs[c].w, cfgs[c].c});
            fill_distinct(nb_value(x), &r);
            nb_node *y = kind ? nb_avg_pool2d(x, cfgs[c].size, cfgs[c].stride, (nb_padding)cfgs[c].pad)
                              : nb_max_pool2d(x, cfgs[c].size, cfgs[c].stride, (nb_padding)cfgs[c].pad);
            assert_non_null(y);
            char what[64];
            snprintf(what, sizeof what, "%s case %zu", kind ? "avg" : "max", c);
            check_all_leaves(g, y, what);
            nb_graph_free(g);
        }
}

/* A conv -> max pool -> avg pool chain, three stacked seeds at once equal
 * three single-seed passes; and <seed, J t> = <J^T seed, t> links the modes. */
static void test_stacked_seeds(void **state)
{
    (void)state;
    nb_rng r;
    nb_rng_seed(&r, 21);
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", 4, (int64_t[]){2, 7, 6, 2});
    nb_node *k = nb_param(g, "k", 4, (int64_t[]){3, 3, 2, 3});
    nb_node *b = nb_param(g, "b", 1, (int64_t[]){3});
    fill(nb_value(x), &r), fill(nb_value(k), &r), fill(nb_value(b), &r);
    nb_node *c = nb_conv2d(x, k, b, &(nb_conv2d_opts){1, 1, NB_PAD_SAME, 0});
    nb_node *m = nb_max_pool2d(c, 2, 0, NB_PAD_SAME);
    nb_node *y = nb_avg_pool2d(nb_tanh(m), 2, 1, NB_PAD_VALID);
    assert_non_null(y);
    assert_int_equal(nb_forward(g), NB_OK);
    const nb_tensor *Y = nb_value(y);
    int64_t sshape[NB_MAX_RANK + 1] = {3};
    memcpy(sshape + 1, Y->shape, sizeof(int64_t) * (size_t)Y->rank);
    nb_tensor *seeds = nb_tensor_new(Y->rank + 1, sshape);
    fill(seeds, &r);
    nb_node *wrt[3] = {x, k, b};
    nb_tensor *all[3] = {0};
    assert_int_equal(nb_vjp(y, seeds, 3, wrt, all), NB_OK);
    sshape[0] = 1;
    nb_tensor *one = nb_tensor_new(Y->rank + 1, sshape);
    for (int s = 0; s < 3; s++) {
        memcpy(one->data, seeds->data + s * Y->size, sizeof(double) * (size_t)Y->size);
        nb_tensor *single[3] = {0};
        assert_int_equal(nb_vjp(y, one, 3, wrt, single), NB_OK);
        for (int w = 0; w < 3; w++) {
            int64_t m1 = single[w]->size;
            double maxabs = 0;
            for (int64_t i = 0; i < m1; i++) {
                assert_close(all[w]->data[s * m1 + i], single[w]->data[i], 1e-12);
                maxabs = fmax(maxabs, fabs(single[w]->data[i]));
            }
            assert_true(maxabs > 0);
            nb_tensor_free(single[w]);
        }
    }
    /* Duality, with three stacked tangents. */
    nb_tensor *tan[3];
    for (int w = 0; w < 3; w++) {
        const nb_tensor *v = nb_value(wrt[w]);
        int64_t ts[NB_MAX_RANK + 1] = {3};
        memcpy(ts + 1, v->shape, sizeof(int64_t) * (size_t)v->rank);
        tan[w] = nb_tensor_new(v->rank + 1, ts);
        fill(tan[w], &r);
    }
    nb_tensor *jt = NULL;
    assert_int_equal(nb_jvp(y, 3, wrt, (const nb_tensor *const *)tan, &jt), NB_OK);
    for (int s = 0; s < 3; s++) {
        double lhs = 0, rhs = 0;
        for (int64_t i = 0; i < Y->size; i++) lhs += seeds->data[s * Y->size + i] * jt->data[s * Y->size + i];
        for (int w = 0; w < 3; w++) {
            int64_t m1 = nb_value(wrt[w])->size;
            for (int64_t i = 0; i < m1; i++) rhs += all[w]->data[s * m1 + i] * tan[w]->data[s * m1 + i];
        }
        assert_close(lhs, rhs, 1e-10 * (1 + fabs(lhs)));
    }
    for (int w = 0; w < 3; w++) nb_tensor_free(all[w]), nb_tensor_free(tan[w]);
    nb_tensor_free(jt);
    nb_tensor_free(one);
    nb_tensor_free(seeds);
    nb_graph_free(g);
}

/* A max pool with stride = window over a convolution, built by hand (two
 * ops; models fuse them into conv2d_relu_maxpool, tests/f32/
 * test_fused_conv_pool.c). nb_grad of the convolution is its dense gradient
 * and a pure getter: it equals nb_vjp with the convolution as wrt, and the
 * next nb_forward or new shapes leave it as the last nb_backward wrote it.
 * A second consumer of the convolution adds to it: gradcheck. */
static void test_pool_over_conv_adjoint(void **state)
{
    (void)state;
    nb_rng r;
    nb_rng_seed(&r, 5);
    for (int relu = 0; relu < 2; relu++) {
        nb_graph *g = nb_graph_new();
        const int64_t cin = relu ? 1 : 2; /* one channel: the single-channel input VJP gathers too */
        nb_node *x = nb_input(g, "x", 4, (int64_t[]){2, 7, 8, cin});
        nb_node *k = nb_param(g, "k", 4, (int64_t[]){3, 3, cin, 4});
        nb_node *b = nb_param(g, "b", 1, (int64_t[]){4});
        fill_distinct(nb_value(x), &r), fill(nb_value(k), &r), fill(nb_value(b), &r);
        nb_conv2d_opts o = {1, 1, NB_PAD_SAME, 0};
        nb_node *c = relu ? nb_conv2d_relu(x, k, b, &o) : nb_conv2d(x, k, b, &o);
        nb_node *w = nb_param(g, "w", 4, (int64_t[]){1, 4, 4, 4});
        fill(nb_value(w), &r);
        nb_node *pool = nb_max_pool2d(c, 2, 0, NB_PAD_SAME);
        nb_node *loss = nb_sum(nb_mul(nb_tanh(pool), w), 0, NULL, 0);
        assert_non_null(loss);
        assert_int_equal(nb_forward(g), NB_OK);
        assert_int_equal(nb_backward(loss), NB_OK);
        assert_non_null(nb_grad(c));
        nb_tensor *gc = nb_tensor_clone(nb_grad(c)); /* the next pass invalidates the view */
        nb_tensor *one = nb_tensor_new(1, (int64_t[]){1}), *dense = NULL;
        one->data[0] = 1;
        assert_int_equal(nb_vjp(loss, one, 1, &c, &dense), NB_OK);
        int nonzero = 0;
        assert_int_equal(dense->size, gc->size);
        for (int64_t i = 0; i < gc->size; i++) {
            assert_close(gc->data[i], dense->data[i], 0);
            nonzero += gc->data[i] != 0;
        }
        assert_true(nonzero > 0 && nonzero <= nb_value(pool)->size); /* one per window and channel */
        assert_int_equal(nb_backward(loss), NB_OK);
        assert_int_equal(nb_forward(g), NB_OK);
        assert_non_null(nb_grad(c)); /* a getter: the last backward's gradient */
        for (int64_t i = 0; i < gc->size; i++) assert_close(nb_grad(c)->data[i], gc->data[i], 0);
        assert_int_equal(nb_input_reshape(x, 4, (int64_t[]){5, 7, 8, cin}), NB_OK);
        assert_non_null(nb_relu(loss)); /* a new node infers the new shapes */
        assert_non_null(nb_grad(c));
        for (int64_t i = 0; i < gc->size; i++) assert_close(nb_grad(c)->data[i], gc->data[i], 0);
        assert_int_equal(nb_input_reshape(x, 4, (int64_t[]){2, 7, 8, cin}), NB_OK);
        fill_distinct(nb_value(x), &r); /* (the reshapes do not keep the values) */
        nb_tensor_free(one), nb_tensor_free(dense), nb_tensor_free(gc);
        check_all_leaves(g, loss, relu ? "conv relu -> pool" : "conv -> pool");
        nb_graph_free(g);
    }
    /* The convolution read by the pool and by an op made before the pool,
     * whose VJP the reverse pass runs after the pool deferred. */
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", 4, (int64_t[]){1, 6, 6, 1});
    nb_node *k = nb_param(g, "k", 4, (int64_t[]){3, 3, 1, 3});
    fill_distinct(nb_value(x), &r), fill(nb_value(k), &r);
    nb_node *c = nb_conv2d_relu(x, k, NULL, &(nb_conv2d_opts){1, 1, NB_PAD_SAME, 0});
    nb_node *sq = nb_sum(nb_mul(c, c), 0, NULL, 0);
    nb_node *p = nb_sum(nb_tanh(nb_max_pool2d(c, 2, 0, NB_PAD_VALID)), 0, NULL, 0);
    nb_node *loss = nb_add(p, sq);
    assert_non_null(loss);
    check_all_leaves(g, loss, "conv -> pool and conv -> square");
    nb_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_forward_matches_direct),
        cmocka_unit_test(test_conv_batch_resize),
        cmocka_unit_test(test_conv_by_hand),
        cmocka_unit_test(test_conv_channels_by_hand),
        cmocka_unit_test(test_max_pool_known),
        cmocka_unit_test(test_max_pool_vjp_scatter),
        cmocka_unit_test(test_avg_pool_same_counts_real_pixels),
        cmocka_unit_test(test_pool_shapes),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_conv_gradcheck),
        cmocka_unit_test(test_pool_gradcheck),
        cmocka_unit_test(test_stacked_seeds),
        cmocka_unit_test(test_pool_over_conv_adjoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
