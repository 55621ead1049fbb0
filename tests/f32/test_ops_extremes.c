/* Ops at the edges of the float range, in the float build: softmax,
 * log_softmax and the losses on logits up to 1e30 in magnitude (values and
 * gradients), and NaN / Inf through relu and the fused conv2d + relu. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nabla.h"

#define SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

static const double LOG2 = 0.69314718055994530942;

static nb_node *input_with(nb_graph *g, const char *name, int rank, const int64_t *shape, const double *v)
{
    nb_node *x = nb_input(g, name, rank, shape);
    assert_non_null(x);
    for (int64_t i = 0; i < nb_value(x)->size; i++) nb_value(x)->data[i] = (nb_real)v[i];
    return x;
}

/* |a - b| <= tol * max(1, |b|): relative for large values. */
static void assert_near(double a, double b, double tol, const char *what, double v)
{
    double scale = fabs(b) > 1 ? fabs(b) : 1;
    if (!(fabs(a - b) <= tol * scale)) fail_msg("%s at logits %g: %.9g != %.9g (tol %g)", what, v, a, b, tol);
}

static nb_tensor *jac(nb_node *out, nb_node *x, nb_jac_mode mode)
{
    nb_jacobian_opts o = {0};
    o.mode = mode;
    nb_tensor *J = NULL;
    assert_int_equal(nb_jacobian(out, x, &o, &J), NB_OK);
    assert_non_null(J);
    return J;
}

/* The magnitudes of the report: exact -log 2 for [v, v] until 1e30. */
static const double big[] = {1, 1e4, 1e6, 1e7, 3e7, 1e10, 1e20, 1e30};
#define NBIG (int)(sizeof big / sizeof big[0])

/* log_softmax([v, v]) = -log 2 and softmax = 1/2 for every v of either sign;
 * the Jacobian I - 1 s^T is [[1/2, -1/2], [-1/2, 1/2]] in both modes. */
static void test_log_softmax_equal_large_logits(void **state)
{
    (void)state;
    for (int i = 0; i < NBIG; i++)
        for (int sign = -1; sign <= 1; sign += 2) {
            const double v = sign * big[i];
            nb_graph *g = nb_graph_new();
            nb_node *x = input_with(g, "x", SHAPE(1, 2), (const double[]){v, v});
            nb_node *l = nb_log_softmax(x), *s = nb_softmax(x);
            assert_int_equal(nb_forward(g), NB_OK);
            for (int c = 0; c < 2; c++) {
                assert_near(nb_value(l)->data[c], -LOG2, 1e-6, "log_softmax", v);
                assert_near(nb_value(s)->data[c], 0.5, 1e-6, "softmax", v);
            }
            for (int m = 0; m < 2; m++) {
                nb_tensor *J = jac(l, x, m ? NB_JAC_FWD : NB_JAC_REV);
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++)
                        assert_near(J->data[a * 2 + b], a == b ? 0.5 : -0.5, 1e-6, "d log_softmax", v);
                nb_tensor_free(J);
            }
            nb_graph_free(g);
        }
}

/* Rows far apart: [1e30, -1e30] -> [0, -2e30]; [0, 1e30] -> [-1e30, 0];
 * [1e30, 1e30, -1e30] -> [-log 2, -log 2, -2e30]; softmax 1, 0 and halves. */
static void test_log_softmax_mixed_large_logits(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = input_with(g, "x", SHAPE(3, 3),
                            (const double[]){1e30, -1e30, -1e30, 0, 1e30, 0, 1e30, 1e30, -1e30});
    nb_node *l = nb_log_softmax(x), *s = nb_softmax(x);
    assert_int_equal(nb_forward(g), NB_OK);
    const double wl[9] = {0, -2e30, -2e30, -1e30, 0, -1e30, -LOG2, -LOG2, -2e30};
    const double ws[9] = {1, 0, 0, 0, 1, 0, 0.5, 0.5, 0};
    for (int i = 0; i < 9; i++) {
        assert_near(nb_value(l)->data[i], wl[i], 1e-6, "log_softmax", (double)i);
        assert_near(nb_value(s)->data[i], ws[i], 1e-6, "softmax", (double)i);
    }
    nb_graph_free(g);
}

/* CCE on logits [v, v]: log 2 per row, gradient (s - onehot) / N. With
 * labels and with probability targets; the probability form's gradient
 * with respect to the targets is -log_softmax / N = log 2 / N. */
static void test_cce_equal_large_logits(void **state)
{
    (void)state;
    for (int i = 0; i < NBIG; i++)
        for (int sign = -1; sign <= 1; sign += 2) {
            const double v = sign * big[i];
            nb_graph *g = nb_graph_new();
            nb_node *z = input_with(g, "z", SHAPE(2, 2), (const double[]){v, v, v, v});
            nb_node *y = input_with(g, "y", SHAPE(2), (const double[]){0, 1});
            nb_node *t = input_with(g, "t", SHAPE(2, 2), (const double[]){1, 0, 0, 1});
            nb_set_requires_grad(z, 1);
            nb_set_requires_grad(t, 1);
            nb_node *La = nb_cce_logits_loss(z, y), *Lb = nb_cce_logits_probs_loss(z, t);
            assert_int_equal(nb_forward(g), NB_OK);
            assert_near(nb_value(La)->data[0], LOG2, 1e-6, "cce", v);
            assert_near(nb_value(Lb)->data[0], LOG2, 1e-6, "cce probs", v);
            const double dz[4] = {-0.25, 0.25, 0.25, -0.25};
            assert_int_equal(nb_backward(La), NB_OK);
            for (int j = 0; j < 4; j++) assert_near(nb_grad(z)->data[j], dz[j], 1e-6, "d cce / dz", v);
            assert_int_equal(nb_backward(Lb), NB_OK);
            for (int j = 0; j < 4; j++) {
                assert_near(nb_grad(z)->data[j], dz[j], 1e-6, "d cce probs / dz", v);
                assert_near(nb_grad(t)->data[j], LOG2 / 2, 1e-6, "d cce probs / dt", v);
            }
            nb_tensor *J = jac(La, z, NB_JAC_FWD); /* the JVP path */
            for (int j = 0; j < 4; j++) assert_near(J->data[j], dz[j], 1e-6, "cce JVP", v);
            nb_tensor_free(J);
            nb_graph_free(g);
        }
}

/* CCE on rows far apart: the right class costs 0, the wrong one 2e30. */
static void test_cce_mixed_large_logits(void **state)
{
    (void)state;
    for (int label = 0; label < 2; label++) {
        nb_graph *g = nb_graph_new();
        nb_node *z = input_with(g, "z", SHAPE(1, 2), (const double[]){1e30, -1e30});
        nb_node *y = input_with(g, "y", SHAPE(1), (const double[]){label});
        nb_node *t = input_with(g, "t", SHAPE(1, 2), (const double[]){label == 0, label == 1});
        nb_set_requires_grad(z, 1);
        nb_node *La = nb_cce_logits_loss(z, y), *Lb = nb_cce_logits_probs_loss(z, t);
        assert_int_equal(nb_forward(g), NB_OK);
        assert_near(nb_value(La)->data[0], label ? 2e30 : 0, 1e-6, "cce", label);
        assert_near(nb_value(Lb)->data[0], label ? 2e30 : 0, 1e-6, "cce probs", label);
        assert_int_equal(nb_backward(La), NB_OK);
        assert_near(nb_grad(z)->data[0], label ? 1 : 0, 1e-6, "d cce / dz0", label);
        assert_near(nb_grad(z)->data[1], label ? -1 : 0, 1e-6, "d cce / dz1", label);
        nb_graph_free(g);
    }
}

/* BCE with logits: max(z, 0) - z t + log1p(e^-|z|) without cancelling the
 * large terms. z = 1e30 with t = 1 costs 0, with t = 0 1e30, with t = 1/2
 * 5e29; z = -1e30 with t = 0 costs 0. z = 1e8 with t = 1 - 2^-24 (a float
 * one ulp below 1) costs 1e8 * 2^-24 = 5.96, where z - z t rounds to 0 or 8. */
static void test_bce_large_logits(void **state)
{
    (void)state;
    const double tn = 1 - ldexp(1, -24);
    const double z[6] = {1e30, 1e30, 1e30, -1e30, -1e30, 1e8}, t[6] = {1, 0, 0.5, 0, 1, tn};
    const double want[6] = {0, 1e30, 5e29, 0, 1e30, 1e8 * ldexp(1, -24)};
    for (int i = 0; i < 6; i++) {
        nb_graph *g = nb_graph_new();
        nb_node *zn = input_with(g, "z", SHAPE(1), &z[i]), *tt = input_with(g, "t", SHAPE(1), &t[i]);
        nb_set_requires_grad(zn, 1);
        nb_node *L = nb_bce_logits_loss(zn, tt);
        assert_int_equal(nb_forward(g), NB_OK);
        assert_near(nb_value(L)->data[0], want[i], 1e-6, "bce", z[i]);
        assert_int_equal(nb_backward(L), NB_OK);
        const double s = z[i] > 0 ? 1 : 0; /* sigmoid(+-1e30); sigmoid(1e8) = 1 in float */
        assert_near(nb_grad(zn)->data[0], s - (double)(nb_real)t[i], 1e-6, "d bce / dz", z[i]);
        nb_graph_free(g);
    }
}

/* relu: NaN stays NaN (as leaky_relu, max pool and PyTorch), +Inf stays,
 * -Inf and -0 give +0. The derivative is [x > 0], 0 at NaN, and the
 * gradient is gated rather than multiplied: a NaN or Inf seed where x <= 0
 * gives 0, as in the fused conv2d + relu. 37 values, so the vectorised
 * loop and its tail both see every kind. */
static void test_relu_nan_propagates(void **state)
{
    (void)state;
    enum { M = 37 };
    double xv[M];
    for (int i = 0; i < M; i++) xv[i] = (i % 3 == 0 ? -1 : 1) * (0.5 + i);
    xv[1] = NAN, xv[18] = NAN, xv[35] = NAN, xv[4] = INFINITY, xv[5] = -INFINITY, xv[6] = -0.0;
    nb_graph *g = nb_graph_new();
    nb_node *x = input_with(g, "x", SHAPE(M), xv);
    nb_node *y = nb_relu(x);
    assert_int_equal(nb_forward(g), NB_OK);
    for (int i = 0; i < M; i++) {
        const double v = nb_value(y)->data[i];
        if (isnan(xv[i])) {
            if (!isnan(v)) fail_msg("relu(NaN) at %d gave %g, want NaN", i, v);
        } else {
            const double want = xv[i] > 0 ? xv[i] : 0;
            if (!(v == want) || signbit(v)) fail_msg("relu(%g) at %d gave %g, want %g", xv[i], i, v, want);
        }
    }
    /* VJP with seeds of ones and of NaN; JVP with tangents of ones and of NaN. */
    for (int kind = 0; kind < 2; kind++) {
        const nb_real seed = kind ? (nb_real)NAN : 1;
        nb_tensor *S = nb_tensor_new(SHAPE(1, M)), *R = NULL, *T = nb_tensor_new(SHAPE(1, M)), *D = NULL;
        for (int i = 0; i < M; i++) S->data[i] = T->data[i] = seed;
        assert_int_equal(nb_vjp(y, S, 1, &x, &R), NB_OK);
        const nb_tensor *tt = T;
        assert_int_equal(nb_jvp(y, 1, &x, &tt, &D), NB_OK);
        for (int i = 0; i < M; i++) {
            const bool pass = xv[i] > 0; /* false at NaN */
            for (int w = 0; w < 2; w++) {
                const double v = (w ? D : R)->data[i];
                if (pass ? !(v == seed || (isnan(v) && kind)) : v != 0)
                    fail_msg("relu %s at x = %g with seed %g gave %g", w ? "JVP" : "VJP", xv[i], (double)seed, v);
            }
        }
        nb_tensor_free(S), nb_tensor_free(R), nb_tensor_free(T), nb_tensor_free(D);
    }
    nb_graph_free(g);
}

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static int same(double a, double b, double tol)
{
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    if (isinf(a) || isinf(b)) return a == b;
    return fabs(a - b) <= tol * (1 + fabs(b));
}

/* The fused conv2d + relu against relu(conv2d(...)) with a NaN and an Inf in
 * the input: the same values (NaN in every output whose window covers the
 * NaN pixel, and only there), and the same VJP and JVP. Threads 1 and 2, and
 * a large enough output that the vectorised ReLU loop runs. */
static void test_conv2d_relu_nan_propagates(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        nb_set_num_threads(threads);
        enum { N = 2, H = 7, W = 7, C = 3, F = 3, O = 8, OH = H - F + 1 };
        nb_graph *g = nb_graph_new();
        nb_node *x = nb_input(g, "x", SHAPE(N, H, W, C)), *k = nb_param(g, "k", SHAPE(F, F, C, O)),
                *b = nb_param(g, "b", SHAPE(O));
        uint32_t s = 7;
        for (int64_t i = 0; i < nb_value(x)->size; i++) nb_value(x)->data[i] = (nb_real)(lcg(&s) % 2001) / 1000 - 1;
        for (int64_t i = 0; i < nb_value(k)->size; i++)
            nb_value(k)->data[i] = (nb_real)((lcg(&s) % 1000) + 1) / 1000 * (lcg(&s) % 2 ? 1 : -1);
        for (int o = 0; o < O; o++) nb_value(b)->data[o] = (nb_real)(o % 2 ? 0.2 : -0.3);
        const int nh = 3, nw = 2, ih = 5, iw = 4;
        nb_value(x)->data[((0 * H + nh) * W + nw) * C + 1] = (nb_real)NAN;
        nb_value(x)->data[((1 * H + ih) * W + iw) * C + 2] = (nb_real)INFINITY;
        nb_node *fused = nb_conv2d_relu(x, k, b, NULL), *plain = nb_relu(nb_conv2d(x, k, b, NULL));
        /* behind a max pool, whose adjoint the fused convolution reads with its gate */
        nb_node *pf = nb_max_pool2d(fused, 2, 0, NB_PAD_VALID), *pp = nb_max_pool2d(plain, 2, 0, NB_PAD_VALID);
        assert_non_null(pf);
        assert_non_null(pp);
        assert_int_equal(nb_forward(g), NB_OK);
        const nb_tensor *yf = nb_value(fused), *yp = nb_value(plain);
        int nans = 0, infs = 0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < OH; i++)
                for (int j = 0; j < OH; j++)
                    for (int o = 0; o < O; o++) {
                        const int64_t e = ((n * OH + i) * OH + j) * O + o;
                        const double vf = yf->data[e], vp = yp->data[e];
                        const bool covers = n == 0 && i <= nh && nh < i + F && j <= nw && nw < j + F;
                        if (covers != (bool)isnan(vf))
                            fail_msg("fused conv2d+relu (%d threads) at (%d,%d,%d,%d) = %g", threads, n, i, j, o, vf);
                        if (!same(vf, vp, 0)) fail_msg("fused %g != relu(conv2d) %g at %lld", vf, vp, (long long)e);
                        nans += isnan(vf), infs += isinf(vf);
                    }
        assert_int_equal(nans, 9 * O);
        assert_true(infs > 0);
        /* VJP with respect to x, k and b; JVP from tangents of x and k. */
        nb_tensor *S = nb_tensor_new(SHAPE(1, N, OH, OH, O));
        for (int64_t i = 0; i < S->size; i++) S->data[i] = (nb_real)((int)(lcg(&s) % 200) - 100) / 100;
        nb_node *wrt[3] = {x, k, b};
        nb_tensor *rf[3] = {0}, *rp[3] = {0};
        assert_int_equal(nb_vjp(fused, S, 3, wrt, rf), NB_OK);
        assert_int_equal(nb_vjp(plain, S, 3, wrt, rp), NB_OK);
        for (int w = 0; w < 3; w++) {
            for (int64_t i = 0; i < rf[w]->size; i++)
                if (!same(rf[w]->data[i], rp[w]->data[i], 1e-5))
                    fail_msg("VJP %d (%d threads) at %lld: fused %g, relu(conv2d) %g", w, threads, (long long)i,
                             (double)rf[w]->data[i], (double)rp[w]->data[i]);
            nb_tensor_free(rf[w]), nb_tensor_free(rp[w]);
        }
        for (int64_t i = 0; i < nb_value(pf)->size; i++)
            if (!same(nb_value(pf)->data[i], nb_value(pp)->data[i], 0))
                fail_msg("max pool of fused %g != of relu(conv2d) %g", (double)nb_value(pf)->data[i],
                         (double)nb_value(pp)->data[i]);
        nb_tensor *SP = nb_tensor_new(SHAPE(1, N, OH / 2, OH / 2, O));
        for (int64_t i = 0; i < SP->size; i++) SP->data[i] = (nb_real)((int)(lcg(&s) % 200) - 100) / 100;
        assert_int_equal(nb_vjp(pf, SP, 3, wrt, rf), NB_OK);
        assert_int_equal(nb_vjp(pp, SP, 3, wrt, rp), NB_OK);
        for (int w = 0; w < 3; w++) {
            for (int64_t i = 0; i < rf[w]->size; i++)
                if (!same(rf[w]->data[i], rp[w]->data[i], 1e-5))
                    fail_msg("pooled VJP %d (%d threads) at %lld: fused %g, relu(conv2d) %g", w, threads,
                             (long long)i, (double)rf[w]->data[i], (double)rp[w]->data[i]);
            nb_tensor_free(rf[w]), nb_tensor_free(rp[w]);
        }
        nb_tensor_free(SP);
        nb_tensor *tx = nb_tensor_new(SHAPE(1, N, H, W, C)), *tk = nb_tensor_new(SHAPE(1, F, F, C, O));
        for (int64_t i = 0; i < tx->size; i++) tx->data[i] = (nb_real)((int)(lcg(&s) % 200) - 100) / 100;
        for (int64_t i = 0; i < tk->size; i++) tk->data[i] = (nb_real)((int)(lcg(&s) % 200) - 100) / 100;
        const nb_tensor *tan[2] = {tx, tk};
        nb_tensor *jf = NULL, *jp = NULL;
        assert_int_equal(nb_jvp(fused, 2, wrt, tan, &jf), NB_OK);
        assert_int_equal(nb_jvp(plain, 2, wrt, tan, &jp), NB_OK);
        for (int64_t i = 0; i < jf->size; i++)
            if (!same(jf->data[i], jp->data[i], 1e-5))
                fail_msg("JVP (%d threads) at %lld: fused %g, relu(conv2d) %g", threads, (long long)i,
                         (double)jf->data[i], (double)jp->data[i]);
        nb_tensor_free(jf), nb_tensor_free(jp), nb_tensor_free(tx), nb_tensor_free(tk), nb_tensor_free(S);
        nb_graph_free(g);
    }
    nb_set_num_threads(1);
}

/* Binary ops over inputs of the output's size run a flat loop split over
 * threads (ops/binary.c): every element of the forward, the VJP into each
 * input (overwriting, then accumulating a second seed) and the JVP is the
 * formula of that element, on 1 and 2 threads alike, over (1, M) and (M)
 * inputs (the same size, one with a leading 1) large enough to go parallel,
 * with a NaN and a 1e30 among them. */
static nb_node *flat_case(int code, nb_node *a, nb_node *b)
{
    return code == 0 ? nb_add(a, b) : code == 1 ? nb_sub(a, b) : code == 2 ? nb_mul(a, b) : nb_div(a, b);
}

static float flat_expect(int code, int which, float x, float y, float ga, float gb)
{
    /* which 0: y; 1: da; 2: db (partials); 3: the JVP with tangents ga, gb */
    const float pa = code == 2 ? y : code == 3 ? 1 / y : 1;
    const float pb = code == 0 ? 1 : code == 1 ? -1 : code == 2 ? x : -x / (y * y);
    if (which == 0) return code == 0 ? x + y : code == 1 ? x - y : code == 2 ? x * y : x / y;
    if (which == 1) return pa;
    if (which == 2) return pb;
    return pa * ga + pb * gb;
}

static void flat_check(int code, int threads)
{
    enum { M = 40000 };
    nb_set_num_threads(threads);
    nb_graph *g = nb_graph_new();
    const int64_t sa[2] = {1, M}, sb[1] = {M}, ks[3] = {2, 1, M};
    nb_node *a = nb_param(g, "a", 2, sa), *b = nb_param(g, "b", 1, sb);
    nb_node *y = flat_case(code, a, b);
    assert_non_null(y);
    float *av = nb_value(a)->data, *bv = nb_value(b)->data;
    for (int i = 0; i < M; i++) av[i] = (float)(i % 97) / 13 - 3, bv[i] = (float)(i % 89) / 11 + 0.5f;
    av[5] = NAN, bv[9] = 1e30f;
    assert_int_equal(nb_forward(g), NB_OK);
    const float *yv = nb_value(y)->data;
    for (int i = 0; i < M; i++) {
        const float e = flat_expect(code, 0, av[i], bv[i], 0, 0);
        assert_true(yv[i] == e || (isnan(yv[i]) && isnan(e)));
    }
    nb_tensor *seeds = nb_tensor_new(3, ks), *res[2] = {NULL, NULL}, *ta = nb_tensor_new(3, ks), *out = NULL;
    const int64_t tbs[2] = {2, M};
    nb_tensor *tb = nb_tensor_new(2, tbs);
    for (int64_t i = 0; i < 2 * M; i++)
        seeds->data[i] = (float)(i % 7) - 3, ta->data[i] = (float)(i % 5) / 4, tb->data[i] = (float)(i % 3) - 1;
    nb_node *wrt[2] = {a, b};
    assert_int_equal(nb_vjp(y, seeds, 2, wrt, res), NB_OK);
    nb_tensor *tans[2] = {ta, tb};
    assert_int_equal(nb_jvp(y, 2, wrt, (const nb_tensor *const *)tans, &out), NB_OK);
    for (int64_t k = 0; k < 2; k++)
        for (int64_t i = 0; i < M; i++) {
            const float x = av[i], z = bv[i], g0 = seeds->data[k * M + i];
            const float ea = g0 * flat_expect(code, 1, x, z, 0, 0), eb = g0 * flat_expect(code, 2, x, z, 0, 0);
            const float ej = flat_expect(code, 3, x, z, ta->data[k * M + i], tb->data[k * M + i]);
            const float va = res[0]->data[k * M + i], vb = res[1]->data[k * M + i], vj = out->data[k * M + i];
            assert_true(va == ea || (isnan(va) && isnan(ea)));
            assert_true(vb == eb || (isnan(vb) && isnan(eb)));
            /* the JVP is a sum of two products: a contracted FMA may round it differently */
            assert_true(fabsf(vj - ej) <= 1e-6f * fabsf(ej) || vj == ej || (isnan(vj) && isnan(ej)));
        }
    nb_tensor_free(res[0]), nb_tensor_free(res[1]), nb_tensor_free(out);
    nb_tensor_free(seeds), nb_tensor_free(ta), nb_tensor_free(tb);
    nb_graph_free(g);
}

static void test_binary_flat_loops(void **state)
{
    (void)state;
    const int before = nb_get_num_threads();
    for (int code = 0; code < 4; code++) flat_check(code, 1), flat_check(code, 2);
    /* x + x: one node feeding both inputs, its adjoint accumulated */
    nb_set_num_threads(2);
    nb_graph *g = nb_graph_new();
    const int64_t s1[1] = {40000};
    nb_node *x = nb_param(g, "x", 1, s1), *loss = nb_sum(nb_add(x, x), 0, NULL, 0);
    for (int i = 0; i < 40000; i++) nb_value(x)->data[i] = (float)i;
    assert_int_equal(nb_forward(g), NB_OK);
    assert_int_equal(nb_backward(loss), NB_OK);
    for (int i = 0; i < 40000; i++) assert_true(nb_grad(x)->data[i] == 2.0f);
    nb_graph_free(g);
    nb_set_num_threads(before);
}

int main(void)
{
    nb_set_num_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_softmax_equal_large_logits),
        cmocka_unit_test(test_log_softmax_mixed_large_logits),
        cmocka_unit_test(test_cce_equal_large_logits),
        cmocka_unit_test(test_cce_mixed_large_logits),
        cmocka_unit_test(test_bce_large_logits),
        cmocka_unit_test(test_relu_nan_propagates),
        cmocka_unit_test(test_conv2d_relu_nan_propagates),
        cmocka_unit_test(test_binary_flat_loops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
