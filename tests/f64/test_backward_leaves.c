/* nb_backward_leaves: the gradients of nb_backward, bit for bit, with the
 * adjoints of op nodes lent from a pool (autodiff/autodiff.c). Checked on a
 * graph model where one named output feeds three consumers (a residual add,
 * a concat, batchnorm, layernorm, dropout), in both orders and after a
 * reshape; the pool holds fewer buffers than the op nodes it served; op
 * nodes have no readable gradient afterwards; the refusals are those of
 * nb_backward. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "graph/graph.h"
#include "nabla.h"
#include "nb_test_f64.h"

enum { MAXP = 64 };

static void assert_ok(nb_status s)
{
    if (s != NB_OK) print_error("%s: %s\n", nb_status_name(s), nb_last_error());
    assert_int_equal(s, NB_OK);
}

/* 'a' feeds the next conv, the 1x1 shortcut and the concat. */
static const char *SPEC = "conv2d 4 3 padding=same; batchnorm; relu as a; conv2d 4 3 padding=same; batchnorm as b; "
                          "from a; conv2d 4 1 as c; add b; relu; concat a c; layernorm; globalavgpool; "
                          "dropout 0.3; dense 3";

typedef struct {
    nb_model *m;
    nb_node *loss, *target;
} net;

static void fill_batch(net *t, int64_t batch)
{
    assert_ok(nb_model_set_batch(t->m, batch));
    assert_ok(nb_model_loss(t->m, NB_LOSS_CCE, &t->target, &t->loss));
    nb_tensor *x = nb_value(nb_model_input(t->m));
    for (int64_t i = 0; i < x->size; i++)
        x->data[i] = (double)((i * 7919) % 101) / 50 - 1;
    for (int64_t i = 0; i < batch; i++)
        nb_value(t->target)->data[i] = (double)(i % 3);
}

static net make_net(int64_t batch)
{
    const int64_t in[3] = {5, 5, 2};
    net t;
    assert_ok(nb_model_from_spec(SPEC, 3, in, &t.m));
    assert_ok(nb_model_init(t.m, NB_INIT_GLOROT_UNIFORM, 3));
    assert_ok(nb_model_loss(t.m, NB_LOSS_CCE, &t.target, &t.loss));
    nb_set_requires_grad(nb_model_input(t.m), 1);
    nb_graph_set_training(nb_model_graph(t.m), NB_TRAINING, 11);
    fill_batch(&t, batch);
    return t;
}

/* Every gradient of the leaves (trainable parameters, then the input),
 * concatenated into out; returns their count. None may be missing. */
static int64_t leaf_grads(net *t, double *out, int64_t cap)
{
    int64_t n = 0;
    for (int i = 0; i <= nb_model_param_count(t->m); i++) {
        nb_node *p = i < nb_model_param_count(t->m) ? nb_model_param(t->m, i) : nb_model_input(t->m);
        if (!nb_node_requires_grad(p)) continue;
        const nb_tensor *g = nb_grad(p);
        assert_non_null(g);
        assert_true(n + g->size <= cap);
        memcpy(out + n, g->data, (size_t)g->size * sizeof(double));
        n += g->size;
    }
    return n;
}

static void assert_not_all_zero(const double *g, int64_t n)
{
    int64_t nonzero = 0;
    for (int64_t i = 0; i < n; i++)
        nonzero += g[i] != 0;
    assert_true(nonzero > n / 2);
}

/* The forward once (fixed dropout key), then both backward kinds over it. */
static void assert_same_bits(net *t, double *ga, double *gb, int64_t cap)
{
    nb_graph *g = nb_model_graph(t->m);
    assert_ok(nb_forward_key(g, 5));
    assert_ok(nb_backward(t->loss));
    const int64_t n = leaf_grads(t, ga, cap);
    assert_non_null(nb_grad(nb_model_output(t->m))); /* intermediate gradients readable */
    assert_ok(nb_backward_leaves(t->loss));
    assert_int_equal(leaf_grads(t, gb, cap), n);
    assert_memory_equal(ga, gb, (size_t)n * sizeof(double));
    assert_not_all_zero(ga, n);
    assert_null(nb_grad(nb_model_output(t->m))); /* op nodes: none after leaves */
    assert_non_null(nb_grad(t->loss));           /* the loss keeps its seed */
    /* and back: nb_backward after the leaves gives the same again */
    assert_ok(nb_backward(t->loss));
    assert_int_equal(leaf_grads(t, gb, cap), n);
    assert_memory_equal(ga, gb, (size_t)n * sizeof(double));
}

static void test_same_gradients_as_backward(void **state)
{
    (void)state;
    net t = make_net(4);
    static double ga[1 << 14], gb[1 << 14];
    assert_same_bits(&t, ga, gb, 1 << 14);
    /* a smaller batch after a reshape, then the larger one again */
    fill_batch(&t, 3);
    assert_same_bits(&t, ga, gb, 1 << 14);
    fill_batch(&t, 4);
    assert_same_bits(&t, ga, gb, 1 << 14);
    nb_model_free(t.m);
}

/* Two steps of leaves in a row give the same bits (the lent buffers carry
 * nothing from one step into the next), and the pool holds fewer buffers
 * than the op nodes whose adjoints it lent. */
static void test_pool_is_smaller_than_the_graph(void **state)
{
    (void)state;
    net t = make_net(4);
    nb_graph *g = nb_model_graph(t.m);
    static double ga[1 << 14], gb[1 << 14];
    assert_ok(nb_forward_key(g, 9));
    assert_ok(nb_backward_leaves(t.loss));
    const int64_t n = leaf_grads(&t, ga, 1 << 14);
    assert_ok(nb_backward_leaves(t.loss));
    assert_int_equal(leaf_grads(&t, gb, 1 << 14), n);
    assert_memory_equal(ga, gb, (size_t)n * sizeof(double));
    const nb_pass *p = &g->passes[NB_PASS_GRAD];
    int ops = 0, held = 0;
    for (int i = 0; i < g->n; i++) {
        if (g->nodes[i]->kind != NB_KIND_OP || !p->on_path[i]) continue;
        ops++;
        held += p->adj[i].data != NULL; /* only the loss keeps one */
    }
    assert_int_equal(held, 1);
    assert_true(p->npool >= 2);
    assert_true(p->npool * 3 <= ops); /* a chain with one 3-way branch: a few live at once */
    nb_model_free(t.m);
}

static void test_refusals(void **state)
{
    (void)state;
    assert_int_equal(nb_backward_leaves(NULL), NB_ERR_ARG);
    assert_non_null(strstr(nb_last_error(), "NULL"));
    net t = make_net(4);
    /* no forward yet */
    assert_int_equal(nb_backward_leaves(t.loss), NB_ERR_ARG);
    assert_non_null(strstr(nb_last_error(), "nb_forward"));
    /* a reshape after the forward */
    assert_ok(nb_forward(nb_model_graph(t.m)));
    fill_batch(&t, 2);
    assert_int_equal(nb_backward_leaves(t.loss), NB_ERR_ARG);
    assert_null(nb_grad(nb_model_param(t.m, 0)));
    /* a non-scalar output */
    assert_ok(nb_forward(nb_model_graph(t.m)));
    assert_int_equal(nb_backward_leaves(nb_model_output(t.m)), NB_ERR_SHAPE);
    assert_non_null(strstr(nb_last_error(), "scalar"));
    nb_model_free(t.m);
}

/* A NaN input reaches the leaves' gradients as it does under nb_backward
 * (the lent buffers are written before read: no stale values mix in). */
static void test_nan_input_as_backward(void **state)
{
    (void)state;
    net t = make_net(4);
    static double ga[1 << 14], gb[1 << 14];
    nb_value(nb_model_input(t.m))->data[7] = NAN;
    nb_graph *g = nb_model_graph(t.m);
    assert_ok(nb_forward_key(g, 5));
    assert_ok(nb_backward(t.loss));
    const int64_t n = leaf_grads(&t, ga, 1 << 14);
    assert_ok(nb_backward_leaves(t.loss));
    assert_int_equal(leaf_grads(&t, gb, 1 << 14), n);
    assert_memory_equal(ga, gb, (size_t)n * sizeof(double));
    nb_model_free(t.m);
}

/* A sweep that stops halfway (the NaN/Inf guard on an op node's adjoint,
 * which then holds a lent buffer) leaves nothing readable, and the next
 * one gives nb_backward's gradients again. loss = sum(((x w) w) w) with
 * x = 1e-300, w = 1e200: the forward is finite (1e300), d loss / d(x w) =
 * w^2 is not. */
static void test_failed_sweep_then_a_good_one(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    const int64_t s2[1] = {2};
    nb_node *x = nb_param(g, "x", 1, s2), *w = nb_param(g, "w", 1, s2);
    nb_node *loss = nb_sum(nb_mul(nb_mul(nb_mul(x, w), w), w), 0, NULL, 0);
    assert_non_null(loss);
    nb_graph_set_check_numerics(g, 1);
    for (int i = 0; i < 2; i++)
        nb_value(x)->data[i] = 1e-300, nb_value(w)->data[i] = 1e200;
    assert_ok(nb_forward(g));
    assert_int_equal(nb_backward_leaves(loss), NB_ERR_NUMERIC);
    assert_non_null(strstr(nb_last_error(), "gradient"));
    assert_null(nb_grad(x));
    assert_null(nb_grad(w));
    for (int i = 0; i < 2; i++)
        nb_value(x)->data[i] = 0.5 + i, nb_value(w)->data[i] = 2 - i * 0.25;
    assert_ok(nb_forward(g));
    assert_ok(nb_backward_leaves(loss));
    double gx[2], gw[2];
    memcpy(gx, nb_grad(x)->data, sizeof gx), memcpy(gw, nb_grad(w)->data, sizeof gw);
    assert_ok(nb_backward(loss));
    assert_memory_equal(gx, nb_grad(x)->data, sizeof gx);
    assert_memory_equal(gw, nb_grad(w)->data, sizeof gw);
    for (int i = 0; i < 2; i++) {
        const double wv = nb_value(w)->data[i], xv = nb_value(x)->data[i];
        NEAR(gx[i], wv * wv * wv, 1e-15); /* d/dx x w^3 = w^3, d/dw = 3 x w^2 */
        NEAR(gw[i], 3 * xv * wv * wv, 1e-15);
    }
    nb_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_gradients_as_backward),
        cmocka_unit_test(test_pool_is_smaller_than_the_graph),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_nan_input_as_backward),
        cmocka_unit_test(test_failed_sweep_then_a_good_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
