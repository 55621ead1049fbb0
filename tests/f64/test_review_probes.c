/* Cold-review probes of the pass-state change (per-kind pass objects,
 * completed forwards, deferred adjoints by epoch, random keys): passes in
 * unusual orders through the public API (nb_graph_pop, internal, for id
 * reuse), each asserting values. Tests that found a defect say what
 * happened before its fix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "graph/graph.h" /* nb_graph_pop, for the id-reuse probe */
#include "nabla.h"
#include "nb_test_f64.h"

static const double TIGHT = 1e-12;

static void assert_ok(nb_status s)
{
    if (s != NB_OK) print_error("%s: %s\n", nb_status_name(s), nb_last_error());
    assert_int_equal(s, NB_OK);
}

static double l1(const nb_tensor *t)
{
    double a = 0;
    for (int64_t i = 0; i < t->size; i++) a += fabs(t->data[i]);
    return a;
}

/* A conv2d read by a 2x2 max pool (stride 2: its adjoint is deferred),
 * then a loss that is not linear in the pool (so the adjoint is not
 * trivially constant). */
typedef struct {
    nb_graph *g;
    nb_node *x, *k, *b, *conv, *pool, *loss;
} conv_net;

static void conv_net_build(conv_net *c, int64_t N)
{
    c->g = nb_graph_new();
    assert_non_null(c->g);
    int64_t xs[4] = {N, 6, 6, 2}, ks[4] = {3, 3, 2, 3}, bs[1] = {3};
    c->x = leaf(c->g, 0, "x", 4, xs, NULL);
    c->k = leaf(c->g, 1, "k", 4, ks, NULL);
    c->b = leaf(c->g, 1, "b", 1, bs, NULL);
    for (int64_t i = 0; i < nb_value(c->x)->size; i++) nb_value(c->x)->data[i] = sin(0.37 * (double)i + 0.1);
    for (int64_t i = 0; i < 54; i++) nb_value(c->k)->data[i] = 0.2 * cos(0.91 * (double)i);
    for (int i = 0; i < 3; i++) nb_value(c->b)->data[i] = 0.01 * (i + 1);
    c->conv = nb_conv2d(c->x, c->k, c->b, NULL);
    c->pool = nb_max_pool2d(c->conv, 2, 2, NB_PAD_VALID);
    c->loss = nb_sum(nb_mul(c->pool, c->pool), 0, NULL, 0);
    assert_non_null(c->loss);
}

/* dloss/dconv by a VJP with conv as its source (a source is never deferred). */
static nb_tensor *conv_adjoint_by_vjp(conv_net *c)
{
    nb_tensor *seed = nb_tensor_new(1, (int64_t[1]){1}), *res = NULL;
    seed->data[0] = 1;
    assert_ok(nb_vjp(c->loss, seed, 1, &c->conv, &res));
    nb_tensor_free(seed);
    return res;
}

static void assert_same(const nb_tensor *a, const nb_real *ref, int64_t n, double tol)
{
    assert_non_null(a);
    assert_int_equal(a->size, n);
    for (int64_t i = 0; i < n; i++) NEAR(a->data[i], ref[i], tol);
}

/* nb_grad of a conv2d whose adjoint the max pool deferred equals the VJP
 * with the conv as source, asked directly and after nb_vjp / nb_jvp
 * (before: NULL, since their own forward pass started a new epoch and
 * dropped it, while nabla.h says they leave nb_grad as it is). */
static void test_deferred_conv_grad_after_vjp_jvp(void **state)
{
    (void)state;
    conv_net c;
    conv_net_build(&c, 2);
    assert_ok(nb_forward(c.g));
    nb_tensor *ref = conv_adjoint_by_vjp(&c); /* (1, N, 4, 4, 3) */
    assert_true(l1(ref) > 1e-3);
    assert_ok(nb_backward(c.loss));
    assert_same(nb_grad(c.conv), ref->data, ref->size, TIGHT);
    /* Again, this time with a VJP and a JVP before asking. */
    assert_ok(nb_backward(c.loss));
    nb_tensor *r2 = conv_adjoint_by_vjp(&c);
    nb_tensor_free(r2);
    nb_tensor *t = nb_tensor_new(5, (int64_t[5]){1, 3, 3, 2, 3}), *jr = NULL;
    for (int i = 0; i < 54; i++) t->data[i] = 1;
    const nb_tensor *tl = t;
    assert_ok(nb_jvp(c.loss, 1, &c.k, &tl, &jr));
    nb_tensor_free(jr);
    nb_tensor_free(t);
    nb_tensor *gc = nb_grad(c.conv);
    assert_non_null(gc); /* nabla.h: other passes leave nb_grad as it is */
    assert_same(gc, ref->data, ref->size, TIGHT);
    nb_tensor_free(ref);
    nb_graph_free(c.g);
}

/* The same with a Jacobian between nb_backward and nb_grad (before: NULL). */
static void test_deferred_conv_grad_after_jacobian(void **state)
{
    (void)state;
    conv_net c;
    conv_net_build(&c, 1);
    assert_ok(nb_forward(c.g));
    nb_tensor *ref = conv_adjoint_by_vjp(&c);
    assert_ok(nb_forward(c.g));
    assert_ok(nb_backward(c.loss));
    double gk[54];
    memcpy(gk, nb_grad(c.k)->data, sizeof gk);
    nb_tensor *J = NULL;
    assert_ok(nb_jacobian(c.pool, c.b, NULL, &J));
    nb_tensor_free(J);
    assert_same(nb_grad(c.k), gk, 54, TIGHT);
    nb_tensor *gc = nb_grad(c.conv);
    assert_non_null(gc); /* nabla.h: a Jacobian leaves nb_grad as it is */
    assert_same(gc, ref->data, ref->size, TIGHT);
    nb_tensor_free(ref);
    nb_graph_free(c.g);
}

/* A reshape alone (no re-inference yet) keeps the deferred gradient whole;
 * a Jacobian at the new batch after it keeps it too. */
static void test_deferred_conv_grad_after_reshape(void **state)
{
    (void)state;
    conv_net c;
    conv_net_build(&c, 2);
    assert_ok(nb_forward(c.g));
    nb_tensor *ref = conv_adjoint_by_vjp(&c);
    assert_ok(nb_backward(c.loss));
    int64_t xs3[4] = {3, 6, 6, 2};
    assert_ok(nb_input_reshape(c.x, 4, xs3));
    nb_tensor *J = NULL;
    assert_ok(nb_jacobian(c.loss, c.b, NULL, &J));
    nb_tensor_free(J);
    assert_same(nb_grad(c.conv), ref->data, ref->size, TIGHT);
    int64_t xs1[4] = {1, 6, 6, 2};
    assert_ok(nb_input_reshape(c.x, 4, xs1));
    for (int64_t i = 0; i < 72; i++) nb_value(c.x)->data[i] = sin(0.37 * (double)i + 0.1); /* image 0 again */
    assert_int_equal(nb_backward(c.loss), NB_ERR_ARG); /* stale forward refused */
    assert_ok(nb_forward(c.g));
    assert_ok(nb_backward(c.loss));
    assert_ok(nb_input_reshape(c.x, 4, xs3)); /* no inference yet: still the batch-1 gradient */
    nb_tensor *gc = nb_grad(c.conv);
    assert_non_null(gc);
    assert_same(gc, ref->data, ref->size / 2, TIGHT); /* image 0 of the same inputs */
    nb_tensor_free(ref);
    nb_graph_free(c.g);
}

/* A Jacobian whose checks fail after it re-inferred the shapes (per-example
 * with a parameter as wrt) must not make the stale forward look complete:
 * nb_backward then ran the CCE VJP at the new batch over the old batch's
 * label workspace (heap overflow). */
static void test_backward_refused_after_failed_jacobian_reshape(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    int64_t xs[2] = {2, 3}, ws[2] = {3, 4}, ys[1] = {2};
    nb_node *x = leaf(g, 0, "x", 2, xs, NULL), *w = leaf(g, 1, "w", 2, ws, NULL), *y = leaf(g, 0, "y", 1, ys, NULL);
    for (int i = 0; i < 12; i++) nb_value(w)->data[i] = 0.1 * (i - 5);
    for (int i = 0; i < 6; i++) nb_value(x)->data[i] = 0.3 * i;
    nb_node *z = nb_matmul(x, w), *loss = nb_cce_logits_loss(z, y);
    assert_non_null(loss);
    assert_ok(nb_forward(g));
    assert_ok(nb_backward(loss));
    int64_t xs8[2] = {64, 3}, ys8[1] = {64};
    assert_ok(nb_input_reshape(x, 2, xs8));
    assert_ok(nb_input_reshape(y, 1, ys8));
    for (int i = 0; i < 64; i++) nb_value(y)->data[i] = 3;
    for (int i = 0; i < 192; i++) nb_value(x)->data[i] = 0.01 * (i % 17);
    nb_jacobian_opts o = {0};
    o.per_example = 1;
    nb_tensor *J = NULL;
    assert_int_not_equal(nb_jacobian(z, w, &o, &J), NB_OK); /* w has no batch dimension */
    assert_null(J);
    assert_int_equal(nb_backward(loss), NB_ERR_ARG);
    assert_ok(nb_forward(g));
    assert_ok(nb_backward(loss));
    assert_true(l1(nb_grad(w)) > 1e-6);
    nb_graph_free(g);
}

/* Dropout in training mode after nb_forward_key(g, 0): the Jacobian
 * differentiates that pass's mask and leaves its values (before: key 0 was
 * taken for "no forward yet" and the Jacobian ran at key 1, another mask). */
static void test_jacobian_after_forward_key_zero(void **state)
{
    (void)state;
    for (int which = 0; which < 2; which++) {
        const uint64_t key = which == 0 ? 0 : UINT64_MAX; /* UINT64_MAX: nb_forward then wraps to 0 */
        nb_graph *g = nb_graph_new();
        int64_t s64[1] = {64};
        nb_node *x = leaf(g, 0, "x", 1, s64, NULL), *y = nb_dropout(x, 0.5);
        for (int i = 0; i < 64; i++) nb_value(x)->data[i] = 1;
        nb_graph_set_training(g, 1, 42);
        if (which == 0) {
            assert_ok(nb_forward_key(g, key));
        } else {
            assert_ok(nb_forward_key(g, key));
            assert_ok(nb_forward(g));
        }
        double m[64];
        memcpy(m, nb_value(y)->data, sizeof m);
        for (int mode = NB_JAC_REV; mode <= NB_JAC_NUMERIC; mode++) {
            nb_jacobian_opts o = {0};
            o.mode = (nb_jac_mode)mode;
            nb_tensor *J = NULL;
            assert_ok(nb_jacobian(y, x, &o, &J));
            for (int i = 0; i < 64; i++) NEAR(J->data[i * 64 + i], m[i], 1e-6);
            nb_tensor_free(J);
            for (int i = 0; i < 64; i++) NEAR(nb_value(y)->data[i], m[i], 0);
        }
        nb_graph_free(g);
    }
}

/* Dropout in training mode: nb_vjp and nb_jvp after nb_forward differentiate
 * that forward's mask, as nb_jacobian does (before: they ran nb_forward,
 * which took the next key, drew a new mask and changed the values). */
static void test_vjp_jvp_differentiate_the_last_forward(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    int64_t s64[1] = {64};
    nb_node *x = leaf(g, 0, "x", 1, s64, NULL), *y = nb_dropout(x, 0.5);
    for (int i = 0; i < 64; i++) nb_value(x)->data[i] = 1 + 0.01 * i;
    nb_graph_set_training(g, 1, 3);
    assert_ok(nb_forward(g));
    double yv[64], m[64];
    memcpy(yv, nb_value(y)->data, sizeof yv);
    for (int i = 0; i < 64; i++) m[i] = yv[i] / nb_value(x)->data[i];
    nb_tensor *ones = nb_tensor_new(2, (int64_t[2]){1, 64}), *r = NULL;
    for (int i = 0; i < 64; i++) ones->data[i] = 1;
    assert_ok(nb_vjp(y, ones, 1, &x, &r));
    for (int i = 0; i < 64; i++) NEAR(r->data[i], m[i], TIGHT);
    for (int i = 0; i < 64; i++) NEAR(nb_value(y)->data[i], yv[i], 0);
    nb_tensor_free(r);
    const nb_tensor *tl = ones;
    assert_ok(nb_jvp(y, 1, &x, &tl, &r));
    for (int i = 0; i < 64; i++) NEAR(r->data[i], m[i], TIGHT);
    for (int i = 0; i < 64; i++) NEAR(nb_value(y)->data[i], yv[i], 0);
    nb_tensor_free(r);
    /* And the Jacobian after them still sees the mask of the last nb_forward. */
    nb_tensor *J = NULL;
    assert_ok(nb_jacobian(y, x, NULL, &J));
    for (int i = 0; i < 64; i++) NEAR(J->data[i * 64 + i], m[i], TIGHT);
    nb_tensor_free(J);
    nb_tensor_free(ones);
    nb_graph_free(g);
}

/* A small model with a conv, a max pool, dropout in training mode: the
 * gradients of nb_backward survive every kind of Jacobian, and the step
 * applies exactly them. */
static void test_jacobians_between_backward_and_step(void **state)
{
    (void)state;
    int64_t in[3] = {6, 6, 1};
    nb_model *m = NULL;
    assert_ok(nb_model_from_spec("conv2d 3 3 relu; maxpool 2; flatten; dropout 0.3; dense 4", 3, in, &m));
    assert_ok(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 3));
    nb_node *target = NULL, *loss = NULL;
    assert_ok(nb_model_loss(m, NB_LOSS_CCE, &target, &loss));
    assert_ok(nb_model_set_batch(m, 3));
    nb_node *x = nb_model_input(m);
    for (int64_t i = 0; i < nb_value(x)->size; i++) nb_value(x)->data[i] = sin(0.7 * (double)i);
    for (int i = 0; i < 3; i++) nb_value(target)->data[i] = i;
    nb_graph *g = nb_model_graph(m);
    nb_graph_set_training(g, 1, 5);
    assert_ok(nb_forward(g));
    const double loss0 = nb_value(loss)->data[0];
    assert_ok(nb_backward(loss));
    const int np = nb_model_param_count(m);
    double *before[8] = {0}, *w0[8] = {0};
    for (int p = 0; p < np; p++) {
        nb_tensor *gp = nb_grad(nb_model_param(m, p));
        assert_non_null(gp);
        before[p] = malloc((size_t)gp->size * sizeof(double));
        memcpy(before[p], gp->data, (size_t)gp->size * sizeof(double));
        w0[p] = malloc((size_t)gp->size * sizeof(double));
        memcpy(w0[p], nb_value(nb_model_param(m, p))->data, (size_t)gp->size * sizeof(double));
    }
    nb_node *k0 = nb_model_find_param(m, "0.kernel"), *out = nb_model_output(m);
    nb_tensor *Js[4] = {0};
    for (int mode = NB_JAC_REV; mode <= NB_JAC_NUMERIC; mode++) {
        nb_jacobian_opts o = {0};
        o.mode = (nb_jac_mode)mode;
        assert_ok(nb_jacobian(out, k0, &o, &Js[mode]));
    }
    nb_jacobian_opts pe = {0};
    pe.per_example = 1;
    nb_tensor *Jpe = NULL;
    assert_ok(nb_jacobian(out, x, &pe, &Jpe));
    assert_true(l1(Jpe) > 1e-6);
    nb_tensor_free(Jpe);
    /* The three agree (same mask as the forward): rev == fwd, numeric close. */
    assert_true(l1(Js[NB_JAC_REV]) > 1e-6);
    for (int64_t i = 0; i < Js[NB_JAC_REV]->size; i++) {
        NEAR(Js[NB_JAC_FWD]->data[i], Js[NB_JAC_REV]->data[i], 1e-10);
        NEAR(Js[NB_JAC_NUMERIC]->data[i], Js[NB_JAC_REV]->data[i], 1e-5);
    }
    for (int mode = 0; mode < 4; mode++) nb_tensor_free(Js[mode]);
    NEAR(nb_value(loss)->data[0], loss0, 0); /* the graph is left at the pass it followed */
    nb_optim_opts oo = {0};
    oo.kind = NB_OPT_SGD;
    oo.lr = 0.25;
    nb_optim *o = NULL;
    assert_ok(nb_optim_new(m, &oo, &o));
    assert_ok(nb_optim_step(o));
    for (int p = 0; p < np; p++) {
        const nb_tensor *v = nb_value(nb_model_param(m, p));
        for (int64_t i = 0; i < v->size; i++) NEAR(v->data[i], w0[p][i] - 0.25 * before[p][i], TIGHT);
        free(before[p]);
        free(w0[p]);
    }
    nb_optim_free(o);
    nb_model_free(m);
}

/* Two graphs interleaved: pass state is per graph. */
static void test_two_graphs(void **state)
{
    (void)state;
    conv_net a, b;
    conv_net_build(&a, 2);
    conv_net_build(&b, 1);
    for (int64_t i = 0; i < nb_value(b.x)->size; i++) nb_value(b.x)->data[i] *= -0.5;
    assert_ok(nb_forward(a.g));
    nb_tensor *ra = conv_adjoint_by_vjp(&a);
    assert_ok(nb_forward(b.g));
    nb_tensor *rb = conv_adjoint_by_vjp(&b);
    assert_ok(nb_backward(a.loss));
    assert_ok(nb_backward(b.loss));
    nb_tensor *rb2 = conv_adjoint_by_vjp(&b);
    nb_tensor_free(rb2);
    assert_same(nb_grad(a.conv), ra->data, ra->size, TIGHT);
    assert_same(nb_grad(b.conv), rb->data, rb->size, TIGHT);
    nb_tensor_free(ra);
    nb_tensor_free(rb);
    nb_graph_free(a.g);
    nb_graph_free(b.g);
}

/* The graph grows after a pass (both pass objects reallocate their arrays):
 * gradients read before stay, and the passes after it are right. */
static void test_graph_grows_and_ids_reused(void **state)
{
    (void)state;
    conv_net c;
    conv_net_build(&c, 2);
    assert_ok(nb_forward(c.g));
    nb_tensor *ref = conv_adjoint_by_vjp(&c);
    assert_ok(nb_backward(c.loss));
    double gk[54];
    memcpy(gk, nb_grad(c.k)->data, sizeof gk);
    assert_same(nb_grad(c.conv), ref->data, ref->size, TIGHT); /* resolved now */
    /* Grow by many nodes: both pass objects reallocate their arrays. */
    nb_node *t = c.loss;
    for (int i = 0; i < 100; i++) t = nb_scale(t, 1.0);
    assert_non_null(t);
    assert_same(nb_grad(c.conv), ref->data, ref->size, TIGHT);
    assert_same(nb_grad(c.k), gk, 54, TIGHT);
    assert_ok(nb_forward(c.g));
    nb_tensor *r2 = conv_adjoint_by_vjp(&c);
    assert_same(r2, ref->data, ref->size, TIGHT);
    nb_tensor_free(r2);
    assert_ok(nb_backward(t));
    assert_same(nb_grad(c.k), gk, 54, 1e-10);
    assert_same(nb_grad(c.conv), ref->data, ref->size, 1e-10);
    nb_tensor_free(ref);
    nb_graph_free(c.g);
}

/* nb_graph_pop (what a failed model layer does) of the pool over a
 * convolution, and new nodes in the freed ids: nb_grad of the convolution
 * is the last backward's gradient, untouched by the pop (before the fused
 * op, the pool held it deferred and a pop freed it: heap-use-after-free). */
static void test_grad_after_pop_of_deferring_pool(void **state)
{
    (void)state;
    conv_net c;
    conv_net_build(&c, 1);
    assert_ok(nb_forward(c.g));
    assert_ok(nb_backward(c.loss));
    /* Remove loss, mul, pool (newest first) and build others in their ids. */
    nb_tensor *before = nb_tensor_clone(nb_grad(c.conv));
    assert_non_null(before);
    for (int i = 0; i < 3; i++) nb_graph_pop(c.g);
    nb_node *p2 = nb_avg_pool2d(c.conv, 2, 2, NB_PAD_VALID);
    assert_non_null(p2);
    nb_tensor *gc = nb_grad(c.conv);
    assert_non_null(gc);
    assert_same(gc, before->data, before->size, 0);
    nb_tensor_free(before);
    nb_node *loss = nb_sum(p2, 0, NULL, 0);
    assert_ok(nb_forward(c.g));
    assert_ok(nb_backward(loss));
    gc = nb_grad(c.conv);
    assert_non_null(gc);
    for (int64_t i = 0; i < gc->size; i++) NEAR(gc->data[i], 0.25, TIGHT);
    nb_graph_free(c.g);
}

/* Batch 0 through the deferred path, and K = 0 seeds and tangents. */
static void test_batch0_and_k0(void **state)
{
    (void)state;
    conv_net c;
    conv_net_build(&c, 2);
    assert_ok(nb_forward(c.g));
    assert_ok(nb_backward(c.loss));
    assert_true(l1(nb_grad(c.k)) > 1e-6);
    int64_t xs0[4] = {0, 6, 6, 2};
    assert_ok(nb_input_reshape(c.x, 4, xs0));
    assert_ok(nb_forward(c.g));
    assert_ok(nb_backward(c.loss));
    NEAR(l1(nb_grad(c.k)), 0, 0);
    NEAR(l1(nb_grad(c.b)), 0, 0);
    nb_tensor *gc = nb_grad(c.conv);
    assert_non_null(gc);
    assert_int_equal(gc->size, 0);
    /* Back to 2 images; K = 0 seeds and tangents. */
    int64_t xs2[4] = {2, 6, 6, 2};
    assert_ok(nb_input_reshape(c.x, 4, xs2));
    assert_ok(nb_forward(c.g));
    nb_tensor *seed = nb_tensor_new(1, (int64_t[1]){0}), *res[2] = {0};
    nb_node *wrt[2] = {c.k, c.conv};
    assert_ok(nb_vjp(c.loss, seed, 2, wrt, res));
    assert_int_equal(res[0]->shape[0], 0);
    assert_int_equal(res[0]->size, 0);
    assert_int_equal(res[1]->size, 0);
    nb_tensor_free(res[0]);
    nb_tensor_free(res[1]);
    nb_tensor_free(seed);
    nb_tensor *tan = nb_tensor_new(5, (int64_t[5]){0, 3, 3, 2, 3}), *jr = NULL;
    const nb_tensor *tl = tan;
    assert_ok(nb_jvp(c.pool, 1, &c.k, &tl, &jr));
    assert_int_equal(jr->shape[0], 0);
    assert_int_equal(jr->size, 0);
    nb_tensor_free(jr);
    nb_tensor_free(tan);
    nb_graph_free(c.g);
}

/* nb_jvp after nb_vjp and the reverse: <v, J t> computed both ways. */
static void test_jvp_vjp_interleaved(void **state)
{
    (void)state;
    conv_net c;
    conv_net_build(&c, 2);
    assert_ok(nb_forward(c.g));
    const int64_t O = nb_value(c.pool)->size;
    nb_tensor *v = nb_tensor_new(5, (int64_t[5]){1, 2, 2, 2, 3});
    assert_int_equal(v->size, O);
    for (int64_t i = 0; i < O; i++) v->data[i] = cos(0.3 * (double)i);
    nb_tensor *t = nb_tensor_new(5, (int64_t[5]){1, 3, 3, 2, 3});
    for (int i = 0; i < 54; i++) t->data[i] = sin(1.3 * i);
    const nb_tensor *tl = t;
    double a[2], bb[2];
    for (int round = 0; round < 2; round++) {
        nb_tensor *vj = NULL, *jt = NULL;
        if (round == 0) {
            assert_ok(nb_vjp(c.pool, v, 1, &c.k, &vj));
            assert_ok(nb_jvp(c.pool, 1, &c.k, &tl, &jt));
        } else {
            assert_ok(nb_jvp(c.pool, 1, &c.k, &tl, &jt));
            assert_ok(nb_vjp(c.pool, v, 1, &c.k, &vj));
        }
        double s1 = 0, s2 = 0;
        for (int i = 0; i < 54; i++) s1 += vj->data[i] * t->data[i];
        for (int64_t i = 0; i < O; i++) s2 += v->data[i] * jt->data[i];
        a[round] = s1, bb[round] = s2;
        NEAR(s1, s2, 1e-10);
        assert_true(fabs(s1) > 1e-6);
        nb_tensor_free(vj);
        nb_tensor_free(jt);
    }
    NEAR(a[0], a[1], TIGHT);
    NEAR(bb[0], bb[1], TIGHT);
    nb_tensor_free(v);
    nb_tensor_free(t);
    nb_graph_free(c.g);
}

/* Threads: the same thread count twice gives bit-identical gradients and
 * Jacobians (docs/design.md: reductions are summed in an order that depends
 * on the thread count only); 1 and 2 threads agree to rounding. */
static void test_threads_deterministic(void **state)
{
    (void)state;
    double *res[3][3];
    int64_t sizes[3];
    for (int th = 0; th < 3; th++) {
        nb_set_num_threads(th == 0 ? 1 : 2);
        int64_t in[3] = {12, 12, 4};
        nb_model *m = NULL;
        assert_ok(nb_model_from_spec("conv2d 16 3 relu; maxpool 2; conv2d 16 3; maxpool 2; flatten; dropout 0.25; "
                                     "dense 5",
                                     3, in, &m));
        assert_ok(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 11));
        nb_node *target = NULL, *loss = NULL;
        assert_ok(nb_model_loss(m, NB_LOSS_CCE, &target, &loss));
        assert_ok(nb_model_set_batch(m, 16));
        nb_node *x = nb_model_input(m);
        for (int64_t i = 0; i < nb_value(x)->size; i++) nb_value(x)->data[i] = sin(0.013 * (double)(i * i % 977));
        for (int i = 0; i < 16; i++) nb_value(target)->data[i] = i % 5;
        nb_graph *g = nb_model_graph(m);
        nb_graph_set_training(g, 1, 9);
        assert_ok(nb_forward(g));
        assert_ok(nb_backward(loss));
        nb_tensor *gk = nb_grad(nb_model_find_param(m, "0.kernel"));
        nb_tensor *gc = nb_grad(nb_graph_find(g, "3.conv2d_relu_maxpool")); /* conv2d 16 3; maxpool 2, fused */
        assert_non_null(gk);
        assert_non_null(gc);
        nb_tensor *J = NULL;
        nb_jacobian_opts pe = {0};
        pe.per_example = 1;
        assert_ok(nb_jacobian(nb_model_output(m), x, &pe, &J));
        const nb_tensor *ts[3] = {gk, gc, J};
        for (int i = 0; i < 3; i++) {
            sizes[i] = ts[i]->size;
            res[th][i] = malloc((size_t)ts[i]->size * sizeof(double));
            memcpy(res[th][i], ts[i]->data, (size_t)ts[i]->size * sizeof(double));
        }
        assert_true(l1(gc) > 1e-6);
        nb_tensor_free(J);
        nb_model_free(m);
    }
    nb_set_num_threads(0);
    for (int i = 0; i < 3; i++) {
        assert_memory_equal(res[1][i], res[2][i], (size_t)sizes[i] * sizeof(double));
        double worst = 0;
        for (int64_t j = 0; j < sizes[i]; j++) {
            double d = fabs(res[0][i][j] - res[1][i][j]) / (1e-300 + fabs(res[0][i][j]) + 1e-12);
            if (d > worst) worst = d;
        }
        print_message("threads 1 vs 2, result %d: worst relative difference %.3g\n", i, worst);
        for (int64_t j = 0; j < sizes[i]; j++) NEAR(res[0][i][j], res[1][i][j], 1e-12);
        for (int th = 0; th < 3; th++) free(res[th][i]);
    }
}

/* A message that wraps the last one (as the file readers do on NB_ERR_NOMEM:
 * nb_fail(s, "%s: %s", name, nb_last_error())) keeps it whole (before:
 * vsnprintf wrote over the argument it was reading, "f.npy: f.npy: ory
 * allocating 123 bytes"). */
static void test_error_wrapping_the_last_message(void **state)
{
    (void)state;
    nb_set_error(NB_ERR_NOMEM, "out of memory allocating %d bytes", 123);
    assert_int_equal(nb_set_error(NB_ERR_NOMEM, "%s: %s", "f.npy", nb_last_error()), NB_ERR_NOMEM);
    assert_string_equal(nb_last_error(), "f.npy: out of memory allocating 123 bytes");
    /* and a NULL input after it names it as the cause */
    assert_null(nb_relu(NULL));
    assert_non_null(strstr(nb_last_error(), "f.npy: out of memory allocating 123 bytes"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deferred_conv_grad_after_vjp_jvp),
        cmocka_unit_test(test_deferred_conv_grad_after_jacobian),
        cmocka_unit_test(test_deferred_conv_grad_after_reshape),
        cmocka_unit_test(test_backward_refused_after_failed_jacobian_reshape),
        cmocka_unit_test(test_jacobian_after_forward_key_zero),
        cmocka_unit_test(test_vjp_jvp_differentiate_the_last_forward),
        cmocka_unit_test(test_jacobians_between_backward_and_step),
        cmocka_unit_test(test_two_graphs),
        cmocka_unit_test(test_graph_grows_and_ids_reused),
        cmocka_unit_test(test_grad_after_pop_of_deferring_pool),
        cmocka_unit_test(test_batch0_and_k0),
        cmocka_unit_test(test_jvp_vjp_interleaved),
        cmocka_unit_test(test_threads_deterministic),
        cmocka_unit_test(test_error_wrapping_the_last_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
