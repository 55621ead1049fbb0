/* The second-order commands run as a program: nabla hvp, hessian and
 * curvature on a tiny CNN trained for one epoch on 512 Fashion-MNIST
 * images, checked against the library's nb_hvp / nb_hessian on the same
 * batch, their refusals (the rows of docs/bad-inputs.md, "Second order"),
 * and the second-order part of nabla demo gd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "nabla.h"
#include "nb_test_shell.h"

#define CLI NB_BINARY_DIR "/nabla"
#define TMP NB_BINARY_DIR "/cli_second_"
#define FASHION "/usr/share/datasets/fashion-mnist"
#define MODEL TMP "m.safetensors"
#define XF TMP "x.npy"
#define Y TMP "y.npy"
#define N 6

static int have_data;

static int setup_model(void **state)
{
    (void)state;
    struct stat st;
    have_data = stat(FASHION "/t10k-images-idx3-ubyte.gz", &st) == 0;
    if (!have_data) return 0;
    if (run(CLI " train --data fashion-mnist --model 'conv2d 2 3 relu; maxpool 2; flatten; dense 10' --limit 512 "
                "--epochs 1 --batch 64 --no-test --quiet --out " MODEL))
        return -1;
    nb_dataset d = {0};
    if (nb_dataset_load_mnist(FASHION, "test", &d)) return -1;
    int64_t xs[4] = {N, 28, 28, 1}, ys[1] = {N};
    nb_tensor *x = nb_tensor_from(4, xs, d.x->data), *y = nb_tensor_from(1, ys, d.y->data);
    int bad = !x || !y || nb_npy_write(XF, x) || nb_npy_write(Y, y);
    nb_tensor_free(x);
    nb_tensor_free(y);
    nb_dataset_free(&d);
    return bad ? -1 : 0;
}

/* The model with its mean CCE loss on the test batch, forward pass run. */
static nb_model *model_on_batch(nb_node **loss)
{
    nb_model *m = NULL;
    nb_node *target;
    nb_tensor *x = NULL, *y = NULL;
    assert_int_equal(nb_model_load(MODEL, &m), NB_OK);
    assert_int_equal(nb_model_loss(m, NB_LOSS_CCE, &target, loss), NB_OK);
    assert_int_equal(nb_model_set_batch(m, N), NB_OK);
    assert_int_equal(nb_npy_read(XF, &x), NB_OK);
    assert_int_equal(nb_npy_read(Y, &y), NB_OK);
    memcpy(nb_value(nb_model_input(m))->data, x->data, sizeof(nb_real) * (size_t)x->size);
    memcpy(nb_value(target)->data, y->data, sizeof(nb_real) * (size_t)y->size);
    nb_tensor_free(x), nb_tensor_free(y);
    assert_int_equal(nb_forward(nb_model_graph(m)), NB_OK);
    return m;
}

/* hvp along v on (0.kernel, 3.bias) equals nb_hvp's on the same batch, and
 * hessian --wrt 3.bias times v's 3.bias part plus the cross block... is
 * checked for the bias block alone: H_bb v_b + H_bk v_k = (H v)_b. */
static void test_hvp_matches_library(void **state)
{
    (void)state;
    if (!have_data) skip();
    nb_node *loss;
    nb_model *m = model_on_batch(&loss);
    nb_node *wrt[2] = {nb_model_find_param(m, "0.kernel"), nb_model_find_param(m, "3.bias")};
    assert_non_null(wrt[0]);
    assert_non_null(wrt[1]);
    nb_rng r;
    nb_rng_seed(&r, 3);
    nb_safetensors *st = nb_safetensors_new();
    nb_tensor *v[2], *hv[2];
    for (int i = 0; i < 2; i++) {
        const nb_tensor *p = nb_value(wrt[i]);
        int64_t s[NB_MAX_RANK + 1] = {1};
        memcpy(s + 1, p->shape, sizeof(int64_t) * (size_t)p->rank);
        v[i] = nb_tensor_new(p->rank + 1, s);
        nb_tensor_fill_normal(v[i], &r, 0, 1);
        nb_tensor view = *p;
        view.data = v[i]->data, view.owns_data = 0;
        assert_int_equal(nb_safetensors_add(st, nb_node_name(wrt[i]), &view), NB_OK);
    }
    assert_int_equal(nb_safetensors_write(TMP "v.safetensors", st, 0), NB_OK);
    nb_safetensors_free(st);
    assert_int_equal(nb_hvp(loss, 2, wrt, (const nb_tensor *const *)v, hv), NB_OK);
    assert_int_equal(run(CLI " hvp --model " MODEL " --input " XF " --labels " Y " --loss cce --vector " TMP
                             "v.safetensors -o " TMP "hv.safetensors"),
                     0);
    assert_true(contains("curvature along v"));
    nb_safetensors *res = NULL;
    assert_int_equal(nb_safetensors_read(TMP "hv.safetensors", &res), NB_OK);
    assert_int_equal(nb_safetensors_count(res), 2);
    double max_abs = 0;
    for (int i = 0; i < 2; i++) {
        const nb_tensor *t = nb_safetensors_get(res, nb_node_name(wrt[i]));
        assert_non_null(t);
        assert_int_equal(t->rank, nb_value(wrt[i])->rank);
        for (int64_t e = 0; e < t->size; e++) {
            assert_true(fabs(t->data[e] - hv[i]->data[e]) <= 1e-5 + 1e-4 * fabs(hv[i]->data[e]));
            max_abs = fmax(max_abs, fabs(t->data[e]));
        }
    }
    assert_true(max_abs > 1e-4);
    nb_safetensors_free(res);
    /* hessian --wrt 3.bias --wrt2 0.kernel and --wrt 3.bias: (H v)_b = H_bk v_k + H_bb v_b */
    assert_int_equal(run(CLI " hessian --model " MODEL " --input " XF " --labels " Y " --wrt 3.bias -o " TMP
                             "hbb.npy --png " TMP "hbb.png"),
                     0);
    assert_true(contains("shape (10, 10)"));
    assert_true(contains("max |H - H^T|"));
    assert_int_equal(run(CLI " hessian --model " MODEL " --input " XF " --labels " Y " --wrt 3.bias --wrt2 0.kernel "
                             "-o " TMP "hbk.npy"),
                     0);
    assert_true(contains("shape (10, 3, 3, 1, 2)"));
    nb_tensor *hbb = NULL, *hbk = NULL;
    assert_int_equal(nb_npy_read(TMP "hbb.npy", &hbb), NB_OK);
    assert_int_equal(nb_npy_read(TMP "hbk.npy", &hbk), NB_OK);
    for (int i = 0; i < 10; i++) {
        double want = 0;
        for (int j = 0; j < 18; j++) want += hbk->data[i * 18 + j] * v[0]->data[j];
        for (int j = 0; j < 10; j++) want += hbb->data[i * 10 + j] * v[1]->data[j];
        assert_true(fabs(want - hv[1]->data[i]) <= 1e-5 + 1e-3 * fabs(want));
    }
    struct stat sb;
    assert_int_equal(stat(TMP "hbb.png", &sb), 0);
    nb_tensor_free(hbb), nb_tensor_free(hbk);
    for (int i = 0; i < 2; i++) nb_tensor_free(v[i]), nb_tensor_free(hv[i]);
    nb_model_free(m);
}

/* The refusals, one row each in docs/bad-inputs.md ("Second order"). */
static void test_refusals(void **state)
{
    (void)state;
    if (!have_data) skip();
    nb_safetensors *st = nb_safetensors_new();
    int64_t s2[1] = {2}, s5[1] = {5};
    nb_tensor *a = nb_tensor_new(1, s2), *b = nb_tensor_new(1, s5);
    assert_int_equal(nb_safetensors_add(st, "9.kernel", a), NB_OK);
    assert_int_equal(nb_safetensors_write(TMP "vbad.safetensors", st, 0), NB_OK);
    nb_safetensors_free(st);
    st = nb_safetensors_new();
    assert_int_equal(nb_safetensors_add(st, "3.bias", b), NB_OK);
    assert_int_equal(nb_safetensors_write(TMP "vshape.safetensors", st, 0), NB_OK);
    nb_safetensors_free(st);
    nb_tensor_free(a), nb_tensor_free(b);
    const char *common = " --model " MODEL " --input " XF " --labels " Y;
    assert_int_equal(run(CLI " hvp%s --vector " TMP "vbad.safetensors -o " TMP "o.safetensors", common), 1);
    assert_true(contains("nabla hvp: reading --vector: " TMP "vbad.safetensors: tensor '9.kernel' is not a "
                         "parameter of the model (see 'nabla summary')"));
    assert_int_equal(run(CLI " hvp%s --vector " TMP "vshape.safetensors -o " TMP "o.safetensors", common), 1);
    assert_true(contains("tensor '3.bias' has shape (5,), the parameter (10,)"));
    assert_int_equal(run(CLI " hvp%s -o " TMP "o.safetensors", common), 2);
    assert_true(contains("nabla hvp: --vector is required"));
    assert_int_equal(run(CLI " hessian%s --wrt 7.kernel -o " TMP "h.npy", common), 1);
    assert_true(contains("--wrt '7.kernel' is neither 'input' nor a parameter of the model"));
    assert_int_equal(run(CLI " hessian%s --wrt input --max-mb 1 -o " TMP "h.npy", common), 1);
    assert_true(contains("hessian: d2 "));
    assert_true(contains("would need 22127616 elements, 88510464 bytes (84.4 MiB), over the limit of 1.0 MiB"));
    assert_true(contains("--max-mb raises the limit"));
    assert_int_equal(run(CLI " hessian%s --wrt 3.bias --loss hinge -o " TMP "h.npy", common), 2);
    assert_true(contains("unknown --loss 'hinge' (the choices: cce, mse, bce)"));
    /* A label out of range: the library's one class-label message, through the loss. */
    int64_t ns[1] = {N};
    nb_tensor *ybad = nb_tensor_new(1, ns);
    ybad->data[N - 1] = 11;
    assert_int_equal(nb_npy_write(TMP "ybad.npy", ybad), NB_OK);
    nb_tensor_free(ybad);
    assert_int_equal(run(CLI " hessian --model " MODEL " --input " XF " --labels " TMP "ybad.npy --wrt 3.bias -o " TMP
                             "h.npy"),
                     1);
    assert_true(contains("cce_logits_loss: example 5 has label 11, not a class index 0..9 (10 classes)"));
    assert_int_equal(run(CLI " hvp --model " MODEL " --input " XF " --labels " TMP "ybad.npy --vector " TMP
                             "v.safetensors -o " TMP "o.safetensors"),
                     1);
    assert_true(contains("cce_logits_loss: example 5 has label 11, not a class index 0..9 (10 classes)"));
    assert_int_equal(run(CLI " curvature --model " MODEL " --data fashion-mnist --top 17"), 2);
    assert_true(contains("--top must be an integer from 1 to 16, got '17'"));
    struct stat sb;
    assert_int_not_equal(stat(TMP "h.npy", &sb), 0); /* nothing written */
}

/* curvature: lambda_1 on 200 images; the verdict on a rate above and one
 * below 2 / lambda_max. */
static void test_curvature(void **state)
{
    (void)state;
    if (!have_data) skip();
    assert_int_equal(run(CLI " curvature --model " MODEL " --data fashion-mnist --count 200 --batch 100 --trace "
                             "--samples 4 --lr 100"),
                     0);
    assert_true(contains("Hessian of the mean loss over 200 training examples (batches of 100)"));
    assert_true(contains("converged after"));
    assert_true(contains("trace (Hutchinson, 4 samples)"));
    const char *p = strstr(out, "lambda_1 = ");
    assert_non_null(p);
    const double l1 = atof(p + strlen("lambda_1 = "));
    assert_true(l1 > 0);
    p = strstr(out, "2 / lambda_max = ");
    assert_non_null(p);
    assert_true(fabs(atof(p + strlen("2 / lambda_max = ")) - 2 / l1) <= 1e-4 * (2 / l1));
    assert_true(contains("plain gradient descent diverges there"));
    char cmd[512];
    snprintf(cmd, sizeof cmd, CLI " curvature --model " MODEL " --data fashion-mnist --count 200 --batch 100 --lr %g",
             0.5 / l1);
    assert_int_equal(run("%s", cmd), 0);
    assert_true(contains("is stable there"));
}

/* ----------------------------------------------------- train --sharpness */

typedef struct {
    nb_model *m;
    const nb_dataset *d;
    int64_t batch;
    int seen, stop_after, shifted;
    double lr;
    int64_t steps[16];
    double values[16];
} sharp_probe;

/* The largest eigenvalue of a symmetric n x n matrix (overwritten), by
 * cyclic Jacobi rotations. */
static double jacobi_max(double *a, int n)
{
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) off += a[p * n + q] * a[p * n + q];
        if (off < 1e-22) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                if (fabs(a[p * n + q]) < 1e-300) continue;
                const double th = (a[q * n + q] - a[p * n + p]) / (2 * a[p * n + q]);
                const double t = (th >= 0 ? 1 : -1) / (fabs(th) + sqrt(th * th + 1));
                const double c = 1 / sqrt(t * t + 1), sn = t * c;
                for (int k = 0; k < n; k++) { /* A := A J (columns p, q) */
                    const double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = c * akp - sn * akq, a[k * n + q] = sn * akp + c * akq;
                }
                for (int k = 0; k < n; k++) { /* A := J^T A (rows p, q) */
                    const double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = c * apk - sn * aqk, a[q * n + k] = sn * apk + c * aqk;
                }
            }
    }
    double top = a[0];
    for (int i = 1; i < n; i++) top = fmax(top, a[i * n + i]);
    return top;
}

/* The explicit Hessian of loss w.r.t. the np parameters (n values in all),
 * column by column from one batched nb_hvp with the n unit vectors, and its
 * largest eigenvalue. */
static double explicit_lambda_max(nb_node *loss, nb_node **params, int np, int n)
{
    nb_tensor *vs[8], *hv[8];
    for (int i = 0, off = 0; i < np; i++) {
        const nb_tensor *p = nb_value(params[i]);
        int64_t shape[NB_MAX_RANK + 1] = {n};
        memcpy(shape + 1, p->shape, sizeof(int64_t) * (size_t)p->rank);
        vs[i] = nb_tensor_new(p->rank + 1, shape);
        for (int e = 0; e < p->size; e++) vs[i]->data[(off + e) * p->size + e] = 1;
        off += (int)p->size;
    }
    assert_int_equal(nb_hvp(loss, np, params, (const nb_tensor *const *)vs, hv), NB_OK);
    double *a = malloc(sizeof(double) * (size_t)(n * n));
    for (int i = 0, off = 0; i < np; i++) {
        const int m = (int)nb_value(params[i])->size;
        for (int k = 0; k < n; k++)
            for (int e = 0; e < m; e++) a[(off + e) * n + k] = hv[i]->data[k * m + e]; /* row off + e, column k */
        off += m;
        nb_tensor_free(vs[i]), nb_tensor_free(hv[i]);
    }
    for (int r = 0; r < n; r++) /* symmetric up to rounding: average */
        for (int c = r + 1; c < n; c++) a[r * n + c] = a[c * n + r] = (a[r * n + c] + a[c * n + r]) / 2;
    const double top = jacobi_max(a, n);
    free(a);
    return top;
}

/* In the callback, with the weights of that step: nb_hessian_eigs of the
 * mean loss on the same first rows, computed here, equals what nb_train
 * measured. */
static int probe_sharpness(const nb_sharpness *s, void *user)
{
    sharp_probe *p = user;
    nb_node *target, *loss, *params[80];
    assert_int_equal(s->batch, p->batch);
    assert_int_equal(nb_model_loss(p->m, NB_LOSS_CCE, &target, &loss), NB_OK);
    assert_int_equal(nb_model_set_batch(p->m, p->batch), NB_OK);
    const int64_t xr = p->d->x->size / p->d->x->shape[0];
    memcpy(nb_value(nb_model_input(p->m))->data, p->d->x->data, sizeof(nb_real) * (size_t)(p->batch * xr));
    memcpy(nb_value(target)->data, p->d->y->data, sizeof(nb_real) * (size_t)p->batch);
    nb_graph_set_training(nb_model_graph(p->m), 0, 0);
    assert_int_equal(nb_forward(nb_model_graph(p->m)), NB_OK);
    assert_true(fabs(nb_value(loss)->data[0] - s->loss) <= 1e-6 * fabs(s->loss));
    const int np = nb_model_param_count(p->m);
    int n = 0;
    for (int i = 0; i < np; i++) params[i] = nb_model_param(p->m, i), n += (int)nb_value(params[i])->size;
    nb_eigs_result e;
    assert_int_equal(nb_hessian_eigs(loss, np, params, &(nb_eigs_opts){.k = 1, .tol = 1e-7, .max_iter = 5000, .seed = 5}, &e),
                     NB_OK);
    nb_tensor_free(e.vectors);
    if (e.values[0] > 0) { /* the largest |value| is the largest value: nb_hessian_eigs' own */
        assert_true(fabs(e.values[0] - s->lambda_max) <= 1e-5 * fabs(e.values[0]));
        assert_true(s->products == e.products && s->products > 0);
    } else { /* negative curvature dominates: the largest value is found on the shifted Hessian */
        p->shifted++;
        assert_true(s->lambda_max > e.values[0] && s->products > e.products);
    }
    const double want = explicit_lambda_max(loss, params, np, n);
    assert_true(fabs(want - s->lambda_max) <= 1e-3 * fabs(want));
    assert_true(s->lr == p->lr);
    p->steps[p->seen] = s->step, p->values[p->seen] = s->lambda_max;
    return ++p->seen == p->stop_after;
}

/* Random 3-class data of 4 features, and a small tanh network on it. */
static nb_model *sharp_model(nb_dataset *d, uint64_t seed)
{
    int64_t xs[2] = {40, 4}, ys[1] = {40}, in[1] = {4};
    nb_rng r;
    nb_rng_seed(&r, 11);
    if (d) {
        d->x = nb_tensor_new(2, xs), d->y = nb_tensor_new(1, ys);
        nb_tensor_fill_normal(d->x, &r, 0, 1);
        for (int i = 0; i < 40; i++) d->y->data[i] = (nb_real)(nb_rng_next(&r) % 3);
    }
    nb_model *m = NULL;
    assert_int_equal(nb_model_from_spec("dense 6 tanh; dense 3", 1, in, &m), NB_OK);
    assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, seed), NB_OK);
    return m;
}

static nb_optim *sgd(nb_model *m, double lr)
{
    nb_optim *o = NULL;
    assert_int_equal(nb_optim_new(m, &(nb_optim_opts){.kind = NB_OPT_SGD, .lr = lr}, &o), NB_OK);
    return o;
}

/* The library side: measured every 3 steps (and at step 0), mid-epoch
 * included, each equal to nb_hessian_eigs at that moment; the weights are
 * bit for bit those of training without it; a callback can stop it; the
 * refusals (rows S11-S13 of docs/bad-inputs.md). */
static void test_sharpness_library(void **state)
{
    (void)state;
    nb_dataset d = {0};
    nb_model *a = sharp_model(&d, 3), *b = sharp_model(NULL, 3);
    nb_optim *oa = sgd(a, 0.5), *ob = sgd(b, 0.5);
    sharp_probe p = {.m = a, .d = &d, .batch = 24, .stop_after = -1, .lr = 0.5};
    nb_train_opts to = {.epochs = 2, .batch = 16, .loss = NB_LOSS_CCE, .seed = 7, .shuffle = 1,
                        .sharpness_every = 3, .sharpness_batch = 24,
                        .sharpness_eigs = {.k = 1, .tol = 1e-7, .max_iter = 5000, .seed = 5},
                        .on_sharpness = probe_sharpness, .user = &p};
    assert_int_equal(nb_train(a, oa, &d, NULL, &to), NB_OK); /* 3 batches per epoch: 6 steps */
    assert_int_equal(p.seen, 3);
    print_message("sharpness: %d of 3 measurements had a dominant negative eigenvalue\n", p.shifted);
    assert_true(p.steps[0] == 0 && p.steps[1] == 3 && p.steps[2] == 6);
    assert_true(p.values[0] != p.values[1] && p.values[1] != p.values[2]);
    nb_train_opts plain = to;
    plain.sharpness_every = 0, plain.on_sharpness = NULL;
    assert_int_equal(nb_train(b, ob, &d, NULL, &plain), NB_OK);
    for (int i = 0; i < nb_model_param_count(a); i++) {
        const nb_tensor *wa = nb_value(nb_model_param(a, i)), *wb = nb_value(nb_model_param(b, i));
        assert_memory_equal(wa->data, wb->data, sizeof(nb_real) * (size_t)wa->size);
    }
    /* stopped by the callback at its second measurement: 3 steps done */
    sharp_probe q = {.m = b, .d = &d, .batch = 16, .stop_after = 2, .lr = 0.5};
    nb_train_opts stop = to;
    stop.sharpness_batch = 0, stop.user = &q, stop.epochs = 10;
    nb_optim_free(ob);
    ob = sgd(b, 0.5);
    assert_int_equal(nb_train(b, ob, &d, NULL, &stop), NB_OK);
    assert_int_equal(q.seen, 2);
    assert_true(q.steps[1] == 3);
    /* after 6 steps at lr 6 (init seed 1) the eigenvalue of largest |value| is
     * negative (-1.1): lambda_max comes from the shifted Hessian, and still
     * equals the explicit Hessian's largest eigenvalue */
    nb_model *c = sharp_model(NULL, 1);
    nb_optim *oc = sgd(c, 6);
    sharp_probe u = {.m = c, .d = &d, .batch = 24, .stop_after = -1, .lr = 6};
    nb_train_opts saddle = to;
    saddle.sharpness_every = 6, saddle.user = &u;
    assert_int_equal(nb_train(c, oc, &d, NULL, &saddle), NB_OK);
    assert_int_equal(u.seen, 2);
    assert_int_equal(u.shifted, 1);
    assert_true(u.values[1] > 0);
    nb_optim_free(oc);
    nb_model_free(c);
    /* refusals */
    nb_train_opts bad = to;
    bad.on_sharpness = NULL;
    assert_int_equal(nb_train(a, oa, &d, NULL, &bad), NB_ERR_ARG);
    assert_non_null(strstr(nb_last_error(), "sharpness_every is set but on_sharpness is NULL"));
    bad = to, bad.sharpness_every = -1;
    assert_int_equal(nb_train(a, oa, &d, NULL, &bad), NB_ERR_ARG);
    assert_non_null(strstr(nb_last_error(), "sharpness_every must be >= 0 (0: never), got -1"));
    bad = to, bad.sharpness_batch = -2;
    assert_int_equal(nb_train(a, oa, &d, NULL, &bad), NB_ERR_ARG);
    assert_non_null(strstr(nb_last_error(), "sharpness_batch must be >= 0 (0: the training batch size), got -2"));
    nb_optim_free(oa), nb_optim_free(ob);
    nb_model_free(a), nb_model_free(b);
    nb_dataset_free(&d);
}

/* The value after step `step` printed by train --sharpness, or NAN. */
static double printed_sharpness(long long step)
{
    char key[64];
    snprintf(key, sizeof key, "sharpness at step %lld: lambda_max ", step);
    const char *p = strstr(out, key);
    return p ? atof(p + strlen(key)) : NAN;
}

/* lambda_max by nb_hessian_eigs on the first 50 training images for a
 * model (a file, or the spec initialised with seed 1 as train does). */
static double library_sharpness(const char *file, const char *spec)
{
    nb_model *m = NULL;
    int64_t in[3] = {28, 28, 1};
    if (file) assert_int_equal(nb_model_load(file, &m), NB_OK);
    else {
        assert_int_equal(nb_model_from_spec(spec, 3, in, &m), NB_OK);
        assert_int_equal(nb_model_init(m, NB_INIT_GLOROT_UNIFORM, 1), NB_OK);
    }
    nb_dataset d = {0};
    assert_int_equal(nb_dataset_load_mnist(FASHION, "train", &d), NB_OK);
    nb_node *target, *loss, *params[80];
    assert_int_equal(nb_model_loss(m, NB_LOSS_CCE, &target, &loss), NB_OK);
    assert_int_equal(nb_model_set_batch(m, 50), NB_OK);
    memcpy(nb_value(nb_model_input(m))->data, d.x->data, sizeof(nb_real) * 50 * 784);
    memcpy(nb_value(target)->data, d.y->data, sizeof(nb_real) * 50);
    nb_graph_set_training(nb_model_graph(m), 0, 0);
    assert_int_equal(nb_forward(nb_model_graph(m)), NB_OK);
    const int np = nb_model_param_count(m);
    assert_true(np <= 80);
    for (int i = 0; i < np; i++) params[i] = nb_model_param(m, i);
    nb_eigs_result e;
    assert_int_equal(nb_hessian_eigs(loss, np, params, &(nb_eigs_opts){.k = 1, .seed = 1}, &e), NB_OK);
    nb_tensor_free(e.vectors);
    nb_model_free(m);
    nb_dataset_free(&d);
    return e.values[0];
}

/* train --sharpness 2 on 200 images, full batch, lr 0.1, 4 steps: the values at
 * steps 0 and 4 equal nb_hessian_eigs on the first 50 images with the
 * initial and the saved weights; the plot is SVG with a third panel; the
 * usage refusals (rows S14, S15). */
static void test_train_sharpness(void **state)
{
    (void)state;
    if (!have_data) skip();
    const char *spec = "flatten; dense 8 tanh; dense 10";
    remove(TMP "sharp.svg");
    assert_int_equal(run(CLI " train --data fashion-mnist --model '%s' --limit 200 --val-split 0 --optimizer sgd "
                             "--lr 0.1 --batch 200 --epochs 4 --sharpness 2 --sharpness-batch 50 --no-test --out " TMP
                             "sharp.safetensors --plot " TMP "sharp.svg",
                         spec),
                     0);
    assert_true(contains("sharpness at step 0: lambda_max "));
    assert_true(contains("sharpness at step 2: lambda_max "));
    assert_true(contains(", 2/lr 20: "));
    assert_true(contains("on 50 examples"));
    assert_null(strstr(out, "sharpness at step 1:"));
    const double l0 = printed_sharpness(0), l4 = printed_sharpness(4);
    /* reproducible: the same command prints the same measurements (and
     * nothing of them with --quiet) */
    static char first[1 << 16];
    memcpy(first, out, sizeof first);
    assert_int_equal(run(CLI " train --data fashion-mnist --model '%s' --limit 200 --val-split 0 --optimizer sgd "
                             "--lr 0.1 --batch 200 --epochs 4 --sharpness 2 --sharpness-batch 50 --no-test --quiet --out " TMP
                             "sharp2.safetensors",
                         spec),
                     0);
    assert_null(strstr(out, "sharpness at step")); /* --quiet */
    assert_int_equal(run(CLI " train --data fashion-mnist --model '%s' --limit 200 --val-split 0 --optimizer sgd "
                             "--lr 0.1 --batch 200 --epochs 4 --sharpness 2 --sharpness-batch 50 --no-test --out " TMP
                             "sharp2.safetensors",
                         spec),
                     0);
    for (long long step = 0; step <= 4; step += 2) {
        char key[64];
        snprintf(key, sizeof key, "sharpness at step %lld:", step);
        const char *a = strstr(first, key), *b = strstr(out, key);
        assert_non_null(a);
        assert_non_null(b);
        assert_memory_equal(a, b, (size_t)(strchr(a, '\n') - a));
    }
    const double w0 = library_sharpness(NULL, spec), w4 = library_sharpness(TMP "sharp.safetensors", spec);
    assert_true(w0 > 0 && w4 > 0 && l0 != l4); /* positive: nb_hessian_eigs' top |value| is lambda_max */
    assert_true(fabs(l0 - w0) <= 1e-4 * w0);
    assert_true(fabs(l4 - w4) <= 1e-4 * w4);
    const char *verdict = l4 * 0.1 / 2 < 0.9 ? "below the edge" : l4 * 0.1 / 2 > 1.1 ? "above the edge" : "at the edge";
    assert_true(contains(verdict));
    FILE *f = fopen(TMP "sharp.svg", "rb");
    assert_non_null(f);
    static char svg[1 << 18];
    size_t n = fread(svg, 1, sizeof svg - 1, f);
    fclose(f);
    svg[n] = '\0';
    assert_true(n > 100 && n < sizeof svg - 1);
    assert_non_null(strstr(svg, "<svg"));
    assert_non_null(strstr(svg, "</svg>"));
    assert_non_null(strstr(svg, "Sharpness (top Hessian eigenvalue)"));
    assert_non_null(strstr(svg, "2 / lr"));
    assert_non_null(strstr(svg, "Loss per epoch"));
    /* refusals */
    assert_int_equal(run(CLI " train --data fashion-mnist --model '%s' --sharpness-batch 10 --out " TMP "x.safetensors",
                         spec),
                     2);
    assert_true(contains("nabla train: --sharpness-batch needs --sharpness EVERY (how often to measure)"));
    assert_int_equal(run(CLI " train --data fashion-mnist --model '%s' --sharpness 0 --out " TMP "x.safetensors", spec),
                     2);
    assert_true(contains("nabla train: --sharpness must be an integer >= 1, got '0'"));
    struct stat sb;
    assert_int_not_equal(stat(TMP "x.safetensors", &sb), 0);
}

/* --sharpness on a model of 70 trainable tensors (35 dense layers): once
 * refused by a limit of 64 (a ResNet with batchnorm has more). */
static void test_sharpness_many_tensors(void **state)
{
    (void)state;
    if (!have_data) skip();
    char spec[1024] = "flatten; ";
    for (int i = 0; i < 34; i++) strcat(spec, "dense 4 tanh; ");
    strcat(spec, "dense 10"); /* 70 parameter tensors: past the 64 the passes once held */
    assert_int_equal(run(CLI " train --data fashion-mnist --model '%s' --limit 200 --val-split 0 --optimizer sgd "
                             "--lr 0.1 --batch 200 --epochs 1 --sharpness 1 --sharpness-batch 50 --no-test --out " TMP
                             "many.safetensors",
                         spec),
                     0);
    const double printed = printed_sharpness(0), want = library_sharpness(NULL, spec);
    print_message("35 dense layers: lambda_max printed %g, nb_hessian_eigs %g\n", printed, want);
    assert_true(want > 0);
    assert_true(fabs(printed - want) <= 1e-4 * want);
}

static void test_demo_gd_second_order(void **state)
{
    (void)state;
    assert_int_equal(run(CLI " demo gd --lr 0.55 --steps 3"), 0);
    assert_true(contains("second order: f''(x) = 4 everywhere"));
    assert_true(contains("the critical learning rate is 2 / f'' = 0.5"));
    assert_true(contains("alpha 0.45  factor -0.8   converges"));
    assert_true(contains("alpha 0.5   factor -1     oscillates"));
    assert_true(contains("alpha 0.55  factor -1.2   diverges"));
    assert_true(contains("alpha = 0.55 is above the critical rate 0.5"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hvp_matches_library),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_curvature),
        cmocka_unit_test(test_sharpness_many_tensors),
        cmocka_unit_test(test_demo_gd_second_order),
        cmocka_unit_test(test_sharpness_library),
        cmocka_unit_test(test_train_sharpness),
    };
    return cmocka_run_group_tests(tests, setup_model, NULL);
}
