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
    /* ... and says that the failing column is a kink. */
    assert_int_equal(res.kinks, 1);
    assert_int_equal(res.ok_off_kinks, 1);

    assert_int_equal(nb_gradcheck(a, x, NULL, &res), NB_OK);
    assert_int_equal(res.ok, 1);
    assert_int_equal(res.kinks, 1); /* a kink, though a symmetric one */
    assert_int_equal(res.ok_off_kinks, 1);
    NEAR(res.max_abs_jacobian, 1, TIGHT);
    nb_graph_free(g);
}

/* ------------------------------------------------------ kinks and ties */

static nb_tensor *kinks_of(nb_node *out, nb_node *wrt, double eps, int per_example, int64_t *count)
{
    nb_jacobian_opts o = {0};
    o.eps = eps;
    o.per_example = per_example;
    nb_tensor *K = NULL, *J = NULL, *Jn = NULL;
    nb_status s = nb_jacobian_kinks(out, wrt, &o, 0, 0, &J, &K, count);
    if (s) print_error("nb_jacobian_kinks: %s\n", nb_last_error());
    assert_int_equal(s, NB_OK);
    assert_shape(K, nb_value(wrt)->rank, nb_value(wrt)->shape);
    /* Its Jacobian is nb_jacobian's numeric one, exactly. */
    o.mode = NB_JAC_NUMERIC;
    assert_int_equal(nb_jacobian(out, wrt, &o, &Jn), NB_OK);
    assert_int_equal(J->size, Jn->size);
    for (int64_t i = 0; i < J->size; i++) assert_true(J->data[i] == Jn->data[i]);
    nb_tensor_free(J), nb_tensor_free(Jn);
    /* Without J: the same flags. */
    nb_tensor *K2 = NULL;
    int64_t c2 = -1;
    assert_int_equal(nb_jacobian_kinks(out, wrt, &o, 0, 0, NULL, &K2, &c2), NB_OK);
    assert_int_equal(c2, *count);
    assert_memory_equal(K2->data, K->data, (size_t)K->size * sizeof(nb_real));
    nb_tensor_free(K2);
    return K;
}

static void assert_flags(const nb_tensor *K, const int *want, int64_t n)
{
    assert_int_equal(K->size, n);
    for (int64_t i = 0; i < n; i++) {
        if (K->data[i] != want[i]) print_error("kink flag %lld: %g, want %d\n", (long long)i, K->data[i], want[i]);
        assert_true(K->data[i] == want[i]);
    }
}

/* A max pool whose window holds two equal maxima: perturbing either one
 * moves the max with slope 1 one way and 0 the other; central differences
 * give 0.5 and reverse mode 1 (the first) and 0. The one-sided test flags
 * exactly those two inputs, and the gradient check fails only there. */
static void test_kinks_pool_tie(void **state)
{
    (void)state;
    const double xv[8] = {1, 1, 0.2, 0.3, /* second window: no tie */ 0.1, 0.9, 0.4, -0.2};
    int64_t xs[4] = {1, 2, 4, 1};
    nb_graph *g = nb_graph_new();
    nb_node *x = leaf(g, 0, "x", 4, xs, xv);
    nb_node *y = nb_max_pool2d(x, 2, 0, NB_PAD_VALID);
    assert_non_null(y);
    int64_t count = -1;
    nb_tensor *K = kinks_of(y, x, 0, 0, &count);
    /* x is (1, 2, 4, 1): rows 1 1 0.2 0.3 and 0.1 0.9 0.4 -0.2, windows {1 1 0.1 0.9}, {0.2 0.3 0.4 -0.2}. */
    const int want[8] = {1, 1, 0, 0, 0, 0, 0, 0};
    assert_int_equal(count, 2);
    assert_flags(K, want, 8);
    nb_tensor_free(K);
    nb_gradcheck_result res;
    assert_int_equal(nb_gradcheck(y, x, NULL, &res), NB_OK);
    assert_int_equal(res.ok, 0);
    assert_int_equal(res.kinks, 2);
    assert_int_equal(res.ok_off_kinks, 1);
    NEAR(res.worst_numeric, 0.5, LOOSE);
    nb_graph_free(g);
}

/* relu(x W + b) with a pre-activation exactly 0 (1*1 + 2*(-0.5) + 0): every
 * leaf element feeding that unit is at a kink, the others are not. */
static void test_kinks_dense_relu(void **state)
{
    (void)state;
    const double xv[2] = {1, 2}, wv[4] = {1, 0.5, -0.5, 0.25}, bv[2] = {0, 0.25};
    int64_t xs[2] = {1, 2}, ws[2] = {2, 2}, bs[1] = {2};
    nb_graph *g = nb_graph_new();
    nb_node *x = leaf(g, 0, "x", 2, xs, xv), *w = leaf(g, 1, "w", 2, ws, wv), *b = leaf(g, 1, "b", 1, bs, bv);
    nb_node *z = nb_add(nb_matmul(x, w), b), *y = nb_relu(z);
    assert_non_null(y);
    int64_t count = -1;
    nb_tensor *K = kinks_of(y, x, 0, 0, &count);
    assert_true(nb_value(z)->data[0] == 0);
    NEAR(nb_value(z)->data[1], 1.25, TIGHT);
    assert_int_equal(count, 2);
    assert_flags(K, (const int[]){1, 1}, 2);
    nb_tensor_free(K);
    K = kinks_of(y, w, 0, 0, &count); /* w[p, q] feeds unit q */
    assert_int_equal(count, 2);
    assert_flags(K, (const int[]){1, 0, 1, 0}, 4);
    nb_tensor_free(K);
    K = kinks_of(y, b, 0, 0, &count);
    assert_int_equal(count, 1);
    assert_flags(K, (const int[]){1, 0}, 2);
    nb_tensor_free(K);
    /* Below the kink the output is smooth: z (no relu) has none. */
    K = kinks_of(z, w, 0, 0, &count);
    assert_int_equal(count, 0);
    nb_tensor_free(K);
    nb_gradcheck_result res;
    assert_int_equal(nb_gradcheck(y, b, NULL, &res), NB_OK);
    assert_int_equal(res.ok, 0);
    assert_int_equal(res.kinks, 1);
    assert_int_equal(res.ok_off_kinks, 1);
    nb_graph_free(g);
}

/* "At a kink for this eps": relu at 1e-4 is straddled by a step of 1e-3,
 * not by 1e-6. Per example, a flag belongs to its own example. A smooth
 * function has none. */
static void test_kinks_eps_per_example_smooth(void **state)
{
    (void)state;
    const double xv[6] = {1e-4, -0.5, 0.7, 0.3, 0, 0};
    int64_t xs[2] = {2, 3};
    nb_graph *g = nb_graph_new();
    nb_node *x = leaf(g, 0, "x", 2, xs, xv);
    nb_node *y = nb_relu(x);
    assert_non_null(y);
    int64_t count = -1;
    nb_tensor *K = kinks_of(y, x, 1e-3, 0, &count);
    assert_int_equal(count, 3);
    assert_flags(K, (const int[]){1, 0, 0, 0, 1, 1}, 6);
    nb_tensor_free(K);
    K = kinks_of(y, x, 1e-6, 1, &count);
    assert_int_equal(count, 2);
    assert_flags(K, (const int[]){0, 0, 0, 0, 1, 1}, 6);
    nb_tensor_free(K);
    nb_graph_free(g);

    mlp m;
    mlp_build(&m, 3, 4, 5, 2, 17);
    nb_node *wrt[3] = {m.A, m.W1, m.b2};
    for (int i = 0; i < 3; i++) {
        K = kinks_of(m.out, wrt[i], 0, 0, &count);
        assert_int_equal(count, 0);
        nb_tensor_free(K);
    }
    K = kinks_of(m.out, m.A, 0, 1, &count);
    assert_int_equal(count, 0);
    nb_tensor_free(K);
    nb_graph_free(m.g);
}

/* The trained CNN's case in miniature: a model (conv2d 1x1 relu, max pool,
 * dense) on an all-black 4x4 image. Every pixel maps to relu(0.5), so every
 * pool window holds a 4-way tie and all 16 pixels are at a tie; one
 * brighter pixel makes its window's maximum unique and its 4 pixels smooth. */
static void test_kinks_model_black_background(void **state)
{
    (void)state;
    int64_t in[3] = {4, 4, 1};
    nb_model *m = NULL;
    assert_int_equal(nb_model_from_spec("conv2d 1 1 relu; maxpool 2; flatten; dense 1", 3, in, &m), NB_OK);
    assert_int_equal(nb_model_set_batch(m, 1), NB_OK);
    nb_value(nb_model_find_param(m, "0.kernel"))->data[0] = 1;
    nb_value(nb_model_find_param(m, "0.bias"))->data[0] = 0.5;
    const double w[4] = {1, -2, 3, 0.5};
    for (int i = 0; i < 4; i++) nb_value(nb_model_find_param(m, "3.kernel"))->data[i] = w[i];
    nb_value(nb_model_find_param(m, "3.bias"))->data[0] = 0;
    nb_node *x = nb_model_input(m), *y = nb_model_logits(m);
    nb_graph_set_training(nb_model_graph(m), 0, 0);
    for (int i = 0; i < 16; i++) nb_value(x)->data[i] = 0;
    int64_t count = -1;
    nb_tensor *K = kinks_of(y, x, 0, 0, &count);
    NEAR(nb_value(y)->data[0], 0.5 * (1 - 2 + 3 + 0.5), TIGHT);
    assert_int_equal(count, 16);
    nb_tensor_free(K);
    nb_gradcheck_result res;
    assert_int_equal(nb_gradcheck(y, x, NULL, &res), NB_OK);
    assert_int_equal(res.ok, 0);
    assert_int_equal(res.kinks, 16);

    nb_value(x)->data[0] = 0.3; /* pixel (0, 0): window 0's maximum is now unique */
    K = kinks_of(y, x, 0, 0, &count);
    assert_int_equal(count, 12);
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) assert_true(K->data[r * 4 + c] == !(r < 2 && c < 2));
    nb_tensor_free(K);
    assert_int_equal(nb_gradcheck(y, x, NULL, &res), NB_OK);
    assert_int_equal(res.ok, 0);
    assert_int_equal(res.kinks, 12);
    assert_int_equal(res.ok_off_kinks, 1); /* the columns of window 0 check out */
    nb_model_free(m);
}

/* Bad arguments, and a step lost in rounding (1e12 + 1e-6 == 1e12): an
 * error saying what to do, not a silent zero derivative. */
static void test_kinks_errors(void **state)
{
    (void)state;
    const double xv[2] = {1e12, 1};
    int64_t xs[1] = {2};
    nb_graph *g = nb_graph_new();
    nb_node *x = leaf(g, 0, "x", 1, xs, xv);
    nb_node *y = nb_scale(x, 2);
    assert_non_null(y);
    nb_tensor *K = (nb_tensor *)&K, *J = (nb_tensor *)&J;
    int64_t c = 7;
    assert_int_equal(nb_jacobian_kinks(NULL, x, NULL, 0, 0, &J, &K, &c), NB_ERR_ARG);
    assert_null(J);
    assert_null(K);
    assert_int_equal(c, 0);
    assert_int_equal(nb_jacobian_kinks(y, x, NULL, -1, 0, &J, &K, &c), NB_ERR_ARG);
    assert_non_null(strstr(nb_last_error(), "atol"));
    assert_int_equal(nb_jacobian_kinks(y, x, NULL, 0, 0, &J, &K, &c), NB_ERR_ARG);
    assert_null(J);
    assert_non_null(strstr(nb_last_error(), "larger eps"));
    nb_jacobian_opts o = {0};
    o.mode = NB_JAC_NUMERIC;
    assert_int_equal(nb_jacobian(y, x, &o, &J), NB_ERR_ARG);
    assert_null(J);
    assert_true(nb_value(x)->data[0] == 1e12); /* x restored */
    o.eps = 1e-3; /* above 1e12's ulp of 1.2e-4 */
    assert_int_equal(nb_jacobian(y, x, &o, &J), NB_OK);
    NEAR(J->data[0], 2, 1e-6);
    NEAR(J->data[3], 2, 1e-6);
    nb_tensor_free(J);
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
        cmocka_unit_test(test_kinks_pool_tie),
        cmocka_unit_test(test_kinks_dense_relu),
        cmocka_unit_test(test_kinks_eps_per_example_smooth),
        cmocka_unit_test(test_kinks_model_black_background),
        cmocka_unit_test(test_kinks_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
