/* Graph models in double precision: where one tensor feeds several
 * consumers the reverse pass must add their adjoints, and the forward pass
 * their tangents. A block whose input x feeds three branches (two dense
 * layers, a convolution-free concat and an add), checked against central
 * differences w.r.t. the input and every parameter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the headers it needs */

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nabla.h"

/* x = tanh(dense(input)) feeds three branches: b1 = tanh(dense x), b2 =
 * sigmoid(dense x), and b3 = dense x concatenated with x; the block's
 * output adds b1 and b2 to b3's first half through a last dense layer.
 * Every branch's adjoint w.r.t. x is needed for the right dJ/dx. */
static const char *three_branches = "dense 4 tanh as x; dense 4 tanh as b1; from x; dense 4 sigmoid as b2; from x; "
                                    "dense 4; concat x; dense 4; add b1 b2; dense 3";

static void check(nb_node *out, nb_node *wrt)
{
    nb_gradcheck_result r;
    assert_int_equal(nb_gradcheck(out, wrt, NULL, &r), NB_OK);
    if (!r.ok)
        fprintf(stderr, "%s: worst ratio %g (analytic %g, numeric %g)\n", nb_node_name(wrt), r.worst_ratio,
                r.worst_analytic, r.worst_numeric);
    assert_true(r.ok);
    assert_true(r.max_abs_jacobian > 1e-3); /* not all zero */
}

static void test_three_branches_gradcheck(void **state)
{
    (void)state;
    nb_model *m;
    assert_int_equal(nb_model_from_spec(three_branches, 1, (const int64_t[]){5}, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 7), NB_OK);
    assert_int_equal(nb_model_set_batch(m, 2), NB_OK);
    nb_tensor *x = nb_value(nb_model_input(m));
    for (int64_t i = 0; i < x->size; i++)
        x->data[i] = sin(1.7 * (double)i + 0.3);
    check(nb_model_output(m), nb_model_input(m));
    assert_true(nb_model_param_count(m) == 12);
    for (int i = 0; i < nb_model_param_count(m); i++)
        check(nb_model_output(m), nb_model_param(m, i));
    nb_model_free(m);
}

/* The same function written out by hand: the model's output must be it. */
static void test_three_branches_values(void **state)
{
    (void)state;
    nb_model *m;
    assert_int_equal(
        nb_model_from_spec("dense 3 tanh as x; dense 3 as b; from x; add b x", 1, (const int64_t[]){2}, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 3), NB_OK);
    nb_tensor *in = nb_value(nb_model_input(m));
    in->data[0] = 0.5, in->data[1] = -0.25;
    assert_int_equal(nb_forward(nb_model_graph(m)), NB_OK);
    const nb_real *k0 = nb_value(nb_model_param(m, 0))->data, *b0 = nb_value(nb_model_param(m, 1))->data;
    const nb_real *k1 = nb_value(nb_model_param(m, 2))->data, *b1 = nb_value(nb_model_param(m, 3))->data;
    double x[3], want[3];
    for (int j = 0; j < 3; j++)
        x[j] = tanh(0.5 * k0[j] - 0.25 * k0[3 + j] + b0[j]);
    for (int j = 0; j < 3; j++) {
        double b = b1[j];
        for (int i = 0; i < 3; i++)
            b += x[i] * k1[i * 3 + j];
        want[j] = x[j] + b + x[j]; /* from x; add b x: x + b + x */
    }
    for (int j = 0; j < 3; j++)
        assert_float_equal(nb_value(nb_model_output(m))->data[j], want[j], 1e-12);
    nb_model_free(m);
}

/* With batchnorm and layernorm (issue 13): x feeds three branches, two of
 * them through a batchnorm, summed and layer-normalised; checked in
 * training mode (batch statistics: the examples are coupled) and in
 * inference mode (moving statistics set away from 0 and 1), w.r.t. the
 * input and every trained parameter (the moving statistics are state). */
static void bn_three_branches(int mode)
{
    nb_model *m;
    assert_int_equal(nb_model_from_spec("dense 4 tanh as x; batchnorm; dense 4 tanh as b1; from x; dense 4; "
                                        "batchnorm momentum=0.3 eps=0.01 as b2; from x; add b1 b2; layernorm; dense 3",
                                        1, (const int64_t[]){5}, &m),
                     NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 7), NB_OK);
    assert_int_equal(nb_model_set_batch(m, 4), NB_OK);
    nb_tensor *x = nb_value(nb_model_input(m));
    for (int64_t i = 0; i < x->size; i++)
        x->data[i] = sin(1.7 * (double)i + 0.3);
    int trained = 0;
    for (int i = 0; i < nb_model_param_count(m); i++) {
        nb_node *p = nb_model_param(m, i);
        nb_tensor *v = nb_value(p);
        const char *name = nb_node_name(p);
        if (strstr(name, "moving_") || strstr(name, "gamma"))
            for (int64_t j = 0; j < v->size; j++)
                v->data[j] += 0.3 + 0.1 * (double)j; /* moving_mean != 0, moving_variance != 1, gamma != 1 */
        trained += nb_node_requires_grad(p);
    }
    assert_int_equal(trained, nb_model_param_count(m) - 4);
    nb_graph_set_training(nb_model_graph(m), mode, 1);
    check(nb_model_output(m), nb_model_input(m));
    for (int i = 0; i < nb_model_param_count(m); i++) {
        nb_node *p = nb_model_param(m, i);
        if (!nb_node_requires_grad(p)) continue;
        /* the bias of the dense before a training-mode batchnorm is removed
         * with the batch mean: its Jacobian is exactly 0 there */
        if (mode != NB_INFERENCE && !strcmp(nb_node_name(p), "4.bias")) {
            nb_gradcheck_result r;
            assert_int_equal(nb_gradcheck(nb_model_output(m), p, NULL, &r), NB_OK);
            assert_true(r.ok && r.max_abs_jacobian < 1e-9);
            continue;
        }
        check(nb_model_output(m), p);
    }
    nb_model_free(m);
}
static void test_bn_three_branches_training(void **state)
{
    (void)state;
    bn_three_branches(NB_TRAINING_NO_DROPOUT);
}
static void test_bn_three_branches_inference(void **state)
{
    (void)state;
    bn_three_branches(NB_INFERENCE);
}

/* Batchnorm's VJPs of x, gamma and beta share the seed's per-channel sums
 * (ops/batchnorm.c): a second nb_backward whose seed differs only in its
 * values (loss = sum(y * t) with the constant t changed between the two,
 * no new forward, the same buffers) must not reuse the first one's sums.
 * Its gradients are compared with those of a fresh forward and backward. */
static void test_bn_second_backward_fresh_sums(void **state)
{
    (void)state;
    nb_model *m;
    assert_int_equal(nb_model_from_spec("dense 3; batchnorm; dense 2", 1, (const int64_t[]){4}, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 5), NB_OK);
    assert_int_equal(nb_model_set_batch(m, 5), NB_OK);
    nb_graph *g = nb_model_graph(m);
    nb_graph_set_training(g, NB_TRAINING_NO_DROPOUT, 1);
    nb_tensor *x = nb_value(nb_model_input(m));
    for (int64_t i = 0; i < x->size; i++)
        x->data[i] = cos(0.9 * (double)i + 0.2);
    nb_node *t = nb_input(g, "t", 2, (const int64_t[]){5, 2});
    assert_non_null(t);
    nb_tensor *tv = nb_value(t);
    for (int64_t i = 0; i < tv->size; i++)
        tv->data[i] = sin(1.3 * (double)i);
    nb_node *loss = nb_sum(nb_mul(nb_model_output(m), t), 0, NULL, 0);
    assert_non_null(loss);
    nb_node *gamma = NULL, *beta = NULL;
    for (int i = 0; i < nb_model_param_count(m); i++) {
        nb_node *p = nb_model_param(m, i);
        if (!strcmp(nb_node_name(p), "1.gamma")) gamma = p;
        if (!strcmp(nb_node_name(p), "1.beta")) beta = p;
    }
    assert_non_null(gamma), assert_non_null(beta);
    assert_int_equal(nb_forward(g), NB_OK);
    assert_int_equal(nb_backward(loss), NB_OK);
    const double first = nb_grad(gamma)->data[0];
    for (int64_t i = 0; i < tv->size; i++)
        tv->data[i] = cos(0.7 * (double)i) - 0.5; /* the seed at the batchnorm changes; its forward state does not */
    assert_int_equal(nb_backward(loss), NB_OK);
    double again[6];
    for (int c = 0; c < 3; c++)
        again[c] = nb_grad(gamma)->data[c], again[3 + c] = nb_grad(beta)->data[c];
    assert_int_equal(nb_forward(g), NB_OK);
    assert_int_equal(nb_backward(loss), NB_OK);
    assert_true(fabs(again[0] - first) > 1e-6); /* the seed did change */
    for (int c = 0; c < 3; c++) {
        assert_float_equal(again[c], nb_grad(gamma)->data[c], 1e-12);
        assert_float_equal(again[3 + c], nb_grad(beta)->data[c], 1e-12);
    }
    nb_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_branches_gradcheck),
        cmocka_unit_test(test_three_branches_values),
        cmocka_unit_test(test_bn_three_branches_training),
        cmocka_unit_test(test_bn_three_branches_inference),
        cmocka_unit_test(test_bn_second_backward_fresh_sums),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
