/* The gradient checker in the float build with its default options: the
 * step and tolerances must follow the precision. With double's step 1e-6,
 * float's rounding (ulp ~ 6e-8 at 1) swamps the difference and smooth ops
 * fail (tanh: analytic 0.469, numeric 0.507). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nabla.h"

typedef nb_node *(*unary_fn)(nb_node *);

static nb_node *pow3(nb_node *x) { return nb_pow(x, 3.0); }
static nb_node *leaky(nb_node *x) { return nb_leaky_relu(x, 0.1); }

/* op(x) on a (3, 4) input uniform in [lo, hi], then gradcheck with opts
 * (NULL or all zeros: the defaults). */
static void check_unary(const char *name, unary_fn op, double lo, double hi, const nb_gradcheck_opts *opts)
{
    nb_graph *g = nb_graph_new();
    assert_non_null(g);
    int64_t xs[2] = {3, 4};
    nb_node *x = nb_input(g, "x", 2, xs);
    assert_non_null(x);
    nb_rng r;
    nb_rng_seed(&r, 7);
    nb_tensor_fill_uniform(nb_value(x), &r, lo, hi);
    nb_node *y = op(x);
    assert_non_null(y);
    nb_gradcheck_result res;
    assert_int_equal(nb_gradcheck(y, x, opts, &res), NB_OK);
    if (!res.ok)
        print_error("%s: analytic %g, numeric %g, ratio %g\n", name, res.worst_analytic, res.worst_numeric,
                    res.worst_ratio);
    assert_int_equal(res.ok, 1);
    assert_true(res.worst_ratio <= 1);
    assert_true(res.max_abs_jacobian > 0.05); /* not a check of zeros */
    nb_graph_free(g);
}

static void test_unary_defaults(void **state)
{
    (void)state;
    const nb_gradcheck_opts zeros = {0};
    const struct {
        const char *name;
        unary_fn op;
        double lo, hi;
    } c[] = {
        {"tanh", nb_tanh, -3, 3},       {"sigmoid", nb_sigmoid, -4, 4}, {"exp", nb_exp, -2, 2},
        {"softplus", nb_softplus, -4, 4}, {"gelu", nb_gelu, -3, 3},     {"log", nb_log, 0.5, 3},
        {"sqrt", nb_sqrt, 0.5, 3},      {"x^3", pow3, -2, 2},           {"leaky_relu", leaky, 0.2, 2},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        check_unary(c[i].name, c[i].op, c[i].lo, c[i].hi, NULL);
        check_unary(c[i].name, c[i].op, c[i].lo, c[i].hi, &zeros);
    }
}

/* A dense layer tanh(A W + b), every leaf, default options. */
static void test_dense_defaults(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    int64_t as[2] = {5, 4}, ws[2] = {4, 3}, bs[1] = {3};
    nb_node *A = nb_input(g, "A", 2, as), *W = nb_param(g, "W", 2, ws), *b = nb_param(g, "b", 1, bs);
    assert_non_null(A);
    assert_non_null(W);
    assert_non_null(b);
    nb_rng r;
    nb_rng_seed(&r, 3);
    nb_tensor_fill_uniform(nb_value(A), &r, -1, 1);
    nb_tensor_fill_uniform(nb_value(W), &r, -1, 1);
    nb_tensor_fill_uniform(nb_value(b), &r, -1, 1);
    nb_node *y = nb_sigmoid(nb_tanh(nb_add(nb_matmul(A, W), b)));
    assert_non_null(y);
    nb_node *leaves[3] = {A, W, b};
    for (int i = 0; i < 3; i++) {
        nb_gradcheck_result res;
        assert_int_equal(nb_gradcheck(y, leaves[i], NULL, &res), NB_OK);
        assert_int_equal(res.ok, 1);
        assert_true(res.max_abs_jacobian > 0.01);
    }
    nb_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_defaults),
        cmocka_unit_test(test_dense_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
