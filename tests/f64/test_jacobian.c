/* Full, per-example and numeric Jacobians (nb_jacobian) and the gradient
 * checker (nb_gradcheck), on the double build. Every Jacobian below is
 * compared element by element with its closed form or with another mode. */
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


static const double TIGHT = 1e-12; /* analytic vs analytic or closed form */
static const double LOOSE = 1e-7;  /* anything vs central differences */

static void fill(nb_node *n, nb_rng *r)
{
    nb_tensor_fill_uniform(nb_value(n), r, -1, 1);
}

static void assert_tensors_near(const nb_tensor *a, const nb_tensor *b, double tol)
{
    assert_shape(a, b->rank, b->shape);
    for (int64_t i = 0; i < a->size; i++) NEAR(a->data[i], b->data[i], tol);
}

static double max_abs(const nb_tensor *t)
{
    double m = 0;
    for (int64_t i = 0; i < t->size; i++) m = fabs(t->data[i]) > m ? fabs(t->data[i]) : m;
    return m;
}

static nb_tensor *jac(nb_node *out, nb_node *wrt, nb_jac_mode mode, int per_example)
{
    nb_jacobian_opts o = {0};
    o.mode = mode;
    o.per_example = per_example;
    nb_tensor *J = NULL;
    nb_status s = nb_jacobian(out, wrt, &o, &J);
    if (s != NB_OK) print_error("nb_jacobian (%s): %s\n", nb_jac_mode_name(mode), nb_last_error());
    assert_int_equal(s, NB_OK);
    assert_non_null(J);
    return J;
}

static const nb_jac_mode MODES[3] = {NB_JAC_REV, NB_JAC_FWD, NB_JAC_NUMERIC};

static double tol_of(nb_jac_mode m) { return m == NB_JAC_NUMERIC ? LOOSE : TIGHT; }

/* ------------------------------------------------------------ d(x^2)/dx */

static void test_square(void **state)
{
    (void)state;
    const double xs[3] = {2, -2, 1}, want[3] = {4, -4, 2};
    for (int t = 0; t < 3; t++) {
        nb_graph *g = nb_graph_new();
        int64_t one = 1;
        nb_node *x = leaf(g, 0, "x", 1, &one, &xs[t]);
        nb_node *y_pow = nb_pow(x, 2), *y_mul = nb_mul(x, x);
        assert_non_null(y_pow);
        assert_non_null(y_mul);
        for (int m = 0; m < 3; m++) {
            nb_node *ys[2] = {y_pow, y_mul};
            for (int v = 0; v < 2; v++) {
                nb_tensor *J = jac(ys[v], x, MODES[m], 0);
                int64_t js[2] = {1, 1};
                assert_shape(J, 2, js);
                NEAR(J->data[0], want[t], tol_of(MODES[m]));
                NEAR(nb_value(ys[v])->data[0], xs[t] * xs[t], TIGHT);
                nb_tensor_free(J);
            }
        }
        /* The numeric mode left x at its value. */
        assert_true(nb_value(x)->data[0] == xs[t]);
        nb_graph_free(g);
    }
}

/* ------------------------------------------------ sigmoid' = s (1 - s) */

static void test_sigmoid_diagonal(void **state)
{
    (void)state;
    const double xs[6] = {-4, -1.5, -0.25, 0, 0.7, 3};
    int64_t n = 6;
    nb_graph *g = nb_graph_new();
    nb_node *x = leaf(g, 0, "x", 1, &n, xs);
    nb_node *y = nb_sigmoid(x);
    assert_non_null(y);
    for (int m = 0; m < 3; m++) {
        nb_tensor *J = jac(y, x, MODES[m], 0);
        int64_t js[2] = {6, 6};
        assert_shape(J, 2, js);
        for (int i = 0; i < 6; i++) {
            double s = 1 / (1 + exp(-xs[i]));
            NEAR(nb_value(y)->data[i], s, TIGHT);
            for (int j = 0; j < 6; j++) {
                double v = J->data[i * 6 + j];
                if (i == j) NEAR(v, s * (1 - s), tol_of(MODES[m]));
                else assert_true(v == 0); /* exactly: y_i does not move with x_j */
            }
        }
        nb_tensor_free(J);
    }
    nb_graph_free(g);
}

/* ------------------------------------------ neuron: d(x^T w + b)/dw = x^T */

static void test_neuron(void **state)
{
    (void)state;
    const double xv[3] = {0.5, -1.25, 2}, wv[3] = {0.3, -0.7, 0.9}, bv[1] = {0.1};
    int64_t xs[2] = {1, 3}, ws[2] = {3, 1}, bs[1] = {1};
    nb_graph *g = nb_graph_new();
    nb_node *x = leaf(g, 0, "x", 2, xs, xv), *w = leaf(g, 1, "w", 2, ws, wv), *b = leaf(g, 1, "b", 1, bs, bv);
    nb_node *z = nb_add(nb_matmul(x, w), b);
    assert_non_null(z);
    for (int m = 0; m < 3; m++) {
        nb_tensor *J = jac(z, w, MODES[m], 0);
        int64_t js[4] = {1, 1, 3, 1};
        assert_shape(J, 4, js);
        for (int p = 0; p < 3; p++) NEAR(J->data[p], xv[p], tol_of(MODES[m]));
        nb_tensor_free(J);

        J = jac(z, x, MODES[m], 0); /* dz/dx = w^T, shape (1,1,1,3) */
        int64_t jx[4] = {1, 1, 1, 3};
        assert_shape(J, 4, jx);
        for (int p = 0; p < 3; p++) NEAR(J->data[p], wv[p], tol_of(MODES[m]));
        nb_tensor_free(J);

        J = jac(z, b, MODES[m], 0); /* dz/db = 1, shape (1,1,1) */
        int64_t jb[3] = {1, 1, 1};
        assert_shape(J, 3, jb);
        NEAR(J->data[0], 1, tol_of(MODES[m]));
        nb_tensor_free(J);
    }
    NEAR(nb_value(z)->data[0], 0.5 * 0.3 + 1.25 * 0.7 + 2 * 0.9 + 0.1, TIGHT);
    nb_graph_free(g);
}

/* ------------------- dense layer: d(A W + b)/dW [n,j,p,q] = A[n,p] [j == q] */

static void test_dense_wrt_kernel(void **state)
{
    (void)state;
    enum { N = 3, L0 = 4, L1 = 2 };
    int64_t as[2] = {N, L0}, ws[2] = {L0, L1}, bs[1] = {L1};
    nb_rng r;
    nb_rng_seed(&r, 11);
    nb_graph *g = nb_graph_new();
    nb_node *A = leaf(g, 0, "A", 2, as, NULL), *W = leaf(g, 1, "W", 2, ws, NULL), *b = leaf(g, 1, "b", 1, bs, NULL);
    fill(A, &r), fill(W, &r), fill(b, &r);
    nb_node *Z = nb_add(nb_matmul(A, W), b);
    assert_non_null(Z);
    const double *a = nb_value(A)->data;
    for (int m = 0; m < 3; m++) {
        nb_tensor *J = jac(Z, W, MODES[m], 0);
        int64_t js[4] = {N, L1, L0, L1};
        assert_shape(J, 4, js);
        int nonzero = 0;
        for (int n = 0; n < N; n++)
            for (int j = 0; j < L1; j++)
                for (int p = 0; p < L0; p++)
                    for (int q = 0; q < L1; q++) {
                        double v = J->data[((n * L1 + j) * L0 + p) * L1 + q];
                        if (j == q) {
                            NEAR(v, a[n * L0 + p], tol_of(MODES[m]));
                            nonzero += v != 0;
                        } else if (MODES[m] == NB_JAC_NUMERIC) {
                            NEAR(v, 0, LOOSE);
                        } else {
                            assert_true(v == 0); /* the sparsity pattern, exactly */
                        }
                    }
        assert_int_equal(nonzero, N * L1 * L0);
        nb_tensor_free(J);

        /* d Z / d b [n,j,q] = [j == q] */
        J = jac(Z, b, MODES[m], 0);
        int64_t jb[3] = {N, L1, L1};
        assert_shape(J, 3, jb);
        for (int n = 0; n < N; n++)
            for (int j = 0; j < L1; j++)
                for (int q = 0; q < L1; q++) NEAR(J->data[(n * L1 + j) * L1 + q], j == q, tol_of(MODES[m]));
        nb_tensor_free(J);
    }
    nb_graph_free(g);
}

/* --------------------------- an output that does not depend on an input */

static void test_independent_input(void **state)
{
    (void)state;
    int64_t xs[2] = {2, 3}, zs[3] = {4, 1, 2};
    nb_rng r;
    nb_rng_seed(&r, 5);
    nb_graph *g = nb_graph_new();
    nb_node *x = leaf(g, 0, "x", 2, xs, NULL), *z = leaf(g, 1, "z", 3, zs, NULL);
    fill(x, &r), fill(z, &r);
    nb_node *y = nb_scale(nb_tanh(x), 2);
    nb_node *unused = nb_exp(z); /* z feeds another branch, not y */
    assert_non_null(y);
    assert_non_null(unused);
    for (int m = 0; m < 3; m++) {
        nb_tensor *J = jac(y, z, MODES[m], 0);
        int64_t js[5] = {2, 3, 4, 1, 2};
        assert_shape(J, 5, js);
        for (int64_t i = 0; i < J->size; i++) assert_true(J->data[i] == 0);
        nb_tensor_free(J);
        /* And y still depends on x: that Jacobian is not zero. */
        J = jac(y, x, MODES[m], 0);
        assert_true(max_abs(J) > 0.1);
        nb_tensor_free(J);
    }
    nb_graph_free(g);
}

/* ---------------------------------------------------------- a small MLP */

typedef struct {
    nb_graph *g;
    nb_node *A, *W1, *b1, *W2, *b2, *H, *out;
} mlp;

static void mlp_build(mlp *m, int64_t N, int64_t l0, int64_t l1, int64_t l2, uint64_t seed)
{
    nb_rng r;
    nb_rng_seed(&r, seed);
    m->g = nb_graph_new();
    assert_non_null(m->g);
    int64_t as[2] = {N, l0}, w1s[2] = {l0, l1}, b1s[1] = {l1}, w2s[2] = {l1, l2}, b2s[1] = {l2};
    m->A = leaf(m->g, 0, "A", 2, as, NULL);
    m->W1 = leaf(m->g, 1, "W1", 2, w1s, NULL);
    m->b1 = leaf(m->g, 1, "b1", 1, b1s, NULL);
    m->W2 = leaf(m->g, 1, "W2", 2, w2s, NULL);
    m->b2 = leaf(m->g, 1, "b2", 1, b2s, NULL);
    fill(m->A, &r), fill(m->W1, &r), fill(m->b1, &r), fill(m->W2, &r), fill(m->b2, &r);
    m->H = nb_tanh(nb_add(nb_matmul(m->A, m->W1), m->b1));
    m->out = nb_add(nb_matmul(m->H, m->W2), m->b2);
    assert_non_null(m->out);
}

static void test_mlp_modes_agree(void **state)
{
    (void)state;
    mlp m;
    mlp_build(&m, 3, 4, 5, 2, 21);
    nb_node *wrt[4] = {m.A, m.W1, m.b1, m.W2};
    for (int w = 0; w < 4; w++) {
        nb_tensor *Jr = jac(m.out, wrt[w], NB_JAC_REV, 0);
        nb_tensor *Jf = jac(m.out, wrt[w], NB_JAC_FWD, 0);
        nb_tensor *Jn = jac(m.out, wrt[w], NB_JAC_NUMERIC, 0);
        nb_tensor *Ja = jac(m.out, wrt[w], NB_JAC_AUTO, 0);
        int64_t js[NB_MAX_RANK] = {3, 2};
        const nb_tensor *v = nb_value(wrt[w]);
        for (int d = 0; d < v->rank; d++) js[2 + d] = v->shape[d];
        assert_shape(Jr, 2 + v->rank, js);
        assert_true(max_abs(Jr) > 0.01); /* not a vacuous comparison of zeros */
        assert_tensors_near(Jf, Jr, TIGHT);
        assert_tensors_near(Jn, Jr, LOOSE);
        assert_tensors_near(Ja, Jr, TIGHT);
        /* Small chunks (several passes) give the same Jacobian. */
        for (int mode = 0; mode < 2; mode++)
            for (int64_t chunk = 1; chunk <= 3; chunk++) {
                nb_jacobian_opts o = {0};
                o.mode = mode == 0 ? NB_JAC_REV : NB_JAC_FWD;
                o.chunk = chunk;
                nb_tensor *Jc = NULL;
                assert_int_equal(nb_jacobian(m.out, wrt[w], &o, &Jc), NB_OK);
                assert_tensors_near(Jc, Jr, TIGHT);
                nb_tensor_free(Jc);
            }
        nb_tensor_free(Jr), nb_tensor_free(Jf), nb_tensor_free(Jn), nb_tensor_free(Ja);
    }
    /* Closed form for the last layer: d out[n,o] / d W2[j,q] = H[n,j] [o == q]. */
    nb_tensor *J = jac(m.out, m.W2, NB_JAC_REV, 0);
    const double *h = nb_value(m.H)->data;
    for (int n = 0; n < 3; n++)
        for (int o = 0; o < 2; o++)
            for (int j = 0; j < 5; j++)
                for (int q = 0; q < 2; q++)
                    NEAR(J->data[((n * 2 + o) * 5 + j) * 2 + q], o == q ? h[n * 5 + j] : 0, TIGHT);
    nb_tensor_free(J);
    nb_graph_free(m.g);
}

/* A Jacobian with respect to an intermediate node (an op output): REV and
 * FWD allow it; d out[n,o] / d H[m,j] = [n == m] W2[j,o]. NUMERIC refuses. */
static void test_wrt_intermediate(void **state)
{
    (void)state;
    mlp m;
    mlp_build(&m, 3, 4, 5, 2, 8);
    for (int mode = 0; mode < 2; mode++) {
        nb_tensor *J = jac(m.out, m.H, MODES[mode], 0);
        int64_t js[4] = {3, 2, 3, 5};
        assert_shape(J, 4, js);
        const double *w2 = nb_value(m.W2)->data;
        for (int n = 0; n < 3; n++)
            for (int o = 0; o < 2; o++)
                for (int k = 0; k < 3; k++)
                    for (int j = 0; j < 5; j++)
                        NEAR(J->data[((n * 2 + o) * 3 + k) * 5 + j], n == k ? w2[j * 2 + o] : 0, TIGHT);
        nb_tensor_free(J);
    }
    nb_jacobian_opts o = {0};
    o.mode = NB_JAC_NUMERIC;
    nb_tensor *J = NULL;
    assert_int_equal(nb_jacobian(m.out, m.H, &o, &J), NB_ERR_ARG);
    assert_null(J);
    assert_non_null(strstr(nb_last_error(), "numeric"));
    nb_graph_free(m.g);
}

/* A leaf with respect to itself: d x / d x = I in every mode. The numeric
 * mode once read the output after restoring x (the output is x's own
 * buffer) and gave 0.5 on the diagonal; nb_gradcheck(x, x) then failed. */
static void test_wrt_itself(void **state)
{
    (void)state;
    const double xv[6] = {0.5, -1.25, 2, 0, 3, -0.1};
    int64_t xs[2] = {2, 3};
    nb_graph *g = nb_graph_new();
    nb_node *x = leaf(g, 0, "x", 2, xs, xv), *w = leaf(g, 1, "w", 2, xs, xv);
    for (int m = 0; m < 3; m++) {
        for (int per = 0; per < 2; per++) {
            nb_node *nodes[2] = {x, w};
            for (int v = 0; v < 2; v++) {
                nb_tensor *J = jac(nodes[v], nodes[v], MODES[m], per && v == 0);
                int64_t n = per && v == 0 ? 3 : 6;
                assert_int_equal(J->size, (per && v == 0 ? 2 : 1) * n * n);
                for (int64_t i = 0; i < J->size; i++) {
                    int64_t r = (i / n) % n, c = i % n;
                    NEAR(J->data[i], r == c, tol_of(MODES[m]));
                }
                nb_tensor_free(J);
                for (int i = 0; i < 6; i++) assert_true(nb_value(nodes[v])->data[i] == xv[i]);
            }
        }
    }
    nb_gradcheck_result res;
    assert_int_equal(nb_gradcheck(x, x, NULL, &res), NB_OK);
    assert_int_equal(res.ok, 1);
    NEAR(res.max_abs_jacobian, 1, TIGHT);
    assert_true(res.max_err_rev < 1e-8);
    assert_int_equal(nb_gradcheck(w, w, NULL, &res), NB_OK);
    assert_int_equal(res.ok, 1);
    nb_graph_free(g);
}

/* ------------------------------------------------ per-example Jacobians */

static void check_per_example(int64_t l0, int64_t l2, uint64_t seed)
{
    enum { N = 4 };
    mlp m;
    mlp_build(&m, N, l0, 5, l2, seed);
    const int64_t O = l2, I = l0;
    nb_tensor *full = jac(m.out, m.A, NB_JAC_REV, 0);
    int64_t fs[4] = {N, O, N, I};
    assert_shape(full, 4, fs);
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t k = 0; k < N; k++)
                for (int64_t i = 0; i < I; i++)
                    if (k != n) assert_true(full->data[((n * O + o) * N + k) * I + i] == 0);

    nb_tensor *per[4];
    const nb_jac_mode pm[4] = {NB_JAC_REV, NB_JAC_FWD, NB_JAC_NUMERIC, NB_JAC_AUTO};
    for (int t = 0; t < 4; t++) {
        per[t] = jac(m.out, m.A, pm[t], 1);
        int64_t ps[3] = {N, O, I};
        assert_shape(per[t], 3, ps);
        for (int64_t n = 0; n < N; n++)
            for (int64_t o = 0; o < O; o++)
                for (int64_t i = 0; i < I; i++)
                    NEAR(per[t]->data[(n * O + o) * I + i], full->data[((n * O + o) * N + n) * I + i],
                         tol_of(pm[t]));
    }
    assert_true(max_abs(per[0]) > 0.01);
    /* AUTO takes the mode with fewer passes: REV when O <= I, else FWD;
     * it gives that mode's numbers exactly. */
    const nb_tensor *cheaper = O <= I ? per[0] : per[1];
    for (int64_t i = 0; i < cheaper->size; i++) assert_true(per[3]->data[i] == cheaper->data[i]);
    for (int t = 0; t < 4; t++) nb_tensor_free(per[t]);
    nb_tensor_free(full);

    /* A parameter has no batch axis: per-example makes no sense for it. */
    nb_jacobian_opts o = {0};
    o.per_example = 1;
    nb_tensor *J = NULL;
    assert_int_equal(nb_jacobian(m.out, m.W1, &o, &J), NB_ERR_SHAPE);
    assert_null(J);
    assert_non_null(strstr(nb_last_error(), "per-example"));
    nb_graph_free(m.g);
}

static void test_per_example(void **state)
{
    (void)state;
    check_per_example(3, 2, 31); /* O < I: AUTO = REV */
    check_per_example(2, 3, 32); /* O > I: AUTO = FWD */
}

/* ---------------------------------------------------- too large to hold */

static void test_too_large(void **state)
{
    (void)state;
    int64_t as[2] = {128, 9216}, ks[2] = {9216, 128};
    nb_graph *g = nb_graph_new();
    nb_node *A = leaf(g, 0, "A", 2, as, NULL), *K = leaf(g, 1, "kernel", 2, ks, NULL);
    for (int64_t i = 0; i < nb_value(A)->size; i++) nb_value(A)->data[i] = 1;
    for (int64_t i = 0; i < nb_value(K)->size; i++) nb_value(K)->data[i] = 1;
    nb_node *Y = nb_matmul(A, K);
    assert_non_null(Y);
    nb_tensor *J = (nb_tensor *)&J; /* must be reset to NULL */
    assert_int_equal(nb_jacobian(Y, K, NULL, &J), NB_ERR_TOO_LARGE);
    assert_null(J);
    /* 128*128 outputs x 9216*128 inputs x 8 bytes. */
    char want[64];
    snprintf(want, sizeof want, "%lld bytes", 128LL * 128 * 9216 * 128 * (long long)sizeof(nb_real));
    if (!strstr(nb_last_error(), want)) print_error("message: %s\n", nb_last_error());
    assert_non_null(strstr(nb_last_error(), want));
    assert_non_null(strstr(nb_last_error(), "(128, 128)"));
    assert_non_null(strstr(nb_last_error(), "(9216, 128)"));
    /* Refused on shapes alone, before any forward pass ran: Y was never computed. */
    assert_true(nb_value(Y)->data[0] == 0);
    for (int m = 0; m < 3; m++) {
        nb_jacobian_opts o = {0};
        o.mode = MODES[m];
        assert_int_equal(nb_jacobian(Y, K, &o, &J), NB_ERR_TOO_LARGE);
        assert_null(J);
    }
    nb_graph_free(g);
}

static void test_max_bytes(void **state)
{
    (void)state;
    mlp m;
    mlp_build(&m, 3, 4, 5, 2, 3);
    /* d out / d W1: 3*2*4*5 = 120 elements. */
    nb_jacobian_opts o = {0};
    o.max_bytes = 120 * sizeof(nb_real) - 1;
    nb_tensor *J = NULL;
    assert_int_equal(nb_jacobian(m.out, m.W1, &o, &J), NB_ERR_TOO_LARGE);
    assert_null(J);
    o.max_bytes = 120 * sizeof(nb_real);
    assert_int_equal(nb_jacobian(m.out, m.W1, &o, &J), NB_OK);
    assert_int_equal(J->size, 120);
    nb_tensor_free(J);
    nb_graph_free(m.g);
}

/* ------------------------------------------------------------ gradcheck */

static void test_gradcheck_ok(void **state)
{
    (void)state;
    mlp m;
    mlp_build(&m, 3, 4, 5, 2, 44);
    nb_node *wrt[5] = {m.A, m.W1, m.b1, m.W2, m.b2};
    for (int w = 0; w < 5; w++) {
        nb_gradcheck_result res;
        assert_int_equal(nb_gradcheck(m.out, wrt[w], NULL, &res), NB_OK);
        assert_int_equal(res.ok, 1);
        assert_true(res.worst_ratio <= 1);
        assert_true(res.max_err_rev < 1e-8);
        assert_true(res.max_err_fwd < 1e-8);
        assert_true(res.max_abs_jacobian > 0.01);
        assert_int_equal(res.worst_rank, 2 + nb_value(wrt[w])->rank);
    }
    nb_graph_free(m.g);
}

/* relu at exactly 0: central differences see (eps - 0) / 2 eps = 0.5, the
 * analytic derivative is 0 there. The checker must flag that element. abs at
 * 0 is symmetric (numeric 0, analytic sign(0) = 0) and passes. */
static void test_gradcheck_catches_mismatch(void **state)
{
    (void)state;
    const double xv[3] = {-1, 0, 2};
    int64_t n = 3;
    nb_graph *g = nb_graph_new();
    nb_node *x = leaf(g, 0, "x", 1, &n, xv);
    nb_node *r = nb_relu(x), *a = nb_abs(x);
    assert_non_null(r);
    assert_non_null(a);

    nb_gradcheck_result res;
    assert_int_equal(nb_gradcheck(r, x, NULL, &res), NB_OK);
    assert_int_equal(res.ok, 0);
    assert_int_equal(res.worst_rank, 2);
    assert_int_equal(res.worst_index[0], 1);
    assert_int_equal(res.worst_index[1], 1);
    assert_int_equal(res.worst_flat, 1 * 3 + 1);
    NEAR(res.worst_numeric, 0.5, LOOSE);
    assert_true(res.worst_analytic == 0);
    NEAR(res.max_err_rev, 0.5, LOOSE);
    NEAR(res.max_err_fwd, 0.5, LOOSE);
    assert_true(res.worst_ratio > 1);
    NEAR(res.max_abs_jacobian, 1, TIGHT);

    assert_int_equal(nb_gradcheck(a, x, NULL, &res), NB_OK);
    assert_int_equal(res.ok, 1);
    NEAR(res.max_abs_jacobian, 1, TIGHT);
    nb_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_square),
        cmocka_unit_test(test_sigmoid_diagonal),
        cmocka_unit_test(test_neuron),
        cmocka_unit_test(test_dense_wrt_kernel),
        cmocka_unit_test(test_independent_input),
        cmocka_unit_test(test_mlp_modes_agree),
        cmocka_unit_test(test_wrt_intermediate),
        cmocka_unit_test(test_wrt_itself),
        cmocka_unit_test(test_per_example),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_max_bytes),
        cmocka_unit_test(test_gradcheck_ok),
        cmocka_unit_test(test_gradcheck_catches_mismatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
