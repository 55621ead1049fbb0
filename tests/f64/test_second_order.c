/* Second order in the double build: every op's second-order rule against
 * central differences of the gradient (nb_opcheck_second_all), closed forms
 * of Hessians (2x^2, x^2, sigmoid, CCE, MSE of a linear model), the
 * Gauss-Newton product of a ReLU network, batching, and the refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nabla.h"
#include "nb_test_f64.h"

static const double TIGHT = 1e-12;

static void assert_ok(nb_status s)
{
    if (s != NB_OK) print_error("%s: %s\n", nb_status_name(s), nb_last_error());
    assert_int_equal(s, NB_OK);
}

/* -------------------------------------------------------- every op, HVP */

typedef struct {
    int rows, failures, nonzero;
    char ops[64][32];
    int nops;
} op_tally;

static void tally(const nb_opcheck2_row *row, void *user)
{
    op_tally *t = user;
    t->rows++;
    if (row->r.max_abs_hessian > 1e-6) t->nonzero++;
    if (!row->r.ok) {
        t->failures++;
        print_error("second-order check failed: %s (%s) d2/d%s d%s: worst %.3g (analytic %.10g, numeric %.10g)\n",
                    row->op, row->case_name, row->wrt, row->wrt2, row->r.worst_ratio, row->r.worst_analytic,
                    row->r.worst_numeric);
    }
    for (int i = 0; i < t->nops; i++)
        if (!strcmp(t->ops[i], row->op)) return;
    if (t->nops < 64) snprintf(t->ops[t->nops++], sizeof t->ops[0], "%s", row->op);
}

/* Every case of the op table, every block of its leaves (cross blocks such
 * as matmul's d2/dA dB carry the rules of bilinear ops), two seeds. */
static void test_every_op_against_differences(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 2; seed++) {
        op_tally t = {0};
        const int failures = nb_opcheck_second_all(seed, NULL, tally, &t);
        if (failures < 0) print_error("%s\n", nb_last_error());
        assert_int_equal(failures, 0);
        assert_int_equal(t.failures, 0);
        assert_true(t.rows >= 80);
        assert_true(t.nonzero >= t.rows * 3 / 4); /* most blocks are not zero: the check has teeth */
        assert_true(t.nops >= 30);                /* every op of the table has its row */
    }
}

/* A rule that is wrong must fail the check: the numeric Hessian is a real
 * reference (a zero analytic Hessian of sigmoid is caught). */
static void test_check_catches_a_wrong_hessian(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    int64_t s3 = 3;
    const double xs[3] = {-1, 0.5, 2};
    nb_node *x = leaf(g, 0, "x", 1, &s3, xs);
    nb_node *L = nb_sum(nb_sigmoid(x), 0, NULL, 0);
    nb_hessian_check_result r;
    assert_ok(nb_hessian_check(L, x, NULL, NULL, &r));
    assert_true(r.ok);
    assert_true(r.max_abs_hessian > 0.05);
    /* the numeric Hessian is not zero, so an analytic zero would not pass */
    nb_tensor *Hn = NULL;
    assert_ok(nb_hessian(L, x, NULL, &(nb_hessian_opts){1, 0, 0, 0}, &Hn));
    assert_true(fabs(Hn->data[0]) > 0.05);
    nb_tensor_free(Hn);
    nb_graph_free(g);
}

/* ------------------------------------------------------------ closed forms */

static double hvp1(nb_node *L, nb_node *x, double v)
{
    int64_t ks[2] = {1, 1};
    nb_tensor *vt = nb_tensor_from(2, ks, &v), *hv = NULL;
    const nb_tensor *vs[1] = {vt};
    assert_ok(nb_hvp(L, 1, &x, vs, &hv));
    assert_shape(hv, 2, ks);
    const double r = hv->data[0];
    nb_tensor_free(vt);
    nb_tensor_free(hv);
    return r;
}

/* The lecture's f(x) = 2x^2: f'' = 4 everywhere, so gradient descent with
 * rate alpha multiplies x by 1 - 4 alpha; x^2 (as pow and as x * x) has 2. */
static void test_scalar_second_derivatives(void **state)
{
    (void)state;
    const double xs[3] = {3, -0.5, 0};
    for (int t = 0; t < 3; t++) {
        nb_graph *g = nb_graph_new();
        int64_t one = 1;
        nb_node *x = leaf(g, 1, "x", 1, &one, &xs[t]);
        nb_node *f = nb_sum(nb_scale(nb_mul(x, x), 2), 0, NULL, 0);
        nb_node *p = nb_sum(nb_pow(x, 2), 0, NULL, 0), *m = nb_sum(nb_mul(x, x), 0, NULL, 0);
        assert_ok(nb_forward(g));
        NEAR(hvp1(f, x, 1), 4, TIGHT);
        NEAR(hvp1(f, x, -2.5), -10, TIGHT); /* linear in v */
        NEAR(hvp1(p, x, 1), 2, TIGHT);
        NEAR(hvp1(m, x, 1), 2, TIGHT);
        nb_tensor *H = NULL;
        assert_ok(nb_hessian(f, x, NULL, NULL, &H));
        int64_t hs[2] = {1, 1};
        assert_shape(H, 2, hs);
        NEAR(H->data[0], 4, TIGHT);
        nb_tensor_free(H);
        nb_graph_free(g);
    }
}

/* sum(sigmoid(x)): a diagonal Hessian with sigmoid'' = s (1 - s) (1 - 2 s). */
static void test_sigmoid_second_derivative(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    int64_t s4 = 4;
    const double xs[4] = {-3, -0.25, 0.7, 2.5};
    nb_node *x = leaf(g, 0, "x", 1, &s4, xs);
    nb_node *L = nb_sum(nb_sigmoid(x), 0, NULL, 0);
    nb_tensor *H = NULL;
    assert_ok(nb_hessian(L, x, NULL, NULL, &H));
    int64_t hs[2] = {4, 4};
    assert_shape(H, 2, hs);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            const double s = 1 / (1 + exp(-xs[i]));
            NEAR(H->data[i * 4 + j], i == j ? s * (1 - s) * (1 - 2 * s) : 0, TIGHT);
        }
    nb_tensor_free(H);
    nb_graph_free(g);
}

/* Mean CCE over N rows: d2L / dz dz = (diag(p_n) - p_n p_n^T) / N in row n's
 * block, zero between rows. */
static void test_cce_hessian_wrt_logits(void **state)
{
    (void)state;
    enum { N = 3, C = 4 };
    nb_graph *g = nb_graph_new();
    int64_t zs[2] = {N, C}, ls = N;
    const double z0[N * C] = {0.3, -1.2, 2.0, 0.1, -0.5, 0.5, 0.0, 1.5, 1.1, 1.0, -2.0, 0.4};
    const double labels[N] = {2, 0, 3};
    nb_node *z = leaf(g, 1, "z", 2, zs, z0), *y = leaf(g, 0, "y", 1, &ls, labels);
    nb_node *L = nb_cce_logits_loss(z, y);
    nb_tensor *H = NULL;
    assert_ok(nb_hessian(L, z, NULL, NULL, &H));
    int64_t hs[4] = {N, C, N, C};
    assert_shape(H, 4, hs);
    for (int n = 0; n < N; n++) {
        double p[C], sum = 0;
        for (int c = 0; c < C; c++) sum += (p[c] = exp(z0[n * C + c]));
        for (int c = 0; c < C; c++) p[c] /= sum;
        for (int m = 0; m < N; m++)
            for (int c = 0; c < C; c++)
                for (int d = 0; d < C; d++) {
                    const double want = n == m ? ((c == d ? p[c] : 0) - p[c] * p[d]) / N : 0;
                    NEAR(H->data[((n * C + c) * N + m) * C + d], want, TIGHT);
                }
    }
    nb_tensor_free(H);
    nb_graph_free(g);
}

/* MSE of a linear model, L = (1/n) |X w - t|^2: H = (2/n) X^T X, the same
 * at every w (and the Gauss-Newton product is all of it). */
static void test_mse_linear_model(void **state)
{
    (void)state;
    enum { n = 5, d = 3 };
    nb_graph *g = nb_graph_new();
    int64_t xs[2] = {n, d}, ws[2] = {d, 1}, ts[2] = {n, 1};
    const double X[n * d] = {1, 2, 0, -1, 0.5, 3, 0, 1, 1, 2, -2, 0.5, 0.3, 0.3, -1};
    const double w0[d] = {0.1, -0.4, 0.8}, t0[n] = {1, 0, -1, 2, 0.5};
    nb_node *x = leaf(g, 0, "X", 2, xs, X), *w = leaf(g, 1, "w", 2, ws, w0), *t = leaf(g, 0, "t", 2, ts, t0);
    nb_node *L = nb_mse_loss(nb_matmul(x, w), t);
    nb_tensor *H = NULL;
    assert_ok(nb_hessian(L, w, NULL, NULL, &H));
    for (int a = 0; a < d; a++)
        for (int b = 0; b < d; b++) {
            double xtx = 0;
            for (int i = 0; i < n; i++) xtx += X[i * d + a] * X[i * d + b];
            NEAR(H->data[a * d + b], 2.0 / n * xtx, TIGHT); /* H has shape (3, 1, 3, 1) */
        }
    /* Gauss-Newton: the same products */
    int64_t vs[3] = {2, d, 1};
    const double v[2 * d] = {1, 0, -1, 0.5, 2, 0.25};
    nb_tensor *vt = nb_tensor_from(3, vs, v), *gn = NULL, *hv = NULL;
    const nb_tensor *vv[1] = {vt};
    assert_ok(nb_gauss_newton_vp(L, 1, &w, vv, &gn));
    assert_ok(nb_hvp(L, 1, &w, vv, &hv));
    assert_shape(gn, 3, vs);
    for (int k = 0; k < 2; k++)
        for (int a = 0; a < d; a++) {
            double want = 0;
            for (int b = 0; b < d; b++) want += H->data[a * d + b] * v[k * d + b];
            NEAR(hv->data[k * d + a], want, TIGHT);
            NEAR(gn->data[k * d + a], want, TIGHT);
        }
    nb_tensor_free(vt), nb_tensor_free(gn), nb_tensor_free(hv), nb_tensor_free(H);
    nb_graph_free(g);
}

/* A small ReLU network: logits = relu(x W1 + b1) W2 + b2, L = mean CCE. */
typedef struct {
    nb_graph *g;
    nb_node *x, *w1, *b1, *w2, *b2, *labels, *L;
} relu_net;

static relu_net relu_net_new(uint64_t seed)
{
    relu_net r;
    nb_rng rng;
    nb_rng_seed(&rng, seed);
    r.g = nb_graph_new();
    int64_t xs[2] = {4, 5}, w1s[2] = {5, 6}, b1s = 6, w2s[2] = {6, 3}, b2s = 3, ls = 4;
    r.x = leaf(r.g, 0, "x", 2, xs, NULL), r.w1 = leaf(r.g, 1, "w1", 2, w1s, NULL);
    r.b1 = leaf(r.g, 1, "b1", 1, &b1s, NULL), r.w2 = leaf(r.g, 1, "w2", 2, w2s, NULL);
    r.b2 = leaf(r.g, 1, "b2", 1, &b2s, NULL), r.labels = leaf(r.g, 0, "labels", 1, &ls, NULL);
    nb_tensor_fill_uniform(nb_value(r.x), &rng, -1, 1);
    nb_tensor_fill_uniform(nb_value(r.w1), &rng, -1, 1);
    nb_tensor_fill_uniform(nb_value(r.b1), &rng, -0.2, 0.2);
    nb_tensor_fill_uniform(nb_value(r.w2), &rng, -1, 1);
    nb_tensor_fill_uniform(nb_value(r.b2), &rng, -0.2, 0.2);
    for (int i = 0; i < 4; i++) nb_value(r.labels)->data[i] = (double)(i % 3);
    nb_node *h = nb_relu(nb_add(nb_matmul(r.x, r.w1), r.b1));
    r.L = nb_cce_logits_loss(nb_add(nb_matmul(h, r.w2), r.b2), r.labels);
    assert_non_null(r.L);
    assert_ok(nb_forward(r.g));
    return r;
}

/* The logits are piecewise linear in x, so d2L/dx2 = J^T H_L J exactly (off
 * the kinks): the Hessian w.r.t. the input equals the Gauss-Newton matrix,
 * and it is not zero. */
static void test_relu_net_input_hessian_is_gauss_newton(void **state)
{
    (void)state;
    relu_net r = relu_net_new(7);
    const int64_t I = nb_value(r.x)->size;
    int64_t vs[3] = {I, 4, 5};
    nb_tensor *eye = nb_tensor_new(3, vs), *hv = NULL, *gn = NULL;
    for (int64_t k = 0; k < I; k++) eye->data[k * I + k] = 1;
    const nb_tensor *vv[1] = {eye};
    assert_ok(nb_hvp(r.L, 1, &r.x, vv, &hv));
    assert_ok(nb_gauss_newton_vp(r.L, 1, &r.x, vv, &gn));
    double max_abs = 0;
    for (int64_t i = 0; i < hv->size; i++) {
        NEAR(hv->data[i], gn->data[i], 1e-12);
        if (fabs(hv->data[i]) > max_abs) max_abs = fabs(hv->data[i]);
    }
    assert_true(max_abs > 1e-3);
    nb_hessian_check_result res;
    assert_ok(nb_hessian_check(r.L, r.x, NULL, NULL, &res));
    assert_true(res.ok);
    nb_tensor_free(hv), nb_tensor_free(gn), nb_tensor_free(eye);
    /* W.r.t. (w1, w2) jointly the logits are bilinear, not linear: the
     * full Hessian has the cross term (dL/dz) d2z/dw1 dw2 that G lacks. */
    nb_rng rng;
    nb_rng_seed(&rng, 9);
    int64_t s1[3] = {2, 5, 6}, s2[3] = {2, 6, 3};
    nb_tensor *v1 = nb_tensor_new(3, s1), *v2 = nb_tensor_new(3, s2), *hw[2], *gw[2];
    nb_tensor_fill_normal(v1, &rng, 0, 1);
    nb_tensor_fill_normal(v2, &rng, 0, 1);
    nb_node *wrt[2] = {r.w1, r.w2};
    const nb_tensor *vw[2] = {v1, v2};
    assert_ok(nb_hvp(r.L, 2, wrt, vw, hw));
    assert_ok(nb_gauss_newton_vp(r.L, 2, wrt, vw, gw));
    double diff = 0;
    for (int a = 0; a < 2; a++)
        for (int64_t i = 0; i < hw[a]->size; i++) diff = fmax(diff, fabs(hw[a]->data[i] - gw[a]->data[i]));
    assert_true(diff > 1e-3);
    for (int a = 0; a < 2; a++) nb_tensor_free(hw[a]), nb_tensor_free(gw[a]);
    nb_tensor_free(v1), nb_tensor_free(v2);
    nb_graph_free(r.g);
}

/* K vectors in one pass equal K passes of one; a joint HVP over several
 * nodes equals the sum of the Hessian's blocks; nb_grad is left alone. */
static void test_batched_and_joint(void **state)
{
    (void)state;
    relu_net r = relu_net_new(11);
    assert_ok(nb_backward(r.L));
    const double g0 = nb_grad(r.w2)->data[3];
    nb_rng rng;
    nb_rng_seed(&rng, 5);
    int64_t s1[3] = {3, 5, 6}, s2[3] = {3, 6, 3};
    nb_tensor *v1 = nb_tensor_new(3, s1), *v2 = nb_tensor_new(3, s2);
    nb_tensor_fill_normal(v1, &rng, 0, 1);
    nb_tensor_fill_normal(v2, &rng, 0, 1);
    nb_node *wrt[2] = {r.w1, r.w2};
    const nb_tensor *vs[2] = {v1, v2};
    nb_tensor *hv[2] = {NULL, NULL};
    assert_ok(nb_hvp(r.L, 2, wrt, vs, hv));
    nb_tensor *H[2][2];
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) assert_ok(nb_hessian(r.L, wrt[a], wrt[b], NULL, &H[a][b]));
    for (int a = 0; a < 2; a++) {
        const int64_t Ia = nb_value(wrt[a])->size;
        for (int64_t k = 0; k < 3; k++)
            for (int64_t i = 0; i < Ia; i++) {
                double want = 0;
                for (int b = 0; b < 2; b++) {
                    const int64_t Ib = nb_value(wrt[b])->size;
                    for (int64_t j = 0; j < Ib; j++) want += H[a][b]->data[i * Ib + j] * vs[b]->data[k * Ib + j];
                }
                NEAR(hv[a]->data[k * Ia + i], want, 1e-12);
            }
    }
    /* symmetry: H[w1][w2] is the transpose of H[w2][w1] */
    for (int64_t i = 0; i < 30; i++)
        for (int64_t j = 0; j < 18; j++) NEAR(H[0][1]->data[i * 18 + j], H[1][0]->data[j * 30 + i], 1e-12);
    NEAR(nb_grad(r.w2)->data[3], g0, 0);
    for (int a = 0; a < 2; a++) {
        nb_tensor_free(hv[a]);
        for (int b = 0; b < 2; b++) nb_tensor_free(H[a][b]);
    }
    nb_tensor_free(v1), nb_tensor_free(v2);
    nb_graph_free(r.g);
}

/* A small CNN (conv+relu, max pool, conv, dense, CCE) w.r.t. all its
 * parameters at once: the HVP against central differences of the gradient
 * along random directions. */
static void test_cnn_hvp_against_differences(void **state)
{
    (void)state;
    nb_rng rng;
    nb_rng_seed(&rng, 3);
    nb_graph *g = nb_graph_new();
    int64_t xs[4] = {2, 6, 6, 1}, k1s[4] = {3, 3, 1, 2}, b1s = 2, k2s[4] = {2, 2, 2, 3}, ws[2] = {12, 3}, ls = 2;
    nb_node *x = leaf(g, 0, "x", 4, xs, NULL), *k1 = leaf(g, 1, "k1", 4, k1s, NULL);
    nb_node *b1 = leaf(g, 1, "b1", 1, &b1s, NULL), *k2 = leaf(g, 1, "k2", 4, k2s, NULL);
    nb_node *w = leaf(g, 1, "w", 2, ws, NULL), *y = leaf(g, 0, "y", 1, &ls, NULL);
    nb_node *params[4] = {k1, b1, k2, w};
    nb_tensor_fill_uniform(nb_value(x), &rng, 0, 1);
    for (int i = 0; i < 4; i++) nb_tensor_fill_uniform(nb_value(params[i]), &rng, -1, 1);
    nb_value(y)->data[0] = 1, nb_value(y)->data[1] = 2;
    nb_node *h = nb_max_pool2d(nb_conv2d_relu(x, k1, b1, &(nb_conv2d_opts){1, 1, NB_PAD_SAME, 0}), 2, 0, NB_PAD_VALID);
    nb_node *h2 = nb_tanh(nb_conv2d(h, k2, NULL, &(nb_conv2d_opts){1, 1, NB_PAD_VALID, 0}));
    nb_node *L = nb_cce_logits_loss(nb_matmul(nb_flatten(h2), w), y);
    assert_non_null(L);
    assert_ok(nb_forward(g));
    nb_tensor *v[4], *hv[4];
    for (int i = 0; i < 4; i++) {
        int64_t s[NB_MAX_RANK + 1] = {1};
        memcpy(s + 1, nb_value(params[i])->shape, sizeof(int64_t) * (size_t)nb_value(params[i])->rank);
        v[i] = nb_tensor_new(nb_value(params[i])->rank + 1, s);
        nb_tensor_fill_normal(v[i], &rng, 0, 1);
    }
    assert_ok(nb_hvp(L, 4, params, (const nb_tensor *const *)v, hv));
    /* (grad(p + h v) - grad(p - h v)) / 2h */
    const double h_ = 1e-5;
    double *gp[4], *gm[4];
    for (int side = 0; side < 2; side++) {
        for (int i = 0; i < 4; i++)
            for (int64_t e = 0; e < v[i]->size; e++) nb_value(params[i])->data[e] += (side ? -2 : 1) * h_ * v[i]->data[e];
        assert_ok(nb_forward(g));
        assert_ok(nb_backward(L));
        for (int i = 0; i < 4; i++) {
            double **dst = side ? gm : gp;
            dst[i] = malloc(sizeof(double) * (size_t)v[i]->size);
            memcpy(dst[i], nb_grad(params[i])->data, sizeof(double) * (size_t)v[i]->size);
        }
    }
    double max_abs = 0;
    for (int i = 0; i < 4; i++) {
        for (int64_t e = 0; e < v[i]->size; e++) {
            const double num = (gp[i][e] - gm[i][e]) / (2 * h_);
            assert_true(fabs(hv[i]->data[e] - num) <= 1e-6 + 1e-4 * fabs(num));
            max_abs = fmax(max_abs, fabs(num));
        }
        free(gp[i]), free(gm[i]), nb_tensor_free(v[i]), nb_tensor_free(hv[i]);
    }
    assert_true(max_abs > 1e-2);
    nb_graph_free(g);
}

/* ------------------------------------------------------------ curvature */

/* MSE of a linear model whose X has orthogonal columns of norms 3, 2, 1, 0.5:
 * H = (2/n) X^T X = (2/n) diag(9, 4, 1, 0.25), so the top eigenvalues are
 * 18/n and 8/n, and Hutchinson's estimate of a diagonal matrix is exact
 * (z_i^2 = 1): the trace is (2/n) 14.25 at every sample. */
static void test_eigs_and_trace_of_known_hessian(void **state)
{
    (void)state;
    enum { n = 6, d = 4 };
    nb_graph *g = nb_graph_new();
    int64_t xs[2] = {n, d}, ws[2] = {d, 1}, ts[2] = {n, 1};
    double X[n * d] = {0};
    X[0 * d + 0] = 3, X[1 * d + 1] = 2, X[2 * d + 2] = 1, X[3 * d + 3] = 0.5;
    const double w0[d] = {0.3, -1, 2, 0.1}, t0[n] = {1, 2, 3, 4, 5, 6};
    nb_node *x = leaf(g, 0, "X", 2, xs, X), *w = leaf(g, 1, "w", 2, ws, w0), *t = leaf(g, 0, "t", 2, ts, t0);
    nb_node *L = nb_mse_loss(nb_matmul(x, w), t);
    assert_ok(nb_forward(g));
    nb_eigs_result e;
    assert_ok(nb_hessian_eigs(L, 1, &w, &(nb_eigs_opts){2, 200, 1e-10, 1}, &e));
    assert_int_equal(e.k, 2);
    assert_true(e.converged);
    assert_int_equal(e.products, 4 * e.iterations); /* k + 2 per iteration */
    NEAR(e.values[0], 18.0 / n, 1e-9);
    NEAR(e.values[1], 8.0 / n, 1e-9);
    assert_true(e.residuals[0] < 1e-6);
    int64_t vs[2] = {2, d};
    assert_shape(e.vectors, 2, vs);
    NEAR(fabs(e.vectors->data[0]), 1, 1e-6); /* e_0 and e_1 (up to sign) */
    NEAR(fabs(e.vectors->data[d + 1]), 1, 1e-6);
    nb_tensor_free(e.vectors);
    nb_trace_result tr;
    assert_ok(nb_hessian_trace(L, 1, &w, 5, 3, &tr));
    NEAR(tr.trace, 2.0 / n * 14.25, 1e-12);
    NEAR(tr.std_error, 0, 1e-12);
    assert_int_equal(tr.products, 5);
    nb_graph_free(g);
}

/* The ReLU net's Hessian w.r.t. (w1, b1): the top eigenpair satisfies
 * H u = l u on the full Hessian, no Rayleigh quotient of random unit
 * vectors exceeds |l|, and Hutchinson's trace is within 4 standard errors of
 * the exact one. */
static void test_eigs_of_relu_net(void **state)
{
    (void)state;
    relu_net r = relu_net_new(5);
    nb_node *wrt[2] = {r.w1, r.b1};
    nb_eigs_result e;
    assert_ok(nb_hessian_eigs(r.L, 2, wrt, &(nb_eigs_opts){1, 300, 1e-9, 7}, &e));
    assert_true(e.converged);
    /* the full 36 x 36 Hessian, blocks [w1 w1, w1 b1; b1 w1, b1 b1] */
    enum { P = 36 };
    double H[P * P];
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            nb_tensor *Hab = NULL;
            assert_ok(nb_hessian(r.L, wrt[a], wrt[b], NULL, &Hab));
            const int Ia = a ? 6 : 30, Ib = b ? 6 : 30, oa = a ? 30 : 0, ob = b ? 30 : 0;
            for (int i = 0; i < Ia; i++)
                for (int j = 0; j < Ib; j++) H[(oa + i) * P + ob + j] = Hab->data[i * Ib + j];
            nb_tensor_free(Hab);
        }
    const double *u = e.vectors->data, l = e.values[0];
    double tr = 0;
    for (int i = 0; i < P; i++) {
        double hu = 0;
        for (int j = 0; j < P; j++) hu += H[i * P + j] * u[j];
        NEAR(hu, l * u[i], 1e-6 * fabs(l));
        tr += H[i * P + i];
    }
    assert_true(fabs(l) > 1e-3);
    nb_rng rng;
    nb_rng_seed(&rng, 4);
    for (int t = 0; t < 50; t++) {
        double v[P], vv = 0, vhv = 0;
        for (int i = 0; i < P; i++) v[i] = nb_rng_normal(&rng), vv += v[i] * v[i];
        for (int i = 0; i < P; i++)
            for (int j = 0; j < P; j++) vhv += v[i] * H[i * P + j] * v[j];
        assert_true(fabs(vhv / vv) <= fabs(l) * (1 + 1e-9));
    }
    nb_tensor_free(e.vectors);
    nb_trace_result t;
    assert_ok(nb_hessian_trace(r.L, 2, wrt, 400, 9, &t));
    assert_true(t.std_error > 0);
    assert_true(fabs(t.trace - tr) <= 4 * t.std_error);
    nb_graph_free(r.g);
}

/* A = sum_r l_r u_r u_r^T with orthonormal u_r in dimension LR_DIM: an
 * explicit operator of rank `rank`, the shape of a one-example Hessian. */
enum { LR_DIM = 10 };
typedef struct {
    int rank;
    double l[3], u[3][LR_DIM];
} low_rank_op;

static nb_status low_rank_apply(void *user, int64_t K, const nb_real *x, nb_real *y)
{
    const low_rank_op *a = user;
    for (int64_t k = 0; k < K; k++) {
        const nb_real *xk = x + k * LR_DIM;
        nb_real *yk = y + k * LR_DIM;
        for (int e = 0; e < LR_DIM; e++) yk[e] = 0;
        for (int r = 0; r < a->rank; r++) {
            double d = 0;
            for (int e = 0; e < LR_DIM; e++) d += a->u[r][e] * xk[e];
            for (int e = 0; e < LR_DIM; e++) yk[e] += a->l[r] * d * a->u[r][e];
        }
    }
    return NB_OK;
}

static low_rank_op low_rank_new(int rank, int axes)
{
    low_rank_op a = {rank, {3, -2, 0.5}, {{0}}};
    if (axes) { /* u_r = e_{2r+1}: products exactly zero off the range */
        for (int r = 0; r < rank; r++) a.u[r][2 * r + 1] = 1;
        return a;
    }
    nb_rng rng;
    nb_rng_seed(&rng, 17);
    for (int r = 0; r < rank; r++) { /* Gram-Schmidt of random vectors */
        for (int e = 0; e < LR_DIM; e++) a.u[r][e] = nb_rng_normal(&rng);
        for (int q = 0; q < r; q++) {
            double d = 0;
            for (int e = 0; e < LR_DIM; e++) d += a.u[r][e] * a.u[q][e];
            for (int e = 0; e < LR_DIM; e++) a.u[r][e] -= d * a.u[q][e];
        }
        double norm = 0;
        for (int e = 0; e < LR_DIM; e++) norm += a.u[r][e] * a.u[r][e];
        for (int e = 0; e < LR_DIM; e++) a.u[r][e] /= sqrt(norm);
    }
    return a;
}

/* A defect found by review: once the Krylov space of a low-rank operator
 * was exhausted, the basis took rounding error as new directions, copies
 * of a Ritz vector, and the top value came out doubled (2.22 for 1.11).
 * Ranks 1-3 in dimension 10, u_r random or coordinate axes (then the
 * products off the range are exact zeros), iterated 300 times (tol too
 * small to stop):
 * the k = rank + 1 values are l_r (largest magnitude first, the negative
 * one included) and then exactly zero, not a ghost; residuals are small;
 * the vectors orthonormal; the same seed gives the same bits. */
static void test_eigs_of_low_rank_operators(void **state)
{
    (void)state;
    for (int run = 0; run < 6; run++) {
        const int rank = 1 + run / 2;
        low_rank_op a = low_rank_new(rank, run % 2);
        const int k = rank + 1;
        const nb_eigs_opts o = {k, 300, 1e-300, 5};
        nb_eigs_result e, again;
        assert_ok(nb_linop_eigs(LR_DIM, low_rank_apply, &a, &o, &e));
        assert_true(e.iterations == 300 || e.rel_change < 1e-300); /* exact values may stop it */
        for (int r = 0; r < rank; r++) {
            NEAR(e.values[r], a.l[r], 1e-12);
            assert_true(e.residuals[r] < 1e-9);
        }
        NEAR(e.values[rank], 0, 1e-12);
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++) {
                double d = 0;
                for (int c = 0; c < LR_DIM; c++) d += e.vectors->data[i * LR_DIM + c] * e.vectors->data[j * LR_DIM + c];
                NEAR(d, i == j, 1e-12);
            }
        assert_ok(nb_linop_eigs(LR_DIM, low_rank_apply, &a, &o, &again));
        assert_memory_equal(e.values, again.values, sizeof e.values);
        assert_memory_equal(e.vectors->data, again.vectors->data, (size_t)(k * LR_DIM) * sizeof(nb_real));
        nb_tensor_free(e.vectors), nb_tensor_free(again.vectors);
    }
}

/* Review findings: with k past the rank, the null space's Ritz values are
 * rounding noise whose change relative to themselves never settles; the
 * iteration judged them so and ran to max_iter. On the operator's scale
 * (the largest |value|) it converges at once. And an operator whose
 * product holds a NaN stopped as "converged" with NaN values: refused. */
static nb_status nan_apply(void *user, int64_t K, const nb_real *x, nb_real *y)
{
    nb_status s = low_rank_apply(user, K, x, y);
    y[K * LR_DIM - 1] = NAN;
    return s;
}
static void test_eigs_past_the_rank_and_nan(void **state)
{
    (void)state;
    low_rank_op a = low_rank_new(1, 0);
    const nb_eigs_opts o = {3, 200, 1e-8, 5};
    nb_eigs_result e;
    assert_ok(nb_linop_eigs(LR_DIM, low_rank_apply, &a, &o, &e));
    assert_true(e.converged);
    assert_true(e.iterations < 20);
    NEAR(e.values[0], 3, 1e-12);
    nb_tensor_free(e.vectors);
    assert_int_equal(nb_linop_eigs(LR_DIM, nan_apply, &a, &o, &e), NB_ERR_NUMERIC);
    assert_non_null(strstr(nb_last_error(), "eigs: a product of the operator holds NaN (vector "));
}

/* The reviewer's case on a graph: `dense 2` on the one example (0.5, -1)
 * with label 1. Its CCE Hessian w.r.t. (kernel, bias) has rank 1 (one
 * example, two classes), so lambda_1 is its trace, and the other values
 * vanish. */
static void test_eigs_of_one_example_model(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    int64_t xs[2] = {1, 2}, ws[2] = {2, 2}, bs[1] = {2}, ls[1] = {1};
    const double x0[2] = {0.5, -1}, w0[4] = {0.3, -0.2, 0.1, 0.4}, b0[2] = {0.05, -0.05}, y0[1] = {1};
    nb_node *x = leaf(g, 0, "x", 2, xs, x0), *w = leaf(g, 1, "kernel", 2, ws, w0);
    nb_node *b = leaf(g, 1, "bias", 1, bs, b0), *y = leaf(g, 0, "y", 1, ls, y0);
    nb_node *L = nb_cce_logits_loss(nb_add(nb_matmul(x, w), b), y);
    assert_ok(nb_forward(g));
    nb_node *wrt[2] = {w, b};
    double trace = 0;
    for (int i = 0; i < 2; i++) {
        nb_tensor *H = NULL;
        assert_ok(nb_hessian(L, wrt[i], NULL, NULL, &H));
        const int64_t m = nb_value(wrt[i])->size;
        for (int64_t j = 0; j < m; j++) trace += H->data[j * m + j];
        nb_tensor_free(H);
    }
    assert_true(trace > 0.1);
    for (int k = 1; k <= 3; k += 2) {
        nb_eigs_result e;
        assert_ok(nb_hessian_eigs(L, 2, wrt, &(nb_eigs_opts){k, 100, 1e-300, 1}, &e));
        NEAR(e.values[0], trace, 1e-12);
        assert_true(e.residuals[0] < 1e-9);
        for (int i = 1; i < k; i++) NEAR(e.values[i], 0, 1e-12);
        nb_tensor_free(e.vectors);
    }
    nb_graph_free(g);
}

/* nb_hvp, nb_jvp and nb_hessian_eigs on 70 wrt nodes (a limit of 64 once):
 * L = sum_i (i + 1) w_i^2 over 70 leaves of shape (2,), so H = diag(2 (i +
 * 1)) per leaf: H v = 2 (i + 1) v_i, the top eigenvalue 140. */
static void test_many_wrt_nodes(void **state)
{
    (void)state;
    enum { M = 70 };
    nb_graph *g = nb_graph_new();
    nb_node *w[M], *L = NULL;
    int64_t s2[1] = {2}, vs[2] = {1, 2};
    nb_tensor *v[M], *hv[M];
    for (int i = 0; i < M; i++) {
        const double w0[2] = {0.1 * i, -0.2}, c0[2] = {i + 1, i + 1};
        char name[16];
        snprintf(name, sizeof name, "w%d", i);
        w[i] = leaf(g, 1, name, 1, s2, w0);
        nb_node *term = nb_sum(nb_mul(leaf(g, 0, "c", 1, s2, c0), nb_mul(w[i], w[i])), 0, NULL, 0);
        L = L ? nb_add(L, term) : term;
        v[i] = nb_tensor_new(2, vs);
        v[i]->data[0] = 1, v[i]->data[1] = 0.5 * i;
    }
    assert_ok(nb_forward(g));
    assert_ok(nb_hvp(L, M, w, (const nb_tensor *const *)v, hv));
    for (int i = 0; i < M; i++) {
        NEAR(hv[i]->data[0], 2.0 * (i + 1), 1e-12);
        NEAR(hv[i]->data[1], 2.0 * (i + 1) * 0.5 * i, 1e-12);
        nb_tensor_free(hv[i]);
    }
    nb_tensor *jv = NULL; /* dL = sum_i 2 (i + 1) w_i . v_i */
    assert_ok(nb_jvp(L, M, w, (const nb_tensor *const *)v, &jv));
    double expect = 0;
    for (int i = 0; i < M; i++) expect += 2.0 * (i + 1) * (0.1 * i * 1 + -0.2 * 0.5 * i);
    NEAR(jv->data[0], expect, 1e-12);
    nb_tensor_free(jv);
    nb_eigs_result e;
    assert_ok(nb_hessian_eigs(L, M, w, &(nb_eigs_opts){2, 500, 1e-12, 3}, &e));
    NEAR(e.values[0], 2.0 * M, 1e-9);
    NEAR(e.values[1], 2.0 * M, 1e-9); /* each leaf's two elements share a value */
    nb_tensor_free(e.vectors);
    for (int i = 0; i < M; i++) nb_tensor_free(v[i]);
    nb_graph_free(g);
}

/* -------------------------------------------------------------- refusals */

static void test_refusals(void **state)
{
    (void)state;
    relu_net r = relu_net_new(2);
    int64_t s1[3] = {1, 5, 6};
    nb_tensor *v = nb_tensor_new(3, s1), *hv = NULL, *H = NULL;
    const nb_tensor *vs[1] = {v};
    /* a non-scalar out */
    nb_node *logits = nb_graph_node(r.g, nb_graph_size(r.g) - 2);
    assert_int_equal(nb_hvp(logits, 1, &r.w1, vs, &hv), NB_ERR_SHAPE);
    assert_non_null(strstr(nb_last_error(), "must be a scalar"));
    /* an op node as wrt */
    assert_int_equal(nb_hvp(r.L, 1, &logits, vs, &hv), NB_ERR_ARG);
    assert_non_null(strstr(nb_last_error(), "leaves"));
    /* vectors of the wrong shape */
    int64_t bad[3] = {1, 6, 5};
    nb_tensor *vb = nb_tensor_new(3, bad);
    const nb_tensor *vbs[1] = {vb};
    assert_int_equal(nb_hvp(r.L, 1, &r.w1, vbs, &hv), NB_ERR_SHAPE);
    assert_null(hv);
    /* a Hessian too large: refused from the shapes, with the bytes */
    assert_int_equal(nb_hessian(r.L, r.w1, NULL, &(nb_hessian_opts){0, 0, 0, 1000}, &H), NB_ERR_TOO_LARGE);
    assert_null(H);
    assert_non_null(strstr(nb_last_error(), "7200 bytes"));
    /* a non-scalar out's Hessian: out.shape + wrt.shape + wrt.shape */
    assert_ok(nb_hessian(logits, r.b2, NULL, NULL, &H));
    int64_t hs[4] = {4, 3, 3, 3};
    assert_shape(H, 4, hs);
    for (int64_t i = 0; i < H->size; i++) NEAR(H->data[i], 0, 0); /* logits are linear in b2 */
    nb_tensor_free(H);
    nb_tensor_free(v), nb_tensor_free(vb);
    nb_graph_free(r.g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_op_against_differences),
        cmocka_unit_test(test_check_catches_a_wrong_hessian),
        cmocka_unit_test(test_scalar_second_derivatives),
        cmocka_unit_test(test_sigmoid_second_derivative),
        cmocka_unit_test(test_cce_hessian_wrt_logits),
        cmocka_unit_test(test_mse_linear_model),
        cmocka_unit_test(test_relu_net_input_hessian_is_gauss_newton),
        cmocka_unit_test(test_batched_and_joint),
        cmocka_unit_test(test_cnn_hvp_against_differences),
        cmocka_unit_test(test_eigs_and_trace_of_known_hessian),
        cmocka_unit_test(test_eigs_of_relu_net),
        cmocka_unit_test(test_eigs_of_low_rank_operators),
        cmocka_unit_test(test_eigs_past_the_rank_and_nan),
        cmocka_unit_test(test_eigs_of_one_example_model),
        cmocka_unit_test(test_many_wrt_nodes),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
