/* conv2d_relu_maxpool, the fused convolution (+ ReLU) + max pool that
 * models build for `conv2d ...; maxpool F`: the same numbers, bit for bit,
 * as conv2d then max_pool2d (values, gradients, tangents, per-example
 * Jacobians), in the float build the training runs in; the model builder
 * emits it only where the windows do not overlap, and the layer shapes stay
 * those of the two layers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nabla.h"
#include "ops/ops_internal.h"

typedef struct {
    nb_graph *g;
    nb_node *x, *k, *b, *conv, *out, *loss;
} net;

/* x (N, H, W, C) -> conv2d 3x3 (+ ReLU) -> max pool f, then sum(out * w)
 * as a scalar loss with a fixed weighting w (so every seed differs). */
static int conv_stride = 1; /* of the convolution in build */

static void build(net *t, bool fused, bool relu, int64_t N, int64_t H, int64_t W, int64_t C, int64_t O, int f,
                  uint64_t seed)
{
    t->g = nb_graph_new();
    nb_rng r;
    nb_rng_seed(&r, seed);
    t->x = nb_input(t->g, "x", 4, (int64_t[]){N, H, W, C});
    t->k = nb_param(t->g, "k", 4, (int64_t[]){3, 3, C, O});
    t->b = nb_param(t->g, "b", 1, (int64_t[]){O});
    nb_tensor_fill_uniform(nb_value(t->x), &r, -1, 1);
    nb_tensor_fill_uniform(nb_value(t->k), &r, -0.5, 0.5);
    nb_tensor_fill_uniform(nb_value(t->b), &r, -0.1, 0.1);
    nb_set_requires_grad(t->x, 1);
    const nb_conv2d_opts o = {conv_stride, 1, NB_PAD_VALID, 0};
    t->conv = relu ? nb_conv2d_relu(t->x, t->k, t->b, &o) : nb_conv2d(t->x, t->k, t->b, &o);
    assert_non_null(t->conv);
    t->out = fused ? nb_fuse_conv2d_maxpool(t->conv, f, 0, NB_PAD_VALID) : nb_max_pool2d(t->conv, f, 0, NB_PAD_VALID);
    assert_non_null(t->out);
    const nb_tensor *v = nb_value(t->out);
    nb_node *w = nb_input(t->g, "w", v->rank, v->shape);
    nb_tensor_fill_uniform(nb_value(w), &r, -1, 1);
    t->loss = nb_sum(nb_mul(t->out, w), 0, NULL, 0);
    assert_non_null(t->loss);
}

static void assert_same(const nb_tensor *a, const nb_tensor *b, const char *what)
{
    assert_int_equal(a->size, b->size);
    if (memcmp(a->data, b->data, (size_t)a->size * sizeof(nb_real))) {
        int64_t i = 0;
        while (a->data[i] == b->data[i]) i++;
        fail_msg("%s differs at %lld: %.9g vs %.9g", what, (long long)i, (double)a->data[i], (double)b->data[i]);
    }
}

static void compare(bool relu, int64_t N, int64_t H, int64_t W, int64_t C, int64_t O, int f, int threads)
{
    nb_set_num_threads(threads);
    net a, b;
    build(&a, false, relu, N, H, W, C, O, f, 11);
    build(&b, true, relu, N, H, W, C, O, f, 11);
    assert_string_equal(nb_node_op(b.out), "conv2d_relu_maxpool");
    assert_int_equal(nb_forward(a.g), NB_OK);
    assert_int_equal(nb_forward(b.g), NB_OK);
    assert_same(nb_value(a.out), nb_value(b.out), "value");
    assert_int_equal(nb_backward(a.loss), NB_OK);
    assert_int_equal(nb_backward(b.loss), NB_OK);
    assert_same(nb_grad(a.x), nb_grad(b.x), "dx");
    assert_same(nb_grad(a.k), nb_grad(b.k), "dk");
    assert_same(nb_grad(a.b), nb_grad(b.b), "db");
    assert_same(nb_grad(a.out), nb_grad(b.out), "d out");
    /* the gradients are real: not all zero */
    float mx = 0;
    for (int64_t i = 0; i < nb_grad(b.k)->size; i++) mx = fabsf(nb_grad(b.k)->data[i]) > mx ? fabsf(nb_grad(b.k)->data[i]) : mx;
    assert_true(mx > 1e-3f);
    /* forward mode: two tangents of x and k at once */
    nb_node *wa[2] = {a.x, a.k}, *wb[2] = {b.x, b.k};
    nb_tensor *ta[2], *tb[2], *ya, *yb;
    nb_rng r;
    nb_rng_seed(&r, 5);
    for (int i = 0; i < 2; i++) {
        const nb_tensor *v = nb_value(wa[i]);
        int64_t shape[NB_MAX_RANK + 1] = {2};
        memcpy(shape + 1, v->shape, sizeof(int64_t) * (size_t)v->rank);
        ta[i] = nb_tensor_new(v->rank + 1, shape);
        nb_tensor_fill_uniform(ta[i], &r, -1, 1);
        tb[i] = nb_tensor_new(v->rank + 1, shape);
        memcpy(tb[i]->data, ta[i]->data, (size_t)ta[i]->size * sizeof(nb_real));
    }
    assert_int_equal(nb_jvp(a.out, 2, wa, (const nb_tensor *const *)ta, &ya), NB_OK);
    assert_int_equal(nb_jvp(b.out, 2, wb, (const nb_tensor *const *)tb, &yb), NB_OK);
    assert_same(ya, yb, "tangent");
    /* per-example Jacobians of the pooled output w.r.t. the input */
    nb_jacobian_opts jo = {.mode = NB_JAC_REV, .per_example = 1};
    nb_tensor *Ja, *Jb;
    assert_int_equal(nb_jacobian(a.out, a.x, &jo, &Ja), NB_OK);
    assert_int_equal(nb_jacobian(b.out, b.x, &jo, &Jb), NB_OK);
    assert_same(Ja, Jb, "per-example Jacobian");
    nb_tensor_free(Ja), nb_tensor_free(Jb), nb_tensor_free(ya), nb_tensor_free(yb);
    for (int i = 0; i < 2; i++) nb_tensor_free(ta[i]), nb_tensor_free(tb[i]);
    nb_graph_free(a.g), nb_graph_free(b.g);
    nb_set_num_threads(0);
}

static void test_fused_equals_conv_then_pool(void **state)
{
    (void)state;
    compare(true, 5, 12, 12, 3, 8, 2, 2);  /* several images per thread */
    compare(true, 1, 12, 12, 3, 8, 2, 2);  /* one image: bands of rows */
    compare(false, 3, 13, 11, 1, 6, 2, 2); /* no ReLU, one channel, rows left over (11x9 -> 5x4) */
    compare(true, 2, 14, 14, 4, 5, 3, 1);  /* window 3, one thread */
    compare(true, 1, 30, 30, 2, 4, 4, 2);  /* window 4, 7 pooled rows in bands */
    compare(true, 3, 12, 12, 8, 24, 2, 2); /* C = 8: the kernel VJP reads its windows in place (segments of 24) */
    compare(false, 3, 13, 11, 8, 13, 2, 2); /* no ReLU, C = 8: the input VJP in place on the dense dZ */
    conv_stride = 2;
    compare(false, 2, 17, 17, 4, 8, 2, 2);  /* and at stride 2: by parity classes */
    compare(true, 2, 17, 17, 4, 8, 2, 2);   /* with a ReLU: lowered on both sides */
    conv_stride = 1;
}

/* The builder's fusion: only a conv2d that is the graph's last node, and
 * only non-overlapping 'valid' windows. The fused-away convolution keeps its
 * shape, is refused as an output, and comes back when the fused node is
 * popped. */
static void test_fusion_rules(void **state)
{
    (void)state;
    net t;
    build(&t, false, true, 2, 8, 8, 2, 3, 2, 1);
    assert_null(nb_fuse_conv2d_maxpool(t.conv, 2, 0, NB_PAD_VALID)); /* not the last node */
    nb_node *c2 = nb_conv2d_relu(t.x, t.k, t.b, &(nb_conv2d_opts){1, 1, NB_PAD_VALID, 0});
    assert_null(nb_fuse_conv2d_maxpool(c2, 2, 1, NB_PAD_VALID)); /* overlapping */
    assert_null(nb_fuse_conv2d_maxpool(c2, 2, 2, NB_PAD_SAME));  /* padded */
    assert_null(nb_fuse_conv2d_maxpool(c2, 7, 0, NB_PAD_VALID)); /* larger than 6x6 */
    assert_null(nb_fuse_conv2d_maxpool(t.x, 2, 0, NB_PAD_VALID)); /* not a convolution */
    nb_node *f = nb_fuse_conv2d_maxpool(c2, 2, 2, NB_PAD_VALID);
    assert_non_null(f);
    assert_int_equal(nb_value(f)->shape[1], 3);
    assert_int_equal(nb_value(c2)->shape[1], 6); /* the convolution's shape stays */
    assert_int_equal(nb_forward(t.g), NB_OK);
    assert_null(nb_sum(c2, 0, NULL, 0)); /* no consumer may read it */
    assert_non_null(strstr(nb_last_error(), "fused"));
    nb_tensor *J;
    assert_int_not_equal(nb_jacobian(c2, t.b, NULL, &J), NB_OK);
    assert_non_null(strstr(nb_last_error(), "fused"));
    nb_graph_pop(t.g); /* the fused node: c2 is computed again */
    assert_int_equal(nb_forward(t.g), NB_OK);
    assert_int_equal(nb_jacobian(c2, t.b, NULL, &J), NB_OK);
    assert_true(J->size > 0);
    nb_tensor_free(J);
    nb_graph_free(t.g);
}

static bool graph_has(nb_model *m, const char *op)
{
    nb_graph *g = nb_model_graph(m);
    for (int i = 0; i < nb_graph_size(g); i++)
        if (!strcmp(nb_node_op(nb_graph_node(g, i)), op)) return true;
    return false;
}

static void test_model_builds_the_fused_op(void **state)
{
    (void)state;
    const int64_t in[3] = {28, 28, 1};
    nb_model *m;
    assert_int_equal(nb_model_from_spec("conv2d 4 3 relu; maxpool 2; flatten; dense 3", 3, in, &m), NB_OK);
    assert_true(graph_has(m, "conv2d_relu_maxpool"));
    assert_false(graph_has(m, "max_pool2d"));
    int64_t s[NB_MAX_RANK];
    assert_int_equal(nb_model_layer_shape(m, 0, s), 3);
    assert_int_equal(s[0], 26), assert_int_equal(s[2], 4);
    assert_int_equal(nb_model_layer_shape(m, 1, s), 3);
    assert_int_equal(s[0], 13), assert_int_equal(s[2], 4);
    assert_non_null(nb_model_find_param(m, "0.kernel"));
    nb_model_free(m);
    /* overlapping windows, or an activation between: two ops */
    assert_int_equal(nb_model_from_spec("conv2d 4 3 relu; maxpool 2 stride=1; flatten; dense 3", 3, in, &m), NB_OK);
    assert_true(graph_has(m, "max_pool2d"));
    assert_false(graph_has(m, "conv2d_relu_maxpool"));
    nb_model_free(m);
    assert_int_equal(nb_model_from_spec("conv2d 4 3 tanh; maxpool 2; flatten; dense 3", 3, in, &m), NB_OK);
    assert_true(graph_has(m, "max_pool2d"));
    nb_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_equals_conv_then_pool),
        cmocka_unit_test(test_fusion_rules),
        cmocka_unit_test(test_model_builds_the_fused_op),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
