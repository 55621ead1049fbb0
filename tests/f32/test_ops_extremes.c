/* Ops at the edges of the float range, in the float build: softmax,
 * log_softmax and the losses on logits up to 1e30 in magnitude (values and
 * gradients). */
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

int main(void)
{
    nb_set_num_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_softmax_equal_large_logits),
        cmocka_unit_test(test_log_softmax_mixed_large_logits),
        cmocka_unit_test(test_cce_equal_large_logits),
        cmocka_unit_test(test_cce_mixed_large_logits),
        cmocka_unit_test(test_bce_large_logits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
