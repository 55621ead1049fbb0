/* Reductions, shape ops, softmax, losses and dropout, in double: values
 * against closed forms worked out by hand, Jacobians against their formulas
 * in both modes, error messages, and the gradient check of every op. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nabla.h"

#define TOL 1e-12
#define SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}
#define AXES(...) (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)), (const int[]){__VA_ARGS__}

static nb_node *input_with(nb_graph *g, const char *name, int rank, const int64_t *shape, const double *v)
{
    nb_node *x = nb_input(g, name, rank, shape);
    assert_non_null(x);
    for (int64_t i = 0; i < nb_value(x)->size; i++) nb_value(x)->data[i] = v[i];
    return x;
}

static void assert_close(double a, double b, double tol)
{
    if (fabs(a - b) > tol) fail_msg("%.17g != %.17g (tol %g)", a, b, tol);
}

static void assert_contains(const char *msg, const char *part)
{
    if (!strstr(msg, part)) fail_msg("message \"%s\" lacks \"%s\"", msg, part);
}

static void assert_shape(const nb_tensor *t, int rank, const int64_t *shape)
{
    assert_int_equal(t->rank, rank);
    for (int d = 0; d < rank; d++) assert_int_equal(t->shape[d], shape[d]);
}

/* Jacobian of out wrt x in the given mode. */
static nb_tensor *jac(nb_node *out, nb_node *x, nb_jac_mode mode)
{
    nb_jacobian_opts o = {0};
    o.mode = mode;
    nb_tensor *J = NULL;
    assert_int_equal(nb_jacobian(out, x, &o, &J), NB_OK);
    assert_non_null(J);
    return J;
}

/* ------------------------------------------------------------- softmax */

static void test_softmax_123_values_and_jacobian(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = input_with(g, "x", SHAPE(3), (const double[]){1, 2, 3});
    nb_node *y = nb_softmax(x);
    assert_non_null(y);
    assert_int_equal(nb_forward(g), NB_OK);
    const double Z = exp(1) + exp(2) + exp(3);
    const double s[3] = {exp(1) / Z, exp(2) / Z, exp(3) / Z};
    for (int i = 0; i < 3; i++) assert_close(nb_value(y)->data[i], s[i], TOL);
    assert_close(s[0], 0.09003057317038046, 1e-15); /* the familiar numbers */
    assert_close(s[2], 0.6652409557748218, 1e-15);
    for (int m = 0; m < 2; m++) {
        nb_tensor *J = jac(y, x, m == 0 ? NB_JAC_REV : NB_JAC_FWD);
        assert_shape(J, 2, (const int64_t[]){3, 3});
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) assert_close(J->data[i * 3 + j], (i == j ? s[i] : 0) - s[i] * s[j], TOL);
        nb_tensor_free(J);
    }
    nb_graph_free(g);
}

static void test_log_softmax_jacobian(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = input_with(g, "x", SHAPE(2, 3), (const double[]){1, 2, 3, -1, 0, 4});
    nb_node *y = nb_log_softmax(x);
    assert_int_equal(nb_forward(g), NB_OK);
    double s[2][3];
    for (int r = 0; r < 2; r++) {
        const double *v = r == 0 ? (const double[]){1, 2, 3} : (const double[]){-1, 0, 4};
        double Z = exp(v[0]) + exp(v[1]) + exp(v[2]);
        for (int c = 0; c < 3; c++) {
            s[r][c] = exp(v[c]) / Z;
            assert_close(nb_value(y)->data[r * 3 + c], v[c] - log(Z), TOL);
        }
    }
    /* J[r,c,r',j] = [r = r'] ([c = j] - s[r][j]): rows do not mix. */
    for (int m = 0; m < 2; m++) {
        nb_tensor *J = jac(y, x, m == 0 ? NB_JAC_REV : NB_JAC_FWD);
        assert_shape(J, 4, (const int64_t[]){2, 3, 2, 3});
        for (int r = 0; r < 2; r++)
            for (int c = 0; c < 3; c++)
                for (int r2 = 0; r2 < 2; r2++)
                    for (int j = 0; j < 3; j++)
                        assert_close(J->data[((r * 3 + c) * 2 + r2) * 3 + j],
                                     r == r2 ? (c == j) - s[r][j] : 0, TOL);
        nb_tensor_free(J);
    }
    nb_graph_free(g);
}

static void test_softmax_large_logits_stable(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = input_with(g, "x", SHAPE(2, 3), (const double[]){1000, 1001, 1002, -1000, -999, -998});
    nb_node *y = nb_softmax(x), *l = nb_log_softmax(x);
    assert_int_equal(nb_forward(g), NB_OK);
    const double Z = 1 + exp(1) + exp(2);
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 3; c++) {
            assert_close(nb_value(y)->data[r * 3 + c], exp(c) / Z, TOL);
            assert_close(nb_value(l)->data[r * 3 + c], c - log(Z), 1e-10);
        }
    nb_graph_free(g);
}

/* In double too, log_softmax and the CCE losses subtract the max before
 * adding the log of the sum: for [v, v] with v = 1e17 (ulp 16), v + log 2
 * rounds to v and x - (m + log sum) would give 0. */
static void test_log_softmax_cce_huge_logits(void **state)
{
    (void)state;
    const double vs[4] = {1e17, -1e17, 1e300, -1e300};
    for (int i = 0; i < 4; i++) {
        const double v = vs[i];
        nb_graph *g = nb_graph_new();
        nb_node *z = input_with(g, "z", SHAPE(1, 2), (const double[]){v, v});
        nb_node *y = input_with(g, "y", SHAPE(1), (const double[]){1});
        nb_node *t = input_with(g, "t", SHAPE(1, 2), (const double[]){0, 1});
        nb_node *l = nb_log_softmax(z), *La = nb_cce_logits_loss(z, y), *Lb = nb_cce_logits_probs_loss(z, t);
        assert_int_equal(nb_forward(g), NB_OK);
        for (int c = 0; c < 2; c++) assert_close(nb_value(l)->data[c], -log(2.0), 1e-15);
        assert_close(nb_value(La)->data[0], log(2.0), 1e-15);
        assert_close(nb_value(Lb)->data[0], log(2.0), 1e-15);
        nb_graph_free(g);
    }
}

static void test_softmax_scalar_refused(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "s", 0, NULL);
    assert_null(nb_softmax(x));
    assert_contains(nb_last_error(), "scalar");
    nb_graph_free(g);
}

/* -------------------------------------------------------------- losses */

static void test_cce_labels_value_and_gradient(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *z = input_with(g, "z", SHAPE(2, 3), (const double[]){1, 2, 3, 0, 0, 0});
    nb_node *y = input_with(g, "labels", SHAPE(2), (const double[]){0, 1});
    nb_set_requires_grad(z, 1);
    nb_node *L = nb_cce_logits_loss(z, y);
    assert_non_null(L);
    assert_int_equal(nb_value(L)->rank, 0);
    assert_int_equal(nb_forward(g), NB_OK);
    /* row 0: -log(e^1 / (e^1+e^2+e^3)); row 1: -log(1/3) = log 3 */
    const double Z = exp(1) + exp(2) + exp(3);
    const double l0 = -log(exp(1) / Z), l1 = log(3.0);
    assert_close(nb_value(L)->data[0], (l0 + l1) / 2, TOL);
    assert_close(nb_value(L)->data[0], 1.7531091265562448, 1e-14);
    assert_int_equal(nb_backward(L), NB_OK);
    /* dL/dz = (softmax - onehot) / N */
    const double s0[3] = {exp(1) / Z, exp(2) / Z, exp(3) / Z};
    const double expect[6] = {(s0[0] - 1) / 2, s0[1] / 2, s0[2] / 2, 1.0 / 6, (1.0 / 3 - 1) / 2, 1.0 / 6};
    for (int i = 0; i < 6; i++) assert_close(nb_grad(z)->data[i], expect[i], TOL);
    /* the labels have no gradient path: the Jacobian wrt them is zero */
    nb_tensor *J = jac(L, y, NB_JAC_REV);
    for (int i = 0; i < 2; i++) assert_close(J->data[i], 0, 0);
    nb_tensor_free(J);
    nb_graph_free(g);
}

static void test_cce_probs_matches_labels_on_onehot(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *z = input_with(g, "z", SHAPE(2, 3), (const double[]){1, 2, 3, 0.5, -1, 2});
    nb_node *y = input_with(g, "labels", SHAPE(2), (const double[]){2, 0});
    nb_node *t = input_with(g, "t", SHAPE(2, 3), (const double[]){0, 0, 1, 1, 0, 0});
    nb_node *La = nb_cce_logits_loss(z, y), *Lb = nb_cce_logits_probs_loss(z, t);
    assert_non_null(La);
    assert_non_null(Lb);
    assert_int_equal(nb_forward(g), NB_OK);
    assert_close(nb_value(La)->data[0], nb_value(Lb)->data[0], TOL);
    /* Gradients wrt z agree; wrt t it is -log_softmax(z) / N. */
    nb_tensor *Ja = jac(La, z, NB_JAC_REV), *Jb = jac(Lb, z, NB_JAC_FWD), *Jt = jac(Lb, t, NB_JAC_REV);
    for (int i = 0; i < 6; i++) assert_close(Ja->data[i], Jb->data[i], TOL);
    const double rows[2][3] = {{1, 2, 3}, {0.5, -1, 2}};
    for (int r = 0; r < 2; r++) {
        double Z = exp(rows[r][0]) + exp(rows[r][1]) + exp(rows[r][2]);
        for (int c = 0; c < 3; c++) assert_close(Jt->data[r * 3 + c], -(rows[r][c] - log(Z)) / 2, TOL);
    }
    nb_tensor_free(Ja);
    nb_tensor_free(Jb);
    nb_tensor_free(Jt);
    nb_graph_free(g);
}

static void test_cce_label_out_of_range(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *z = nb_input(g, "z", SHAPE(5, 10));
    nb_node *y = input_with(g, "labels", SHAPE(5), (const double[]){0, 9, 3, 12, 1});
    nb_node *L = nb_cce_logits_loss(z, y);
    assert_non_null(L);
    assert_int_equal(nb_forward(g), NB_ERR_ARG);
    assert_contains(nb_last_error(), "cce_logits_loss: example 3 has label 12, not a class index 0..9 (10 classes)");
    nb_value(y)->data[3] = -1;
    assert_int_equal(nb_forward(g), NB_ERR_ARG);
    assert_contains(nb_last_error(), "example 3 has label -1, not a class index 0..9");
    nb_value(y)->data[3] = 2.5;
    assert_int_equal(nb_forward(g), NB_ERR_ARG);
    assert_contains(nb_last_error(), "example 3 has label 2.5, not a class index");
    nb_value(y)->data[3] = NAN;
    assert_int_equal(nb_forward(g), NB_ERR_ARG);
    assert_contains(nb_last_error(), "cce_logits_loss: example 3 has label ");
    nb_value(y)->data[3] = 4;
    assert_int_equal(nb_forward(g), NB_OK);
    assert_close(nb_value(L)->data[0], log(10.0), TOL); /* zero logits: uniform */
    nb_graph_free(g);
    /* The check itself, as train and the CLI call it: NULL, none, 1e30. */
    assert_int_equal(nb_check_class_labels("y", NULL, 2, 3), NB_ERR_ARG);
    assert_contains(nb_last_error(), "y: no labels (NULL)");
    assert_int_equal(nb_check_class_labels("y", NULL, 0, 3), NB_OK);
    const double big[2] = {2, 1e30};
    assert_int_equal(nb_check_class_labels("y", big, 2, 3), NB_ERR_ARG);
    assert_contains(nb_last_error(), "y: example 1 has label 1e+30, not a class index 0..2 (3 classes)");
    assert_int_equal(nb_check_class_labels("y", big, 1, 3), NB_OK);
}

static void test_loss_shape_mismatch(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *a = nb_input(g, "a", SHAPE(3, 4)), *b = nb_input(g, "b", SHAPE(3, 5));
    nb_node *lab = nb_input(g, "lab", SHAPE(4)), *v = nb_input(g, "v", SHAPE(12));
    assert_null(nb_mse_loss(a, b));
    assert_contains(nb_last_error(), "(3, 4)");
    assert_contains(nb_last_error(), "(3, 5)");
    assert_null(nb_bce_logits_loss(a, b));
    assert_contains(nb_last_error(), "bce_logits_loss");
    assert_contains(nb_last_error(), "(3, 5)");
    assert_null(nb_cce_logits_loss(a, lab));
    assert_contains(nb_last_error(), "(4,)");
    assert_contains(nb_last_error(), "(3, 4)");
    assert_null(nb_cce_logits_loss(v, lab));
    assert_contains(nb_last_error(), "(N, C)");
    assert_null(nb_cce_logits_probs_loss(a, b));
    assert_contains(nb_last_error(), "(3, 5)");
    assert_null(nb_mse_loss(a, NULL));
    nb_graph_free(g);
}

static void test_mse_known_vectors(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *p = input_with(g, "p", SHAPE(2, 2), (const double[]){1, 2, 3, 4});
    nb_node *t = input_with(g, "t", SHAPE(2, 2), (const double[]){0, 2, 5, 4});
    nb_set_requires_grad(p, 1);
    nb_set_requires_grad(t, 1);
    nb_node *L = nb_mse_loss(p, t);
    assert_int_equal(nb_forward(g), NB_OK);
    assert_close(nb_value(L)->data[0], (1.0 + 0 + 4 + 0) / 4, TOL); /* 1.25 */
    assert_int_equal(nb_backward(L), NB_OK);
    const double gp[4] = {0.5, 0, -1, 0}; /* 2 (p - t) / 4 */
    for (int i = 0; i < 4; i++) {
        assert_close(nb_grad(p)->data[i], gp[i], TOL);
        assert_close(nb_grad(t)->data[i], -gp[i], TOL);
    }
    nb_graph_free(g);
}

static void test_bce_values_stable(void **state)
{
    (void)state;
    const double z[4] = {0, 2, -1, 40}, tv[4] = {1, 1, 0, 0};
    nb_graph *g = nb_graph_new();
    nb_node *zn = input_with(g, "z", SHAPE(4), z), *tn = input_with(g, "t", SHAPE(4), tv);
    nb_set_requires_grad(zn, 1);
    nb_set_requires_grad(tn, 1);
    nb_node *L = nb_bce_logits_loss(zn, tn);
    assert_int_equal(nb_forward(g), NB_OK);
    /* -t log s - (1-t) log(1-s): log 2, log(1+e^-2), log(1+e^-1), and 40
     * (+ log1p(e^-40)) where the naive 1 - sigmoid(40) would round to 0. */
    double expect = (log(2.0) + log1p(exp(-2)) + log1p(exp(-1)) + 40 + log1p(exp(-40))) / 4;
    assert_close(nb_value(L)->data[0], expect, TOL);
    assert_int_equal(nb_backward(L), NB_OK);
    for (int i = 0; i < 4; i++) {
        double s = 1 / (1 + exp(-z[i]));
        assert_close(nb_grad(zn)->data[i], (s - tv[i]) / 4, TOL);
        assert_close(nb_grad(tn)->data[i], -z[i] / 4, TOL);
    }
    nb_graph_free(g);
}

/* ---------------------------------------------------------- reductions */

static void test_sum_mean_values_and_gradients(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", SHAPE(2, 3, 4));
    nb_set_requires_grad(x, 1);
    for (int i = 0; i < 24; i++) nb_value(x)->data[i] = i;
    nb_node *s02 = nb_sum(x, AXES(0, 2), 1);  /* (1, 3, 1) */
    nb_node *s1 = nb_sum(x, AXES(-2), 0);     /* (2, 4) */
    nb_node *all = nb_sum(x, 0, NULL, 0);      /* () */
    nb_node *m = nb_mean(x, 0, NULL, 0);       /* () */
    nb_node *m0 = nb_mean(x, AXES(0), 0);      /* (3, 4) */
    assert_non_null(s02);
    assert_non_null(s1);
    assert_non_null(m0);
    assert_int_equal(nb_forward(g), NB_OK);
    assert_shape(nb_value(s02), 3, (const int64_t[]){1, 3, 1});
    assert_shape(nb_value(s1), 2, (const int64_t[]){2, 4});
    assert_int_equal(nb_value(all)->rank, 0);
    assert_shape(nb_value(m0), 2, (const int64_t[]){3, 4});
    /* x[a,b,c] = 12a + 4b + c: sum over a, c = 8*... computed by loops */
    for (int b = 0; b < 3; b++) {
        double e = 0;
        for (int a = 0; a < 2; a++)
            for (int c = 0; c < 4; c++) e += 12 * a + 4 * b + c;
        assert_close(nb_value(s02)->data[b], e, TOL);
    }
    for (int a = 0; a < 2; a++)
        for (int c = 0; c < 4; c++) assert_close(nb_value(s1)->data[a * 4 + c], 3 * (12 * a + c) + 4 * 3, TOL);
    assert_close(nb_value(all)->data[0], 23 * 24 / 2, TOL);
    assert_close(nb_value(m)->data[0], 11.5, TOL);
    for (int i = 0; i < 12; i++) assert_close(nb_value(m0)->data[i], i + 6, TOL);
    /* gradients: all ones for a sum, 1/n for a mean */
    assert_int_equal(nb_backward(all), NB_OK);
    for (int i = 0; i < 24; i++) assert_close(nb_grad(x)->data[i], 1, 0);
    assert_int_equal(nb_backward(m), NB_OK);
    for (int i = 0; i < 24; i++) assert_close(nb_grad(x)->data[i], 1.0 / 24, TOL);
    /* Jacobian of the mean over axis 0: J[b,c,a,b',c'] = [b=b'][c=c'] / 2 */
    for (int mode = 0; mode < 2; mode++) {
        nb_tensor *J = jac(m0, x, mode ? NB_JAC_FWD : NB_JAC_REV);
        assert_shape(J, 5, (const int64_t[]){3, 4, 2, 3, 4});
        for (int o = 0; o < 12; o++)
            for (int a = 0; a < 2; a++)
                for (int i = 0; i < 12; i++) assert_close(J->data[(o * 2 + a) * 12 + i], o == i ? 0.5 : 0, TOL);
        nb_tensor_free(J);
    }
    nb_graph_free(g);
}

static void test_sum_axis_errors(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", SHAPE(2, 3));
    assert_null(nb_sum(x, AXES(2), 0));
    assert_contains(nb_last_error(), "axis 2 is out of range");
    assert_contains(nb_last_error(), "(2, 3)");
    assert_null(nb_mean(x, AXES(-3), 0));
    assert_contains(nb_last_error(), "axis -3 is out of range");
    assert_null(nb_sum(x, AXES(1, -1), 0));
    assert_contains(nb_last_error(), "more than once");
    assert_null(nb_sum(x, 1, NULL, 0));
    assert_null(nb_sum(NULL, 0, NULL, 0));
    nb_graph_free(g);
}

/* --------------------------------------------------------------- shape */

static void test_transpose_reshape_flatten(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", SHAPE(2, 3, 4));
    for (int i = 0; i < 24; i++) nb_value(x)->data[i] = i;
    nb_node *t = nb_transpose(x, (const int[]){2, 0, 1}); /* (4, 2, 3) */
    nb_node *t2 = nb_transpose(nb_reshape(x, SHAPE(-1, 4)), NULL);
    nb_node *r = nb_reshape(x, SHAPE(-1, 6));
    nb_node *f = nb_flatten(x);
    assert_non_null(t);
    assert_non_null(t2);
    assert_non_null(r);
    assert_non_null(f);
    assert_int_equal(nb_forward(g), NB_OK);
    assert_shape(nb_value(t), 3, (const int64_t[]){4, 2, 3});
    for (int c = 0; c < 4; c++)
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 3; b++) assert_close(nb_value(t)->data[(c * 2 + a) * 3 + b], 12 * a + 4 * b + c, 0);
    assert_shape(nb_value(t2), 2, (const int64_t[]){4, 6});
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 6; j++) assert_close(nb_value(t2)->data[i * 6 + j], j * 4 + i, 0);
    assert_shape(nb_value(r), 2, (const int64_t[]){4, 6});
    assert_shape(nb_value(f), 2, (const int64_t[]){2, 12});
    for (int i = 0; i < 24; i++) assert_close(nb_value(f)->data[i], i, 0);
    /* the transpose's Jacobian is its permutation matrix, in both modes */
    for (int mode = 0; mode < 2; mode++) {
        nb_tensor *J = jac(t, x, mode ? NB_JAC_FWD : NB_JAC_REV);
        for (int c = 0; c < 4; c++)
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 3; b++)
                    for (int i = 0; i < 24; i++)
                        assert_close(J->data[((c * 2 + a) * 3 + b) * 24 + i], i == 12 * a + 4 * b + c, 0);
        nb_tensor_free(J);
    }
    /* flatten follows a new batch size */
    assert_int_equal(nb_input_reshape(x, SHAPE(5, 3, 4)), NB_OK);
    assert_int_equal(nb_forward(g), NB_OK);
    assert_shape(nb_value(f), 2, (const int64_t[]){5, 12});
    assert_shape(nb_value(r), 2, (const int64_t[]){10, 6});
    assert_shape(nb_value(t2), 2, (const int64_t[]){4, 15});
    nb_graph_free(g);
}

static void test_shape_errors(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", SHAPE(2, 3));
    assert_null(nb_reshape(x, SHAPE(4, 2)));
    assert_contains(nb_last_error(), "(2, 3)");
    assert_contains(nb_last_error(), "(4, 2)");
    assert_null(nb_reshape(x, SHAPE(4, -1)));
    assert_contains(nb_last_error(), "(4, -1)");
    assert_null(nb_reshape(x, SHAPE(-1, -1)));
    assert_contains(nb_last_error(), "more than one -1");
    assert_null(nb_transpose(x, (const int[]){0, 0}));
    assert_contains(nb_last_error(), "repeats");
    assert_null(nb_transpose(x, (const int[]){0, 2}));
    assert_contains(nb_last_error(), "out of range");
    nb_node *s = nb_input(g, "s", 0, NULL);
    assert_null(nb_flatten(s));
    assert_contains(nb_last_error(), "flatten");
    nb_graph_free(g);
}

/* ------------------------------------------------------------- dropout */

static void test_dropout(void **state)
{
    (void)state;
    const int n = 4000;
    const double rate = 0.25;
    nb_graph *g = nb_graph_new();
    nb_node *x = nb_input(g, "x", SHAPE(n));
    nb_set_requires_grad(x, 1);
    for (int i = 0; i < n; i++) nb_value(x)->data[i] = 1 + i % 7;
    nb_node *y = nb_dropout(x, rate);
    nb_node *L = nb_sum(y, 0, NULL, 0);
    assert_non_null(L);
    /* inference: identity, gradient ones */
    assert_int_equal(nb_forward(g), NB_OK);
    for (int i = 0; i < n; i++) assert_close(nb_value(y)->data[i], nb_value(x)->data[i], 0);
    assert_int_equal(nb_backward(L), NB_OK);
    for (int i = 0; i < n; i++) assert_close(nb_grad(x)->data[i], 1, 0);
    /* training: y = x / (1 - rate) or 0, about rate of them 0, and the
     * gradient uses the mask of the forward pass */
    nb_graph_set_training(g, 1, 7);
    assert_int_equal(nb_forward(g), NB_OK);
    int zeros = 0;
    for (int i = 0; i < n; i++) {
        double xi = nb_value(x)->data[i], yi = nb_value(y)->data[i];
        if (yi == 0) zeros++;
        else assert_close(yi, xi / (1 - rate), TOL);
    }
    assert_in_range(zeros, n * rate - 150, n * rate + 150); /* ~5 sigma */
    assert_int_equal(nb_backward(L), NB_OK);
    for (int i = 0; i < n; i++)
        assert_close(nb_grad(x)->data[i], nb_value(y)->data[i] / nb_value(x)->data[i], TOL);
    /* the next step draws another mask; the same seed and step redraw this one */
    double first[64];
    for (int i = 0; i < 64; i++) first[i] = nb_value(y)->data[i];
    int changed = 0;
    nb_real before[64];
    for (int i = 0; i < 64; i++) before[i] = nb_value(y)->data[i];
    assert_int_equal(nb_forward(g), NB_OK);
    for (int i = 0; i < 64; i++) changed += nb_value(y)->data[i] != before[i];
    assert_true(changed > 0);
    nb_graph *g2 = nb_graph_new();
    nb_node *x2 = nb_input(g2, "x", SHAPE(n));
    for (int i = 0; i < n; i++) nb_value(x2)->data[i] = 1 + i % 7;
    nb_node *y2 = nb_dropout(x2, rate);
    nb_graph_set_training(g2, 1, 7);
    assert_int_equal(nb_forward(g2), NB_OK); /* step 1 */
    assert_int_equal(nb_forward(g2), NB_OK); /* step 2, as 'first' above */
    for (int i = 0; i < 64; i++) assert_close(nb_value(y2)->data[i], first[i], 0);
    nb_graph_free(g2);
    /* bad rates */
    assert_null(nb_dropout(x, 1.0));
    assert_contains(nb_last_error(), "rate 1 is not in [0, 1)");
    assert_null(nb_dropout(x, -0.1));
    assert_null(nb_dropout(x, NAN));
    nb_graph_free(g);
}

/* Sizes above the threading thresholds: the same numbers as the formulas,
 * and a dropout mask that does not depend on the thread count. */
static void test_large_threaded_paths(void **state)
{
    (void)state;
    const int64_t N = 5000, C = 10;
    nb_graph *g = nb_graph_new();
    nb_node *z = nb_input(g, "z", SHAPE(N, C)), *lab = nb_input(g, "lab", SHAPE(N));
    nb_rng r;
    nb_rng_seed(&r, 5);
    nb_tensor_fill_uniform(nb_value(z), &r, -3, 3);
    for (int64_t i = 0; i < N; i++) nb_value(lab)->data[i] = (double)(i % C);
    nb_set_requires_grad(z, 1);
    nb_node *L = nb_cce_logits_loss(z, lab), *S = nb_softmax(z);
    assert_int_equal(nb_forward(g), NB_OK);
    assert_int_equal(nb_backward(L), NB_OK);
    double loss = 0;
    for (int64_t i = 0; i < N; i++) {
        const double *v = nb_value(z)->data + i * C;
        double Z = 0;
        for (int64_t c = 0; c < C; c++) Z += exp(v[c]);
        loss += log(Z) - v[i % C];
        for (int64_t c = 0; c < C; c++) {
            assert_close(nb_value(S)->data[i * C + c], exp(v[c]) / Z, 1e-14);
            assert_close(nb_grad(z)->data[i * C + c], (exp(v[c]) / Z - (c == i % C)) / N, 1e-15);
        }
    }
    assert_close(nb_value(L)->data[0], loss / N, 1e-12);
    nb_graph_free(g);

    const int64_t m = 200000;
    nb_real *first = malloc((size_t)m * sizeof *first);
    assert_non_null(first);
    for (int threads = 1; threads <= 2; threads++) {
        nb_set_num_threads(threads);
        nb_graph *h = nb_graph_new();
        nb_node *x = nb_input(h, "x", SHAPE(m));
        for (int64_t i = 0; i < m; i++) nb_value(x)->data[i] = 1;
        nb_node *y = nb_dropout(x, 0.5);
        nb_graph_set_training(h, 1, 99);
        assert_int_equal(nb_forward(h), NB_OK);
        int64_t kept = 0;
        for (int64_t i = 0; i < m; i++) {
            const nb_real v = nb_value(y)->data[i];
            assert_true(v == 0 || v == 2);
            kept += v != 0;
            if (threads == 1) first[i] = v;
            else assert_close(v, first[i], 0);
        }
        assert_in_range(kept, m / 2 - 1500, m / 2 + 1500); /* ~6.7 sigma */
        nb_graph_free(h);
    }
    nb_set_num_threads(0);
    free(first);
}

/* --------------------------------------------------- the gradient check */

typedef struct {
    int rows, zero_jacobians;
} check_count;

static void count_row(const nb_opcheck_row *row, void *user)
{
    check_count *c = user;
    c->rows++;
    if (!(row->r.max_abs_jacobian > 0)) {
        c->zero_jacobians++;
        print_error("all-zero Jacobian: %s %s wrt %s\n", row->op, row->case_name, row->wrt);
    }
    if (!row->r.ok)
        print_error("FAIL %s %s wrt %s: worst ratio %g (analytic %g, numeric %g)\n", row->op, row->case_name,
                    row->wrt, row->r.worst_ratio, row->r.worst_analytic, row->r.worst_numeric);
}

static void test_opcheck_all(void **state)
{
    (void)state;
    const nb_gradcheck_opts o = {1e-6, 1e-5, 1e-3}; /* PyTorch's gradcheck defaults */
    for (uint64_t seed = 1; seed <= 3; seed++) {
        check_count c = {0, 0};
        int failures = nb_opcheck_all(seed, &o, count_row, &c);
        if (failures < 0) fail_msg("opcheck could not run: %s", nb_last_error());
        assert_int_equal(failures, 0);
        assert_int_equal(c.zero_jacobians, 0);
        assert_true(c.rows >= 30);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax_123_values_and_jacobian),
        cmocka_unit_test(test_log_softmax_jacobian),
        cmocka_unit_test(test_softmax_large_logits_stable),
        cmocka_unit_test(test_log_softmax_cce_huge_logits),
        cmocka_unit_test(test_softmax_scalar_refused),
        cmocka_unit_test(test_cce_labels_value_and_gradient),
        cmocka_unit_test(test_cce_probs_matches_labels_on_onehot),
        cmocka_unit_test(test_cce_label_out_of_range),
        cmocka_unit_test(test_loss_shape_mismatch),
        cmocka_unit_test(test_mse_known_vectors),
        cmocka_unit_test(test_bce_values_stable),
        cmocka_unit_test(test_sum_mean_values_and_gradients),
        cmocka_unit_test(test_sum_axis_errors),
        cmocka_unit_test(test_transpose_reshape_flatten),
        cmocka_unit_test(test_shape_errors),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_large_threaded_paths),
        cmocka_unit_test(test_opcheck_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
