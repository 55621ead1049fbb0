/* Issue 14's training and toy-data items: toy 2-D data sets (determinism by
 * seed, prefixes, shapes, the geometry of each), per-layer diagnostics on
 * constructed cases (all-negative bias: 100% dead), early stopping and the
 * best epoch's weights (library and CLI, resume included), `nabla
 * boundary` (pictures read back), CSV string labels kept in the model file,
 * and the refusals of docs/bad-inputs.md's rows T1-T15. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "f32/nb_test_util.h"

static char dir[1024];

static const char *path_in(const char *name)
{
    static char p[8][1200];
    static int k;
    k = (k + 1) % 8;
    tu_fmt(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

#define assert_has(text, want)                                                                                         \
    do {                                                                                                               \
        const char *t_ = (text), *w_ = (want);                                                                         \
        if (!strstr(t_, w_) || getenv("NB_SHOW")) fprintf(stderr, "expected:\n  %s\ngot:\n  %s\n", w_, t_);            \
        assert_non_null(strstr(t_, w_));                                                                               \
    } while (0)

/* Runs the CLI with the arguments; *out gets stdout and stderr. */
static int cli(char **out, ...)
{
    const char *args[64];
    int n = 0;
    va_list ap;
    va_start(ap, out);
    for (const char *a; n < 63 && (a = va_arg(ap, const char *));)
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    return tu_run_cli(args, out, NULL);
}
#define CLI(out, ...) cli(out, __VA_ARGS__, (const char *)NULL)
#define EXPECT_CLI(rc_want, want, ...)                                                                                 \
    do {                                                                                                               \
        char *o_;                                                                                                      \
        int rc_ = CLI(&o_, __VA_ARGS__);                                                                               \
        assert_has(o_, want);                                                                                          \
        assert_int_equal(rc_, rc_want);                                                                                \
        free(o_);                                                                                                      \
    } while (0)

/* ---------------------------------------------------------------- toy data */

static nb_dataset toy(nb_toy_kind kind, int64_t count, double noise, uint64_t seed, int classes)
{
    nb_toy_opts o = {kind, count, noise, seed, classes};
    nb_dataset d;
    assert_int_equal(nb_dataset_toy(&o, &d), NB_OK);
    assert_int_equal(d.x->rank, 2);
    assert_int_equal(d.x->shape[0], count);
    assert_int_equal(d.x->shape[1], 2);
    assert_int_equal(d.y->rank, 1);
    assert_int_equal(d.y->shape[0], count);
    return d;
}

static void test_toy_seeded(void **state)
{
    (void)state;
    for (int k = 0; k < 4; k++) {
        nb_dataset a = toy((nb_toy_kind)k, 100, 0.1, 7, 2), b = toy((nb_toy_kind)k, 100, 0.1, 7, 2);
        nb_dataset c = toy((nb_toy_kind)k, 100, 0.1, 8, 2), pre = toy((nb_toy_kind)k, 40, 0.1, 7, 2);
        assert_memory_equal(a.x->data, b.x->data, 200 * sizeof(nb_real));
        assert_memory_equal(a.y->data, b.y->data, 100 * sizeof(nb_real));
        assert_memory_not_equal(a.x->data, c.x->data, 200 * sizeof(nb_real));
        assert_memory_equal(a.x->data, pre.x->data, 80 * sizeof(nb_real)); /* a prefix of the larger draw */
        for (int i = 0; i < 100; i++) {
            assert_true(a.y->data[i] == (nb_real)(i % 2));
            assert_true(fabs(a.x->data[2 * i]) < 3 && fabs(a.x->data[2 * i + 1]) < 3);
        }
        nb_dataset_free(&a), nb_dataset_free(&b), nb_dataset_free(&c), nb_dataset_free(&pre);
    }
    nb_dataset circ = toy(NB_TOY_CIRCLES, 100, 0.1, 7, 0), xr = toy(NB_TOY_XOR, 100, 0.1, 7, 0);
    assert_memory_not_equal(circ.x->data, xr.x->data, 200 * sizeof(nb_real)); /* the kind is part of the stream */
    nb_dataset_free(&circ), nb_dataset_free(&xr);
}

static void test_toy_geometry(void **state)
{
    (void)state;
    nb_dataset c = toy(NB_TOY_CIRCLES, 200, 0, 3, 2);
    for (int i = 0; i < 200; i++) {
        double r = hypot(c.x->data[2 * i], c.x->data[2 * i + 1]);
        assert_float_equal(r, (i % 2 ? 0.5 : 1.0), 1e-5);
    }
    nb_dataset x = toy(NB_TOY_XOR, 200, 0, 3, 2);
    for (int i = 0; i < 200; i++) {
        double p = (double)x.x->data[2 * i] * x.x->data[2 * i + 1];
        assert_true(i % 2 ? p <= 0 : p >= 0);
    }
    nb_dataset s = toy(NB_TOY_SPIRAL, 300, 0, 3, 3);
    for (int i = 0; i < 300; i++) {
        assert_true(s.y->data[i] == (nb_real)(i % 3));
        double r = hypot(s.x->data[2 * i], s.x->data[2 * i + 1]);
        assert_true(r >= 0.05 - 1e-6 && r <= 1 + 1e-6);
    }
    nb_dataset g = toy(NB_TOY_GAUSSIANS, 4000, 0.1, 3, 4);
    double mean[4][2] = {{0}};
    for (int i = 0; i < 4000; i++)
        mean[i % 4][0] += g.x->data[2 * i] / 1000, mean[i % 4][1] += g.x->data[2 * i + 1] / 1000;
    for (int k = 0; k < 4; k++) {
        assert_float_equal(mean[k][0], cos(6.283185307179586 * k / 4), 0.05);
        assert_float_equal(mean[k][1], sin(6.283185307179586 * k / 4), 0.05);
    }
    nb_dataset_free(&c), nb_dataset_free(&x), nb_dataset_free(&s), nb_dataset_free(&g);
    nb_toy_kind k;
    assert_int_equal(nb_toy_parse("spiral", &k), 1);
    assert_int_equal(k, NB_TOY_SPIRAL);
    assert_int_equal(nb_toy_parse("spirals", &k), 0);
    assert_string_equal(nb_toy_name(NB_TOY_GAUSSIANS), "gaussians");
    assert_null(nb_toy_name((nb_toy_kind)9));
}

static void expect_toy_error(nb_toy_kind kind, int64_t count, double noise, int classes, const char *want)
{
    nb_toy_opts o = {kind, count, noise, 1, classes};
    nb_dataset d = {(nb_tensor *)1, (nb_tensor *)1};
    assert_int_equal(nb_dataset_toy(&o, &d), NB_ERR_ARG);
    assert_null(d.x);
    assert_null(d.y);
    assert_has(nb_last_error(), want);
}

/* Rows T1-T3. */
static void test_toy_refusals(void **state)
{
    (void)state;
    expect_toy_error(NB_TOY_CIRCLES, 0, 0.1, 2, "toy data circles: count must be 1..16777216, got 0");
    expect_toy_error(NB_TOY_SPIRAL, 10, NAN, 2, "toy data spiral: noise must be in [0, 10], got nan");
    expect_toy_error(NB_TOY_SPIRAL, 10, -1, 2, "toy data spiral: noise must be in [0, 10], got -1");
    expect_toy_error(NB_TOY_XOR, 10, 0.1, 3, "toy data xor has 2 classes, not 3 (spiral and gaussians take 2..16)");
    expect_toy_error(NB_TOY_GAUSSIANS, 10, 0.1, 17, "toy data gaussians: classes must be 2..16, got 17");
    assert_int_equal(nb_dataset_toy(NULL, &(nb_dataset){0}), NB_ERR_ARG);
    assert_int_equal(nb_dataset_toy(&(nb_toy_opts){NB_TOY_XOR, 1, 0, 1, 2}, NULL), NB_ERR_ARG);
}

/* ------------------------------------------------------------- diagnostics */

/* A model on input 3 with its loss, one forward and backward pass over a
 * batch of n examples (inputs in [-1, 1], labels [i % 3 == 0]); layer 0's bias set
 * to bias. */
static nb_model *model_after_backward(const char *spec, const int64_t *in, int in_rank, int n, double bias)
{
    nb_model *m;
    assert_int_equal(nb_model_from_spec(spec, in_rank, in, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 5), NB_OK);
    nb_node *b = nb_model_find_param(m, "0.bias"), *target, *loss;
    for (int64_t i = 0; i < nb_value(b)->size; i++)
        nb_value(b)->data[i] = (nb_real)bias;
    assert_int_equal(nb_model_loss(m, NB_LOSS_CCE, &target, &loss), NB_OK);
    assert_int_equal(nb_model_set_batch(m, n), NB_OK);
    nb_tensor *x = nb_value(nb_model_input(m));
    for (int64_t i = 0; i < x->size; i++)
        x->data[i] = (nb_real)(((i * 37) % 21) / 10.0 - 1);
    for (int i = 0; i < n; i++)
        nb_value(target)->data[i] = (nb_real)(i % 3 == 0); /* unbalanced: biases learn */
    nb_graph_set_training(nb_model_graph(m), 1, 1);
    assert_int_equal(nb_forward(nb_model_graph(m)), NB_OK);
    assert_int_equal(nb_backward(loss), NB_OK);
    return m;
}

static double grad_norm_of(nb_model *m, const char *a, const char *b)
{
    double s = 0;
    const char *names[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        const nb_tensor *g = nb_grad(nb_model_find_param(m, names[k]));
        for (int64_t i = 0; g && i < g->size; i++)
            s += (double)g->data[i] * g->data[i];
    }
    return sqrt(s);
}

static void test_diagnose_constructed(void **state)
{
    (void)state;
    const int64_t in3[1] = {3};
    nb_layer_diag d[4];
    /* all-negative bias, small weights: every relu unit is 0 on the batch */
    nb_model *m = model_after_backward("dense 4 relu; dense 2", in3, 1, 8, -100);
    assert_int_equal(nb_model_diagnose(m, d, 4), NB_OK);
    assert_float_equal(d[0].dead_fraction, 1.0, 0);
    assert_float_equal(d[0].grad_norm, 0.0, 0); /* no gradient passes a dead relu */
    assert_int_equal(d[0].params, 16);
    assert_int_equal(d[0].units, 4);
    assert_true(isnan(d[0].saturated_fraction) && isnan(d[0].update_ratio));
    assert_true(isnan(d[1].dead_fraction)); /* no relu */
    assert_true(d[1].grad_norm > 0);        /* its bias still learns */
    assert_float_equal(d[1].grad_norm, grad_norm_of(m, "1.kernel", "1.bias"), 1e-6);
    nb_model_free(m);
    m = model_after_backward("dense 4 relu; dense 2", in3, 1, 8, 100); /* all alive */
    assert_int_equal(nb_model_diagnose(m, d, 4), NB_OK);
    assert_float_equal(d[0].dead_fraction, 0.0, 0);
    assert_true(d[0].grad_norm > 0);
    assert_float_equal(d[0].grad_norm, grad_norm_of(m, "0.kernel", "0.bias"), 1e-6);
    nb_model_free(m);
    /* tanh and sigmoid pushed far out: saturated everywhere; at 0: nowhere */
    const char *specs[2] = {"dense 4 tanh; dense 2", "dense 4 sigmoid; dense 2"};
    for (int k = 0; k < 2; k++) {
        m = model_after_backward(specs[k], in3, 1, 8, k ? -100 : 100);
        assert_int_equal(nb_model_diagnose(m, d, 4), NB_OK);
        assert_float_equal(d[0].saturated_fraction, 1.0, 0);
        assert_true(isnan(d[0].dead_fraction));
        nb_model_free(m);
        m = model_after_backward(specs[k], in3, 1, 8, 0);
        assert_int_equal(nb_model_diagnose(m, d, 4), NB_OK);
        assert_true(d[0].saturated_fraction < 0.5);
        nb_model_free(m);
    }
    /* a NaN input: NaN gradients show as NaN, NaN outputs are no dead units */
    m = model_after_backward("dense 4 relu; dense 2", in3, 1, 8, -100);
    nb_value(nb_model_input(m))->data[4] = NAN;
    nb_node *loss;
    assert_int_equal(nb_model_loss(m, NB_LOSS_CCE, NULL, &loss), NB_OK);
    assert_int_equal(nb_forward(nb_model_graph(m)), NB_OK);
    assert_int_equal(nb_backward(loss), NB_OK);
    assert_int_equal(nb_model_diagnose(m, d, 4), NB_OK);
    assert_true(isnan(d[0].grad_norm));
    assert_float_equal(d[0].dead_fraction, 0.0, 0);
    nb_model_free(m);
    /* a convolution fused with its max pool: read through the pooled output */
    const int64_t img[3] = {6, 6, 1};
    nb_layer_diag e[4];
    m = model_after_backward("conv2d 3 3 relu; maxpool 2; flatten; dense 2", img, 3, 4, -100);
    assert_int_equal(nb_model_diagnose(m, e, 4), NB_OK);
    assert_float_equal(e[0].dead_fraction, 1.0, 0);
    assert_int_equal(e[0].units, 3);
    nb_model_free(m);
    m = model_after_backward("conv2d 3 3 relu; maxpool 2; flatten; dense 2", img, 3, 4, 100);
    assert_int_equal(nb_model_diagnose(m, e, 4), NB_OK);
    assert_float_equal(e[0].dead_fraction, 0.0, 0);
    nb_model_free(m);
}

/* Row T4: before any backward pass, NULL, too little room. */
static void test_diagnose_refusals(void **state)
{
    (void)state;
    const int64_t in3[1] = {3};
    nb_model *m;
    nb_layer_diag d[2];
    assert_int_equal(nb_model_from_spec("dense 4 relu; dense 2", 1, in3, &m), NB_OK);
    assert_int_equal(nb_model_diagnose(m, d, 2), NB_ERR_ARG);
    assert_has(nb_last_error(), "diagnose: run nb_backward of the model's loss first (no completed backward pass)");
    assert_int_equal(nb_model_diagnose(m, d, 1), NB_ERR_ARG);
    assert_has(nb_last_error(), "diagnose: room for 1 layers, the model has 2");
    nb_model_free(m);
    m = model_after_backward("dense 4 relu; dense 2", in3, 1, 8, 0);
    assert_int_equal(nb_model_diagnose(m, d, 2), NB_OK);
    assert_int_equal(nb_model_set_batch(m, 16), NB_OK); /* after a reshape, before a pass */
    assert_int_equal(nb_model_diagnose(m, d, 2), NB_ERR_ARG);
    assert_has(nb_last_error(), "diagnose: the batch size changed since the last pass: run nb_forward and nb_backward "
                                "again");
    assert_int_equal(nb_model_diagnose(NULL, d, 2), NB_ERR_ARG);
    assert_int_equal(nb_model_diagnose(m, NULL, 2), NB_ERR_ARG);
    nb_model_free(m);
}

/* ------------------------------------------------------- training (library) */

typedef struct {
    int epochs;
    int improved[32];
    int stopping_at;
    nb_layer_diag d0, d1;
    int ndiag;
} seen;

static int record_epoch(const nb_epoch_stats *s, nb_optim *o, void *user)
{
    (void)o;
    seen *r = user;
    if (r->epochs < 32) r->improved[r->epochs] = s->improved;
    r->epochs++;
    if (s->stopping) r->stopping_at = s->epoch;
    if (s->diag) r->d0 = s->diag[0], r->d1 = s->diag[1], r->ndiag = s->ndiag;
    return 0;
}

/* A model and optimiser on 2-D points; nb_train with opts. */
static nb_status train_toy(nb_train_opts *to, seen *r, const nb_dataset *tr, const nb_dataset *val)
{
    const int64_t in2[1] = {2};
    nb_model *m;
    nb_optim *o;
    assert_int_equal(nb_model_from_spec("dense 8 relu; dense 2", 1, in2, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 3), NB_OK);
    nb_optim_opts oo = {.kind = NB_OPT_ADAM, .lr = 0.01};
    assert_int_equal(nb_optim_new(m, &oo, &o), NB_OK);
    *r = (seen){.stopping_at = -1};
    to->on_epoch = record_epoch, to->user = r;
    nb_status s = nb_train(m, o, tr, val, to);
    nb_optim_free(o);
    nb_model_free(m);
    return s;
}

static void test_early_stopping_library(void **state)
{
    (void)state;
    nb_dataset tr = toy(NB_TOY_GAUSSIANS, 200, 0.05, 1, 2), val = toy(NB_TOY_GAUSSIANS, 100, 0.05, 2, 2);
    seen r;
    /* min_delta 1e9: nothing after epoch 1 improves, so it stops after
     * epoch 1 + patience (0-based: epoch 3 with patience 3) */
    nb_early_stopping es = {.patience = 3, .min_delta = 1e9, .best = NAN, .best_epoch = -1};
    nb_train_opts to = {.epochs = 20, .batch = 32, .seed = 1, .shuffle = 1, .early = &es};
    assert_int_equal(train_toy(&to, &r, &tr, &val), NB_OK);
    assert_int_equal(r.epochs, 4);
    assert_int_equal(r.stopping_at, 3);
    assert_int_equal(es.stopped_epoch, 3);
    assert_int_equal(es.best_epoch, 0);
    assert_int_equal(es.wait, 3);
    assert_int_equal(r.improved[0], 1);
    assert_int_equal(r.improved[1] + r.improved[2] + r.improved[3], 0);
    /* labels of the validation points flipped: the better the model learns,
     * the worse its validation loss, from the first epoch on */
    for (int i = 0; i < 100; i++)
        val.y->data[i] = 1 - val.y->data[i];
    es = (nb_early_stopping){.patience = 2, .best = NAN, .best_epoch = -1};
    assert_int_equal(train_toy(&to, &r, &tr, &val), NB_OK);
    assert_int_equal(r.epochs, 3);
    assert_int_equal(es.best_epoch, 0);
    assert_int_equal(es.stopped_epoch, 2);
    /* a resumed run continues the state: wait 1 of patience 2 already */
    es = (nb_early_stopping){.patience = 2, .min_delta = 1e9, .best = 0.1, .best_epoch = 1, .wait = 1};
    to.start_epoch = 2;
    assert_int_equal(train_toy(&to, &r, &tr, &val), NB_OK);
    assert_int_equal(r.epochs, 1);
    assert_int_equal(es.stopped_epoch, 2);
    assert_int_equal(es.best_epoch, 1);
    /* the accuracy on the true labels, patience 6 of 6 epochs: all run */
    for (int i = 0; i < 100; i++)
        val.y->data[i] = 1 - val.y->data[i];
    es = (nb_early_stopping){.patience = 6, .monitor = NB_MONITOR_VAL_ACCURACY, .best = NAN, .best_epoch = -1};
    to.start_epoch = 0, to.epochs = 6;
    assert_int_equal(train_toy(&to, &r, &tr, &val), NB_OK);
    assert_int_equal(r.epochs, 6);
    assert_int_equal(es.stopped_epoch, -1);
    assert_true(es.best > 0.9);
    nb_dataset_free(&tr), nb_dataset_free(&val);
}

/* Rows T5-T7. */
static void test_early_stopping_refusals(void **state)
{
    (void)state;
    nb_dataset tr = toy(NB_TOY_XOR, 64, 0.05, 1, 2), val = toy(NB_TOY_XOR, 32, 0.05, 2, 2);
    seen r;
    nb_early_stopping es = {.patience = 2, .best = NAN, .best_epoch = -1};
    nb_train_opts to = {.epochs = 2, .batch = 16, .seed = 1, .early = &es};
    assert_int_equal(train_toy(&to, &r, &tr, NULL), NB_ERR_ARG);
    assert_has(nb_last_error(), "train: early stopping watches the validation loss: give validation data (nabla "
                                "train: --val-split F > 0 of at least 1/F examples)");
    es.patience = 0;
    assert_int_equal(train_toy(&to, &r, &tr, &val), NB_ERR_ARG);
    assert_has(nb_last_error(), "train: patience must be >= 1 epoch, got 0");
    es.patience = 1, es.min_delta = -1;
    assert_int_equal(train_toy(&to, &r, &tr, &val), NB_ERR_ARG);
    assert_has(nb_last_error(), "train: min_delta must be >= 0, got -1");
    es.min_delta = 0, es.monitor = NB_MONITOR_VAL_ACCURACY, to.loss = NB_LOSS_MSE;
    assert_int_equal(train_toy(&to, &r, &tr, &val), NB_ERR_ARG);
    assert_has(nb_last_error(), "train: early stopping on the validation accuracy needs class labels (cce or bce); "
                                "with mse watch the validation loss");
    assert_int_equal(r.epochs, 0);
    to = (nb_train_opts){.epochs = 2, .batch = 16, .seed = 1, .diagnose = 1, .reproducible = 1};
    assert_int_equal(train_toy(&to, &r, &tr, &val), NB_ERR_ARG);
    assert_has(nb_last_error(), "train: diagnostics run on the default path, not with reproducible or data-parallel "
                                "training");
    nb_dataset_free(&tr), nb_dataset_free(&val);
}

static void test_train_diagnose(void **state)
{
    (void)state;
    nb_dataset tr = toy(NB_TOY_CIRCLES, 100, 0.05, 1, 2); /* 4 batches: the last holds 4 examples */
    seen r;
    nb_train_opts to = {.epochs = 2, .batch = 32, .seed = 1, .shuffle = 1, .diagnose = 1};
    assert_int_equal(train_toy(&to, &r, &tr, NULL), NB_OK);
    assert_int_equal(r.epochs, 2);
    assert_int_equal(r.ndiag, 2);
    assert_int_equal(r.d0.layer, 0);
    assert_int_equal(r.d0.params, 24);
    assert_int_equal(r.d1.params, 18);
    assert_true(r.d0.grad_norm > 0 && isfinite(r.d0.grad_norm));
    /* adam's first steps move each weight by about lr = 0.01 */
    assert_true(r.d0.update_ratio > 1e-4 && r.d0.update_ratio < 0.5);
    assert_true(r.d1.update_ratio > 1e-4 && r.d1.update_ratio < 0.5);
    assert_true(r.d0.dead_fraction >= 0 && r.d0.dead_fraction <= 1);
    assert_true(isnan(r.d1.dead_fraction));
    nb_dataset_free(&tr);
}

static void test_class_names_in_model_file(void **state)
{
    (void)state;
    const int64_t in2[1] = {2};
    nb_model *m, *back;
    assert_int_equal(nb_model_from_spec("dense 3", 1, in2, &m), NB_OK);
    assert_null(nb_model_class_names(m));
    assert_int_equal(nb_model_set_class_names(m, "setosa\nversicolor\nvirginica"), NB_OK);
    assert_int_equal(nb_model_set_class_names(m, "a\tb"), NB_ERR_ARG); /* row T8 */
    assert_has(nb_last_error(), "class names: control character 0x09 in the names");
    assert_string_equal(nb_model_class_names(m), "setosa\nversicolor\nvirginica"); /* unchanged */
    assert_int_equal(nb_model_save(m, path_in("named.safetensors")), NB_OK);
    assert_int_equal(nb_model_load(path_in("named.safetensors"), &back), NB_OK);
    assert_string_equal(nb_model_class_names(back), "setosa\nversicolor\nvirginica");
    nb_safetensors *st;
    assert_int_equal(nb_safetensors_read(path_in("named.safetensors"), &st), NB_OK);
    assert_string_equal(nb_safetensors_meta(st, "nabla.classes"), "setosa\nversicolor\nvirginica");
    assert_string_equal(nb_safetensors_meta(st, "nabla.format"), "1"); /* the same format: older nabla reads it */
    nb_safetensors_free(st);
    nb_model_free(back);
    assert_int_equal(nb_model_set_class_names(m, NULL), NB_OK);
    assert_int_equal(nb_model_save(m, path_in("named.safetensors")), NB_OK);
    assert_int_equal(nb_model_load(path_in("named.safetensors"), &back), NB_OK);
    assert_null(nb_model_class_names(back));
    nb_model_free(back);
    nb_model_free(m);
}

/* ------------------------------------------------------------- the CLI */

static int same_weights(const char *a, const char *b)
{
    nb_model *x, *y;
    assert_int_equal(nb_model_load(a, &x), NB_OK);
    assert_int_equal(nb_model_load(b, &y), NB_OK);
    int same = nb_model_param_count(x) == nb_model_param_count(y);
    for (int i = 0; same && i < nb_model_param_count(x); i++) {
        const nb_tensor *u = nb_value(nb_model_param(x, i)), *v = nb_value(nb_model_param(y, i));
        same = u->size == v->size && !memcmp(u->data, v->data, (size_t)u->size * sizeof(nb_real));
    }
    nb_model_free(x), nb_model_free(y);
    return same;
}

#define TOY_TRAIN "train", "--data", "gaussians", "--count", "200", "--model", "dense 8 relu; dense 2", "--batch", "32"

static void test_cli_patience_keep_best(void **state)
{
    (void)state;
    char *out;
    const char *one = path_in("one.safetensors"), *kept = path_in("kept.safetensors");
    assert_int_equal(CLI(&out, TOY_TRAIN, "--epochs", "1", "--out", one), 0);
    free(out);
    /* nothing improves by 1e9: the best is epoch 1, training stops after 3 */
    assert_int_equal(
        CLI(&out, TOY_TRAIN, "--epochs", "10", "--patience", "2", "--min-delta", "1e9", "--keep-best", "--out", kept),
        0);
    assert_has(out, "epoch 1/10: loss ");
    assert_has(out, "(best)\n");
    assert_has(out, "early stopping: val_loss has not improved for 2 epochs (best ");
    assert_has(out, " at epoch 1); stopping after epoch 3 of 10\n");
    assert_has(out, "kept the best weights: epoch 1 (val_loss ");
    assert_has(out, "); the last epoch run was 3\n");
    assert_has(out, "test: loss ");
    assert_null(strstr(out, "epoch 4/10"));
    free(out);
    assert_true(same_weights(one, kept)); /* epoch 1's weights, bit for bit */
    nb_safetensors *st;
    assert_int_equal(nb_safetensors_read(kept, &st), NB_OK);
    assert_string_equal(nb_safetensors_meta(st, "nabla.best_epoch"), "0");
    assert_string_equal(nb_safetensors_meta(st, "nabla.wait"), "2");
    assert_string_equal(nb_safetensors_meta(st, "nabla.epoch"), "3");
    assert_non_null(nb_safetensors_get(st, "optim.best.0.kernel"));
    nb_safetensors_free(st);
    /* resumed: the state and the best weights come from the checkpoint */
    const char *res = path_in("res.safetensors");
    assert_int_equal(CLI(&out, TOY_TRAIN, "--epochs", "2", "--min-delta", "1e9", "--keep-best", "--out", res), 0);
    assert_has(out, "kept the best weights: epoch 1");
    free(out);
    assert_int_equal(
        CLI(&out, TOY_TRAIN, "--epochs", "4", "--min-delta", "1e9", "--keep-best", "--resume", "--out", res), 0);
    assert_has(out, "resuming after epoch 2");
    assert_has(out, "kept the best weights: epoch 1 (val_loss ");
    assert_has(out, "); the last epoch run was 4\n");
    free(out);
    assert_true(same_weights(one, res));
}

/* An interrupted --keep-best run (a checkpoint after epoch 2 whose epochs
 * all improved, so its weights are the last epoch's too) resumed to epoch
 * 4 writes the uninterrupted run's file byte for byte: the state and the
 * best weights travel in the checkpoint. */
static void test_cli_keep_best_resume_bit_identical(void **state)
{
    (void)state;
    char *out;
    const char *a = path_in("a4.safetensors"), *b = path_in("b4.safetensors");
    assert_int_equal(CLI(&out, TOY_TRAIN, "--epochs", "4", "--keep-best", "--no-test", "--out", a), 0);
    assert_has(out, "kept the best weights: epoch 4 (val_loss "); /* every epoch improved */
    free(out);
    assert_int_equal(CLI(&out, TOY_TRAIN, "--epochs", "2", "--keep-best", "--no-test", "--out", b), 0);
    free(out);
    assert_int_equal(CLI(&out, TOY_TRAIN, "--epochs", "4", "--keep-best", "--no-test", "--resume", "--out", b), 0);
    free(out);
    size_t na, nb;
    char *fa = tu_read(a, &na), *fb = tu_read(b, &nb);
    assert_non_null(fa);
    assert_non_null(fb);
    assert_int_equal(na, nb);
    assert_memory_equal(fa, fb, na);
    free(fa), free(fb);
}

/* Resuming a checkpoint made without --keep-best, or watching another value. */
static void test_cli_resume_changes_early_stopping(void **state)
{
    (void)state;
    char *out;
    const char *p = path_in("pat.safetensors");
    assert_int_equal(
        CLI(&out, TOY_TRAIN, "--epochs", "2", "--patience", "5", "--min-delta", "1e9", "--no-test", "--out", p), 0);
    free(out);
    assert_int_equal(
        CLI(&out, TOY_TRAIN, "--epochs", "3", "--keep-best", "--min-delta", "1e9", "--no-test", "--resume", "--out", p),
        0);
    assert_has(out, "--keep-best: the best epoch (1) was before the checkpoint kept weights (it was made without "
                    "--keep-best); --out holds the last epoch's weights");
    free(out);
    assert_int_equal(CLI(&out, TOY_TRAIN, "--epochs", "4", "--patience", "1", "--monitor", "val_accuracy", "--no-test",
                         "--resume", "--out", p),
                     0);
    assert_has(out,
               "the checkpoint watched val_loss, this run --monitor val_accuracy: the best epoch is sought afresh");
    assert_has(out, "epoch 4/4: ");
    assert_has(out, "(best)"); /* the first epoch of the fresh search is the best so far */
    free(out);
}

/* Rows T9-T11. */
static void test_cli_training_refusals(void **state)
{
    (void)state;
    EXPECT_CLI(2, "nabla train: --patience needs validation data to watch: pass --val-split F with F > 0 (e.g. 0.1)",
               TOY_TRAIN, "--patience", "3", "--val-split", "0");
    EXPECT_CLI(2, "nabla train: --keep-best needs validation data to watch: pass --val-split F with F > 0 (e.g. 0.1)",
               TOY_TRAIN, "--keep-best", "--val-split", "0");
    EXPECT_CLI(1,
               "nabla train: train: early stopping watches the validation loss: give validation data (nabla train: "
               "--val-split F > 0 of at least 1/F examples)",
               "train", "--data", "xor", "--count", "5", "--model", "dense 2", "--patience", "2", "--out",
               path_in("five.safetensors"));
    assert_int_equal(access(path_in("five.safetensors"), F_OK), -1);
    EXPECT_CLI(2, "nabla train: --diagnose measures the default path: leave out --reproducible", TOY_TRAIN,
               "--diagnose", "--reproducible");
    EXPECT_CLI(2,
               "nabla train: --shard K cuts the batch for --reproducible: add --reproducible (without it the batch is "
               "not cut into shards)",
               TOY_TRAIN, "--shard", "4");
    EXPECT_CLI(2, "nabla train: unknown --monitor 'val_acc': did you mean val_accuracy?", TOY_TRAIN, "--patience", "1",
               "--monitor", "val_acc");
    EXPECT_CLI(2,
               "nabla train: --count is the number of points of a toy data set (circles, xor, spiral, gaussians), not "
               "of 'fashion-mnist': use --limit N for the first N examples",
               "train", "--data", "fashion-mnist", "--count", "10", "--model", "dense 2");
    EXPECT_CLI(1, "nabla train: loading the training data: toy data xor has 2 classes, not 3", "train", "--data", "xor",
               "--toy-classes", "3", "--model", "dense 2");
    assert_int_equal(access(path_in("model.safetensors"), F_OK), -1);
}

static void test_cli_diagnose(void **state)
{
    (void)state;
    char *out;
    assert_int_equal(CLI(&out, "train", "--data", "circles", "--count", "200", "--model",
                         "dense 8 relu; dense 8 tanh; dense 2", "--epochs", "2", "--diagnose", "--no-test", "--out",
                         path_in("diag.safetensors")),
                     0);
    assert_has(out, "  layer                             params  grad norm update/weight dead relu saturated\n");
    assert_has(out, "  0     dense 8 relu                    24 ");
    assert_has(out, "  1     dense 8 tanh                    72 ");
    assert_has(out, "  2     dense 2                         18 ");
    /* the tanh layer's row: no dead column, a saturated percentage */
    const char *row = strstr(out, "  1     dense 8 tanh");
    assert_non_null(row);
    char line[200];
    snprintf(line, sizeof line, "%.*s", (int)strcspn(row, "\n"), row);
    assert_non_null(strstr(line, " - "));
    assert_non_null(strstr(line, "%"));
    free(out);
}

static void test_cli_toy_eval_predict(void **state)
{
    (void)state;
    char *out;
    const char *m = path_in("xor.safetensors");
    assert_int_equal(CLI(&out, "train", "--data", "xor", "--model", "dense 16 tanh; dense 2", "--epochs", "30", "--lr",
                         "0.01", "--batch", "32", "--count", "400", "--out", m),
                     0);
    assert_has(out, "training dense 16 tanh; dense 2 on xor: 360 examples (40 validation)");
    assert_has(out, "test: loss ");
    assert_has(out, "(400 images)"); /* --count draws the test split too */
    free(out);
    assert_int_equal(CLI(&out, "eval", "--model", m, "--data", "xor", "--count", "300"), 0);
    assert_has(out, "data xor (test split): 300 examples");
    double acc = 0;
    const char *p = strstr(out, "accuracy ");
    assert_non_null(p);
    assert_int_equal(sscanf(p, "accuracy %lf", &acc), 1);
    assert_true(acc > 0.75); /* xor is learnt: a linear model would reach about 0.5 */
    free(out);
    assert_int_equal(CLI(&out, "predict", "--model", m, "--data", "xor", "--start", "2", "--count", "3"), 0);
    assert_has(out, "the test split of 'xor' examples 2..4: 3 examples, output shape (3, 2)");
    free(out);
}

static int count_of(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void test_cli_boundary(void **state)
{
    (void)state;
    char *out;
    const char *m = path_in("circ.safetensors"), *png = path_in("b.png"), *svg = path_in("b.svg");
    assert_int_equal(CLI(&out, "train", "--data", "circles", "--model", "dense 8 tanh; dense 2", "--epochs", "20",
                         "--lr", "0.01", "--batch", "32", "--count", "200", "--no-test", "--out", m),
                     0);
    free(out);
    assert_int_equal(
        CLI(&out, "boundary", "--model", m, "--data", "circles", "--count", "50", "--size", "96", "-o", png), 0);
    assert_has(out, "wrote ");
    assert_has(out, ": 96 x 96 pixels, x0 in [");
    assert_has(out, "50 points of circles (test split)");
    free(out);
    nb_image *im;
    assert_int_equal(nb_image_read(png, &im), NB_OK);
    assert_int_equal(im->width, 96);
    assert_int_equal(im->height, 96);
    assert_int_equal(im->channels, 3);
    int coloured = 0; /* the heatmap is not blank */
    for (int i = 0; i < 96 * 96; i++)
        coloured += im->pixels[3 * i] != im->pixels[3 * i + 2];
    assert_true(coloured > 96 * 96 / 4);
    nb_image_free(im);
    assert_int_equal(CLI(&out, "boundary", "--model", m, "--data", "circles", "--count", "50", "-o", svg), 0);
    free(out);
    char *text = tu_read(svg, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"400\" height=\"400\""));
    assert_int_equal(count_of(text, "<circle "), 50);
    assert_int_equal(count_of(text, "<rect "), 80 * 80);
    assert_non_null(strstr(text, "</svg>\n"));
    free(text);
}

/* One sigmoid output (bce) and three classes (spiral): both colourings. */
static void test_cli_boundary_bce_and_k_classes(void **state)
{
    (void)state;
    char *out;
    const char *b = path_in("bce.safetensors"), *k = path_in("k3.safetensors");
    assert_int_equal(CLI(&out, "train", "--data", "circles", "--model", "dense 4 tanh; dense 1 sigmoid", "--loss",
                         "bce", "--epochs", "2", "--count", "100", "--no-test", "--out", b),
                     0);
    free(out);
    assert_int_equal(
        CLI(&out, "boundary", "--model", b, "--data", "circles", "--count", "20", "-o", path_in("bce.svg")), 0);
    free(out);
    char *text = tu_read(path_in("bce.svg"), NULL);
    assert_int_equal(count_of(text, "<circle "), 20);
    free(text);
    assert_int_equal(CLI(&out, "train", "--data", "spiral", "--toy-classes", "3", "--model", "dense 8 tanh; dense 3",
                         "--epochs", "2", "--count", "90", "--no-test", "--out", k),
                     0);
    free(out);
    assert_int_equal(CLI(&out, "boundary", "--model", k, "--data", "spiral", "--toy-classes", "3", "--size", "48", "-o",
                         path_in("k3.png")),
                     0);
    assert_has(out, "500 points of spiral (test split)");
    free(out);
    nb_image *im;
    assert_int_equal(nb_image_read(path_in("k3.png"), &im), NB_OK);
    assert_int_equal(im->width, 48);
    assert_int_equal(im->height, 48);
    nb_image_free(im);
}

/* Points with NaN, 1e30 and a label 1e30 from a CSV: drawn where finite,
 * skipped where not, the picture still the size asked for. */
static void test_cli_boundary_bad_points(void **state)
{
    (void)state;
    char *out;
    const char *m = path_in("circ2.safetensors"), *csv = path_in("odd.csv"), *png = path_in("odd.png");
    assert_int_equal(CLI(&out, "train", "--data", "circles", "--model", "dense 4 tanh; dense 2", "--epochs", "1",
                         "--count", "64", "--no-test", "--out", m),
                     0);
    free(out);
    assert_int_equal(tu_write(csv, "x,y,label\n0,0,0\n1e30,0,1\nnan,1,0\n1,1,1e30\n-1,inf,1\n", 51), 0);
    assert_int_equal(CLI(&out, "boundary", "--model", m, "--data", csv, "--size", "64", "-o", png), 0);
    assert_has(out, "5 points of ");
    free(out);
    nb_image *im;
    assert_int_equal(nb_image_read(png, &im), NB_OK);
    assert_int_equal(im->width, 64);
    assert_int_equal(im->height, 64);
    nb_image_free(im);
    assert_int_equal(CLI(&out, "boundary", "--model", m, "--data", csv, "-o", path_in("odd.svg")), 0);
    free(out);
    char *text = tu_read(path_in("odd.svg"), NULL);
    assert_int_equal(count_of(text, "<circle "), 3); /* nan and inf skipped; 1e30 at the edge */
    assert_null(strstr(text, "nan"));
    free(text);
}

/* Rows T12-T13. */
static void test_cli_boundary_refusals(void **state)
{
    (void)state;
    const char *img = path_in("img.safetensors");
    const int64_t in[3] = {4, 4, 1};
    nb_model *m;
    assert_int_equal(nb_model_from_spec("flatten; dense 2", 3, in, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1), NB_OK);
    assert_int_equal(nb_model_save(m, img), NB_OK);
    nb_model_free(m);
    EXPECT_CLI(1,
               "nabla boundary: the model takes inputs of shape (4, 4, 1); boundary draws models of 2-D points "
               "(input 2), e.g. trained with --data circles",
               "boundary", "--model", img, "--data", "circles", "-o", path_in("no.png"));
    assert_int_equal(access(path_in("no.png"), F_OK), -1);
    EXPECT_CLI(2, "nabla boundary: -o names the picture: a file ending in .png or .svg, got 'b.jpg'", "boundary",
               "--model", img, "--data", "circles", "-o", "b.jpg");
}

static void put_text(const char *name, const char *text)
{
    assert_int_equal(tu_write(path_in(name), text, strlen(text)), 0);
}

/* A CSV of 2 inputs and a species name, 3 classes, 60 rows. */
static void write_species_csv(const char *name, int header)
{
    static const char *const sp[3] = {"virginica", "setosa", "versicolor"};
    char *t = malloc(1 << 16);
    size_t u = (size_t)snprintf(t, 1 << 16, "%s", header ? "x,y,species\n" : "");
    for (int i = 0; i < 60; i++) {
        const int k = i % 3;
        u += (size_t)snprintf(t + u, (1 << 16) - u, "%.3f,%.3f,%s\n", (k - 1) * 2 + 0.01 * (i % 7), 0.02 * (i % 5),
                              sp[k]);
    }
    put_text(name, t);
    free(t);
}

static void test_cli_csv_string_labels(void **state)
{
    (void)state;
    char *out;
    write_species_csv("species.csv", 1);
    const char *csv = path_in("species.csv"), *m = path_in("species.safetensors");
    assert_int_equal(CLI(&out, "train", "--data", csv, "--model", "dense 3", "--epochs", "40", "--lr", "0.05",
                         "--batch", "16", "--out", m),
                     0);
    char want[1400];
    tu_fmt(
        want, sizeof want,
        "nabla: '%s': the labels are names: 3 classes, numbered in sorted order: 0 setosa, 1 versicolor, 2 virginica\n",
        csv);
    assert_has(out, want);
    free(out);
    nb_safetensors *st;
    assert_int_equal(nb_safetensors_read(m, &st), NB_OK);
    assert_string_equal(nb_safetensors_meta(st, "nabla.classes"), "setosa\nversicolor\nvirginica");
    nb_safetensors_free(st);
    assert_int_equal(CLI(&out, "predict", "--model", m, "--data", csv, "--count", "3", "--top", "1"), 0);
    assert_has(out, "(label: virginica"); /* row 0's true class, by name */
    assert_has(out, "(label: setosa");
    free(out);
    assert_int_equal(CLI(&out, "eval", "--model", m, "--data", csv), 0);
    assert_has(out, "0 setosa");
    assert_has(out, "2 virginica");
    free(out);
    /* without a header: the first line's text field stands where the next
     * line's does, so it is data */
    write_species_csv("nohdr.csv", 0);
    assert_int_equal(CLI(&out, "eval", "--model", m, "--data", path_in("nohdr.csv")), 0);
    assert_has(out, "no header line (its text fields stand where the next line's do: labels): it is data");
    assert_has(out, "the labels are names: the model's 3 classes (from its file): 0 setosa, 1 versicolor, 2 virginica");
    assert_has(out, "data ");
    assert_has(out, ": 60 examples");
    free(out);
}

/* Row T14: a name the model does not know; an empty label. */
static void test_cli_csv_label_refusals(void **state)
{
    (void)state;
    write_species_csv("species2.csv", 1);
    const char *m = path_in("species2.safetensors");
    char *out;
    assert_int_equal(
        CLI(&out, "train", "--data", path_in("species2.csv"), "--model", "dense 3", "--epochs", "1", "--out", m), 0);
    free(out);
    put_text("cow.csv", "x,y,species\n0,0,setosa\n1,1,cow\n");
    char want[1400];
    tu_fmt(want, sizeof want,
           "nabla eval: loading the data: '%s': line 3: label 'cow' is not one of the model's 3 classes",
           path_in("cow.csv"));
    EXPECT_CLI(1, want, "eval", "--model", m, "--data", path_in("cow.csv"));
    put_text("empty.csv", "x,y,species\n0,0,setosa\n1,1,\n");
    tu_fmt(want, sizeof want,
           "nabla train: loading the training data: '%s': line 3: the label is empty (the labels are names here)",
           path_in("empty.csv"));
    EXPECT_CLI(1, want, "train", "--data", path_in("empty.csv"), "--model", "dense 2", "--out",
               path_in("never.safetensors"));
    assert_int_equal(access(path_in("never.safetensors"), F_OK), -1);
}

/* A UTF-8 byte-order mark before a first line of numbers: no header (the
 * mark is no text field), every row kept, and a header name after a mark
 * found by --label-col. */
static void test_cli_csv_bom(void **state)
{
    (void)state;
    char *out;
    put_text("bom.csv", "\xEF\xBB\xBF"
                        "1,2,0\n3,4,1\n5,6,0\n7,8,1\n");
    assert_int_equal(CLI(&out, "train", "--data", path_in("bom.csv"), "--model", "dense 2", "--epochs", "1", "--out",
                         path_in("bom.safetensors")),
                     0);
    assert_has(out, "no header line (the first line is all numbers): it is data");
    assert_has(out, ": 4 examples");
    free(out);
    put_text("bomh.csv", "\xEF\xBB\xBF"
                         "label,x,y\n0,1,2\n1,3,4\n0,5,6\n");
    assert_int_equal(CLI(&out, "train", "--data", path_in("bomh.csv"), "--label-col", "label", "--model", "dense 2",
                         "--epochs", "1", "--out", path_in("bomh.safetensors")),
                     0);
    assert_has(out, ": 3 examples");
    free(out);
}

/* The accuracy after "WORD " in text (eval's "accuracy 0.5000", train's
 * "acc 0.5000"). */
static double number_after(const char *text, const char *word)
{
    const char *p = strstr(text, word);
    assert_non_null(p);
    return strtod(p + strlen(word), NULL);
}

/* Training on from a model file with class names, on a CSV that holds only
 * some of them: the labels are numbered as the model's names (not afresh in
 * the file's sorted order), the model keeps its names, and a name it does
 * not have is refused (row T15). */
static void test_cli_csv_labels_follow_model_file(void **state)
{
    (void)state;
    char *out, want[1400], m[1200], m2[1200]; /* (path_in's buffers are reused) */
    write_species_csv("sp3.csv", 1);
    tu_fmt(m, sizeof m, "%s", path_in("sp3.safetensors"));
    tu_fmt(m2, sizeof m2, "%s", path_in("sp2.safetensors"));
    assert_int_equal(CLI(&out, "train", "--data", path_in("sp3.csv"), "--model", "dense 3", "--epochs", "30", "--lr",
                         "0.05", "--batch", "16", "--out", m),
                     0);
    free(out);
    put_text("sp2.csv", "x,y,species\n0.01,0,versicolor\n2.02,0.02,versicolor\n-1.99,0.04,virginica\n"
                        "0.03,0.06,virginica\n");
    assert_int_equal(CLI(&out, "eval", "--model", m, "--data", path_in("sp2.csv")), 0);
    const double acc = number_after(out, "accuracy ");
    free(out);
    /* the first epoch's accuracy is of the model file's weights before any step */
    assert_int_equal(
        CLI(&out, "train", "--data", path_in("sp2.csv"), "--model", m, "--epochs", "1", "--batch", "16", "--out", m2),
        0);
    assert_true(fabs(number_after(out, " acc ") - acc) < 1e-4);
    assert_has(out, "the labels are numbered as the model's 3 classes (from its file)");
    free(out);
    nb_safetensors *st;
    assert_int_equal(nb_safetensors_read(m2, &st), NB_OK);
    assert_string_equal(nb_safetensors_meta(st, "nabla.classes"), "setosa\nversicolor\nvirginica");
    nb_safetensors_free(st);
    /* --resume of that checkpoint: the same */
    assert_int_equal(CLI(&out, "train", "--data", path_in("sp2.csv"), "--resume", "--epochs", "2", "--out", m2), 0);
    free(out);
    assert_int_equal(nb_safetensors_read(m2, &st), NB_OK);
    assert_string_equal(nb_safetensors_meta(st, "nabla.classes"), "setosa\nversicolor\nvirginica");
    nb_safetensors_free(st);
    put_text("spcow.csv", "x,y,species\n0,0,setosa\n1,1,cow\n");
    tu_fmt(want, sizeof want,
           "nabla train: '%s': label 'cow' is not one of the model's 3 classes (setosa, versicolor, virginica: the "
           "model file names them); train a new model (--model SPEC) for other classes",
           path_in("spcow.csv"));
    EXPECT_CLI(1, want, "train", "--data", path_in("spcow.csv"), "--model", m, "--epochs", "1", "--out",
               path_in("never2.safetensors"));
    assert_int_equal(access(path_in("never2.safetensors"), F_OK), -1);
}

static int setup(void **state)
{
    (void)state;
    tu_mkdtemp(dir, sizeof dir, "train14");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_rf(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_toy_seeded),
        cmocka_unit_test(test_toy_geometry),
        cmocka_unit_test(test_toy_refusals),
        cmocka_unit_test(test_diagnose_constructed),
        cmocka_unit_test(test_diagnose_refusals),
        cmocka_unit_test(test_early_stopping_library),
        cmocka_unit_test(test_early_stopping_refusals),
        cmocka_unit_test(test_train_diagnose),
        cmocka_unit_test(test_class_names_in_model_file),
        cmocka_unit_test(test_cli_patience_keep_best),
        cmocka_unit_test(test_cli_keep_best_resume_bit_identical),
        cmocka_unit_test(test_cli_resume_changes_early_stopping),
        cmocka_unit_test(test_cli_training_refusals),
        cmocka_unit_test(test_cli_diagnose),
        cmocka_unit_test(test_cli_toy_eval_predict),
        cmocka_unit_test(test_cli_boundary),
        cmocka_unit_test(test_cli_boundary_refusals),
        cmocka_unit_test(test_cli_boundary_bad_points),
        cmocka_unit_test(test_cli_boundary_bce_and_k_classes),
        cmocka_unit_test(test_cli_csv_string_labels),
        cmocka_unit_test(test_cli_csv_label_refusals),
        cmocka_unit_test(test_cli_csv_bom),
        cmocka_unit_test(test_cli_csv_labels_follow_model_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
