/* The nn layer: spec grammar, models and their shape errors, initialisers,
 * optimiser formulas, training on real Fashion-MNIST images, model files,
 * resuming and divergence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nabla.h"

#define FASHION "/usr/share/datasets/fashion-mnist"
static const char *KERAS_CNN = "conv2d 32 3 relu; conv2d 64 3 relu; maxpool 2; flatten; dense 128 relu; dense 10";
static const int64_t IMG[3] = {28, 28, 1};

static void test_spec_parse(void **state)
{
    (void)state;
    nb_layer_spec *l;
    int n;
    assert_int_equal(nb_spec_parse("conv2d 32 3 relu stride=2 padding=same # c1\nmaxpool 2; flatten\n"
                                   "dense 128 relu; dropout 0.5; dense 10 softmax",
                                   &l, &n),
                     NB_OK);
    assert_int_equal(n, 6);
    assert_int_equal(l[0].kind, NB_LAYER_CONV2D);
    assert_int_equal(l[0].units, 32);
    assert_int_equal(l[0].size, 3);
    assert_int_equal(l[0].stride, 2);
    assert_int_equal(l[0].padding, NB_PAD_SAME);
    assert_int_equal(l[0].act, NB_ACT_RELU);
    assert_int_equal(l[1].kind, NB_LAYER_MAXPOOL);
    assert_int_equal(l[2].kind, NB_LAYER_FLATTEN);
    assert_int_equal(l[3].units, 128);
    assert_true(fabs(l[4].rate - 0.5) < 1e-12);
    assert_int_equal(l[5].act, NB_ACT_SOFTMAX);
    free(l);
    const char *bad[] = {"dense abc", "conv2d 32", "frobnicate 3", "dropout 1.5", "dense 10 relu extra",
                         "conv2d 8 3 stride=0", "", "# only a comment", "maxpool 2 padding=full"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_not_equal(nb_spec_parse(bad[i], &l, &n), NB_OK);
        assert_true(strlen(nb_last_error()) > 10);
    }
    assert_int_equal(nb_spec_parse("flatten; dense 3 relu; frobnicate", &l, &n), NB_ERR_FORMAT);
    assert_non_null(strstr(nb_last_error(), "layer 2"));
}

static void test_model_shapes_and_errors(void **state)
{
    (void)state;
    nb_model *m;
    assert_int_equal(nb_model_from_spec(KERAS_CNN, 3, IMG, &m), NB_OK);
    assert_int_equal(nb_model_num_params(m), 1199882);
    int64_t s[8];
    assert_int_equal(nb_model_layer_shape(m, 1, s), 3);
    assert_true(s[0] == 24 && s[1] == 24 && s[2] == 64);
    assert_int_equal(nb_model_layer_shape(m, 3, s), 1);
    assert_int_equal(s[0], 9216);
    char buf[4096];
    assert_int_equal(nb_model_summary(m, buf, sizeof buf), NB_OK);
    assert_non_null(strstr(buf, "1179776"));
    assert_non_null(strstr(buf, "1199882"));
    assert_non_null(nb_model_find_param(m, "4.kernel"));
    assert_int_equal(nb_value(nb_model_find_param(m, "4.kernel"))->shape[0], 9216);
    nb_model_free(m);

    /* Dense straight after a conv: refused, naming the layer and flatten. */
    assert_int_equal(nb_model_from_spec("conv2d 8 3 relu; dense 10", 3, IMG, &m), NB_ERR_SHAPE);
    assert_null(m);
    assert_non_null(strstr(nb_last_error(), "layer 1"));
    assert_non_null(strstr(nb_last_error(), "flatten"));
    /* A kernel larger than its input. */
    const int64_t small[3] = {4, 4, 1};
    assert_int_not_equal(nb_model_from_spec("conv2d 8 5", 3, small, &m), NB_OK);
    assert_non_null(strstr(nb_last_error(), "layer 0"));
    /* A failed add leaves the model usable. */
    m = nb_model_new(3, IMG);
    assert_int_equal(nb_model_conv2d(m, 4, 3, NB_ACT_RELU, 1, NB_PAD_VALID), NB_OK);
    assert_int_not_equal(nb_model_dense(m, 10, NB_ACT_NONE), NB_OK);
    assert_int_equal(nb_model_flatten(m), NB_OK);
    assert_int_equal(nb_model_dense(m, 10, NB_ACT_NONE), NB_OK);
    assert_int_equal(nb_model_num_layers(m), 3);
    assert_string_equal(nb_model_spec(m), "conv2d 4 3 relu; flatten; dense 10");
    nb_model_free(m);
}

static void test_init(void **state)
{
    (void)state;
    const int64_t in[1] = {300};
    nb_model *a, *b;
    assert_int_equal(nb_model_from_spec("dense 100 relu; dense 10", 1, in, &a), NB_OK);
    assert_int_equal(nb_model_from_spec("dense 100 relu; dense 10", 1, in, &b), NB_OK);
    assert_int_equal(nb_model_init(a, NB_INIT_GLOROT_UNIFORM, 7), NB_OK);
    assert_int_equal(nb_model_init(b, NB_INIT_GLOROT_UNIFORM, 7), NB_OK);
    const nb_tensor *k = nb_value(nb_model_param(a, 0)), *bias = nb_value(nb_model_param(a, 1));
    assert_memory_equal(k->data, nb_value(nb_model_param(b, 0))->data, k->size * sizeof(nb_real));
    double limit = sqrt(6.0 / (300 + 100)), sum2 = 0;
    for (int64_t i = 0; i < k->size; i++) {
        assert_true(fabs(k->data[i]) <= limit);
        sum2 += k->data[i] * k->data[i];
    }
    /* Uniform(-l, l) has variance l^2/3. */
    assert_true(fabs(sum2 / k->size - limit * limit / 3) < 0.05 * limit * limit / 3);
    for (int64_t i = 0; i < bias->size; i++) assert_true(bias->data[i] == 0);
    assert_int_equal(nb_model_init(b, NB_INIT_GLOROT_UNIFORM, 8), NB_OK);
    assert_memory_not_equal(k->data, nb_value(nb_model_param(b, 0))->data, k->size * sizeof(nb_real));
    assert_int_equal(nb_model_init(b, NB_INIT_TORCH_DEFAULT, 8), NB_OK);
    const nb_tensor *tb = nb_value(nb_model_param(b, 1));
    int nonzero = 0;
    for (int64_t i = 0; i < tb->size; i++) nonzero += tb->data[i] != 0 && fabs(tb->data[i]) <= 1 / sqrt(300.0);
    assert_int_equal(nonzero, 100);
    nb_model_free(a);
    nb_model_free(b);
}

/* A model with one weight w (dense 1, no bias effect) and loss mse so that
 * the gradient is known: input 1, target 0, y = w + b, loss = (w + b)^2. */
static nb_model *one_weight_model(void)
{
    const int64_t in[1] = {1};
    nb_model *m;
    assert_int_equal(nb_model_from_spec("dense 1", 1, in, &m), NB_OK);
    nb_value(nb_model_param(m, 0))->data[0] = 1;
    nb_value(nb_model_param(m, 1))->data[0] = 0;
    nb_node *target, *loss;
    assert_int_equal(nb_model_loss(m, NB_LOSS_MSE, &target, &loss), NB_OK);
    nb_value(nb_model_input(m))->data[0] = 1;
    return m;
}

static double step_once(nb_model *m, nb_optim *o)
{
    nb_node *loss;
    assert_int_equal(nb_model_loss(m, NB_LOSS_MSE, NULL, &loss), NB_OK);
    assert_int_equal(nb_forward(nb_model_graph(m)), NB_OK);
    assert_int_equal(nb_backward(loss), NB_OK);
    assert_int_equal(nb_optim_step(o), NB_OK);
    return nb_value(nb_model_param(m, 0))->data[0];
}

static void test_optimizer_formulas(void **state)
{
    (void)state;
    /* SGD with momentum 0.9, lr 0.1 on w, b (y = w + b, loss y^2, both
     * gradients 2y): PyTorch's rule buf = g (first), then buf = mu buf + g. */
    nb_model *m = one_weight_model();
    nb_optim *o;
    nb_optim_opts oo = {.kind = NB_OPT_SGD, .lr = 0.1, .momentum = 0.9};
    assert_int_equal(nb_optim_new(m, &oo, &o), NB_OK);
    double w = 1, b = 0, buf = 0;
    for (int t = 1; t <= 4; t++) {
        double g = 2 * (w + b);
        buf = t == 1 ? g : 0.9 * buf + g;
        w -= 0.1 * buf, b -= 0.1 * buf;
        assert_true(fabs(step_once(m, o) - w) < 1e-6);
    }
    nb_optim_free(o);
    nb_model_free(m);

    /* Adam: the first step moves each weight by lr * g / (|g| + eps). */
    m = one_weight_model();
    oo = (nb_optim_opts){.kind = NB_OPT_ADAM, .lr = 0.01};
    assert_int_equal(nb_optim_new(m, &oo, &o), NB_OK);
    double mm = 0, vv = 0;
    w = 1, b = 0;
    for (int t = 1; t <= 3; t++) {
        double g = 2 * (w + b);
        mm = 0.9 * mm + 0.1 * g, vv = 0.999 * vv + 0.001 * g * g;
        double upd = 0.01 * (mm / (1 - pow(0.9, t))) / (sqrt(vv / (1 - pow(0.999, t))) + 1e-8);
        w -= upd, b -= upd;
        assert_true(fabs(step_once(m, o) - w) < 1e-6);
    }
    nb_optim_free(o);
    nb_model_free(m);

    /* AdamW decays the weight before the Adam step. */
    m = one_weight_model();
    oo = (nb_optim_opts){.kind = NB_OPT_ADAMW, .lr = 0.01, .weight_decay = 0.1};
    assert_int_equal(nb_optim_new(m, &oo, &o), NB_OK);
    assert_true(fabs(step_once(m, o) - (1 * (1 - 0.01 * 0.1) - 0.01 * 2 / (2 + 1e-8))) < 1e-6);
    nb_optim_free(o);
    nb_model_free(m);

    /* RMSprop: v = 0.01 g^2, w -= lr g / (sqrt(v) + eps). */
    m = one_weight_model();
    oo = (nb_optim_opts){.kind = NB_OPT_RMSPROP, .lr = 0.01};
    assert_int_equal(nb_optim_new(m, &oo, &o), NB_OK);
    assert_true(fabs(step_once(m, o) - (1 - 0.01 * 2 / (sqrt(0.01 * 4) + 1e-8))) < 1e-6);
    nb_optim_free(o);

    /* Learning rates that cannot work are refused. */
    double bad[] = {0, -0.1, NAN, INFINITY};
    for (int i = 0; i < 4; i++) {
        oo = (nb_optim_opts){.kind = NB_OPT_SGD, .lr = bad[i]};
        assert_int_equal(nb_optim_new(m, &oo, &o), NB_ERR_ARG);
        assert_non_null(strstr(nb_last_error(), "learning rate"));
    }
    /* Schedules. */
    oo = (nb_optim_opts){.kind = NB_OPT_SGD, .lr = 1, .schedule = NB_SCHED_STEP, .step_size = 2, .gamma = 0.5};
    assert_int_equal(nb_optim_new(m, &oo, &o), NB_OK);
    nb_optim_set_epoch(o, 3);
    assert_true(fabs(nb_optim_lr(o) - 0.5) < 1e-12);
    nb_optim_free(o);
    oo = (nb_optim_opts){.kind = NB_OPT_SGD, .lr = 1, .schedule = NB_SCHED_COSINE, .total_epochs = 4};
    assert_int_equal(nb_optim_new(m, &oo, &o), NB_OK);
    nb_optim_set_epoch(o, 2);
    assert_true(fabs(nb_optim_lr(o) - 0.5) < 1e-12);
    nb_optim_free(o);
    nb_model_free(m);
}

typedef struct {
    double first_loss, last_loss;
    int epochs;
    const char *ckpt;
} watch;

static int on_epoch(const nb_epoch_stats *s, nb_optim *o, void *user)
{
    watch *w = user;
    if (w->epochs++ == 0) w->first_loss = s->loss;
    w->last_loss = s->loss;
    (void)o;
    return 0;
}

static nb_status load_small(nb_dataset *train, nb_dataset *test)
{
    nb_dataset all;
    nb_status s = nb_dataset_load_mnist(FASHION, "test", &all);
    if (s) return s;
    s = nb_dataset_subset(&all, 0, 4000, train);
    if (!s) s = nb_dataset_subset(&all, 8000, 2000, test);
    nb_dataset_free(&all);
    return s;
}

static void test_train_real_data(void **state)
{
    (void)state;
    nb_dataset train, test;
    assert_int_equal(load_small(&train, &test), NB_OK);
    assert_int_equal(train.x->rank, 4);
    assert_true(train.x->shape[1] == 28 && train.x->shape[3] == 1);
    nb_model *m;
    assert_int_equal(nb_model_from_spec("flatten; dense 64 relu; dense 10", 3, IMG, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1), NB_OK);
    double loss0, acc0;
    assert_int_equal(nb_evaluate(m, &test, NB_LOSS_CCE, 500, &loss0, &acc0, NULL), NB_OK);
    nb_optim *o;
    nb_optim_opts oo = {.kind = NB_OPT_ADAM, .lr = 2e-3};
    assert_int_equal(nb_optim_new(m, &oo, &o), NB_OK);
    watch w = {0};
    nb_train_opts to = {.epochs = 3, .batch = 64, .loss = NB_LOSS_CCE, .seed = 3, .shuffle = 1, .on_epoch = on_epoch,
                        .user = &w};
    assert_int_equal(nb_train(m, o, &train, NULL, &to), NB_OK);
    assert_int_equal(w.epochs, 3);
    double loss1, acc1;
    int64_t conf[100];
    assert_int_equal(nb_evaluate(m, &test, NB_LOSS_CCE, 500, &loss1, &acc1, conf), NB_OK);
    /* Trained on 4000 images, tested on 2000 others. */
    assert_true(w.last_loss < w.first_loss);
    assert_true(loss1 < loss0 * 0.4);
    assert_true(acc1 > 0.75);
    int64_t total = 0, diag = 0;
    for (int i = 0; i < 100; i++) total += conf[i];
    for (int i = 0; i < 10; i++) diag += conf[i * 11];
    assert_int_equal(total, 2000);
    assert_true(fabs((double)diag / 2000 - acc1) < 1e-12);

    /* Model files round trip: the same predictions. */
    const char *path = NB_BINARY_DIR "/test_nn_model.safetensors";
    assert_int_equal(nb_model_save(m, path), NB_OK);
    nb_model *l;
    assert_int_equal(nb_model_load(path, &l), NB_OK);
    assert_string_equal(nb_model_spec(l), nb_model_spec(m));
    nb_tensor *p1, *p2;
    assert_int_equal(nb_model_predict(m, test.x, 128, &p1), NB_OK);
    assert_int_equal(nb_model_predict(l, test.x, 128, &p2), NB_OK);
    assert_int_equal(p1->size, 20000);
    assert_memory_equal(p1->data, p2->data, p1->size * sizeof(nb_real));
    nb_tensor_free(p2);
    /* Another batch size changes only the rounding of the GEMMs. */
    assert_int_equal(nb_model_predict(l, test.x, 1000, &p2), NB_OK);
    for (int64_t i = 0; i < p1->size; i++) assert_true(fabs(p1->data[i] - p2->data[i]) < 1e-4);
    nb_tensor_free(p1);
    nb_tensor_free(p2);
    nb_model_free(l);
    remove(path);
    nb_optim_free(o);
    nb_model_free(m);
    nb_dataset_free(&train);
    nb_dataset_free(&test);
}

/* Two epochs straight, or one epoch, a checkpoint, and a resumed second epoch
 * in a fresh model and optimiser: the same weights, bit for bit. */
typedef struct {
    nb_model *m;
    const char *path;
} ckpt_ctx;

static int write_ckpt(const nb_epoch_stats *s, nb_optim *o, void *user)
{
    ckpt_ctx *c = user;
    nb_safetensors *st = nb_safetensors_new();
    char step[32];
    snprintf(step, sizeof step, "%lld", (long long)s->step);
    int bad = nb_model_export(c->m, st) || nb_optim_export(o, st) || nb_safetensors_set_meta(st, "nabla.step", step) ||
              nb_safetensors_write(c->path, st, 0);
    nb_safetensors_free(st);
    return bad;
}

static void test_resume_is_bit_identical(void **state)
{
    (void)state;
    nb_dataset train, test;
    assert_int_equal(load_small(&train, &test), NB_OK);
    const char *spec = "conv2d 4 3 relu; maxpool 2; flatten; dropout 0.25; dense 10";
    nb_optim_opts oo = {.kind = NB_OPT_ADAM, .lr = 1e-3};
    nb_dataset part;
    assert_int_equal(nb_dataset_subset(&train, 0, 1000, &part), NB_OK);

    nb_model *a;
    nb_optim *oa;
    assert_int_equal(nb_model_from_spec(spec, 3, IMG, &a), NB_OK);
    assert_int_equal(nb_model_init(a, NB_INIT_GLOROT_UNIFORM, 5), NB_OK);
    assert_int_equal(nb_optim_new(a, &oo, &oa), NB_OK);
    nb_train_opts to = {.epochs = 2, .batch = 100, .loss = NB_LOSS_CCE, .seed = 9, .shuffle = 1};
    assert_int_equal(nb_train(a, oa, &part, NULL, &to), NB_OK);

    const char *path = NB_BINARY_DIR "/test_nn_resume.safetensors";
    nb_model *b;
    nb_optim *ob;
    assert_int_equal(nb_model_from_spec(spec, 3, IMG, &b), NB_OK);
    assert_int_equal(nb_model_init(b, NB_INIT_GLOROT_UNIFORM, 5), NB_OK);
    assert_int_equal(nb_optim_new(b, &oo, &ob), NB_OK);
    ckpt_ctx c = {b, path};
    to.epochs = 1;
    to.on_epoch = write_ckpt;
    to.user = &c;
    assert_int_equal(nb_train(b, ob, &part, NULL, &to), NB_OK);
    nb_optim_free(ob);
    nb_model_free(b);

    nb_safetensors *st;
    assert_int_equal(nb_safetensors_read(path, &st), NB_OK);
    assert_int_equal(nb_model_import(st, &b), NB_OK);
    assert_int_equal(nb_optim_new(b, &oo, &ob), NB_OK);
    assert_int_equal(nb_optim_import(ob, st), NB_OK);
    to = (nb_train_opts){.epochs = 2, .batch = 100, .loss = NB_LOSS_CCE, .seed = 9, .shuffle = 1, .start_epoch = 1,
                         .start_step = atoll(nb_safetensors_meta(st, "nabla.step"))};
    assert_int_equal(to.start_step, 10);
    assert_int_equal(nb_train(b, ob, &part, NULL, &to), NB_OK);
    for (int i = 0; i < nb_model_param_count(a); i++) {
        const nb_tensor *x = nb_value(nb_model_param(a, i)), *y = nb_value(nb_model_param(b, i));
        assert_memory_equal(x->data, y->data, x->size * sizeof(nb_real));
    }
    nb_safetensors_free(st);
    remove(path);
    nb_optim_free(oa);
    nb_optim_free(ob);
    nb_model_free(a);
    nb_model_free(b);
    nb_dataset_free(&part);
    nb_dataset_free(&train);
    nb_dataset_free(&test);
}

static void test_divergence_is_reported(void **state)
{
    (void)state;
    nb_dataset train, test;
    assert_int_equal(load_small(&train, &test), NB_OK);
    /* The lecture's point: too large a learning rate diverges. y = 3x fitted
     * by one weight with MSE; with alpha 10 each step multiplies the error by
     * about |1 - 2 alpha E[x^2]| > 1, until the loss overflows. */
    const int64_t n = 100, xs[2] = {n, 1};
    nb_dataset line = {nb_tensor_new(2, xs), nb_tensor_new(2, xs)};
    nb_rng r;
    nb_rng_seed(&r, 4);
    for (int64_t i = 0; i < n; i++) line.x->data[i] = (nb_real)nb_rng_uniform(&r), line.y->data[i] = 3 * line.x->data[i];
    const int64_t one[1] = {1};
    nb_model *m;
    assert_int_equal(nb_model_from_spec("dense 1", 1, one, &m), NB_OK);
    nb_optim *o;
    nb_optim_opts oo = {.kind = NB_OPT_SGD, .lr = 10};
    assert_int_equal(nb_optim_new(m, &oo, &o), NB_OK);
    nb_train_opts to = {.epochs = 100, .batch = 10, .loss = NB_LOSS_MSE, .seed = 1, .shuffle = 1};
    assert_int_equal(nb_train(m, o, &line, NULL, &to), NB_ERR_NUMERIC);
    assert_non_null(strstr(nb_last_error(), "diverged"));
    assert_non_null(strstr(nb_last_error(), "step"));
    assert_non_null(strstr(nb_last_error(), "smaller learning rate"));
    nb_optim_free(o);
    nb_model_free(m);
    /* A small learning rate converges on the same data. */
    assert_int_equal(nb_model_from_spec("dense 1", 1, one, &m), NB_OK);
    oo.lr = 0.3;
    assert_int_equal(nb_optim_new(m, &oo, &o), NB_OK);
    assert_int_equal(nb_train(m, o, &line, NULL, &to), NB_OK);
    double mse;
    assert_int_equal(nb_evaluate(m, &line, NB_LOSS_MSE, 50, &mse, NULL, NULL), NB_OK);
    assert_true(mse < 1e-6);
    assert_true(fabs(nb_value(nb_model_param(m, 0))->data[0] - 3) < 1e-2);
    nb_optim_free(o);
    nb_model_free(m);
    nb_dataset_free(&line);
    nb_optim_opts o2 = {.kind = NB_OPT_SGD, .lr = 0.1};
    /* Labels out of range are refused before training starts. */
    assert_int_equal(nb_model_from_spec("flatten; dense 5", 3, IMG, &m), NB_OK);
    assert_int_equal(nb_optim_new(m, &o2, &o), NB_OK);
    to = (nb_train_opts){.epochs = 1, .batch = 64, .loss = NB_LOSS_CCE, .seed = 1, .shuffle = 1};
    assert_int_equal(nb_train(m, o, &train, NULL, &to), NB_ERR_ARG);
    assert_non_null(strstr(nb_last_error(), "not a class index 0..4 (5 classes)"));
    nb_optim_free(o);
    nb_model_free(m);
    nb_dataset_free(&train);
    nb_dataset_free(&test);
}


/* A Dense network on a CSV table: classification (two classes on either side
 * of a plane) and regression (y = 2 x0 - x1 + 0.5), both from a header CSV. */
static void write_csv(const char *path, int regression)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "x0,x1,x2,%s\n", regression ? "y" : "label");
    nb_rng r;
    nb_rng_seed(&r, regression ? 11 : 12);
    for (int i = 0; i < 600; i++) {
        double x0 = nb_rng_uniform(&r) * 2 - 1, x1 = nb_rng_uniform(&r) * 2 - 1, x2 = nb_rng_uniform(&r) * 2 - 1;
        double y = regression ? 2 * x0 - x1 + 0.5 : (x0 + x1 - x2 > 0);
        fprintf(f, "%.6f,%.6f,%.6f,%g\n", x0, x1, x2, y);
    }
    fclose(f);
}

static void test_csv_tasks(void **state)
{
    (void)state;
    const char *path = NB_BINARY_DIR "/test_nn_table.csv";
    const int64_t in[1] = {3};
    for (int regression = 0; regression <= 1; regression++) {
        write_csv(path, regression);
        nb_dataset d, val;
        assert_int_equal(nb_dataset_load_csv(path, -1, &d), NB_OK);
        assert_int_equal(d.x->shape[0], 600);
        assert_int_equal(d.x->shape[1], 3);
        assert_int_equal(nb_dataset_split(&d, 0.2, &val), NB_OK);
        assert_int_equal(val.x->shape[0], 120);
        nb_model *m;
        assert_int_equal(nb_model_from_spec(regression ? "dense 16 tanh; dense 1" : "dense 16 relu; dense 2", 1, in, &m),
                         NB_OK);
        assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 2), NB_OK);
        nb_optim *o;
        nb_optim_opts oo = {.kind = NB_OPT_ADAM, .lr = 1e-2};
        assert_int_equal(nb_optim_new(m, &oo, &o), NB_OK);
        nb_loss_kind kind = regression ? NB_LOSS_MSE : NB_LOSS_CCE;
        nb_train_opts to = {.epochs = 60, .batch = 32, .loss = kind, .seed = 1, .shuffle = 1};
        assert_int_equal(nb_train(m, o, &d, &val, &to), NB_OK);
        double loss, acc;
        assert_int_equal(nb_evaluate(m, &val, kind, 64, &loss, &acc, NULL), NB_OK);
        if (regression) assert_true(loss < 1e-3);
        else assert_true(acc > 0.95);
        nb_optim_free(o);
        nb_model_free(m);
        nb_dataset_free(&d);
        nb_dataset_free(&val);
    }
    remove(path);
}

/* Regressions found in review: each asserts the behaviour the header promises. */
static void test_loss_after_set_batch_and_bce_accuracy(void **state)
{
    (void)state;
    const int64_t in[1] = {4};
    nb_model *m;
    assert_int_equal(nb_model_from_spec("dense 3", 1, in, &m), NB_OK);
    assert_int_equal(nb_model_set_batch(m, 8), NB_OK);
    nb_node *target;
    /* The MSE target takes the output's shape at the current batch. */
    assert_int_equal(nb_model_loss(m, NB_LOSS_MSE, &target, NULL), NB_OK);
    assert_int_equal(nb_value(target)->shape[0], 8);
    assert_int_equal(nb_value(target)->shape[1], 3);
    nb_model_free(m);

    /* BCE accuracy counts elements: 9 of 10 right is 0.9 at any batch size. */
    const int64_t one[1] = {1}, xs[2] = {10, 1};
    nb_dataset d = {nb_tensor_new(2, xs), nb_tensor_new(2, xs)};
    for (int i = 0; i < 10; i++) d.x->data[i] = (nb_real)(i - 4.5), d.y->data[i] = i >= 5;
    d.y->data[0] = 1; /* one wrong */
    for (int64_t batch = 1; batch <= 10; batch += 3) {
        assert_int_equal(nb_model_from_spec("dense 1", 1, one, &m), NB_OK);
        nb_value(nb_model_param(m, 0))->data[0] = 1;
        nb_value(nb_model_param(m, 1))->data[0] = 0;
        double loss, acc;
        assert_int_equal(nb_evaluate(m, &d, NB_LOSS_BCE, batch, &loss, &acc, NULL), NB_OK);
        assert_true(fabs(acc - 0.9) < 1e-12);
        nb_model_free(m);
    }
    /* A data set whose targets do not match its inputs is refused. */
    nb_dataset bad = {d.x, NULL}, sub;
    const int64_t five[2] = {5, 1};
    bad.y = nb_tensor_new(2, five);
    assert_int_equal(nb_dataset_subset(&bad, 0, 3, &sub), NB_ERR_SHAPE);
    nb_tensor_free(bad.y);
    nb_dataset_free(&d);
}

static void test_resume_with_another_optimizer_is_refused(void **state)
{
    (void)state;
    const int64_t in[1] = {3};
    nb_model *m;
    assert_int_equal(nb_model_from_spec("dense 2", 1, in, &m), NB_OK);
    nb_optim *adam, *rms;
    nb_optim_opts a = {.kind = NB_OPT_ADAM, .lr = 1e-3}, r = {.kind = NB_OPT_RMSPROP, .lr = 1e-3};
    assert_int_equal(nb_optim_new(m, &a, &adam), NB_OK);
    assert_int_equal(nb_optim_new(m, &r, &rms), NB_OK);
    nb_safetensors *st = nb_safetensors_new();
    assert_int_equal(nb_optim_export(adam, st), NB_OK);
    assert_int_equal(nb_optim_import(rms, st), NB_ERR_FORMAT);
    assert_non_null(strstr(nb_last_error(), "--optimizer adam"));
    assert_int_equal(nb_optim_import(adam, st), NB_OK);
    nb_safetensors_free(st);
    nb_optim_free(adam);
    nb_optim_free(rms);
    nb_model_free(m);
}

/* A model has one loss; asking for another names the one it has. */
static void test_second_loss_names_the_first(void **state)
{
    (void)state;
    const int64_t in[1] = {4};
    const nb_loss_kind kinds[3] = {NB_LOSS_CCE, NB_LOSS_MSE, NB_LOSS_BCE};
    const char *names[3] = {"cce", "mse", "bce"};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            nb_model *m;
            assert_int_equal(nb_model_from_spec("dense 3", 1, in, &m), NB_OK);
            nb_node *l1, *l2;
            assert_int_equal(nb_model_loss(m, kinds[a], NULL, &l1), NB_OK);
            if (a == b) { /* the same loss again is the same node */
                assert_int_equal(nb_model_loss(m, kinds[b], NULL, &l2), NB_OK);
                assert_ptr_equal(l1, l2);
            } else {
                assert_int_equal(nb_model_loss(m, kinds[b], NULL, &l2), NB_ERR_ARG);
                char want[256];
                snprintf(want, sizeof want,
                         "loss: this model already has a loss, %s, and cannot have a second (%s): build another model "
                         "(from the same spec or file) for it",
                         names[a], names[b]);
                assert_string_equal(nb_last_error(), want);
            }
            nb_model_free(m);
        }
    nb_model *m;
    assert_int_equal(nb_model_from_spec("dense 3", 1, in, &m), NB_OK);
    assert_int_equal(nb_model_loss(m, (nb_loss_kind)7, NULL, NULL), NB_ERR_ARG);
    assert_non_null(strstr(nb_last_error(), "unknown loss kind 7"));
    nb_model_free(m);
}

/* Prints why to stderr (cmocka's fail_msg may not show it), then fails. */
#define FAIL(...) (fprintf(stderr, __VA_ARGS__), fprintf(stderr, "\n"), fail())

/* Every layer nabla can hold prints as a spec line that parses back to the
 * same layer and prints the same again: every kind, every activation, every
 * option (a saved model's nabla.spec must load). */
static void expect_round_trip(const nb_layer_spec *l)
{
    char s1[128], s2[128];
    nb_layer_spec_str(l, s1, sizeof s1);
    nb_layer_spec *p;
    int n;
    if (nb_spec_parse(s1, &p, &n) != NB_OK) FAIL("'%s' does not parse: %s", s1, nb_last_error());
    assert_int_equal(n, 1);
    nb_layer_spec_str(p, s2, sizeof s2);
    if (strcmp(s1, s2)) FAIL("'%s' parses and prints as '%s'", s1, s2);
    assert_int_equal(p->kind, l->kind);
    assert_int_equal(p->act, l->act);
    assert_int_equal(p->units, l->units);
    assert_int_equal(p->size, l->size);
    assert_int_equal(p->padding, l->padding);
    assert_memory_equal(&p->rate, &l->rate, sizeof p->rate); /* bit for bit */
    if (l->kind == NB_LAYER_CONV2D) {
        assert_int_equal(p->stride ? p->stride : 1, l->stride ? l->stride : 1);
        assert_int_equal(p->dilation ? p->dilation : 1, l->dilation ? l->dilation : 1);
    } else if (l->kind == NB_LAYER_MAXPOOL || l->kind == NB_LAYER_AVGPOOL) {
        assert_int_equal(p->stride ? p->stride : p->size, l->stride ? l->stride : l->size);
    }
    free(p);
}

static void test_spec_print_parse_fixed_point(void **state)
{
    (void)state;
    const nb_layer_kind with_act[3] = {NB_LAYER_DENSE, NB_LAYER_CONV2D, NB_LAYER_ACTIVATION};
    for (int k = 0; k < 3; k++)
        for (int a = NB_ACT_NONE; a <= NB_ACT_GELU; a++) {
            nb_layer_spec l = {.kind = with_act[k], .act = (nb_activation)a};
            if (l.kind != NB_LAYER_ACTIVATION) l.units = 7, l.size = l.kind == NB_LAYER_CONV2D ? 3 : 0;
            expect_round_trip(&l);
        }
    const int strides[] = {0, 1, 2, 3, 5}, dilations[] = {0, 1, 2, 4}, sizes[] = {1, 2, 3};
    for (int si = 0; si < 3; si++)
        for (int st = 0; st < 5; st++)
            for (int pad = 0; pad < 2; pad++) {
                for (int d = 0; d < 4; d++) {
                    nb_layer_spec c = {.kind = NB_LAYER_CONV2D, .units = 4, .size = sizes[si], .stride = strides[st],
                                       .dilation = dilations[d], .padding = pad ? NB_PAD_SAME : NB_PAD_VALID,
                                       .act = NB_ACT_RELU};
                    expect_round_trip(&c);
                }
                for (int kind = NB_LAYER_MAXPOOL; kind <= NB_LAYER_AVGPOOL; kind++) {
                    nb_layer_spec p = {.kind = (nb_layer_kind)kind, .size = sizes[si], .stride = strides[st],
                                       .padding = pad ? NB_PAD_SAME : NB_PAD_VALID};
                    expect_round_trip(&p);
                }
            }
    nb_layer_spec f = {.kind = NB_LAYER_FLATTEN};
    expect_round_trip(&f);
    const double rates[] = {0, 0.1, 0.5, 0.25, 1.0 / 3, 0.123456789, 1e-7, 0.999999999, 0x1.fffffffffffffp-1};
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        nb_layer_spec d = {.kind = NB_LAYER_DROPOUT, .rate = rates[i]};
        expect_round_trip(&d);
    }
    /* A whole model: its spec builds the same model again, also through a
     * file (train --model 'dense 8 relu; linear; dense 3' used to write
     * 'none', which nothing could load). */
    const int64_t in[1] = {5};
    nb_model *m, *m2;
    assert_int_equal(nb_model_from_spec("dense 8 relu; linear; dense 3; dropout 0.3; sigmoid", 1, in, &m), NB_OK);
    assert_string_equal(nb_model_spec(m), "dense 8 relu; linear; dense 3; dropout 0.3; sigmoid");
    assert_int_equal(nb_model_from_spec(nb_model_spec(m), 1, in, &m2), NB_OK);
    assert_string_equal(nb_model_spec(m2), nb_model_spec(m));
    nb_model_free(m2);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1), NB_OK);
    const char *path = NB_BINARY_DIR "/test_nn_linear.safetensors";
    assert_int_equal(nb_model_save(m, path), NB_OK);
    assert_int_equal(nb_model_load(path, &m2), NB_OK);
    assert_string_equal(nb_model_spec(m2), nb_model_spec(m));
    assert_int_equal(nb_model_num_params(m2), nb_model_num_params(m));
    nb_model_free(m2);
    remove(path);
    nb_model_free(m);
    /* A layer the grammar cannot write is refused when added, not saved
     * into a file that cannot be read. */
    const int64_t img[3] = {8, 8, 2};
    assert_int_equal(nb_model_from_spec("conv2d 2 1", 3, img, &m), NB_OK);
    const nb_layer_spec bad[] = {
        {.kind = NB_LAYER_MAXPOOL, .size = 2, .act = NB_ACT_RELU},
        {.kind = NB_LAYER_FLATTEN, .act = NB_ACT_SOFTMAX},
        {.kind = NB_LAYER_CONV2D, .units = 1 << 21, .size = 1},
        {.kind = NB_LAYER_CONV2D, .units = 2, .size = 1, .dilation = -1},
        {.kind = NB_LAYER_AVGPOOL, .size = 2, .stride = 5000},
        {.kind = NB_LAYER_ACTIVATION, .act = (nb_activation)99},
        {.kind = (nb_layer_kind)42},
    };
    const char *why[] = {"layer 1: maxpool takes no activation (add a 'relu' layer after it)",
                         "layer 1: flatten takes no activation (add a 'softmax' layer after it)",
                         "layer 1: conv2d filters must be 1..1048576, got 2097152",
                         "layer 1: conv2d dilation must be 1..1024 (or 0 for the default), got -1",
                         "layer 1: avgpool stride must be 1..1024 (or 0 for the default), got 5000",
                         "layer 1: unknown activation 99", "layer 1: unknown layer kind 42"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(nb_model_add(m, &bad[i]), NB_ERR_ARG);
        assert_string_equal(nb_last_error(), why[i]);
    }
    assert_int_equal(nb_model_num_layers(m), 1);
    nb_model_free(m);
    /* Files written before the fix say 'none': they load, as 'linear'. */
    assert_int_equal(nb_model_from_spec("dense 8 relu; none; dense 3 none", 1, in, &m), NB_OK);
    assert_string_equal(nb_model_spec(m), "dense 8 relu; linear; dense 3");
    nb_model_free(m);
}

/* Copies every parameter of a into the parameter of b with the same name. */
static void copy_params(nb_model *a, nb_model *b)
{
    assert_int_equal(nb_model_param_count(a), nb_model_param_count(b));
    for (int i = 0; i < nb_model_param_count(a); i++) {
        nb_node *p = nb_model_param(a, i), *q = nb_model_find_param(b, nb_node_name(p));
        assert_non_null(q);
        assert_int_equal(nb_value(p)->size, nb_value(q)->size);
        memcpy(nb_value(q)->data, nb_value(p)->data, (size_t)nb_value(p)->size * sizeof(nb_real));
    }
}

/* Loss of m on x (N, 4) and targets y, in training mode (dropout on, seed
 * 7); the gradient of its parameter gname goes to grad. */
static double train_loss(nb_model *m, nb_loss_kind kind, const nb_real *x, const nb_real *y, int64_t N, int64_t ny,
                         const char *gname, nb_real *grad, int64_t gsize)
{
    nb_node *target, *loss;
    assert_int_equal(nb_model_set_batch(m, N), NB_OK);
    assert_int_equal(nb_model_loss(m, kind, &target, &loss), NB_OK);
    memcpy(nb_value(nb_model_input(m))->data, x, (size_t)(N * 4) * sizeof(nb_real));
    memcpy(nb_value(target)->data, y, (size_t)(N * ny) * sizeof(nb_real));
    nb_graph_set_training(nb_model_graph(m), 1, 7);
    assert_int_equal(nb_forward(nb_model_graph(m)), NB_OK);
    assert_int_equal(nb_backward(loss), NB_OK);
    nb_tensor *g = nb_grad(nb_model_find_param(m, gname));
    assert_non_null(g);
    assert_int_equal(g->size, gsize);
    memcpy(grad, g->data, (size_t)gsize * sizeof(nb_real));
    nb_graph_set_training(nb_model_graph(m), 0, 7);
    return nb_value(loss)->data[0];
}

/* A softmax (sigmoid) is the model's output activation when only identity
 * layers (dropout, linear) follow it: predict gives its probabilities once
 * and the loss is computed from its logits, as without the dropout.
 * Anywhere else it is an ordinary layer. */
static void test_final_activation_before_dropout(void **state)
{
    (void)state;
    const int64_t in[1] = {4}, N = 6, xs[2] = {6, 4};
    nb_real x[24], labels[6] = {0, 1, 2, 2, 1, 0}, bin[6] = {1, 0, 1, 1, 0, 0};
    for (int i = 0; i < 24; i++) x[i] = (nb_real)(0.3 * sin(1.7 * i) + 0.1 * (i % 5));
    nb_tensor *X = nb_tensor_from(2, xs, x);
    const char *with[] = {"dense 8 relu; dense 3 softmax; dropout 0.4",
                          "dense 8 relu; dense 3 softmax; linear; dropout 0.5",
                          "dense 8 relu; dense 3; softmax; dropout 0.4", "dense 8 tanh; dense 1 sigmoid; dropout 0.5"};
    const char *without[] = {"dense 8 relu; dense 3 softmax", "dense 8 relu; dense 3 softmax",
                             "dense 8 relu; dense 3; softmax", "dense 8 tanh; dense 1 sigmoid"};
    for (int t = 0; t < 4; t++) {
        nb_model *a, *b;
        assert_int_equal(nb_model_from_spec(with[t], 1, in, &a), NB_OK);
        assert_int_equal(nb_model_from_spec(without[t], 1, in, &b), NB_OK);
        assert_int_equal(nb_model_init(a, NB_INIT_GLOROT_UNIFORM, 11), NB_OK);
        copy_params(a, b);
        const int classes = t == 3 ? 1 : 3;
        assert_int_equal(nb_model_output_activation(a), classes == 3 ? NB_ACT_SOFTMAX : NB_ACT_SIGMOID);
        assert_int_equal(nb_model_output_activation(b), nb_model_output_activation(a));
        /* predict: the same probabilities (dropout is the identity there) */
        nb_tensor *pa, *pb;
        assert_int_equal(nb_model_predict(a, X, 4, &pa), NB_OK);
        assert_int_equal(nb_model_predict(b, X, 4, &pb), NB_OK);
        assert_int_equal(pa->size, N * classes);
        for (int64_t i = 0; i < pa->size; i++) assert_true(fabs(pa->data[i] - pb->data[i]) < 1e-7);
        if (classes == 3)
            for (int64_t r = 0; r < N; r++)
                assert_true(fabs(pa->data[3 * r] + pa->data[3 * r + 1] + pa->data[3 * r + 2] - 1) < 1e-6);
        /* training: the same loss and gradient, from the same logits */
        nb_loss_kind kind = classes == 3 ? NB_LOSS_CCE : NB_LOSS_BCE;
        nb_real ga[24], gb[24];
        double la = train_loss(a, kind, x, classes == 3 ? labels : bin, N, 1, "1.kernel", ga, 8 * classes);
        double lb = train_loss(b, kind, x, classes == 3 ? labels : bin, N, 1, "1.kernel", gb, 8 * classes);
        double want = 0; /* the loss from the probabilities, by hand */
        for (int64_t r = 0; r < N; r++)
            want -= classes == 3 ? log(pb->data[3 * r + (int)labels[r]])
                                 : (bin[r] ? log(pb->data[r]) : log(1 - pb->data[r]));
        want /= (double)N;
        if (fabs(la - want) > 1e-5 || fabs(lb - want) > 1e-5)
            FAIL("'%s': loss %.7g, without the dropout %.7g, by hand %.7g", with[t], la, lb, want);
        double gmax = 0;
        for (int i = 0; i < 8 * classes; i++) {
            assert_true(fabs(ga[i] - gb[i]) < 1e-6);
            gmax = fmax(gmax, fabs(gb[i]));
        }
        assert_true(gmax > 1e-4);
        /* evaluation too */
        nb_dataset d = {nb_tensor_clone(X), nb_tensor_new(classes == 3 ? 1 : 2, (int64_t[]){N, 1})};
        memcpy(d.y->data, classes == 3 ? labels : bin, sizeof labels);
        double ea, eb;
        assert_int_equal(nb_evaluate(a, &d, kind, 4, &ea, NULL, NULL), NB_OK);
        assert_int_equal(nb_evaluate(b, &d, kind, 4, &eb, NULL, NULL), NB_OK);
        assert_true(fabs(ea - want) < 1e-5 && fabs(eb - want) < 1e-5);
        nb_dataset_free(&d);
        nb_tensor_free(pa);
        nb_tensor_free(pb);
        nb_model_free(a);
        nb_model_free(b);
    }
    /* A softmax followed by a layer that computes is an ordinary layer: the
     * logits are the last layer's output. */
    nb_model *m;
    assert_int_equal(nb_model_from_spec("dense 3 softmax; dense 3", 1, in, &m), NB_OK);
    assert_ptr_equal(nb_model_logits(m), nb_model_output(m));
    assert_int_equal(nb_model_output_activation(m), NB_ACT_NONE);
    nb_model_free(m);
    /* A dropout on logits stays part of them (PyTorch's order). */
    assert_int_equal(nb_model_from_spec("dense 3; dropout 0.5", 1, in, &m), NB_OK);
    assert_ptr_equal(nb_model_logits(m), nb_model_output(m));
    nb_model_free(m);
    assert_int_equal(nb_model_from_spec("dense 3 log_softmax; dropout 0.5", 1, in, &m), NB_OK);
    assert_int_equal(nb_model_output_activation(m), NB_ACT_LOG_SOFTMAX);
    assert_ptr_not_equal(nb_model_logits(m), nb_model_output(m));
    assert_string_equal(nb_node_op(nb_model_logits(m)), "log_softmax");
    nb_model_free(m);
    nb_tensor_free(X);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_parse),
        cmocka_unit_test(test_model_shapes_and_errors),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_optimizer_formulas),
        cmocka_unit_test(test_train_real_data),
        cmocka_unit_test(test_resume_is_bit_identical),
        cmocka_unit_test(test_divergence_is_reported),
        cmocka_unit_test(test_csv_tasks),
        cmocka_unit_test(test_loss_after_set_batch_and_bce_accuracy),
        cmocka_unit_test(test_resume_with_another_optimizer_is_refused),
        cmocka_unit_test(test_second_loss_names_the_first),
        cmocka_unit_test(test_spec_print_parse_fixed_point),
        cmocka_unit_test(test_final_activation_before_dropout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
