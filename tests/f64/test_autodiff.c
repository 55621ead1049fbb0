/* Reverse mode (nb_backward, nb_vjp), forward mode (nb_jvp), gradient
 * accumulation, intermediate gradients, shape changes, numeric checks and
 * error reporting of the graph, on the double build. */
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

/* ------------------------------------------------------------ d(x^2)/dx */

static void test_square_backward(void **state)
{
    (void)state;
    const double xs[3] = {2, -2, 1};
    for (int t = 0; t < 3; t++) {
        nb_graph *g = nb_graph_new();
        int64_t one = 1;
        nb_node *x = leaf(g, 0, "x", 1, &one, &xs[t]);
        nb_set_requires_grad(x, 1);
        nb_node *ys[2] = {nb_pow(x, 2), nb_mul(x, x)};
        assert_non_null(ys[0]);
        assert_non_null(ys[1]);
        assert_ok(nb_forward(g));
        for (int v = 0; v < 2; v++) {
            NEAR(nb_value(ys[v])->data[0], xs[t] * xs[t], TIGHT);
            assert_ok(nb_backward(ys[v]));
            nb_tensor *gx = nb_grad(x);
            assert_shape(gx, 1, &one);
            NEAR(gx->data[0], 2 * xs[t], TIGHT);
            /* The same through nb_vjp and nb_jvp with a seed/tangent of 1. */
            int64_t ks[2] = {1, 1};
            double unit = 1;
            nb_tensor *seed = nb_tensor_from(2, ks, &unit), *res = NULL;
            assert_ok(nb_vjp(ys[v], seed, 1, &x, &res));
            assert_shape(res, 2, ks);
            NEAR(res->data[0], 2 * xs[t], TIGHT);
            nb_tensor_free(res);
            const nb_tensor *tans[1] = {seed};
            assert_ok(nb_jvp(ys[v], 1, &x, tans, &res));
            assert_shape(res, 2, ks);
            NEAR(res->data[0], 2 * xs[t], TIGHT);
            nb_tensor_free(res);
            nb_tensor_free(seed);
        }
        nb_graph_free(g);
    }
}

/* ---------------------------------------- a tensor used in several places */

/* y = x*x + x*3 + exp(x): x feeds four edges; dy/dx = 2x + 3 + e^x. */
static void test_accumulation(void **state)
{
    (void)state;
    const double xs[4] = {-1.5, 0, 0.7, 2};
    int64_t one = 1, four = 4;
    for (int t = 0; t < 4; t++) {
        nb_graph *g = nb_graph_new();
        const double three_v = 3;
        nb_node *x = leaf(g, 0, "x", 1, &one, &xs[t]);
        nb_node *three = leaf(g, 0, "three", 1, &one, &three_v);
        nb_set_requires_grad(x, 1);
        nb_set_requires_grad(three, 1);
        nb_node *sq = nb_mul(x, x), *lin = nb_mul(x, three), *ex = nb_exp(x);
        nb_node *y = nb_add(nb_add(sq, lin), ex);
        assert_non_null(y);
        assert_ok(nb_forward(g));
        NEAR(nb_value(y)->data[0], xs[t] * xs[t] + 3 * xs[t] + exp(xs[t]), TIGHT);
        assert_ok(nb_backward(y));
        NEAR(nb_grad(x)->data[0], 2 * xs[t] + 3 + exp(xs[t]), TIGHT);
        NEAR(nb_grad(three)->data[0], xs[t], TIGHT); /* d(x*c)/dc = x */
        /* Intermediate nodes on the path have their gradients too: dy/d(each term) = 1. */
        NEAR(nb_grad(sq)->data[0], 1, TIGHT);
        NEAR(nb_grad(lin)->data[0], 1, TIGHT);
        NEAR(nb_grad(ex)->data[0], 1, TIGHT);
        NEAR(nb_grad(y)->data[0], 1, TIGHT);
        /* A second backward overwrites, it does not add to the last one. */
        assert_ok(nb_backward(y));
        NEAR(nb_grad(x)->data[0], 2 * xs[t] + 3 + exp(xs[t]), TIGHT);
        nb_graph_free(g);
    }
    /* The same with a vector x (4,) and the constant broadcast from (1,):
     * y is diagonal in x, so a VJP with seed ones gives dy_i/dx_i. */
    nb_graph *g = nb_graph_new();
    const double three_v = 3;
    nb_node *x = leaf(g, 0, "x", 1, &four, xs);
    nb_node *three = leaf(g, 0, "three", 1, &one, &three_v);
    nb_node *y = nb_add(nb_add(nb_mul(x, x), nb_mul(x, three)), nb_exp(x));
    assert_non_null(y);
    int64_t ks[2] = {1, 4};
    const double ones[4] = {1, 1, 1, 1};
    nb_tensor *seed = nb_tensor_from(2, ks, ones), *res[2] = {NULL, NULL};
    nb_node *wrt[2] = {x, three};
    assert_ok(nb_vjp(y, seed, 2, wrt, res));
    assert_shape(res[0], 2, ks);
    int64_t ks3[2] = {1, 1};
    assert_shape(res[1], 2, ks3);
    double sum_x = 0;
    for (int i = 0; i < 4; i++) {
        NEAR(res[0]->data[i], 2 * xs[i] + 3 + exp(xs[i]), TIGHT);
        sum_x += xs[i];
    }
    NEAR(res[1]->data[0], sum_x, TIGHT); /* the broadcast constant sums its four uses */
    nb_tensor_free(res[0]);
    nb_tensor_free(res[1]);
    const nb_tensor *tans[1] = {seed};
    nb_tensor *jv = NULL;
    assert_ok(nb_jvp(y, 1, &x, tans, &jv));
    assert_shape(jv, 2, ks);
    for (int i = 0; i < 4; i++) NEAR(jv->data[i], 2 * xs[i] + 3 + exp(xs[i]), TIGHT);
    nb_tensor_free(jv);
    nb_tensor_free(seed);
    nb_graph_free(g);
}

/* ---------------------------------------------- gradient of a scalar loss */

/* loss = mean((A W + b - T)^2) over N x L1 elements, the sum formed with
 * ones vectors: 1_N^T (E*E) 1_L1. dloss/dW = 2/(N L1) A^T E, dloss/db =
 * 2/(N L1) 1^T E. */
static void test_scalar_loss_gradient(void **state)
{
    (void)state;
    enum { N = 3, L0 = 4, L1 = 2 };
    nb_rng r;
    nb_rng_seed(&r, 7);
    int64_t as[2] = {N, L0}, ws[2] = {L0, L1}, bs[1] = {L1}, ts[2] = {N, L1}, on[2] = {1, N}, ol[2] = {L1, 1};
    nb_graph *g = nb_graph_new();
    nb_node *A = leaf(g, 0, "A", 2, as, NULL), *W = leaf(g, 1, "W", 2, ws, NULL), *b = leaf(g, 1, "b", 1, bs, NULL);
    nb_node *T = leaf(g, 0, "T", 2, ts, NULL);
    nb_node *onesN = leaf(g, 0, "onesN", 2, on, NULL), *onesL = leaf(g, 0, "onesL", 2, ol, NULL);
    nb_tensor_fill_uniform(nb_value(A), &r, -1, 1);
    nb_tensor_fill_uniform(nb_value(W), &r, -1, 1);
    nb_tensor_fill_uniform(nb_value(b), &r, -1, 1);
    nb_tensor_fill_uniform(nb_value(T), &r, -1, 1);
    for (int i = 0; i < N; i++) nb_value(onesN)->data[i] = 1;
    for (int i = 0; i < L1; i++) nb_value(onesL)->data[i] = 1;
    nb_node *E = nb_sub(nb_add(nb_matmul(A, W), b), T);
    nb_node *loss = nb_scale(nb_matmul(nb_matmul(onesN, nb_mul(E, E)), onesL), 1.0 / (N * L1));
    assert_non_null(loss);
    assert_ok(nb_forward(g));
    const double *e = nb_value(E)->data, *a = nb_value(A)->data;
    double want_loss = 0;
    for (int i = 0; i < N * L1; i++) want_loss += e[i] * e[i] / (N * L1);
    NEAR(nb_value(loss)->data[0], want_loss, TIGHT);

    assert_ok(nb_backward(loss));
    nb_tensor *gW = nb_grad(W), *gb = nb_grad(b);
    assert_shape(gW, 2, ws);
    assert_shape(gb, 1, bs);
    assert_null(nb_grad(A)); /* inputs get no gradient unless asked */
    assert_null(nb_grad(T));
    double mx = 0;
    for (int p = 0; p < L0; p++)
        for (int q = 0; q < L1; q++) {
            double want = 0;
            for (int n = 0; n < N; n++) want += 2.0 / (N * L1) * a[n * L0 + p] * e[n * L1 + q];
            NEAR(gW->data[p * L1 + q], want, TIGHT);
            mx = fabs(want) > mx ? fabs(want) : mx;
        }
    assert_true(mx > 0.01);
    for (int q = 0; q < L1; q++) {
        double want = 0;
        for (int n = 0; n < N; n++) want += 2.0 / (N * L1) * e[n * L1 + q];
        NEAR(gb->data[q], want, TIGHT);
    }
    /* Copy before nb_jacobian: its passes reuse the gradient buffers. */
    double gw_copy[L0 * L1], gb_copy[L1];
    memcpy(gw_copy, gW->data, sizeof gw_copy);
    memcpy(gb_copy, gb->data, sizeof gb_copy);
    for (int m = 0; m < 3; m++) {
        nb_jacobian_opts o = {0};
        o.mode = m == 0 ? NB_JAC_REV : m == 1 ? NB_JAC_FWD : NB_JAC_NUMERIC;
        double tol = m == 2 ? 1e-7 : TIGHT;
        nb_tensor *J = NULL;
        assert_ok(nb_jacobian(loss, W, &o, &J));
        int64_t js[4] = {1, 1, L0, L1};
        assert_shape(J, 4, js);
        for (int i = 0; i < L0 * L1; i++) NEAR(J->data[i], gw_copy[i], tol);
        nb_tensor_free(J);
        assert_ok(nb_jacobian(loss, b, &o, &J));
        for (int i = 0; i < L1; i++) NEAR(J->data[i], gb_copy[i], tol);
        nb_tensor_free(J);
    }
    nb_graph_free(g);
}

/* ------------------------------------------------ batched VJPs and JVPs */

typedef struct {
    nb_graph *g;
    nb_node *A, *W1, *b1, *W2, *b2, *out;
} mlp;

static void mlp_build(mlp *m, uint64_t seed)
{
    nb_rng r;
    nb_rng_seed(&r, seed);
    m->g = nb_graph_new();
    int64_t as[2] = {3, 4}, w1s[2] = {4, 5}, b1s[1] = {5}, w2s[2] = {5, 2}, b2s[1] = {2};
    m->A = leaf(m->g, 0, "A", 2, as, NULL);
    m->W1 = leaf(m->g, 1, "W1", 2, w1s, NULL);
    m->b1 = leaf(m->g, 1, "b1", 1, b1s, NULL);
    m->W2 = leaf(m->g, 1, "W2", 2, w2s, NULL);
    m->b2 = leaf(m->g, 1, "b2", 1, b2s, NULL);
    nb_node *all[5] = {m->A, m->W1, m->b1, m->W2, m->b2};
    for (int i = 0; i < 5; i++) nb_tensor_fill_uniform(nb_value(all[i]), &r, -1, 1);
    m->out = nb_add(nb_matmul(nb_tanh(nb_add(nb_matmul(m->A, m->W1), m->b1)), m->W2), m->b2);
    assert_non_null(m->out);
}

static void test_vjp_batched(void **state)
{
    (void)state;
    enum { K = 4 };
    mlp m;
    mlp_build(&m, 12);
    nb_rng r;
    nb_rng_seed(&r, 99);
    int64_t ss[3] = {K, 3, 2};
    nb_tensor *seeds = nb_tensor_new(3, ss);
    nb_tensor_fill_uniform(seeds, &r, -1, 1);
    nb_node *wrt[5] = {m.A, m.W1, m.b1, m.W2, m.b2};
    nb_tensor *res[5];
    assert_ok(nb_vjp(m.out, seeds, 5, wrt, res));
    for (int w = 0; w < 5; w++) {
        const nb_tensor *v = nb_value(wrt[w]);
        int64_t rs[NB_MAX_RANK + 1] = {K};
        for (int d = 0; d < v->rank; d++) rs[d + 1] = v->shape[d];
        assert_shape(res[w], v->rank + 1, rs);
    }
    /* Each of the K rows equals a VJP with that seed alone. */
    int64_t s1[3] = {1, 3, 2};
    for (int k = 0; k < K; k++) {
        nb_tensor *one = nb_tensor_from(3, s1, seeds->data + k * 6), *single[5];
        assert_ok(nb_vjp(m.out, one, 5, wrt, single));
        for (int w = 0; w < 5; w++) {
            int64_t sz = nb_value(wrt[w])->size;
            assert_int_equal(single[w]->size, sz);
            for (int64_t i = 0; i < sz; i++) NEAR(res[w]->data[k * sz + i], single[w]->data[i], TIGHT);
            nb_tensor_free(single[w]);
        }
        nb_tensor_free(one);
    }
    /* And each equals seed . J, J from the full Jacobian. */
    for (int w = 0; w < 5; w++) {
        nb_tensor *J = NULL;
        nb_jacobian_opts o = {0};
        o.mode = NB_JAC_FWD; /* built the other way round, by columns */
        assert_ok(nb_jacobian(m.out, wrt[w], &o, &J));
        int64_t sz = nb_value(wrt[w])->size;
        double mx = 0;
        for (int k = 0; k < K; k++)
            for (int64_t i = 0; i < sz; i++) {
                double want = 0;
                for (int o2 = 0; o2 < 6; o2++) want += seeds->data[k * 6 + o2] * J->data[o2 * sz + i];
                NEAR(res[w]->data[k * sz + i], want, TIGHT);
                mx = fabs(want) > mx ? fabs(want) : mx;
            }
        assert_true(mx > 0.01);
        nb_tensor_free(J);
        nb_tensor_free(res[w]);
    }
    /* Seeds of the wrong shape are refused with a message. */
    int64_t bad[3] = {K, 2, 3};
    nb_tensor *wrong = nb_tensor_new(3, bad), *out1 = NULL;
    assert_int_equal(nb_vjp(m.out, wrong, 1, wrt, &out1), NB_ERR_SHAPE);
    assert_non_null(strstr(nb_last_error(), "(4, 2, 3)"));
    nb_tensor_free(wrong);
    nb_tensor_free(seeds);
    nb_graph_free(m.g);
}

static void test_jvp_batched(void **state)
{
    (void)state;
    enum { K = 3 };
    mlp m;
    mlp_build(&m, 13);
    nb_rng r;
    nb_rng_seed(&r, 5);
    int64_t ta_s[3] = {K, 3, 4}, tw_s[3] = {K, 4, 5};
    nb_tensor *tA = nb_tensor_new(3, ta_s), *tW = nb_tensor_new(3, tw_s);
    nb_tensor_fill_uniform(tA, &r, -1, 1);
    nb_tensor_fill_uniform(tW, &r, -1, 1);
    nb_node *wrt[2] = {m.A, m.W1};
    const nb_tensor *tans[2] = {tA, tW};
    nb_tensor *res = NULL;
    assert_ok(nb_jvp(m.out, 2, wrt, tans, &res));
    int64_t rs[3] = {K, 3, 2};
    assert_shape(res, 3, rs);
    /* K single JVPs. */
    int64_t sa[3] = {1, 3, 4}, sw[3] = {1, 4, 5};
    for (int k = 0; k < K; k++) {
        nb_tensor *a1 = nb_tensor_from(3, sa, tA->data + k * 12), *w1 = nb_tensor_from(3, sw, tW->data + k * 20);
        const nb_tensor *t1[2] = {a1, w1};
        nb_tensor *single = NULL;
        assert_ok(nb_jvp(m.out, 2, wrt, t1, &single));
        for (int i = 0; i < 6; i++) NEAR(res->data[k * 6 + i], single->data[i], TIGHT);
        nb_tensor_free(single);
        nb_tensor_free(a1);
        nb_tensor_free(w1);
    }
    /* J_A tA[k] + J_W1 tW[k], with the Jacobians from reverse mode. */
    nb_tensor *JA = NULL, *JW = NULL;
    nb_jacobian_opts o = {0};
    o.mode = NB_JAC_REV;
    assert_ok(nb_jacobian(m.out, m.A, &o, &JA));
    assert_ok(nb_jacobian(m.out, m.W1, &o, &JW));
    double mx = 0;
    for (int k = 0; k < K; k++)
        for (int i = 0; i < 6; i++) {
            double want = 0;
            for (int j = 0; j < 12; j++) want += JA->data[i * 12 + j] * tA->data[k * 12 + j];
            for (int j = 0; j < 20; j++) want += JW->data[i * 20 + j] * tW->data[k * 20 + j];
            NEAR(res->data[k * 6 + i], want, TIGHT);
            mx = fabs(want) > mx ? fabs(want) : mx;
        }
    assert_true(mx > 0.01);
    nb_tensor_free(JA);
    nb_tensor_free(JW);
    nb_tensor_free(res);
    /* Tangents with different K are refused. */
    int64_t k2[3] = {K + 1, 4, 5};
    nb_tensor *bad = nb_tensor_new(3, k2);
    const nb_tensor *tb[2] = {tA, bad};
    res = NULL;
    assert_int_equal(nb_jvp(m.out, 2, wrt, tb, &res), NB_ERR_SHAPE);
    assert_true(strlen(nb_last_error()) > 0);
    nb_tensor_free(bad);
    nb_tensor_free(tA);
    nb_tensor_free(tW);
    nb_graph_free(m.g);
}

/* --------------------------------- an output that ignores some leaves */

static void test_unused_leaf_zero_gradient(void **state)
{
    (void)state;
    int64_t xs[1] = {3}, zs[2] = {2, 2};
    const double xv[3] = {0.1, -0.2, 0.3}, zv[4] = {1, 2, 3, 4};
    nb_graph *g = nb_graph_new();
    nb_node *x = leaf(g, 1, "x", 1, xs, xv), *z = leaf(g, 1, "z", 2, zs, zv);
    nb_node *ones = leaf(g, 0, "ones", 2, (int64_t[]){3, 1}, (double[]){1, 1, 1});
    nb_node *row = leaf(g, 0, "row", 2, (int64_t[]){1, 3}, NULL);
    /* loss = sum(exp(x)) as a (1,1) scalar: (zeros (1,3) + exp(x) (3,)) @ ones (3,1). z is unused. */
    nb_node *loss = nb_matmul(nb_add(row, nb_exp(x)), ones);
    assert_non_null(loss);
    assert_ok(nb_forward(g));
    assert_ok(nb_backward(loss));
    nb_tensor *gz = nb_grad(z), *gx = nb_grad(x);
    assert_shape(gz, 2, zs);
    for (int i = 0; i < 4; i++) assert_true(gz->data[i] == 0);
    for (int i = 0; i < 3; i++) NEAR(gx->data[i], exp(xv[i]), TIGHT);
    /* VJP and JVP with respect to z: zeros of the right shapes. */
    int64_t ss[3] = {2, 1, 1};
    nb_tensor *seeds = nb_tensor_from(3, ss, (double[]){1, 2}), *res = NULL;
    assert_ok(nb_vjp(loss, seeds, 1, &z, &res));
    int64_t rs[3] = {2, 2, 2};
    assert_shape(res, 3, rs);
    for (int i = 0; i < 8; i++) assert_true(res->data[i] == 0);
    nb_tensor_free(res);
    nb_tensor *tz = nb_tensor_new(3, rs);
    for (int i = 0; i < 8; i++) tz->data[i] = 1;
    const nb_tensor *tans[1] = {tz};
    assert_ok(nb_jvp(loss, 1, &z, tans, &res));
    assert_shape(res, 3, ss);
    for (int i = 0; i < 2; i++) assert_true(res->data[i] == 0);
    nb_tensor_free(res);
    nb_tensor_free(tz);
    nb_tensor_free(seeds);
    nb_graph_free(g);
}

/* ------------------------------------------------------ error handling */

static void test_errors(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *a = leaf(g, 0, "a", 2, (int64_t[]){3, 4}, NULL);
    nb_node *b = leaf(g, 0, "b", 2, (int64_t[]){5, 2}, NULL);
    assert_null(nb_matmul(a, b));
    assert_non_null(strstr(nb_last_error(), "(3, 4)"));
    assert_non_null(strstr(nb_last_error(), "(5, 2)"));

    nb_node *c = leaf(g, 0, "c", 2, (int64_t[]){2, 3}, NULL);
    nb_node *d = leaf(g, 0, "d", 1, (int64_t[]){4}, NULL);
    int before = nb_graph_size(g);
    assert_null(nb_add(c, d));
    assert_non_null(strstr(nb_last_error(), "(2, 3)"));
    assert_non_null(strstr(nb_last_error(), "(4,)"));
    assert_null(nb_mul(d, c));
    assert_true(strlen(nb_last_error()) > 0);
    assert_int_equal(nb_graph_size(g), before); /* failed ops leave no node behind */

    /* (2,3) + (3,) broadcasts. */
    nb_node *e = leaf(g, 0, "e", 1, (int64_t[]){3}, NULL);
    nb_node *ce = nb_add(c, e);
    assert_non_null(ce);
    assert_ok(nb_forward(g));
    assert_int_equal(nb_backward(ce), NB_ERR_SHAPE);
    assert_non_null(strstr(nb_last_error(), "scalar"));
    assert_non_null(strstr(nb_last_error(), "(2, 3)"));

    /* NULL inputs propagate as NULL, with a message. */
    assert_null(nb_exp(NULL));
    assert_null(nb_tanh(nb_matmul(a, b)));
    assert_true(strlen(nb_last_error()) > 0);
    assert_int_equal(nb_backward(NULL), NB_ERR_ARG);
    assert_int_equal(nb_forward(NULL), NB_ERR_ARG);
    nb_tensor *J = NULL;
    assert_int_equal(nb_jacobian(NULL, a, NULL, &J), NB_ERR_ARG);
    assert_null(J);
    assert_null(nb_input(g, "bad", 2, (int64_t[]){2, -1}));
    assert_null(nb_tensor_new(NB_MAX_RANK + 1, (int64_t[NB_MAX_RANK + 1]){0}));

    /* Free functions accept NULL. */
    nb_graph_free(NULL);
    nb_tensor_free(NULL);
    assert_null(nb_value(NULL));
    assert_null(nb_grad(NULL));
    assert_string_equal(nb_status_name(NB_ERR_SHAPE), "shape error");
    nb_graph_free(g);
}

/* ---------------------------------------------- a new batch size */

static void check_layer(nb_node *x, nb_node *W, nb_node *y, int64_t N)
{
    const double *xv = nb_value(x)->data, *w = nb_value(W)->data, *yv = nb_value(y)->data;
    int64_t ys[2] = {N, 2};
    assert_shape(nb_value(y), 2, ys);
    for (int64_t n = 0; n < N; n++)
        for (int j = 0; j < 2; j++) {
            double z = 0.25;
            for (int p = 0; p < 3; p++) z += xv[n * 3 + p] * w[p * 2 + j];
            NEAR(yv[n * 2 + j], tanh(z), TIGHT);
        }
}

static void test_input_reshape(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = leaf(g, 0, "x", 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, -1, 0, 0.5});
    nb_node *W = leaf(g, 1, "W", 2, (int64_t[]){3, 2}, (double[]){0.1, -0.2, 0.3, 0.05, -0.4, 0.2});
    nb_node *b = leaf(g, 1, "b", 1, (int64_t[]){1}, (double[]){0.25});
    nb_node *y = nb_tanh(nb_add(nb_matmul(x, W), b));
    assert_non_null(y);
    assert_ok(nb_forward(g));
    check_layer(x, W, y, 2);

    const int64_t sizes[3] = {5, 1, 7};
    for (int t = 0; t < 3; t++) {
        int64_t N = sizes[t];
        assert_ok(nb_input_reshape(x, 2, (int64_t[]){N, 3}));
        int64_t xs[2] = {N, 3};
        assert_shape(nb_value(x), 2, xs);
        for (int64_t i = 0; i < N * 3; i++) nb_value(x)->data[i] = 0.1 * (double)(i % 7) - 0.3;
        assert_ok(nb_forward(g));
        check_layer(x, W, y, N);
        /* Per-example Jacobian at the new batch: dy[n,j]/dx[n,p] = (1 - y^2) W[p,j]. */
        nb_jacobian_opts o = {0};
        o.per_example = 1;
        nb_tensor *J = NULL;
        assert_ok(nb_jacobian(y, x, &o, &J));
        int64_t js[3] = {N, 2, 3};
        assert_shape(J, 3, js);
        const double *yv = nb_value(y)->data, *w = nb_value(W)->data;
        for (int64_t n = 0; n < N; n++)
            for (int j = 0; j < 2; j++)
                for (int p = 0; p < 3; p++)
                    NEAR(J->data[(n * 2 + j) * 3 + p], (1 - yv[n * 2 + j] * yv[n * 2 + j]) * w[p * 2 + j], TIGHT);
        nb_tensor_free(J);
    }
    /* A shape that no longer fits the kernel fails at the next forward pass. */
    assert_ok(nb_input_reshape(x, 2, (int64_t[]){4, 5}));
    assert_int_equal(nb_forward(g), NB_ERR_SHAPE);
    assert_non_null(strstr(nb_last_error(), "(4, 5)"));
    /* And a fitting shape makes the graph usable again. */
    assert_ok(nb_input_reshape(x, 2, (int64_t[]){3, 3}));
    for (int64_t i = 0; i < 9; i++) nb_value(x)->data[i] = 0.2 * (double)i - 0.5;
    assert_ok(nb_forward(g));
    check_layer(x, W, y, 3);
    nb_graph_free(g);
}

/* ------------------------------------------------------ check_numerics */

static void test_check_numerics(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = leaf(g, 0, "x", 1, (int64_t[]){3}, (double[]){1, -1, 2});
    nb_node *y = nb_log(x);
    assert_non_null(y);
    nb_node_set_name(y, "log_of_x");
    nb_node *z = nb_scale(y, 2);
    assert_non_null(z);
    /* Off (the default): the NaN flows through. */
    assert_ok(nb_forward(g));
    assert_true(isnan(nb_value(y)->data[1]));
    NEAR(nb_value(y)->data[2], log(2.0), TIGHT);
    /* On: the first node with a non-finite value is named. */
    nb_graph_set_check_numerics(g, 1);
    assert_int_equal(nb_forward(g), NB_ERR_NUMERIC);
    assert_non_null(strstr(nb_last_error(), "log_of_x"));
    assert_non_null(strstr(nb_last_error(), "NaN"));
    /* Back to a finite point: passes again. */
    nb_value(x)->data[1] = 0.5;
    assert_ok(nb_forward(g));
    NEAR(nb_value(z)->data[1], 2 * log(0.5), TIGHT);
    nb_graph_free(g);
}

/* A finite forward pass with a non-finite gradient: d sqrt(x)/dx = 1/(2 sqrt x)
 * is Inf at x = 0. The guard must also look at the gradients of leaves
 * (parameters), which is where a training loop would read them. */
static void test_check_numerics_backward(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *w = leaf(g, 1, "weight", 1, (int64_t[]){1}, (double[]){0});
    nb_node *y = nb_sqrt(w);
    assert_non_null(y);
    assert_ok(nb_forward(g));
    assert_ok(nb_backward(y)); /* off: the Inf is reported as a value */
    assert_true(isinf(nb_grad(w)->data[0]));
    nb_graph_set_check_numerics(g, 1);
    assert_ok(nb_forward(g));
    assert_int_equal(nb_backward(y), NB_ERR_NUMERIC);
    assert_non_null(strstr(nb_last_error(), "weight"));
    assert_non_null(strstr(nb_last_error(), "Inf"));
    nb_value(w)->data[0] = 4;
    assert_ok(nb_forward(g));
    assert_ok(nb_backward(y));
    NEAR(nb_grad(w)->data[0], 0.25, TIGHT);
    nb_graph_free(g);
}


/* A node listed twice in nb_jvp gets the sum of its tangents: J (t1 + t2). */
static void test_jvp_repeated_wrt_adds_tangents(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    const int64_t s2[1] = {2}, k2[2] = {1, 2};
    const double xv[2] = {1.5, -2};
    nb_node *x = leaf(g, 0, "x", 1, s2, xv), *y = nb_mul(x, x);
    nb_tensor *t1 = nb_tensor_new(2, k2), *t2 = nb_tensor_new(2, k2), *r;
    t1->data[0] = 1, t1->data[1] = 0.5, t2->data[0] = 2, t2->data[1] = -1;
    nb_node *wrt[2] = {x, x};
    const nb_tensor *ts[2] = {t1, t2};
    assert_ok(nb_jvp(y, 2, wrt, ts, &r));
    NEAR(r->data[0], 2 * 1.5 * (1 + 2), TIGHT);
    NEAR(r->data[1], 2 * -2.0 * (0.5 - 1), TIGHT);
    nb_tensor_free(t1), nb_tensor_free(t2), nb_tensor_free(r);
    nb_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jvp_repeated_wrt_adds_tangents),
        cmocka_unit_test(test_square_backward),
        cmocka_unit_test(test_accumulation),
        cmocka_unit_test(test_scalar_loss_gradient),
        cmocka_unit_test(test_vjp_batched),
        cmocka_unit_test(test_jvp_batched),
        cmocka_unit_test(test_unused_leaf_zero_gradient),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_input_reshape),
        cmocka_unit_test(test_check_numerics),
        cmocka_unit_test(test_check_numerics_backward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
