/* The layer table and the names: every layer kind parses, prints, builds,
 * names and initialises its parameters from its table entry; the weights
 * of a fixed seed are bit for bit those from before the table; every name
 * of the library's enumerations parses back, with "did you mean" hints;
 * spec errors point at the real problem. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the headers it needs */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nabla.h"
#include "nn/layers/layers.h" /* the layer table, to check docs/spec.md against it */

#define FAIL(...) (fprintf(stderr, __VA_ARGS__), fprintf(stderr, "\n"), fail())

/* What each kind's example builds on its input: the parameters' names and
 * shapes. A kind added to the table without a row here fails the test. */
typedef struct {
    nb_layer_kind kind;
    int in_rank;
    int64_t in[3];
    int64_t out[3]; /* the output shape without N, rank = out_rank */
    int out_rank;
    int nparams;
    const char *names[4];
    int64_t shapes[4][4];
    int ranks[4];
} expected;

static const expected rows[] = {
    {NB_LAYER_DENSE, 1, {6}, {7}, 1, 2, {"0.kernel", "0.bias"}, {{6, 7}, {7}}, {2, 1}},
    {NB_LAYER_CONV2D, 3, {8, 8, 2}, {4, 4, 4}, 3, 2, {"0.kernel", "0.bias"}, {{3, 3, 2, 4}, {4}}, {4, 1}},
    {NB_LAYER_MAXPOOL, 3, {8, 8, 2}, {8, 8, 2}, 3, 0, {NULL}, {{0}}, {0}},
    {NB_LAYER_AVGPOOL, 3, {8, 8, 2}, {3, 3, 2}, 3, 0, {NULL}, {{0}}, {0}},
    {NB_LAYER_FLATTEN, 3, {8, 8, 2}, {128}, 1, 0, {NULL}, {{0}}, {0}},
    {NB_LAYER_DROPOUT, 1, {6}, {6}, 1, 0, {NULL}, {{0}}, {0}},
    {NB_LAYER_ACTIVATION, 1, {6}, {6}, 1, 0, {NULL}, {{0}}, {0}},
    {NB_LAYER_GLOBALAVGPOOL, 3, {8, 8, 2}, {2}, 1, 0, {NULL}, {{0}}, {0}},
    {NB_LAYER_FROM, 3, {8, 8, 2}, {8, 8, 2}, 3, 0, {NULL}, {{0}}, {0}},
    {NB_LAYER_ADD, 1, {6}, {6}, 1, 0, {NULL}, {{0}}, {0}},
    {NB_LAYER_CONCAT, 3, {8, 8, 2}, {8, 8, 4}, 3, 0, {NULL}, {{0}}, {0}},
    {NB_LAYER_BATCHNORM, 3, {8, 8, 2}, {8, 8, 2}, 3, 4, {"0.gamma", "0.beta", "0.moving_mean", "0.moving_variance"},
     {{2}, {2}, {2}, {2}}, {1, 1, 1, 1}},
    {NB_LAYER_LAYERNORM, 1, {6}, {6}, 1, 2, {"0.gamma", "0.beta"}, {{6}, {6}}, {1, 1}},
};

static const expected *row_of(nb_layer_kind k)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (rows[i].kind == k) return &rows[i];
    return NULL;
}

/* Every kind: a name, a usage that starts with it, an example that parses
 * to one layer of the kind and prints back as itself. */
static void test_every_kind_parses_and_prints(void **state)
{
    (void)state;
    assert_null(nb_layer_kind_name(NB_LAYER_KIND_COUNT));
    assert_null(nb_layer_kind_usage((nb_layer_kind)-1));
    assert_string_equal(nb_layer_kind_usage(NB_LAYER_CONV2D),
                        "conv2d FILTERS SIZE [ACT] [stride=S] [padding=valid|same|P] [dilation=D]");
    assert_string_equal(nb_layer_kind_usage(NB_LAYER_MAXPOOL), "maxpool SIZE [stride=S] [padding=valid|same]");
    assert_string_equal(nb_layer_kind_usage(NB_LAYER_DENSE), "dense UNITS [ACT]");
    assert_string_equal(nb_layer_kind_usage(NB_LAYER_DROPOUT), "dropout RATE");
    assert_string_equal(nb_layer_kind_usage(NB_LAYER_ACTIVATION), "ACT");
    for (int k = 0; k < NB_LAYER_KIND_COUNT; k++) {
        const char *name = nb_layer_kind_name((nb_layer_kind)k), *ex = nb_layer_kind_example((nb_layer_kind)k);
        const char *usage = nb_layer_kind_usage((nb_layer_kind)k);
        assert_non_null(name);
        assert_non_null(ex);
        assert_non_null(usage);
        if (k != NB_LAYER_ACTIVATION) assert_memory_equal(usage, name, strlen(name));
        if (!row_of((nb_layer_kind)k)) FAIL("kind %s has no row in this test", name);
        nb_layer_spec *l;
        int n;
        if (nb_spec_parse(ex, &l, &n)) FAIL("example '%s' does not parse: %s", ex, nb_last_error());
        assert_int_equal(n, 1);
        assert_int_equal(l->kind, k);
        char s[128];
        assert_string_equal(nb_layer_spec_str(l, s, sizeof s), ex);
        free(l);
    }
}

/* Every kind builds from its example: output shape, parameter names and
 * shapes as the table declares; a spec that repeats it names the second
 * copy's parameters "1.<name>". */
static void test_every_kind_builds(void **state)
{
    (void)state;
    for (int k = 0; k < NB_LAYER_KIND_COUNT; k++) {
        const expected *e = row_of((nb_layer_kind)k);
        assert_non_null(e);
        nb_model *m;
        const char *ex = nb_layer_kind_example((nb_layer_kind)k);
        if (nb_model_from_spec(ex, e->in_rank, e->in, &m)) FAIL("'%s' does not build: %s", ex, nb_last_error());
        int64_t shape[8];
        assert_int_equal(nb_model_layer_shape(m, 0, shape), e->out_rank);
        for (int d = 0; d < e->out_rank; d++)
            assert_int_equal(shape[d], e->out[d]);
        assert_int_equal(nb_model_param_count(m), e->nparams);
        for (int p = 0; p < e->nparams; p++) {
            nb_node *q = nb_model_param(m, p);
            assert_string_equal(nb_node_name(q), e->names[p]);
            assert_int_equal(nb_value(q)->rank, e->ranks[p]);
            for (int d = 0; d < e->ranks[p]; d++)
                assert_int_equal(nb_value(q)->shape[d], e->shapes[p][d]);
        }
        nb_model_free(m);
    }
    nb_model *m;
    const int64_t in[1] = {6};
    assert_int_equal(nb_model_from_spec("dense 7 tanh; relu; dense 3; dropout 0.5; neuron", 1, in, &m), NB_OK);
    const char *names[] = {"0.kernel", "0.bias", "2.kernel", "2.bias", "4.kernel", "4.bias"};
    assert_int_equal(nb_model_param_count(m), 6);
    for (int p = 0; p < 6; p++)
        assert_string_equal(nb_node_name(nb_model_param(m, p)), names[p]);
    assert_string_equal(nb_model_spec(m), "dense 7 tanh; relu; dense 3; dropout 0.5; dense 1");
    nb_model_free(m);
}

/* Each parameter by its declared initialiser: kernels within Glorot's limit
 * sqrt(6 / (fan_in + fan_out)) and not all zero, biases zero; with PyTorch's
 * default, biases within 1/sqrt(fan_in of the kernel) and not zero. */
static void test_every_kind_initialises(void **state)
{
    (void)state;
    for (int k = 0; k < NB_LAYER_KIND_COUNT; k++) {
        const expected *e = row_of((nb_layer_kind)k);
        /* no kernel: constants (tests/f32/test_norm_layers.c, test_params_start_values) */
        if (!e->nparams || k == NB_LAYER_BATCHNORM || k == NB_LAYER_LAYERNORM) continue;
        for (int torch = 0; torch < 2; torch++) {
            nb_model *m;
            assert_int_equal(nb_model_from_spec(nb_layer_kind_example((nb_layer_kind)k), e->in_rank, e->in, &m), NB_OK);
            assert_int_equal(nb_model_init(m, torch ? NB_INIT_TORCH_DEFAULT : NB_INIT_GLOROT_UNIFORM, 5), NB_OK);
            const nb_tensor *K = nb_value(nb_model_param(m, 0)), *b = nb_value(nb_model_param(m, 1));
            double rf = 1;
            for (int d = 0; d + 2 < K->rank; d++)
                rf *= (double)K->shape[d];
            double fan_in = rf * (double)K->shape[K->rank - 2], fan_out = rf * (double)K->shape[K->rank - 1];
            double klim = torch ? 1 / sqrt(fan_in) : sqrt(6 / (fan_in + fan_out)), kmax = 0, bmax = 0;
            for (int64_t i = 0; i < K->size; i++)
                kmax = fmax(kmax, fabs(K->data[i]));
            for (int64_t i = 0; i < b->size; i++)
                bmax = fmax(bmax, fabs(b->data[i]));
            assert_true(kmax > klim / 4 && kmax <= klim);
            if (torch)
                assert_true(bmax > 0 && bmax <= 1 / sqrt(fan_in));
            else
                assert_true(bmax == 0);
            nb_model_free(m);
        }
    }
}

/* FNV-1a over the parameters' names and bytes, in order. */
static unsigned long long checksum(nb_model *m)
{
    unsigned long long h = 1469598103934665603ULL;
    for (int i = 0; i < nb_model_param_count(m); i++) {
        nb_node *p = nb_model_param(m, i);
        for (const char *c = nb_node_name(p); *c; c++)
            h = (h ^ (unsigned char)*c) * 1099511628211ULL;
        const nb_tensor *v = nb_value(p);
        const unsigned char *bytes = (const unsigned char *)v->data;
        for (size_t j = 0; j < (size_t)v->size * sizeof(nb_real); j++)
            h = (h ^ bytes[j]) * 1099511628211ULL;
    }
    return h;
}

/* The initial weights of the lecture's CNN and of a model with every kind,
 * seed 42, each initialiser: the values computed by the code before the
 * layer table (commit f6d5ef8), so saved seeds still give the same models. */
static void test_weights_as_before_the_table(void **state)
{
    (void)state;
    const char *specs[2] = {"conv2d 32 3 relu; conv2d 64 3 relu; maxpool 2; flatten; dense 128 relu; dense 10",
                            "conv2d 4 3 relu stride=2 padding=same; maxpool 2; avgpool 1; conv2d 3 1 tanh; flatten; "
                            "dropout 0.5; dense 5 sigmoid; neuron; relu"};
    const int64_t in[2][3] = {{28, 28, 1}, {12, 12, 2}};
    const unsigned long long before[2][4] = {
        {0x146412dc29bf17b9ULL, 0x2f45b739a994513aULL, 0x75d4fe2a7bce13d6ULL, 0xac47627307ffdb71ULL},
        {0x2ea38cc1e30ab153ULL, 0x13392afc233182b5ULL, 0xbbe8917a17dc519fULL, 0x21f811131f3d461fULL}};
    for (int s = 0; s < 2; s++)
        for (int init = 0; init < 4; init++) {
            nb_model *m;
            assert_int_equal(nb_model_from_spec(specs[s], 3, in[s], &m), NB_OK);
            assert_int_equal(nb_model_init(m, (nb_init)init, 42), NB_OK);
            if (checksum(m) != before[s][init])
                FAIL("spec %d, init %s: checksum 0x%016llx, before 0x%016llx", s, nb_init_name((nb_init)init),
                     checksum(m), before[s][init]);
            nb_model_free(m);
        }
}

/* Every name parses back to its value; out of range is "?". */
#define ROUND_TRIP(prefix, type, count)                                                                                \
    do {                                                                                                               \
        for (int v = 0; v < (count); v++) {                                                                            \
            type got = (type)-1;                                                                                       \
            assert_int_equal(nb_##prefix##_parse(nb_##prefix##_name((type)v), &got), NB_OK);                           \
            assert_int_equal((int)got, v);                                                                             \
        }                                                                                                              \
        assert_string_equal(nb_##prefix##_name((type)(count)), "?");                                                   \
        assert_string_equal(nb_##prefix##_name((type)-1), "?");                                                        \
    } while (0)

static void test_names_round_trip(void **state)
{
    (void)state;
    ROUND_TRIP(activation, nb_activation, NB_ACT_GELU + 1);
    ROUND_TRIP(loss, nb_loss_kind, NB_LOSS_BCE + 1);
    ROUND_TRIP(optimizer, nb_optimizer, NB_OPT_RMSPROP + 1);
    ROUND_TRIP(schedule, nb_schedule, NB_SCHED_COSINE + 1);
    ROUND_TRIP(jac_mode, nb_jac_mode, NB_JAC_NUMERIC + 1);
    ROUND_TRIP(init, nb_init, NB_INIT_TORCH_DEFAULT + 1);
    assert_string_equal(nb_activation_name(NB_ACT_NONE), "linear");
    assert_string_equal(nb_activation_name(NB_ACT_LOG_SOFTMAX), "log_softmax");
    assert_string_equal(nb_loss_name(NB_LOSS_BCE), "bce");
    assert_string_equal(nb_optimizer_name(NB_OPT_ADAMW), "adamw");
    assert_string_equal(nb_schedule_name(NB_SCHED_EXPONENTIAL), "exp");
    assert_string_equal(nb_jac_mode_name(NB_JAC_FWD), "fwd");
    assert_string_equal(nb_init_name(NB_INIT_HE_NORMAL), "he-normal");
    nb_activation a = NB_ACT_RELU;
    assert_int_equal(nb_activation_parse("none", &a), NB_OK); /* older files */
    assert_int_equal(a, NB_ACT_NONE);
    nb_schedule sc = NB_SCHED_CONSTANT;
    assert_int_equal(nb_schedule_parse("exponential", &sc), NB_OK);
    assert_int_equal(sc, NB_SCHED_EXPONENTIAL);
}

static void test_names_did_you_mean(void **state)
{
    (void)state;
    nb_activation a = NB_ACT_TANH;
    assert_int_equal(nb_activation_parse("rleu", &a), NB_ERR_ARG);
    assert_int_equal(a, NB_ACT_TANH); /* untouched on failure */
    assert_string_equal(nb_last_error(), "unknown activation 'rleu'; did you mean 'relu'? (linear, relu, sigmoid, "
                                         "tanh, softmax, log_softmax, leaky_relu, elu, softplus, gelu)");
    nb_optimizer o;
    assert_int_equal(nb_optimizer_parse("adma", &o), NB_ERR_ARG);
    assert_string_equal(nb_last_error(), "unknown optimizer 'adma'; did you mean 'adam'? (sgd, adam, adamw, rmsprop)");
    nb_loss_kind l;
    assert_int_equal(nb_loss_parse("hinge", &l), NB_ERR_ARG);
    assert_string_equal(nb_last_error(), "unknown loss 'hinge' (cce, mse, bce)");
    nb_schedule s;
    assert_int_equal(nb_schedule_parse("cosin", &s), NB_ERR_ARG);
    assert_string_equal(nb_last_error(),
                        "unknown schedule 'cosin'; did you mean 'cosine'? (constant, step, exp, cosine)");
    nb_jac_mode j;
    assert_int_equal(nb_jac_mode_parse("reverse", &j), NB_ERR_ARG);
    assert_string_equal(nb_last_error(),
                        "unknown Jacobian mode 'reverse'; did you mean 'rev'? (auto, rev, fwd, numeric)");
    nb_init i;
    assert_int_equal(nb_init_parse("xavier", &i), NB_ERR_ARG);
    assert_string_equal(nb_last_error(), "unknown initialiser 'xavier' (glorot, he, he-normal, torch)");
    assert_int_equal(nb_loss_parse(NULL, &l), NB_ERR_ARG);
    assert_int_equal(nb_loss_parse("cce", NULL), NB_ERR_ARG);
    /* nb_suggest: one edit, a swap, a prefix; nothing for far words. */
    const char *cmds[] = {"train", "eval", "predict", "jacobian"};
    assert_string_equal(nb_suggest("trian", cmds, 4), "train");
    assert_string_equal(nb_suggest("evl", cmds, 4), "eval");
    assert_string_equal(nb_suggest("jac", cmds, 4), "jacobian");
    assert_null(nb_suggest("summary", cmds, 4));
    assert_null(nb_suggest("train", cmds, 4)); /* an exact name is no suggestion */
    assert_null(nb_suggest("", cmds, 4));
    assert_null(nb_suggest("x", NULL, 0));
}

/* Spec errors name the real problem (issue 14), each the text of a row of
 * docs/bad-inputs.md. */
/* padding=P (PyTorch's padding on every side): parsed, printed back, 0 is
 * 'valid'; a pool or an out-of-range P set in the struct is refused by
 * nb_model_add; the convolution computes P zeros on every side (a 3x3
 * all-ones kernel on a 4x4 image of ones, stride 2, padding 1: corners see
 * 4 pixels, edges 6, the inside 9). */
static void test_explicit_padding(void **state)
{
    (void)state;
    nb_layer_spec *l;
    int n;
    char s[128];
    assert_int_equal(nb_spec_parse("conv2d 8 3 relu stride=2 padding=1; conv2d 2 3 padding=0", &l, &n), NB_OK);
    assert_int_equal(l[0].padding, NB_PAD_EXPLICIT), assert_int_equal(l[0].pad, 1);
    assert_string_equal(nb_layer_spec_str(&l[0], s, sizeof s), "conv2d 8 3 relu stride=2 padding=1");
    assert_int_equal(l[1].padding, NB_PAD_VALID), assert_int_equal(l[1].pad, 0);
    assert_string_equal(nb_layer_spec_str(&l[1], s, sizeof s), "conv2d 2 3");
    free(l);
    const int64_t in[3] = {4, 4, 1};
    nb_model *m = nb_model_new(3, in);
    nb_layer_spec pool = {.kind = NB_LAYER_MAXPOOL, .size = 2, .padding = NB_PAD_EXPLICIT, .pad = 1};
    assert_int_equal(nb_model_add(m, &pool), NB_ERR_ARG);
    assert_string_equal(nb_last_error(),
                        "layer 0: maxpool padding must be valid or same (a number of pixels is for conv2d)");
    nb_layer_spec big = {.kind = NB_LAYER_CONV2D, .units = 1, .size = 3, .padding = NB_PAD_EXPLICIT, .pad = 2000};
    assert_int_equal(nb_model_add(m, &big), NB_ERR_ARG);
    assert_string_equal(nb_last_error(), "layer 0: conv2d padding=P must be 1..1024 pixels, got 2000");
    nb_layer_spec conv = {
        .kind = NB_LAYER_CONV2D, .units = 1, .size = 3, .stride = 2, .padding = NB_PAD_EXPLICIT, .pad = 1};
    assert_int_equal(nb_model_add(m, &conv), NB_OK);
    int64_t shape[8];
    assert_int_equal(nb_model_layer_shape(m, 0, shape), 3);
    assert_int_equal(shape[0], 2), assert_int_equal(shape[1], 2); /* (4 + 2 - 3) / 2 + 1 */
    nb_tensor *k = nb_value(nb_model_find_param(m, "0.kernel")), *b = nb_value(nb_model_find_param(m, "0.bias"));
    for (int64_t i = 0; i < k->size; i++)
        k->data[i] = 1;
    b->data[0] = 0;
    const int64_t xs[4] = {1, 4, 4, 1};
    nb_tensor *x = nb_tensor_new(4, xs), *y = NULL;
    for (int64_t i = 0; i < x->size; i++)
        x->data[i] = 1;
    assert_int_equal(nb_model_predict(m, x, 1, &y), NB_OK);
    /* windows at rows/cols -1..1 and 1..3: 2x2 real pixels at (0,0), 2x3 at (0,1), 3x3 at (1,1) */
    assert_true(y->data[0] == 4 && y->data[1] == 6 && y->data[2] == 6 && y->data[3] == 9);
    nb_tensor_free(x), nb_tensor_free(y);
    nb_model_free(m);
    /* The op itself: a negative pad is refused; padding 2 around a 1x1
     * image of 2 gives a 3x3 output where output (i, j) meets the pixel
     * at kernel tap (2 - i, 2 - j), of value 9 - (3 i + j) here. */
    nb_graph *g = nb_graph_new();
    const int64_t x1[4] = {1, 1, 1, 1}, k3[4] = {3, 3, 1, 1};
    nb_node *xn = nb_input(g, "x", 4, x1), *kn = nb_param(g, "k", 4, k3);
    assert_null(nb_conv2d(xn, kn, NULL, &(nb_conv2d_opts){1, 1, NB_PAD_EXPLICIT, -1}));
    assert_string_equal(nb_last_error(), "conv2d: explicit padding -1 must be 0..1048576 pixels");
    nb_node *yn = nb_conv2d(xn, kn, NULL, &(nb_conv2d_opts){1, 1, NB_PAD_EXPLICIT, 2});
    assert_non_null(yn);
    nb_value(xn)->data[0] = 2;
    for (int i = 0; i < 9; i++)
        nb_value(kn)->data[i] = (nb_real)(i + 1);
    assert_int_equal(nb_forward(g), NB_OK);
    const nb_tensor *yv = nb_value(yn);
    assert_int_equal(yv->shape[1], 3), assert_int_equal(yv->shape[2], 3); /* 1 + 4 - 3 + 1 */
    for (int i = 0; i < 9; i++)
        assert_true(yv->data[i] == 2 * (nb_real)(9 - i)); /* the pixel meets tap 8 - i */
    nb_graph_free(g);
}

static void test_spec_errors(void **state)
{
    (void)state;
    const char *spec[] = {
        "conv2d 32 relu",
        "conv2d 32",
        "conv2d 32 3 relu, maxpool 2",
        "dens 10",
        "dense 10 rleu",
        "conv2d 8 3 strid=2",
        "flatten; flatten x=1",
        "conv2d 8 3x5",
        "maxpool 2 padding=full",
        "dropout 1.5",
        "dense 10 relu extra",
        "lstm 32",
        "maxpool 2 padding=1",
        "conv2d 8 3 padding=1025",
        "conv2d 8 3 padding=-1",
    };
    const char *why[] = {
        "spec layer 0 (line 1, 'conv2d'): missing SIZE before 'relu' (usage: conv2d FILTERS SIZE [ACT] [stride=S] "
        "[padding=valid|same|P] [dilation=D])",
        "spec layer 0 (line 1, 'conv2d'): missing SIZE (usage: conv2d FILTERS SIZE [ACT] [stride=S] "
        "[padding=valid|same|P] [dilation=D])",
        "spec layer 0 (line 1, 'conv2d'): unexpected ',' in 'relu,': layers are separated by ';' or a new line",
        "spec layer 0 (line 1, 'dens'): unknown layer 'dens'; did you mean 'dense'? (layers: dense conv2d maxpool "
        "avgpool flatten dropout globalavgpool from add concat batchnorm layernorm; activations: linear relu sigmoid tanh softmax "
        "log_softmax leaky_relu elu softplus "
        "gelu)",
        "spec layer 0 (line 1, 'dense'): unknown activation 'rleu'; did you mean 'relu'? (linear, relu, sigmoid, "
        "tanh, softmax, log_softmax, leaky_relu, elu, softplus, gelu)",
        "spec layer 0 (line 1, 'conv2d'): unknown option 'strid'; did you mean 'stride'? (conv2d takes stride, "
        "padding, dilation)",
        "spec layer 1 (line 1, 'flatten'): flatten takes no options, got 'x=1'",
        "spec layer 0 (line 1, 'conv2d'): kernel SIZE must be one number (square kernels), e.g. 3, not '3x5'",
        "spec layer 0 (line 1, 'maxpool'): padding must be 'valid' or 'same', not 'full'",
        "spec layer 0 (line 1, 'dropout'): RATE must be a number in [0, 1), got '1.5'",
        "spec layer 0 (line 1, 'dense'): unexpected 'extra' (usage: dense UNITS [ACT])",
        "spec layer 0 (line 1, 'lstm'): unknown layer 'lstm' (layers: dense conv2d maxpool avgpool flatten "
        "dropout globalavgpool from add concat batchnorm layernorm; activations: linear relu sigmoid tanh softmax log_softmax leaky_relu "
        "elu softplus gelu)",
        "spec layer 0 (line 1, 'maxpool'): padding must be 'valid' or 'same', not '1'",
        "spec layer 0 (line 1, 'conv2d'): padding must be 'valid', 'same' or a number of pixels 0..1024, not '1025'",
        "spec layer 0 (line 1, 'conv2d'): padding must be 'valid', 'same' or a number of pixels 0..1024, not '-1'",
    };
    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
        nb_layer_spec *l = (nb_layer_spec *)&l;
        int n = -1;
        assert_int_equal(nb_spec_parse(spec[i], &l, &n), NB_ERR_FORMAT);
        assert_null(l);
        assert_int_equal(n, 0);
        if (getenv("NB_SHOW")) printf("%s\n", nb_last_error());
        assert_string_equal(nb_last_error(), why[i]);
    }
    /* A spec that parses leaves the last error as it was (the probes for a
     * missing argument are quiet). */
    nb_loss_kind lk;
    assert_int_equal(nb_loss_parse("hinge", &lk), NB_ERR_ARG);
    nb_layer_spec *l;
    int n;
    assert_int_equal(nb_spec_parse("conv2d 32 3 relu stride=2; neuron; dense 4 softmax", &l, &n), NB_OK);
    assert_int_equal(n, 3);
    assert_string_equal(nb_last_error(), "unknown loss 'hinge' (cce, mse, bce)");
    free(l);
}

/* docs/spec.md as one string, "\|" (a '|' inside a markdown table) read as "|". */
static char *read_spec_doc(void)
{
    FILE *f = fopen(NB_SOURCE_DIR "/docs/spec.md", "rb");
    assert_non_null(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    assert_true(n > 0 && n < sizeof text - 1);
    text[n] = '\0';
    for (char *q = text; (q = strstr(q, "\\|")) != NULL;) memmove(q, q + 1, strlen(q + 1) + 1);
    return text;
}

/* The code block that follows the first line starting with after. */
static void doc_block(const char *doc, const char *after, char *out, size_t n)
{
    const char *at = strstr(doc, after);
    assert_non_null(at);
    const char *open = strstr(at, "```\n"), *close = open ? strstr(open + 4, "```") : NULL;
    assert_non_null(close);
    assert_true((size_t)(close - open - 4) < n);
    memcpy(out, open + 4, (size_t)(close - open - 4));
    out[close - open - 4] = '\0';
}

/* docs/spec.md is complete: every kind's grammar line (keyword and every
 * option), every alias and every activation of the layer table are in it,
 * and its examples build the models they say. */
static void test_spec_doc_complete(void **state)
{
    (void)state;
    const char *doc = read_spec_doc();
    for (int k = 0; k < NB_LAYER_KIND_COUNT; k++) {
        const nb_layer_type *t = nb_layer_type_of((nb_layer_kind)k);
        char want[300];
        snprintf(want, sizeof want, "`%s`", nb_layer_kind_usage((nb_layer_kind)k));
        if (!strstr(doc, want)) fail_msg("docs/spec.md lacks the grammar %s of '%s'", want, t->keyword);
        for (int a = 0; a < t->nargs; a++)
            if (t->args[a].flags & NB_ARG_KEY) {
                snprintf(want, sizeof want, "%s=", t->args[a].name);
                assert_non_null(strstr(doc, want));
            }
        for (int a = 0; t->aliases && t->aliases[a]; a++) {
            snprintf(want, sizeof want, "`%s", t->aliases[a]);
            if (!strstr(doc, want)) fail_msg("docs/spec.md lacks the alias '%s' of '%s'", t->aliases[a], t->keyword);
        }
    }
    for (int a = 0; a <= NB_ACT_GELU; a++) {
        char want[64];
        snprintf(want, sizeof want, "| `%s` |", nb_activation_name((nb_activation)a));
        if (!strstr(doc, want)) fail_msg("docs/spec.md lacks the activation %s", want);
    }
    nb_model *m;
    char spec[2048];
    doc_block(doc, "The Keras mnist_cnn network", spec, sizeof spec);
    assert_int_equal(nb_model_from_spec(spec, 3, (const int64_t[]){28, 28, 1}, &m), NB_OK);
    assert_int_equal(nb_model_num_layers(m), 6);
    assert_int_equal(nb_model_num_params(m), 1199882);
    nb_model_free(m);
    doc_block(doc, "A residual block and a concatenation", spec, sizeof spec);
    assert_int_equal(nb_model_from_spec(spec, 3, (const int64_t[]){8, 8, 3}, &m), NB_OK);
    assert_int_equal(nb_model_num_layers(m), 9); /* "indices 0..8" */
    int64_t shape[NB_MAX_RANK];
    assert_int_equal(nb_model_layer_shape(m, 6, shape), 3);
    assert_int_equal(shape[2], 16 + 16 + 3); /* concat b input */
    nb_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind_parses_and_prints),
        cmocka_unit_test(test_every_kind_builds),
        cmocka_unit_test(test_every_kind_initialises),
        cmocka_unit_test(test_weights_as_before_the_table),
        cmocka_unit_test(test_names_round_trip),
        cmocka_unit_test(test_names_did_you_mean),
        cmocka_unit_test(test_spec_errors),
        cmocka_unit_test(test_explicit_padding),
        cmocka_unit_test(test_spec_doc_complete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
