/* batchnorm and layernorm (issue 13): the spec keys print back as
 * themselves, the parameters are Keras's with their starting values, the
 * batch statistics and PyTorch's moving update (values computed here in
 * double), inference with the moving statistics, batch 1 refused in
 * training as PyTorch does, batch 0, NaN, the per-example Jacobian refused
 * in training mode, save/load bit for bit, and the CLI end to end (train
 * a residual BN model, summary, predict, eval, grad, --resume bit-identical).
 * Each refusal is a row of docs/bad-inputs.md ("BatchNorm and LayerNorm").
 * NB_SHOW=1 prints the refusals' messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the headers it needs */

#include <math.h>

#include "nb_test_util.h"

static void expect_error(nb_status s, const char *msg)
{
    assert_int_not_equal(s, NB_OK);
    if (getenv("NB_SHOW")) fprintf(stderr, "%s\n", nb_last_error());
    if (!strstr(nb_last_error(), msg)) fail_msg("got '%s', expected it to contain '%s'", nb_last_error(), msg);
}

static void test_spec_print_parse(void **state)
{
    (void)state;
    const char *spec = "dense 6; batchnorm momentum=0.2 eps=0.001 as a; relu; add a; layernorm eps=1e-06; dense 2";
    nb_model *m, *m2;
    assert_int_equal(nb_model_from_spec(spec, 1, (const int64_t[]){3}, &m), NB_OK);
    assert_string_equal(nb_model_spec(m), spec);
    assert_int_equal(nb_model_from_spec(nb_model_spec(m), 1, (const int64_t[]){3}, &m2), NB_OK);
    assert_string_equal(nb_model_spec(m2), spec);
    nb_model_free(m2);
    nb_model_free(m);
    /* the defaults written out print as left out */
    nb_layer_spec *l;
    int n;
    char b[200];
    assert_int_equal(nb_spec_parse("batchnorm momentum=0.1 eps=1e-5; layernorm eps=0.00001", &l, &n), NB_OK);
    assert_int_equal(n, 2);
    assert_string_equal(nb_layer_spec_str(&l[0], b, sizeof b), "batchnorm");
    assert_string_equal(nb_layer_spec_str(&l[1], b, sizeof b), "layernorm");
    free(l);
}

static nb_node *param_named(nb_model *m, const char *name)
{
    for (int i = 0; i < nb_model_param_count(m); i++)
        if (!strcmp(nb_node_name(nb_model_param(m, i)), name)) return nb_model_param(m, i);
    fail_msg("no parameter %s", name);
    return NULL;
}

static void test_params_start_values(void **state)
{
    (void)state;
    nb_model *m;
    assert_int_equal(
        nb_model_from_spec("conv2d 3 1; batchnorm; flatten; dense 4; layernorm", 3, (const int64_t[]){2, 2, 1}, &m),
        NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_TORCH_DEFAULT, 5), NB_OK); /* draws biases: not these */
    assert_int_equal(nb_model_param_count(m), 2 + 4 + 2 + 2);
    assert_int_equal(nb_model_trainable_count(m), 8);
    const struct {
        const char *name;
        double v;
        int trained;
    } want[] = {{"1.gamma", 1, 1},           {"1.beta", 0, 1},  {"1.moving_mean", 0, 0},
                {"1.moving_variance", 1, 0}, {"4.gamma", 1, 1}, {"4.beta", 0, 1}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        nb_node *p = param_named(m, want[i].name);
        const nb_tensor *v = nb_value(p);
        assert_int_equal(v->rank, 1);
        assert_int_equal(v->shape[0], i < 4 ? 3 : 4);
        for (int64_t j = 0; j < v->size; j++)
            assert_true(v->data[j] == (nb_real)want[i].v);
        assert_int_equal(nb_node_requires_grad(p), want[i].trained);
    }
    nb_model_free(m);
}

/* batchnorm on (N, C) input in training mode, then the moving update. */
static void test_training_values_and_moving_update(void **state)
{
    (void)state;
    nb_model *m;
    assert_int_equal(nb_model_from_spec("batchnorm momentum=0.25", 1, (const int64_t[]){2}, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1), NB_OK);
    assert_int_equal(nb_model_set_batch(m, 3), NB_OK);
    const double x[6] = {1, 2, 3, 6, 5, -1};
    nb_tensor *in = nb_value(nb_model_input(m));
    for (int i = 0; i < 6; i++)
        in->data[i] = (nb_real)x[i];
    nb_graph *g = nb_model_graph(m);
    nb_graph_set_training(g, NB_TRAINING, 1);
    assert_int_equal(nb_forward(g), NB_OK);
    const nb_real *y = nb_value(nb_model_output(m))->data;
    double mu[2] = {0}, var[2] = {0};
    for (int c = 0; c < 2; c++) {
        for (int r = 0; r < 3; r++)
            mu[c] += x[r * 2 + c] / 3;
        for (int r = 0; r < 3; r++)
            var[c] += (x[r * 2 + c] - mu[c]) * (x[r * 2 + c] - mu[c]) / 3;
        for (int r = 0; r < 3; r++)
            assert_float_equal(y[r * 2 + c], (x[r * 2 + c] - mu[c]) / sqrt(var[c] + 1e-5), 1e-5);
    }
    assert_int_equal(nb_batchnorm_update_moving(g), 1);
    assert_int_equal(nb_batchnorm_update_moving(g), 0); /* once per forward */
    const nb_real *mm = nb_value(param_named(m, "0.moving_mean"))->data;
    const nb_real *mv = nb_value(param_named(m, "0.moving_variance"))->data;
    for (int c = 0; c < 2; c++) {
        assert_float_equal(mm[c], 0.25 * mu[c], 1e-6);
        assert_float_equal(mv[c], 0.75 + 0.25 * var[c] * 3 / 2, 1e-5); /* unbiased */
    }
    /* inference: the moving statistics, per element */
    nb_graph_set_training(g, NB_INFERENCE, 1);
    assert_int_equal(nb_forward(g), NB_OK);
    assert_int_equal(nb_batchnorm_update_moving(g), 0);
    for (int e = 0; e < 6; e++)
        assert_float_equal(y[e], (x[e] - mm[e % 2]) / sqrt((double)mv[e % 2] + 1e-5), 1e-5);
    nb_model_free(m);
}

/* (N, H, W, C): statistics over N, H, W; layernorm over C of each pixel. */
static void test_nhwc_and_layernorm(void **state)
{
    (void)state;
    nb_model *m;
    assert_int_equal(nb_model_from_spec("batchnorm as b; layernorm; add b", 3, (const int64_t[]){2, 2, 3}, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1), NB_OK);
    assert_int_equal(nb_model_set_batch(m, 2), NB_OK);
    nb_tensor *in = nb_value(nb_model_input(m));
    double x[24], bn[24], want[24];
    for (int i = 0; i < 24; i++)
        in->data[i] = (nb_real)(x[i] = sin(0.9 * i) * (1 + i % 3));
    for (int c = 0; c < 3; c++) {
        double mu = 0, var = 0;
        for (int r = 0; r < 8; r++)
            mu += x[r * 3 + c] / 8;
        for (int r = 0; r < 8; r++)
            var += (x[r * 3 + c] - mu) * (x[r * 3 + c] - mu) / 8;
        for (int r = 0; r < 8; r++)
            bn[r * 3 + c] = (x[r * 3 + c] - mu) / sqrt(var + 1e-5);
    }
    for (int r = 0; r < 8; r++) {
        const double *v = bn + r * 3;
        const double mu = (v[0] + v[1] + v[2]) / 3;
        const double var = ((v[0] - mu) * (v[0] - mu) + (v[1] - mu) * (v[1] - mu) + (v[2] - mu) * (v[2] - mu)) / 3;
        for (int c = 0; c < 3; c++)
            want[r * 3 + c] = (v[c] - mu) / sqrt(var + 1e-5) + v[c];
    }
    nb_graph_set_training(nb_model_graph(m), NB_TRAINING, 1);
    assert_int_equal(nb_forward(nb_model_graph(m)), NB_OK);
    for (int i = 0; i < 24; i++)
        assert_float_equal(nb_value(nb_model_output(m))->data[i], want[i], 1e-4);
    nb_model_free(m);
}

/* One value per channel in training mode is refused (PyTorch: "Expected
 * more than 1 value per channel when training"); inference takes it, and
 * so does (1, H, W, C) with H W > 1. */
static void test_batch_one(void **state)
{
    (void)state;
    nb_model *m;
    assert_int_equal(nb_model_from_spec("dense 3; batchnorm", 1, (const int64_t[]){2}, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1), NB_OK);
    assert_int_equal(nb_model_set_batch(m, 1), NB_OK);
    nb_graph *g = nb_model_graph(m);
    nb_graph_set_training(g, NB_TRAINING_NO_DROPOUT, 1);
    expect_error(nb_forward(g), "batchnorm: training mode needs more than one value per channel, got input (1, 3)");
    assert_int_equal(nb_batchnorm_update_moving(g), 0);
    nb_graph_set_training(g, NB_INFERENCE, 1);
    assert_int_equal(nb_forward(g), NB_OK);
    nb_model_free(m);
    assert_int_equal(nb_model_from_spec("batchnorm", 3, (const int64_t[]){2, 1, 2}, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1), NB_OK);
    nb_graph_set_training(nb_model_graph(m), NB_TRAINING, 1);
    assert_int_equal(nb_forward(nb_model_graph(m)), NB_OK);
    nb_model_free(m);
}

/* Batch 0 at the op: an empty output, no statistics to update. */
static void test_batch_zero(void **state)
{
    (void)state;
    nb_graph *g = nb_graph_new();
    const int64_t xs[2] = {0, 3}, cs[1] = {3};
    nb_node *x = nb_input(g, "x", 2, xs);
    nb_node *p[4];
    for (int i = 0; i < 4; i++)
        p[i] = nb_param(g, (const char *[]){"g", "b", "mm", "mv"}[i], 1, cs);
    nb_node *bn = nb_batchnorm(x, p[0], p[1], p[2], p[3], 1e-5, 0.1);
    nb_node *ln = nb_layernorm(bn, p[0], p[1], 1e-5);
    assert_non_null(ln);
    nb_graph_set_training(g, NB_TRAINING, 1);
    assert_int_equal(nb_forward(g), NB_OK);
    assert_int_equal(nb_value(ln)->size, 0);
    assert_int_equal(nb_batchnorm_update_moving(g), 0);
    /* bad arguments and shapes */
    expect_error(nb_batchnorm(x, p[0], p[1], p[2], p[3], 0, 0.1) ? NB_OK : NB_ERR_ARG,
                 "batchnorm: eps 0 must be in (0, 1)");
    nb_node *wrong = nb_param(g, "w", 1, (const int64_t[]){2});
    expect_error(nb_batchnorm(x, wrong, p[1], p[2], p[3], 1e-5, 0.1) ? NB_OK : NB_ERR_SHAPE,
                 "batchnorm: gamma has shape (2,), the input (0, 3): it needs one value per channel");
    expect_error(nb_layernorm(x, p[0], wrong, 1e-5) ? NB_OK : NB_ERR_SHAPE,
                 "layernorm: beta has shape (2,), the input (0, 3): it needs one value per feature");
    expect_error(nb_batchnorm(NULL, p[0], p[1], p[2], p[3], 1e-5, 0.1) ? NB_OK : NB_ERR_ARG, "input 0 is NULL");
    nb_graph_free(g);
}

/* NaN: in training it reaches every value of its channel (through the
 * mean, as in PyTorch); in inference only its own element. */
static void test_nan(void **state)
{
    (void)state;
    nb_model *m;
    assert_int_equal(nb_model_from_spec("batchnorm", 1, (const int64_t[]){2}, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1), NB_OK);
    assert_int_equal(nb_model_set_batch(m, 2), NB_OK);
    nb_real *in = nb_value(nb_model_input(m))->data;
    in[0] = NAN, in[1] = 1, in[2] = 2, in[3] = 1e30f;
    nb_graph *g = nb_model_graph(m);
    nb_graph_set_training(g, NB_TRAINING, 1);
    assert_int_equal(nb_forward(g), NB_OK);
    const nb_real *y = nb_value(nb_model_output(m))->data; /* after the forward: it may move the buffer */
    assert_true(isnan(y[0]) && isnan(y[2]));
    assert_float_equal(y[1], -1, 1e-3); /* (1 - 5e29) / 5e29 */
    assert_float_equal(y[3], 1, 1e-3);
    nb_graph_set_training(g, NB_INFERENCE, 1);
    assert_int_equal(nb_forward(g), NB_OK);
    assert_true(isnan(y[0]) && !isnan(y[2]));
    nb_model_free(m);
}

static void test_per_example_jacobian(void **state)
{
    (void)state;
    nb_model *m;
    assert_int_equal(nb_model_from_spec("dense 3; batchnorm; dense 2", 1, (const int64_t[]){2}, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1), NB_OK);
    assert_int_equal(nb_model_set_batch(m, 4), NB_OK);
    nb_real *in = nb_value(nb_model_input(m))->data;
    for (int i = 0; i < 8; i++)
        in[i] = (nb_real)sin(i + 1.0);
    nb_jacobian_opts o = {.per_example = 1};
    nb_tensor *J = NULL;
    nb_graph_set_training(nb_model_graph(m), NB_TRAINING_NO_DROPOUT, 1);
    expect_error(nb_jacobian(nb_model_output(m), nb_model_input(m), &o, &J),
                 "jacobian: per-example Jacobians of a model with batchnorm in training mode would be wrong");
    assert_null(J);
    nb_graph_set_training(nb_model_graph(m), NB_INFERENCE, 1);
    assert_int_equal(nb_jacobian(nb_model_output(m), nb_model_input(m), &o, &J), NB_OK);
    assert_int_equal(J->rank, 3);
    nb_tensor_free(J);
    nb_model_free(m);
}

static void test_spec_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *spec, *msg;
    } rows[] = {
        {"dense 4; batchnorm momentum=2", "momentum must be a number in [1e-06, 1), got '2'"},
        {"dense 4; layernorm eps=0", "eps must be a number in [1e-12, 1), got '0'"},
        {"dense 4; batchnorm rate=0.5", "unknown option 'rate'"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        nb_model *m = NULL;
        expect_error(nb_model_from_spec(rows[i].spec, 1, (const int64_t[]){3}, &m), rows[i].msg);
        assert_null(m);
    }
}

/* Save and load: the moving statistics come back bit for bit. */
static void test_save_load(void **state)
{
    (void)state;
    char dir[1024], path[1100];
    tu_mkdtemp(dir, sizeof dir, "norm");
    tu_fmt(path, sizeof path, "%s/m.safetensors", dir);
    nb_model *m, *m2;
    assert_int_equal(nb_model_from_spec("dense 3; batchnorm momentum=0.3; layernorm", 1, (const int64_t[]){2}, &m),
                     NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1), NB_OK);
    assert_int_equal(nb_model_set_batch(m, 5), NB_OK);
    nb_real *in = nb_value(nb_model_input(m))->data;
    for (int i = 0; i < 10; i++)
        in[i] = (nb_real)cos(i * 1.3);
    nb_graph_set_training(nb_model_graph(m), NB_TRAINING, 1);
    assert_int_equal(nb_forward(nb_model_graph(m)), NB_OK);
    assert_int_equal(nb_batchnorm_update_moving(nb_model_graph(m)), 1);
    assert_int_equal(nb_model_save(m, path), NB_OK);
    assert_int_equal(nb_model_load(path, &m2), NB_OK);
    assert_string_equal(nb_model_spec(m2), "dense 3; batchnorm momentum=0.3; layernorm");
    assert_int_equal(nb_model_param_count(m2), nb_model_param_count(m));
    for (int i = 0; i < nb_model_param_count(m); i++) {
        const nb_tensor *a = nb_value(nb_model_param(m, i)), *b = nb_value(nb_model_param(m2, i));
        assert_string_equal(nb_node_name(nb_model_param(m, i)), nb_node_name(nb_model_param(m2, i)));
        assert_int_equal(a->size, b->size);
        assert_memory_equal(a->data, b->data, (size_t)a->size * sizeof(nb_real));
        assert_int_equal(nb_node_requires_grad(nb_model_param(m, i)), nb_node_requires_grad(nb_model_param(m2, i)));
    }
    const nb_tensor *mv = nb_value(param_named(m2, "1.moving_variance"));
    assert_true(mv->data[0] != 1); /* updated, not the start value */
    nb_model_free(m2);
    nb_model_free(m);
    tu_rm_rf(dir);
}

/* The CLI: a residual BN model trained 1 epoch, summary, predict, eval,
 * grad (training and --eval: no moving statistics among the gradients),
 * and --resume bit-identical to an uninterrupted run. */
static int run(const char *const *args, char **out)
{
    int rc = tu_run_cli(args, out, NULL);
    if (getenv("NB_SHOW")) fprintf(stderr, "%s", *out);
    return rc;
}

static void test_cli_end_to_end(void **state)
{
    (void)state;
    char dir[1024], m1[1100], m2[1100], mf[1100], g[1100], x[1100], *out;
    tu_mkdtemp(dir, sizeof dir, "norm-cli");
    tu_write_dataset(dir, "train", 300, 300, 8, 8, 4, 0);
    tu_write_dataset(dir, "t10k", 40, 40, 8, 8, 4, 0);
    tu_fmt(m1, sizeof m1, "%s/one.safetensors", dir);
    tu_fmt(m2, sizeof m2, "%s/resumed.safetensors", dir);
    tu_fmt(mf, sizeof mf, "%s/full.safetensors", dir);
    tu_fmt(g, sizeof g, "%s/g.safetensors", dir);
    tu_fmt(x, sizeof x, "%s/t10k-images-idx3-ubyte", dir);
    const char *spec = "conv2d 4 3 padding=same; batchnorm; relu as a; conv2d 4 3 padding=same; batchnorm as b; "
                       "add a; relu; globalavgpool; layernorm; dense 4";
    const char *train1[] = {"train",   "--data", dir,       "--model", spec, "--epochs", "1",
                            "--batch", "32",     "--quiet", "--out",   m1,   NULL};
    assert_int_equal(run(train1, &out), 0);
    free(out);
    const char *trainf[] = {"train",   "--data", dir,       "--model", spec, "--epochs", "2",
                            "--batch", "32",     "--quiet", "--out",   mf,   NULL};
    assert_int_equal(run(trainf, &out), 0);
    free(out);
    size_t n1 = 0, n2 = 0;
    char *a = tu_read(m1, &n1);
    assert_non_null(a);
    tu_write(m2, a, n1);
    free(a);
    const char *resume[] = {"train", "--data",  dir,     "--epochs", "2",        "--batch",
                            "32",    "--quiet", "--out", m2,         "--resume", NULL};
    assert_int_equal(run(resume, &out), 0);
    free(out);
    a = tu_read(m2, &n1);
    char *b = tu_read(mf, &n2);
    assert_true(a && b && n1 == n2 && !memcmp(a, b, n1)); /* statistics included */
    free(a);
    free(b);
    nb_model *m;
    assert_int_equal(nb_model_load(m1, &m), NB_OK);
    assert_true(nb_value(param_named(m, "4.moving_mean"))->data[0] != 0);
    nb_model_free(m);
    const char *summary[] = {"summary", "--model", m1, NULL};
    assert_int_equal(run(summary, &out), 0);
    assert_non_null(strstr(out, "batchnorm"));
    assert_non_null(strstr(out, "layernorm"));
    /* Keras's split: the two batchnorms' moving statistics (2 x 2 x 4) are not trained. */
    assert_non_null(strstr(out, "Trainable params: 232\nNon-trainable params: 16\n"));
    free(out);
    const char *eval[] = {"eval", "--model", m1, "--data", dir, NULL};
    assert_int_equal(run(eval, &out), 0);
    assert_non_null(strstr(out, "accuracy"));
    free(out);
    const char *predict[] = {"predict", "--model", m1, "--input", x, "--count", "3", NULL};
    assert_int_equal(run(predict, &out), 0);
    free(out);
    for (int ev = 0; ev < 2; ev++) {
        const char *grad[] = {"grad", "--model", m1, "--data", dir, "--count", "8", "-o", g, ev ? "--eval" : NULL,
                              NULL};
        assert_int_equal(run(grad, &out), 0);
        assert_null(strstr(out, "moving"));
        assert_non_null(strstr(out, "1.gamma"));
        free(out);
        nb_safetensors *st;
        assert_int_equal(nb_safetensors_read(g, &st), NB_OK);
        assert_null(nb_safetensors_get(st, "1.moving_mean"));
        assert_non_null(nb_safetensors_get(st, "4.beta"));
        nb_safetensors_free(st);
    }
    tu_rm_rf(dir);
}

/* The moving statistics have no derivative: hessian, jacobian and hvp
 * refuse them by name; reproducible training refuses a batchnorm model
 * (docs/bad-inputs.md N7, N8). */
static void test_cli_state_refused(void **state)
{
    (void)state;
    char dir[1024], m[1100], x[1100], y[1100], v[1100], h[1100], *out;
    tu_mkdtemp(dir, sizeof dir, "norm-state");
    tu_write_dataset(dir, "train", 64, 64, 4, 4, 3, 0);
    tu_write_dataset(dir, "t10k", 8, 8, 4, 4, 3, 0);
    tu_fmt(m, sizeof m, "%s/m.safetensors", dir);
    tu_fmt(x, sizeof x, "%s/t10k-images-idx3-ubyte", dir);
    tu_fmt(y, sizeof y, "%s/y.npy", dir);
    nb_tensor *labels = nb_tensor_new(1, (const int64_t[]){8});
    for (int i = 0; i < 8; i++)
        labels->data[i] = (nb_real)(i % 3);
    assert_int_equal(nb_npy_write(y, labels), NB_OK);
    nb_tensor_free(labels);
    tu_fmt(v, sizeof v, "%s/v.safetensors", dir);
    tu_fmt(h, sizeof h, "%s/h.npy", dir);
    const char *spec = "flatten; dense 4; batchnorm; dense 3";
    const char *repro[] = {"train", "--data", dir, "--model", spec, "--quiet", "--reproducible", "--out", m, NULL};
    assert_int_equal(run(repro, &out), 1);
    assert_non_null(strstr(out, "batchnorm would normalise each shard with its own statistics"));
    free(out);
    const char *train[] = {"train", "--data", dir, "--model", spec, "--quiet", "--batch", "16", "--out", m, NULL};
    assert_int_equal(run(train, &out), 0);
    free(out);
    const char *want = "'2.moving_mean' is batchnorm state (a moving statistic), not a trained parameter";
    const char *hess[] = {"hessian", "--model",       m,    "--input", x,   "--labels", y,
                          "--wrt",   "2.moving_mean", "-o", h,         NULL};
    assert_int_equal(run(hess, &out), 1);
    assert_non_null(strstr(out, want));
    free(out);
    const char *jac[] = {"jacobian", "--model", m, "--input", x, "--wrt", "2.moving_mean", "-o", h, NULL};
    assert_int_equal(run(jac, &out), 1);
    assert_non_null(strstr(out, want));
    free(out);
    nb_safetensors *st = nb_safetensors_new();
    nb_tensor *t = nb_tensor_new(1, (const int64_t[]){4});
    assert_true(st && t);
    assert_int_equal(nb_safetensors_add(st, "2.moving_mean", t), NB_OK);
    assert_int_equal(nb_safetensors_write(v, st, 0), NB_OK);
    nb_safetensors_free(st);
    nb_tensor_free(t);
    const char *hvp[] = {"hvp", "--model", m, "--input", x, "--labels", y, "--vector", v, "-o", h, NULL};
    assert_int_equal(run(hvp, &out), 1);
    assert_non_null(strstr(out, want));
    free(out);
    /* the trained ones work, in both modes */
    const char *hess_ok[] = {"hessian", "--model", m,    "--input", x,        "--labels", y,
                             "--wrt",   "2.gamma", "-o", h,         "--eval", NULL};
    assert_int_equal(run(hess_ok, &out), 0);
    free(out);
    hess_ok[11] = NULL;
    assert_int_equal(run(hess_ok, &out), 0);
    free(out);
    tu_rm_rf(dir);
}

/* --fold-bn: batchnorm folded into the conv2d/dense before it gives the
 * same inference outputs within float rounding; a batchnorm after a named
 * output or an activation stays. */
/* Everything a batchnorm and a layernorm compute in training mode (output,
 * gradients, a JVP, an HVP), at t threads, into one array: the per-channel
 * sums run over fixed chunks of rows, so 1 and 2 threads give the same bits
 * (rows x C above the parallel threshold: 9 x 32 x 32 x 4). */
static nb_real *norm_results(int threads, int64_t *count)
{
    nb_set_num_threads(threads);
    nb_model *m;
    const int64_t in[3] = {32, 32, 4};
    assert_int_equal(nb_model_from_spec("batchnorm; layernorm; flatten; dense 3", 3, in, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 3), NB_OK);
    assert_int_equal(nb_model_set_batch(m, 9), NB_OK);
    nb_tensor *x = nb_value(nb_model_input(m));
    for (int64_t i = 0; i < x->size; i++)
        x->data[i] = (nb_real)sin(0.37 * (double)i) * (nb_real)(1 + i % 5);
    nb_node *target, *loss;
    assert_int_equal(nb_model_loss(m, NB_LOSS_CCE, &target, &loss), NB_OK);
    for (int i = 0; i < 9; i++)
        nb_value(target)->data[i] = (nb_real)(i % 3);
    nb_graph_set_training(nb_model_graph(m), NB_TRAINING_NO_DROPOUT, 1);
    assert_int_equal(nb_forward(nb_model_graph(m)), NB_OK);
    assert_int_equal(nb_backward(loss), NB_OK);
    const int np = nb_model_param_count(m);
    nb_node *wrt[16];
    int nw = 0;
    int64_t n = x->size;
    for (int i = 0; i < np; i++)
        if (!strstr(nb_node_name(nb_model_param(m, i)), "moving_"))
            wrt[nw++] = nb_model_param(m, i), n += 2 * nb_value(wrt[nw - 1])->size;
    nb_real *out = malloc(sizeof(nb_real) * (size_t)n), *o = out;
    for (int i = 0; i < nw; i++) {
        const nb_tensor *g = nb_grad(wrt[i]);
        memcpy(o, g->data, sizeof(nb_real) * (size_t)g->size), o += g->size;
    }
    /* JVP of the logits along a tangent of the input */
    int64_t tshape[5] = {1, 9, 32, 32, 4};
    nb_tensor *t = nb_tensor_new(5, tshape), *jv;
    for (int64_t i = 0; i < t->size; i++)
        t->data[i] = (nb_real)cos(0.11 * (double)i);
    nb_node *xin = nb_model_input(m);
    assert_int_equal(nb_jvp(nb_model_output(m), 1, &xin, (const nb_tensor *const *)&t, &jv), NB_OK);
    nb_tensor_free(t);
    /* HVP of the loss along one direction over all trained tensors */
    nb_tensor *v[16], *hv[16];
    for (int i = 0; i < nw; i++) {
        const nb_tensor *p = nb_value(wrt[i]);
        int64_t sh[8] = {1};
        for (int d = 0; d < p->rank; d++)
            sh[d + 1] = p->shape[d];
        v[i] = nb_tensor_new(p->rank + 1, sh);
        for (int64_t e = 0; e < v[i]->size; e++)
            v[i]->data[e] = (nb_real)sin(1.3 * (double)(e + 7 * i));
    }
    assert_int_equal(nb_hvp(loss, nw, wrt, (const nb_tensor *const *)v, hv), NB_OK);
    for (int i = 0; i < nw; i++) {
        memcpy(o, hv[i]->data, sizeof(nb_real) * (size_t)hv[i]->size), o += hv[i]->size;
        nb_tensor_free(v[i]), nb_tensor_free(hv[i]);
    }
    const int64_t nj = jv->size < x->size ? jv->size : x->size;
    memcpy(o, jv->data, sizeof(nb_real) * (size_t)nj), o += nj;
    nb_tensor_free(jv);
    *count = o - out;
    nb_model_free(m);
    nb_set_num_threads(0);
    return out;
}

static void test_threads_same_bits(void **state)
{
    (void)state;
    int64_t n1, n2;
    nb_real *a = norm_results(1, &n1), *b = norm_results(2, &n2);
    assert_int_equal(n1, n2);
    for (int64_t i = 0; i < n1; i++)
        assert_true(isfinite(a[i]));
    assert_memory_equal(a, b, sizeof(nb_real) * (size_t)n1);
    free(a), free(b);
}

static void test_fold_batchnorm(void **state)
{
    (void)state;
    nb_model *m;
    assert_int_equal(nb_model_from_spec("conv2d 3 3; batchnorm; relu; conv2d 2 1 as n; batchnorm; relu; batchnorm; "
                                        "flatten; dense 4; batchnorm momentum=0.5 eps=0.01; dense 2",
                                        3, (const int64_t[]){5, 5, 1}, &m),
                     NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 3), NB_OK);
    for (int i = 0; i < nb_model_param_count(m); i++) {
        nb_tensor *v = nb_value(nb_model_param(m, i));
        const char *name = nb_node_name(nb_model_param(m, i));
        for (int64_t j = 0; j < v->size; j++) {
            const double u = sin(7.1 * (double)(i * 31 + j)); /* in [-1, 1] */
            if (strstr(name, "gamma") || strstr(name, "moving_variance"))
                v->data[j] = (nb_real)(1 + 0.5 * u);
            else if (strstr(name, "beta") || strstr(name, "moving_mean") || strstr(name, "bias"))
                v->data[j] = (nb_real)(0.3 * u);
        }
    }
    assert_int_equal(nb_model_set_batch(m, 3), NB_OK);
    nb_real *in = nb_value(nb_model_input(m))->data;
    for (int i = 0; i < 75; i++)
        in[i] = (nb_real)cos(0.37 * i);
    nb_graph *g = nb_model_graph(m);
    nb_graph_set_training(g, NB_INFERENCE, 0);
    assert_int_equal(nb_forward(g), NB_OK);
    nb_real before[6], scale = 0;
    memcpy(before, nb_value(nb_model_output(m))->data, sizeof before);
    for (int i = 0; i < 6; i++)
        scale = fmaxf(scale, fabsf(before[i]));
    int k = -1;
    assert_int_equal(nb_model_fold_batchnorm(m, &k), NB_OK);
    assert_int_equal(k, 2); /* layers 1 and 9; not 4 (after a named conv) nor 6 (after relu) */
    assert_true(nb_value(param_named(m, "1.gamma"))->data[0] == 1);
    assert_true(nb_value(param_named(m, "4.gamma"))->data[0] != 1);
    assert_int_equal(nb_forward(g), NB_OK);
    for (int i = 0; i < 6; i++)
        assert_float_equal(nb_value(nb_model_output(m))->data[i], before[i], 1e-5 * scale);
    assert_int_equal(nb_model_fold_batchnorm(m, &k), NB_OK); /* again: identities fold to themselves */
    assert_int_equal(nb_forward(g), NB_OK);
    for (int i = 0; i < 6; i++)
        assert_float_equal(nb_value(nb_model_output(m))->data[i], before[i], 1e-5 * scale);
    assert_int_not_equal(nb_model_fold_batchnorm(NULL, &k), NB_OK);
    nb_model_free(m);
}

/* The CLI's --fold-bn: predict's outputs equal within float rounding, eval
 * says what it folded. */
static void test_cli_fold_bn(void **state)
{
    (void)state;
    char dir[1024], m[1100], x[1100], p1[1100], p2[1100], *out;
    tu_mkdtemp(dir, sizeof dir, "norm-fold");
    tu_write_dataset(dir, "train", 96, 96, 6, 6, 3, 0);
    tu_write_dataset(dir, "t10k", 12, 12, 6, 6, 3, 0);
    tu_fmt(m, sizeof m, "%s/m.safetensors", dir);
    tu_fmt(x, sizeof x, "%s/t10k-images-idx3-ubyte", dir);
    tu_fmt(p1, sizeof p1, "%s/p1.npy", dir);
    tu_fmt(p2, sizeof p2, "%s/p2.npy", dir);
    const char *train[] = {"train",   "--data",  dir,  "--model", "conv2d 4 3; batchnorm; relu; flatten; dense 3",
                           "--quiet", "--batch", "16", "--out",   m,
                           NULL};
    assert_int_equal(run(train, &out), 0);
    free(out);
    const char *pred[] = {"predict", "--model", m, "--input", x, "--raw", "-o", p1, NULL, NULL};
    assert_int_equal(run(pred, &out), 0);
    free(out);
    pred[7] = p2, pred[8] = "--fold-bn";
    assert_int_equal(run(pred, &out), 0);
    assert_non_null(strstr(out, "--fold-bn: folded 1 batchnorm layer into the layer before"));
    free(out);
    nb_tensor *a, *b;
    assert_int_equal(nb_npy_read(p1, &a), NB_OK);
    assert_int_equal(nb_npy_read(p2, &b), NB_OK);
    assert_int_equal(a->size, b->size);
    assert_int_equal(a->size, 36);
    double scale = 0;
    for (int64_t i = 0; i < a->size; i++)
        scale = fmax(scale, fabs(a->data[i]));
    for (int64_t i = 0; i < a->size; i++)
        assert_float_equal(a->data[i], b->data[i], 1e-5 * scale);
    nb_tensor_free(a);
    nb_tensor_free(b);
    const char *eval[] = {"eval", "--model", m, "--data", dir, "--fold-bn", NULL};
    assert_int_equal(run(eval, &out), 0);
    assert_non_null(strstr(out, "folded 1 batchnorm layer"));
    free(out);
    tu_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_print_parse),
        cmocka_unit_test(test_params_start_values),
        cmocka_unit_test(test_training_values_and_moving_update),
        cmocka_unit_test(test_nhwc_and_layernorm),
        cmocka_unit_test(test_batch_one),
        cmocka_unit_test(test_batch_zero),
        cmocka_unit_test(test_nan),
        cmocka_unit_test(test_per_example_jacobian),
        cmocka_unit_test(test_spec_refusals),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_cli_end_to_end),
        cmocka_unit_test(test_cli_state_refused),
        cmocka_unit_test(test_threads_same_bits),
        cmocka_unit_test(test_fold_batchnorm),
        cmocka_unit_test(test_cli_fold_bn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
