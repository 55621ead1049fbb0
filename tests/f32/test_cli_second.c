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
        cmocka_unit_test(test_demo_gd_second_order),
    };
    return cmocka_run_group_tests(tests, setup_model, NULL);
}
