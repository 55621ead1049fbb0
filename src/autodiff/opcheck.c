/* The gradient check of every op (`nabla gradcheck`, and the test suite in
 * double): each case builds a small graph on random inputs away from kinks
 * (relu at 0, max-pool ties) and checks the reverse- and forward-mode
 * Jacobians of its output against central differences, for every leaf whose
 * name does not start with '~' (labels and other constants). */
#include "autodiff_internal.h"

#include <stdio.h>

typedef nb_node *(*case_builder)(nb_graph *g, nb_rng *r);
typedef struct {
    const char *op, *name;
    case_builder build;
} op_case;

static nb_node *leaf(nb_graph *g, nb_rng *r, const char *name, int rank, const int64_t *shape, double lo, double hi)
{
    nb_node *x = nb_input(g, name, rank, shape);
    if (x) nb_tensor_fill_uniform(nb_value(x), r, lo, hi);
    return x;
}
#define SHAPE(...) (sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}
#define X(name, lo, hi, ...) leaf(g, r, name, SHAPE(__VA_ARGS__), lo, hi)

/* Unary elementwise ops on (3, 4), inputs in their smooth domain. */
#define UNARY_CASE(fn, call, lo, hi) \
    static nb_node *case_##fn(nb_graph *g, nb_rng *r) { nb_node *x = X("x", lo, hi, 3, 4); return call; }
UNARY_CASE(neg, nb_neg(x), -2, 2)
UNARY_CASE(exp, nb_exp(x), -2, 2)
UNARY_CASE(log, nb_log(x), 0.5, 3)
UNARY_CASE(sqrt, nb_sqrt(x), 0.5, 3)
UNARY_CASE(abs, nb_abs(x), -2, 2)
UNARY_CASE(pow, nb_pow(x, 3.0), -2, 2)
UNARY_CASE(powfrac, nb_pow(x, 0.5), 0.5, 3)
UNARY_CASE(scale, nb_scale(x, -1.5), -2, 2)
UNARY_CASE(sigmoid, nb_sigmoid(x), -4, 4)
UNARY_CASE(tanh, nb_tanh(x), -3, 3)
UNARY_CASE(relu, nb_relu(x), -2, 2)
UNARY_CASE(leaky_relu, nb_leaky_relu(x, 0.1), -2, 2)
UNARY_CASE(elu, nb_elu(x, 1.0), -2, 2)
UNARY_CASE(softplus, nb_softplus(x), -4, 4)
UNARY_CASE(gelu, nb_gelu(x), -3, 3)

/* Binary ops: equal shapes and broadcasting both ways. */
#define BINARY_CASE(fn, call, sa, sb)                                                  \
    static nb_node *case_##fn(nb_graph *g, nb_rng *r)                                  \
    {                                                                                  \
        nb_node *a = X("a", 0.5, 2, sa), *b = X("b", 0.5, 2, sb);                      \
        return call(a, b);                                                             \
    }
#define P(...) __VA_ARGS__
BINARY_CASE(add, nb_add, P(2, 3), P(2, 3))
BINARY_CASE(add_bias, nb_add, P(4, 3), P(3))
BINARY_CASE(sub_bcast, nb_sub, P(2, 1, 3), P(4, 1))
BINARY_CASE(mul, nb_mul, P(2, 3), P(2, 3))
BINARY_CASE(mul_bcast, nb_mul, P(3, 1), P(1, 4))
BINARY_CASE(div, nb_div, P(2, 3), P(2, 3))
BINARY_CASE(div_scalar, nb_div, P(2, 3), P(1))

static nb_node *case_matmul(nb_graph *g, nb_rng *r) { return nb_matmul(X("a", -1, 1, 3, 4), X("b", -1, 1, 4, 2)); }
static nb_node *case_matmul_batched(nb_graph *g, nb_rng *r)
{
    return nb_matmul(X("a", -1, 1, 2, 3, 4), X("b", -1, 1, 4, 2));
}
static nb_node *case_matmul_bcast(nb_graph *g, nb_rng *r)
{
    return nb_matmul(X("a", -1, 1, 2, 1, 2, 3), X("b", -1, 1, 3, 3, 2));
}
static nb_node *case_dense(nb_graph *g, nb_rng *r)
{
    nb_node *a = X("a", -1, 1, 5, 4), *w = X("w", -1, 1, 4, 3), *b = X("b", -1, 1, 3);
    return nb_tanh(nb_add(nb_matmul(a, w), b));
}
static nb_node *case_reuse(nb_graph *g, nb_rng *r)
{
    /* x used three times: its gradients must accumulate. */
    nb_node *x = X("x", 0.5, 2, 2, 3);
    return nb_add(nb_mul(x, x), nb_exp(x));
}

/* ---- more ops append their cases here ---- */
static nb_node *case_conv_relu(nb_graph *g, nb_rng *r)
{
    /* Fused conv2d + ReLU, kept away from the kink even for float's large
     * step: output channel 0 is always > 0.1 (positive kernel and bias on a
     * positive input), channel 1 always < -0.1, so both sides of the mask
     * are checked. */
    nb_node *x = X("x", 0.5, 1, 2, 5, 5, 2), *k = X("k", 0.1, 1, 3, 3, 2, 2), *b = X("b", 0.1, 0.5, 2);
    nb_tensor *kv = nb_value(k), *bv = nb_value(b);
    for (int64_t i = 1; i < kv->size; i += 2) kv->data[i] = -kv->data[i];
    bv->data[1] = -bv->data[1];
    nb_conv2d_opts o = {1, 1, NB_PAD_SAME};
    return nb_conv2d_relu(x, k, b, &o);
}

/* conv2d and pooling (ops/conv2d.c, ops/pool.c). Odd sizes with 'same' and
 * stride 2 make TensorFlow's asymmetric padding (the odd pixel at the
 * bottom/right) show. */
static nb_node *conv_case(nb_graph *g, nb_rng *r, nb_node *x, int fh, int fw, int64_t cout, int bias,
                          nb_conv2d_opts o)
{
    if (!x) return NULL;
    nb_node *k = X("k", -1, 1, fh, fw, nb_value(x)->shape[3], cout);
    nb_node *b = bias ? X("b", -1, 1, cout) : NULL;
    return nb_conv2d(x, k, b, &o);
}
static nb_node *case_conv_valid(nb_graph *g, nb_rng *r)
{
    return conv_case(g, r, X("x", -1, 1, 2, 5, 5, 3), 3, 3, 2, 1, (nb_conv2d_opts){1, 1, NB_PAD_VALID});
}
static nb_node *case_conv_valid_c1(nb_graph *g, nb_rng *r)
{
    return conv_case(g, r, X("x", -1, 1, 2, 5, 4, 1), 3, 2, 3, 0, (nb_conv2d_opts){1, 1, NB_PAD_VALID});
}
static nb_node *case_conv_same(nb_graph *g, nb_rng *r)
{
    return conv_case(g, r, X("x", -1, 1, 1, 5, 6, 1), 3, 3, 2, 1, (nb_conv2d_opts){1, 1, NB_PAD_SAME});
}
static nb_node *case_conv_same_even(nb_graph *g, nb_rng *r)
{
    return conv_case(g, r, X("x", -1, 1, 1, 4, 5, 3), 2, 2, 2, 0, (nb_conv2d_opts){1, 1, NB_PAD_SAME});
}
static nb_node *case_conv_stride2_same(nb_graph *g, nb_rng *r)
{
    return conv_case(g, r, X("x", -1, 1, 1, 7, 6, 2), 4, 3, 2, 1, (nb_conv2d_opts){2, 1, NB_PAD_SAME});
}
static nb_node *case_conv_stride2_valid(nb_graph *g, nb_rng *r)
{
    return conv_case(g, r, X("x", -1, 1, 2, 7, 6, 1), 3, 3, 2, 0, (nb_conv2d_opts){2, 1, NB_PAD_VALID});
}
static nb_node *case_conv_dilation2(nb_graph *g, nb_rng *r)
{
    return conv_case(g, r, X("x", -1, 1, 1, 7, 6, 2), 3, 2, 2, 1, (nb_conv2d_opts){1, 2, NB_PAD_VALID});
}
static nb_node *case_conv_dilation2_same(nb_graph *g, nb_rng *r)
{
    return conv_case(g, r, X("x", -1, 1, 1, 5, 5, 3), 3, 3, 1, 0, (nb_conv2d_opts){2, 2, NB_PAD_SAME});
}
static nb_node *case_conv_tanh_conv(nb_graph *g, nb_rng *r)
{
    /* Two layers: the second conv's x-VJP feeds the first's; tanh is smooth. */
    nb_node *h = nb_tanh(conv_case(g, r, X("x", -1, 1, 2, 6, 6, 1), 3, 3, 2, 1, (nb_conv2d_opts){1, 1, 0}));
    nb_node *k2 = X("k2", -1, 1, 2, 2, 2, 2);
    return nb_conv2d(h, k2, NULL, &(nb_conv2d_opts){1, 1, NB_PAD_SAME});
}

/* Pooling input with well-separated distinct values (a shuffled ramp with
 * spacing 0.1 plus jitter < 0.02), so no perturbation of the gradient check
 * (eps <= 1e-2) can change an argmax. */
static nb_node *pool_input(nb_graph *g, nb_rng *r, int64_t n, int64_t h, int64_t w, int64_t c)
{
    nb_node *x = X("x", 0, 1, n, h, w, c);
    if (!x) return NULL;
    nb_tensor *t = nb_value(x);
    for (int64_t i = 0; i < t->size; i++) t->data[i] = (nb_real)i;
    for (int64_t i = t->size - 1; i > 0; i--) {
        int64_t j = (int64_t)(nb_rng_next(r) % (uint64_t)(i + 1));
        nb_real v = t->data[i];
        t->data[i] = t->data[j], t->data[j] = v;
    }
    for (int64_t i = 0; i < t->size; i++) t->data[i] = (nb_real)(0.1 * t->data[i] + 0.02 * nb_rng_uniform(r) - 2);
    return x;
}
static nb_node *case_maxpool(nb_graph *g, nb_rng *r) { return nb_max_pool2d(pool_input(g, r, 2, 4, 4, 3), 2, 0, NB_PAD_VALID); }
static nb_node *case_maxpool_overlap(nb_graph *g, nb_rng *r)
{
    return nb_max_pool2d(pool_input(g, r, 1, 5, 5, 2), 3, 1, NB_PAD_VALID);
}
static nb_node *case_maxpool_same(nb_graph *g, nb_rng *r)
{
    return nb_max_pool2d(pool_input(g, r, 1, 5, 6, 2), 3, 2, NB_PAD_SAME);
}
static nb_node *case_avgpool(nb_graph *g, nb_rng *r) { return nb_avg_pool2d(X("x", -1, 1, 2, 4, 4, 3), 2, 0, NB_PAD_VALID); }
static nb_node *case_avgpool_overlap(nb_graph *g, nb_rng *r)
{
    return nb_avg_pool2d(X("x", -1, 1, 1, 5, 5, 2), 3, 1, NB_PAD_VALID);
}
static nb_node *case_avgpool_same(nb_graph *g, nb_rng *r)
{
    return nb_avg_pool2d(X("x", -1, 1, 1, 5, 6, 2), 3, 2, NB_PAD_SAME);
}
static nb_node *case_avgpool_same_even(nb_graph *g, nb_rng *r)
{
    return nb_avg_pool2d(X("x", -1, 1, 2, 3, 3, 1), 2, 1, NB_PAD_SAME);
}

/* Reductions, shape moves, softmax, losses and dropout (reduce.c, shape.c,
 * softmax.c, loss.c, dropout.c). */
#define AXES(...) (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)), (const int[]){__VA_ARGS__}
static nb_node *case_sum_axis0(nb_graph *g, nb_rng *r) { return nb_sum(X("x", -1, 1, 3, 4), AXES(0), 0); }
static nb_node *case_sum_axes02_keep(nb_graph *g, nb_rng *r)
{
    return nb_sum(X("x", -1, 1, 2, 3, 4), AXES(0, 2), 1);
}
static nb_node *case_sum_last(nb_graph *g, nb_rng *r) { return nb_sum(X("x", -1, 1, 2, 3, 4), AXES(-1), 0); }
static nb_node *case_sum_all(nb_graph *g, nb_rng *r) { return nb_sum(X("x", -1, 1, 2, 3), 0, NULL, 0); }
static nb_node *case_mean_axis1(nb_graph *g, nb_rng *r) { return nb_mean(X("x", -1, 1, 3, 4), AXES(1), 0); }
static nb_node *case_mean_axes12(nb_graph *g, nb_rng *r)
{
    return nb_mean(X("x", -1, 1, 2, 3, 4), AXES(-2, 2), 1);
}
static nb_node *case_mean_all(nb_graph *g, nb_rng *r) { return nb_mean(X("x", -1, 1, 2, 3), 0, NULL, 1); }
static nb_node *case_transpose3(nb_graph *g, nb_rng *r)
{
    return nb_transpose(X("x", -1, 1, 2, 3, 4), (const int[]){2, 0, 1});
}
static nb_node *case_transpose2(nb_graph *g, nb_rng *r) { return nb_transpose(X("x", -1, 1, 3, 4), NULL); }
static nb_node *case_reshape(nb_graph *g, nb_rng *r)
{
    /* followed by a product so that the Jacobian is not a plain permutation */
    nb_node *x = X("x", -1, 1, 2, 3, 4);
    return nb_mul(nb_reshape(x, SHAPE(4, -1)), X("w", -1, 1, 4, 6));
}
static nb_node *case_flatten(nb_graph *g, nb_rng *r) { return nb_flatten(X("x", -1, 1, 2, 3, 2, 2)); }
static nb_node *case_softmax(nb_graph *g, nb_rng *r) { return nb_softmax(X("x", -2, 2, 3, 5)); }
static nb_node *case_softmax3d(nb_graph *g, nb_rng *r) { return nb_softmax(X("x", -2, 2, 2, 2, 4)); }
static nb_node *case_log_softmax(nb_graph *g, nb_rng *r) { return nb_log_softmax(X("x", -2, 2, 3, 5)); }
static nb_node *case_mse(nb_graph *g, nb_rng *r)
{
    nb_node *p = X("p", -1, 1, 3, 4), *t = X("t", -1, 1, 3, 4);
    return nb_mse_loss(p, t);
}
static nb_node *case_bce(nb_graph *g, nb_rng *r)
{
    nb_node *z = X("z", -3, 3, 3, 4), *t = X("t", 0, 1, 3, 4);
    return nb_bce_logits_loss(z, t);
}
static nb_node *case_cce_labels(nb_graph *g, nb_rng *r)
{
    nb_node *z = X("z", -2, 2, 4, 5);
    nb_node *y = nb_input(g, "~labels", SHAPE(4));
    if (y)
        for (int i = 0; i < 4; i++) nb_value(y)->data[i] = (nb_real)(nb_rng_next(r) % 5);
    return nb_cce_logits_loss(z, y);
}
static nb_node *case_cce_probs(nb_graph *g, nb_rng *r)
{
    nb_node *z = X("z", -2, 2, 3, 4), *t = X("t", 0.1, 1, 3, 4);
    if (t)
        for (int i = 0; i < 3; i++) { /* rows of probabilities */
            nb_real *row = nb_value(t)->data + 4 * i, s = 0;
            for (int c = 0; c < 4; c++) s += row[c];
            for (int c = 0; c < 4; c++) row[c] /= s;
        }
    return nb_cce_logits_probs_loss(z, t);
}
static nb_node *case_dropout_infer(nb_graph *g, nb_rng *r) { return nb_dropout(X("x", -1, 1, 3, 4), 0.5); }
static nb_node *case_dropout_train(nb_graph *g, nb_rng *r)
{
    nb_graph_set_training(g, 1, 1234);
    return nb_tanh(nb_dropout(X("x", -1, 1, 4, 5), 0.3));
}

static const op_case cases[] = {
    {"neg", "3x4", case_neg},
    {"exp", "3x4", case_exp},
    {"log", "3x4", case_log},
    {"sqrt", "3x4", case_sqrt},
    {"abs", "3x4", case_abs},
    {"pow", "x^3", case_pow},
    {"pow", "x^0.5", case_powfrac},
    {"scale", "-1.5x", case_scale},
    {"sigmoid", "3x4", case_sigmoid},
    {"tanh", "3x4", case_tanh},
    {"relu", "3x4", case_relu},
    {"leaky_relu", "slope 0.1", case_leaky_relu},
    {"elu", "alpha 1", case_elu},
    {"softplus", "3x4", case_softplus},
    {"gelu", "3x4", case_gelu},
    {"add", "same shape", case_add},
    {"add", "bias (4,3)+(3)", case_add_bias},
    {"sub", "(2,1,3)-(4,1)", case_sub_bcast},
    {"mul", "same shape", case_mul},
    {"mul", "(3,1)*(1,4)", case_mul_bcast},
    {"div", "same shape", case_div},
    {"div", "by (1,)", case_div_scalar},
    {"matmul", "(3,4)@(4,2)", case_matmul},
    {"matmul", "batched (2,3,4)@(4,2)", case_matmul_batched},
    {"matmul", "bcast (2,1,2,3)@(3,3,2)", case_matmul_bcast},
    {"dense", "tanh(AW+b)", case_dense},
    {"graph", "x reused: x*x+exp(x)", case_reuse},
    /* ---- more ops append their table rows here ---- */
    {"conv2d", "same 3x3 + fused relu", case_conv_relu},
    {"conv2d", "valid 3x3 +bias C_in 3", case_conv_valid},
    {"conv2d", "valid 3x2 C_in 1", case_conv_valid_c1},
    {"conv2d", "same 3x3 +bias C_in 1", case_conv_same},
    {"conv2d", "same 2x2 C_in 3", case_conv_same_even},
    {"conv2d", "same 4x3 s2 7x6 +bias", case_conv_stride2_same},
    {"conv2d", "valid 3x3 s2 7x6", case_conv_stride2_valid},
    {"conv2d", "valid 3x2 d2 +bias", case_conv_dilation2},
    {"conv2d", "same 3x3 s2 d2", case_conv_dilation2_same},
    {"conv2d", "conv-tanh-conv", case_conv_tanh_conv},
    {"max_pool2d", "2 stride 2", case_maxpool},
    {"max_pool2d", "3 stride 1", case_maxpool_overlap},
    {"max_pool2d", "3 stride 2 same 5x6", case_maxpool_same},
    {"avg_pool2d", "2 stride 2", case_avgpool},
    {"avg_pool2d", "3 stride 1", case_avgpool_overlap},
    {"avg_pool2d", "3 stride 2 same 5x6", case_avgpool_same},
    {"avg_pool2d", "2 stride 1 same 3x3", case_avgpool_same_even},
    {"sum", "axis 0 of (3,4)", case_sum_axis0},
    {"sum", "axes (0,2) keepdims", case_sum_axes02_keep},
    {"sum", "axis -1 of (2,3,4)", case_sum_last},
    {"sum", "all axes", case_sum_all},
    {"mean", "axis 1 of (3,4)", case_mean_axis1},
    {"mean", "axes (-2,2) keepdims", case_mean_axes12},
    {"mean", "all axes keepdims", case_mean_all},
    {"transpose", "perm (2,0,1)", case_transpose3},
    {"transpose", "2-D, perm NULL", case_transpose2},
    {"reshape", "(2,3,4)->(4,-1), *w", case_reshape},
    {"flatten", "(2,3,2,2)->(2,12)", case_flatten},
    {"softmax", "(3,5)", case_softmax},
    {"softmax", "(2,2,4)", case_softmax3d},
    {"log_softmax", "(3,5)", case_log_softmax},
    {"mse_loss", "(3,4)", case_mse},
    {"bce_logits", "(3,4)", case_bce},
    {"cce_logits", "labels, (4,5)", case_cce_labels},
    {"cce_probs", "(3,4)", case_cce_probs},
    {"dropout", "inference: identity", case_dropout_infer},
    {"dropout", "training, seed 1234", case_dropout_train},
};

int nb_opcheck_all(uint64_t seed, const nb_gradcheck_opts *opts,
                   void (*report)(const nb_opcheck_row *row, void *user), void *user)
{
    int failures = 0;
    nb_rng r;
    nb_rng_seed(&r, seed);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        nb_graph *g = nb_graph_new();
        if (!g) return -1;
        nb_node *out = cases[c].build(g, &r);
        if (!out) {
            nb_graph_free(g);
            return -1;
        }
        for (int i = 0; i < nb_graph_size(g); i++) {
            nb_node *x = nb_graph_node(g, i);
            if (x->kind == NB_KIND_OP || x->name[0] == '~') continue;
            nb_opcheck_row row = {cases[c].op, cases[c].name, x->name, {0}, {0}};
            nb_shape_str(x->value.rank, x->value.shape, row.shape, sizeof row.shape);
            if (nb_gradcheck(out, x, opts, &row.r) != NB_OK) {
                nb_graph_free(g);
                return -1;
            }
            if (!row.r.ok) failures++;
            if (report) report(&row, user);
        }
        nb_graph_free(g);
    }
    return failures;
}

/* The table for other checks over every op (the second-order check,
 * hessian.c). */
int nb_opcheck_case_count(void) { return (int)(sizeof cases / sizeof cases[0]); }

nb_node *nb_opcheck_case_build(int i, nb_graph *g, nb_rng *r, const char **op, const char **case_name)
{
    if (i < 0 || i >= nb_opcheck_case_count()) return NULL;
    *op = cases[i].op, *case_name = cases[i].name;
    return cases[i].build(g, r);
}
