/* Passes out of order and pass state (issue 10): a reverse pass after a
 * failed forward, gradients that survive other passes, an optimiser step
 * without gradients, parameter gradients at batch 0, reductions over every
 * axis after a reshape, reshape with a NULL shape, and the message of a
 * call that fails on a NULL input. Each test failed before its fix. */
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

/* CCE with a label out of range: the forward refuses it, and the reverse
 * passes after it refuse to run on what that forward left (before: the
 * VJP read an uninitialised label workspace and wrote out of bounds). */
static void test_reverse_after_failed_forward(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    int64_t ls[2] = {1, 3}, ys[1] = {1};
    const double lv[3] = {0.1, 0.2, 0.3}, good = 2, bad = 7;
    nb_node *logits = leaf(g, 1, "logits", 2, ls, lv), *labels = leaf(g, 0, "labels", 1, ys, &good);
    nb_node *loss = nb_cce_logits_loss(logits, labels);
    assert_non_null(loss);
    /* A good pass first, so that buffers exist. */
    assert_ok(nb_forward(g));
    assert_ok(nb_backward(loss));
    nb_value(labels)->data[0] = bad;
    assert_int_not_equal(nb_forward(g), NB_OK);
    assert_int_equal(nb_backward(loss), NB_ERR_ARG);
    assert_non_null(strstr(nb_last_error(), "did not complete"));
    assert_null(nb_grad(logits)); /* the old gradient is not offered as this pass's */
    /* A larger batch that fails: still refused. */
    int64_t ls3[2] = {3, 3}, ys3[1] = {3};
    assert_ok(nb_input_reshape(logits, 2, ls3));
    assert_ok(nb_input_reshape(labels, 1, ys3));
    for (int i = 0; i < 3; i++) nb_value(labels)->data[i] = i == 2 ? bad : 0;
    assert_int_not_equal(nb_forward(g), NB_OK);
    assert_int_equal(nb_backward(loss), NB_ERR_ARG);
    int64_t ks[1] = {1};
    double one = 1;
    nb_tensor *seed = nb_tensor_from(1, ks, &one), *res = NULL;
    nb_node *wrt = logits;
    /* nb_vjp runs its own forward, which fails again: no pass, no result. */
    assert_int_not_equal(nb_vjp(loss, seed, 1, &wrt, &res), NB_OK);
    assert_null(res);
    /* Fixed labels: everything works again. */
    nb_value(labels)->data[2] = 1;
    assert_ok(nb_forward(g));
    assert_ok(nb_backward(loss));
    assert_non_null(nb_grad(logits));
    nb_tensor_free(seed);
    nb_graph_free(g);
}

/* A new node after the forward: backward refuses until the next forward. */
static void test_backward_needs_forward_after_new_node(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    int64_t s1 = 1;
    const double v = 3;
    nb_node *x = leaf(g, 1, "x", 1, &s1, &v), *y = nb_mul(x, x);
    assert_ok(nb_forward(g));
    nb_node *z = nb_mul(y, x);
    assert_non_null(z);
    assert_int_equal(nb_backward(z), NB_ERR_ARG);
    assert_ok(nb_forward(g));
    assert_ok(nb_backward(z));
    NEAR(nb_grad(x)->data[0], 3 * v * v, TIGHT);
    nb_graph_free(g);
}

/* Gradients of nb_backward survive a VJP, a JVP and a Jacobian run before
 * the optimiser reads them (before: nb_grad's tensors had data NULL, and
 * the optimiser step returned OK and changed nothing). */
static void test_gradients_survive_other_passes(void **state)
{
    (void)state;
    int64_t in[1] = {3};
    nb_model *m = nb_model_new(1, in);
    assert_non_null(m);
    assert_ok(nb_model_dense(m, 4, NB_ACT_TANH));
    assert_ok(nb_model_dense(m, 2, NB_ACT_NONE));
    assert_ok(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 7));
    nb_node *target = NULL, *loss = NULL;
    assert_ok(nb_model_loss(m, NB_LOSS_MSE, &target, &loss));
    assert_ok(nb_model_set_batch(m, 2));
    nb_node *x = nb_model_input(m);
    for (int i = 0; i < 6; i++) nb_value(x)->data[i] = 0.1 * (i + 1);
    for (int i = 0; i < 4; i++) nb_value(target)->data[i] = i % 2;
    nb_graph *g = nb_model_graph(m);
    assert_ok(nb_forward(g));
    assert_ok(nb_backward(loss));
    nb_node *k0 = nb_model_find_param(m, "0.kernel");
    assert_non_null(k0);
    nb_tensor *gk = nb_grad(k0);
    assert_non_null(gk);
    double before[12];
    memcpy(before, gk->data, sizeof before);
    double norm = 0;
    for (int i = 0; i < 12; i++) norm += fabs(before[i]);
    assert_true(norm > 1e-6);
    /* Other passes over the same graph. */
    nb_tensor *J = NULL;
    assert_ok(nb_jacobian(nb_model_output(m), x, NULL, &J));
    nb_tensor_free(J);
    int64_t ks[3] = {1, 2, 2};
    nb_tensor *seed = nb_tensor_new(3, ks), *res = NULL;
    for (int i = 0; i < 4; i++) seed->data[i] = 1;
    nb_node *out = nb_model_output(m);
    assert_ok(nb_vjp(out, seed, 1, &k0, &res));
    nb_tensor_free(res);
    nb_tensor_free(seed);
    /* The tensor obtained before is still the gradient. */
    assert_true(nb_grad(k0) == gk);
    assert_non_null(gk->data);
    for (int i = 0; i < 12; i++) NEAR(gk->data[i], before[i], TIGHT);
    /* And the step applies it: w := w - lr g. */
    double w0[12];
    memcpy(w0, nb_value(k0)->data, sizeof w0);
    nb_optim_opts oo = {0};
    oo.kind = NB_OPT_SGD;
    oo.lr = 0.5;
    nb_optim *o = NULL;
    assert_ok(nb_optim_new(m, &oo, &o));
    assert_ok(nb_optim_step(o));
    for (int i = 0; i < 12; i++) NEAR(nb_value(k0)->data[i], w0[i] - 0.5 * before[i], TIGHT);
    nb_optim_free(o);
    nb_model_free(m);
}

/* An optimiser step after a failed backward fails loudly. */
static void test_step_without_gradients_fails(void **state)
{
    (void)state;
    int64_t in[1] = {2};
    nb_model *m = nb_model_new(1, in);
    assert_ok(nb_model_dense(m, 3, NB_ACT_NONE));
    assert_ok(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1));
    nb_node *target = NULL, *loss = NULL;
    assert_ok(nb_model_loss(m, NB_LOSS_CCE, &target, &loss));
    assert_ok(nb_model_set_batch(m, 1));
    nb_optim_opts oo = {0};
    oo.kind = NB_OPT_SGD;
    oo.lr = 0.1;
    nb_optim *o = NULL;
    assert_ok(nb_optim_new(m, &oo, &o));
    /* No backward ever ran. */
    assert_int_equal(nb_optim_step(o), NB_ERR_ARG);
    assert_non_null(strstr(nb_last_error(), "nb_backward"));
    nb_value(target)->data[0] = 9; /* out of range: forward fails */
    assert_int_not_equal(nb_forward(nb_model_graph(m)), NB_OK);
    assert_int_not_equal(nb_backward(loss), NB_OK);
    assert_int_equal(nb_optim_step(o), NB_ERR_ARG);
    nb_value(target)->data[0] = 2;
    assert_ok(nb_forward(nb_model_graph(m)));
    assert_ok(nb_backward(loss));
    assert_ok(nb_optim_step(o));
    nb_optim_free(o);
    nb_model_free(m);
}

/* conv2d at batch 0: the kernel and bias gradients are zero, as matmul's
 * and add's are (before: the values of the last batch stayed). */
static void test_conv2d_batch0_zero_param_grads(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    int64_t xs[4] = {2, 4, 4, 1}, ks[4] = {3, 3, 1, 2}, bs[1] = {2};
    nb_node *x = leaf(g, 0, "x", 4, xs, NULL), *k = leaf(g, 1, "k", 4, ks, NULL), *b = leaf(g, 1, "b", 1, bs, NULL);
    for (int i = 0; i < 32; i++) nb_value(x)->data[i] = 0.1 * (i % 7) - 0.2;
    for (int i = 0; i < 18; i++) nb_value(k)->data[i] = 0.05 * (i % 5) - 0.1;
    nb_node *y = nb_conv2d(x, k, b, NULL), *loss = nb_sum(nb_mul(y, y), 0, NULL, 0);
    assert_non_null(loss);
    assert_ok(nb_forward(g));
    assert_ok(nb_backward(loss));
    double nk = 0;
    for (int i = 0; i < 18; i++) nk += fabs(nb_grad(k)->data[i]);
    assert_true(nk > 1e-6);
    int64_t xs0[4] = {0, 4, 4, 1};
    assert_ok(nb_input_reshape(x, 4, xs0));
    assert_ok(nb_forward(g));
    NEAR(nb_value(loss)->data[0], 0, TIGHT);
    assert_ok(nb_backward(loss));
    for (int i = 0; i < 18; i++) NEAR(nb_grad(k)->data[i], 0, TIGHT);
    for (int i = 0; i < 2; i++) NEAR(nb_grad(b)->data[i], 0, TIGHT);
    nb_graph_free(g);
}

/* Sum and mean over all axes (naxes 0) follow the input's rank after a
 * reshape (before: fixed to the rank at build time, so the "sum of
 * everything" of a (2, 3) input had shape (3,)). */
static void test_reduce_all_axes_after_reshape(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    int64_t s3[1] = {3};
    nb_node *x = leaf(g, 1, "x", 1, s3, NULL);
    nb_node *s = nb_sum(x, 0, NULL, 0), *m = nb_mean(x, 0, NULL, 1);
    assert_non_null(s);
    assert_non_null(m);
    int64_t s23[2] = {2, 3};
    assert_ok(nb_input_reshape(x, 2, s23));
    for (int i = 0; i < 6; i++) nb_value(x)->data[i] = i + 1;
    assert_ok(nb_forward(g));
    assert_int_equal(nb_value(s)->rank, 0);
    NEAR(nb_value(s)->data[0], 21, TIGHT);
    int64_t ones[2] = {1, 1};
    assert_shape(nb_value(m), 2, ones);
    NEAR(nb_value(m)->data[0], 3.5, TIGHT);
    assert_ok(nb_backward(s));
    for (int i = 0; i < 6; i++) NEAR(nb_grad(x)->data[i], 1, TIGHT);
    nb_graph_free(g);
}

/* nb_input_reshape with a NULL shape of rank > 0 is refused (before: a
 * NULL dereference, found by UBSan). */
static void test_reshape_null_shape(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    int64_t s3[1] = {3};
    nb_node *x = leaf(g, 0, "x", 1, s3, NULL);
    assert_int_equal(nb_input_reshape(x, 1, NULL), NB_ERR_SHAPE);
    assert_non_null(strstr(nb_last_error(), "NULL shape"));
    assert_int_equal(nb_value(x)->shape[0], 3);
    assert_ok(nb_input_reshape(x, 0, NULL)); /* a scalar needs no shape */
    nb_graph_free(g);
}

/* A call that fails on a NULL input says so itself, whatever failed before
 * (before: the stale message of an unrelated failure stayed), and names the
 * last earlier error, which in a chain of calls is the cause. */
static void test_null_input_sets_its_own_message(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    int64_t a[2] = {3, 4}, b[2] = {5, 2};
    nb_node *x = leaf(g, 0, "x", 2, a, NULL), *w = leaf(g, 1, "w", 2, b, NULL);
    assert_null(nb_matmul(x, w));
    assert_non_null(strstr(nb_last_error(), "matmul"));
    assert_null(nb_relu(NULL));
    assert_true(strncmp(nb_last_error(), "relu: input 0 is NULL", 21) == 0);
    /* A chain keeps the cause in view. */
    assert_null(nb_tanh(nb_add(nb_matmul(x, w), x)));
    assert_true(strncmp(nb_last_error(), "tanh: input 0 is NULL", 21) == 0);
    assert_non_null(strstr(nb_last_error(), "matmul: shapes (3, 4) and (5, 2)"));
    nb_graph_free(g);
}

/* Dropout draws its mask from (seed, the pass's random key): one key, one
 * mask; nb_forward takes the next key; nb_forward_key names one. */
static void test_dropout_random_key(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    int64_t s64[1] = {64};
    nb_node *x = leaf(g, 0, "x", 1, s64, NULL), *y = nb_dropout(x, 0.5);
    assert_non_null(y);
    for (int i = 0; i < 64; i++) nb_value(x)->data[i] = 1;
    nb_graph_set_training(g, 1, 42);
    double m1[64], m2[64];
    assert_ok(nb_forward_key(g, 7));
    memcpy(m1, nb_value(y)->data, sizeof m1);
    assert_ok(nb_forward(g)); /* key 8: another mask */
    memcpy(m2, nb_value(y)->data, sizeof m2);
    int same = 0, kept = 0;
    for (int i = 0; i < 64; i++) same += m1[i] == m2[i], kept += m1[i] != 0;
    assert_true(same < 64);
    assert_true(kept > 10 && kept < 54);
    assert_ok(nb_forward_key(g, 7)); /* key 7 again: the first mask */
    for (int i = 0; i < 64; i++) NEAR(nb_value(y)->data[i], m1[i], 0);
    /* A Jacobian differentiates the function of the last pass's mask. */
    nb_tensor *J = NULL;
    assert_ok(nb_jacobian(y, x, NULL, &J));
    for (int i = 0; i < 64; i++) NEAR(J->data[i * 64 + i], m1[i], TIGHT);
    nb_tensor_free(J);
    for (int i = 0; i < 64; i++) NEAR(nb_value(y)->data[i], m1[i], 0);
    nb_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reverse_after_failed_forward),
        cmocka_unit_test(test_backward_needs_forward_after_new_node),
        cmocka_unit_test(test_gradients_survive_other_passes),
        cmocka_unit_test(test_step_without_gradients_fails),
        cmocka_unit_test(test_conv2d_batch0_zero_param_grads),
        cmocka_unit_test(test_reduce_all_axes_after_reshape),
        cmocka_unit_test(test_reshape_null_shape),
        cmocka_unit_test(test_null_input_sets_its_own_message),
        cmocka_unit_test(test_dropout_random_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
